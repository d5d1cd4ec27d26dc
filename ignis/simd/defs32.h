/* defs32.h -- the scalar definitions of the 32-element block types Q4_0, Q5_1 and IQ4_NL
 * (weights against Q8_0 activation rows) and of the float weight types F32, F16 and BF16
 * (weights against the float activation row itself), plus their row dequantizers. Included
 * by _neon.h inside the scalar section: these functions *are* the semantics, and every SIMD
 * level (simd/x86_32.h, simd/arm_32.h) must give their bits.
 *
 * Block formats (little-endian):
 *   Q4_0   18 B / 32:  f16 d, u8 qs[16]                x = d*(q-8), q = nibble
 *   Q5_1   24 B / 32:  f16 d, f16 m, u32 qh, u8 qs[16] x = d*q + m, q = nibble | bit<<4
 *   IQ4_NL 18 B / 32:  f16 d, u8 qs[16]                x = d*T[q], q = nibble, T below
 * (low nibbles are elements 0..15, high nibbles 16..31; bit j of qh is element j's 5th bit).
 *
 * Quantized dots: as Q8_0's (see _neon.h): per block the exact integer half sums, then
 *   Q4_0, IQ4_NL  lo = fmaf(ilo, s, lo), hi = fmaf(ihi, s, hi)     (ilo = sum (q-8)*x or T[q]*x)
 *   Q5_1          as Q4_1: lo = fmaf(ilo, s, lo); lo = fmaf(clo, sm, lo); hi alike
 * with s = d*d_x, sm = m*d_x; the result is lo + hi.
 *
 * Float weights (wtype 0 F32, 1 F16, 30 BF16; nblk is the row length k, x a float row): the
 * f16/bf16 values are converted exactly, element i goes to chain i mod 16, each chain a
 * sequence of fmaf(x_i, w_i, c) in element order, then the fixed tree
 *   c8[l] = c[l] + c[l+8], c4[l] = c8[l] + c8[l+4], c2[l] = c4[l] + c4[l+2], r = c2[0] + c2[1].
 * Sixteen chains are two AVX2 registers, one AVX-512 register or four NEON registers, so
 * every level forms the very same IEEE operations; the activations are not rounded at all. */

#define IGNIS_Q4_0_BYTES 18
#define IGNIS_Q5_1_BYTES 24
#define IGNIS_IQ4_NL_BYTES 18
#define IGNIS_WCHAINS 16          /* float weights: the number of fma chains of the definition */

/* IQ4_NL's non-linear levels (the format's fixed table) */
static const int8_t ignis_iq4_nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                               1, 13, 25, 38, 53, 69, 89, 113};

static inline int ignis_nibble(const uint8_t *qs, int j) { return j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4); }

/* the signed weight quants of one Q4_0 / IQ4_NL block */
static inline void ignis_q4_0_quants(const uint8_t *blk, int8_t *q) {
    for (int j = 0; j < 32; j++) q[j] = (int8_t)(ignis_nibble(blk + 2, j) - 8);
}
static inline void ignis_iq4_nl_quants(const uint8_t *blk, int8_t *q) {
    for (int j = 0; j < 32; j++) q[j] = ignis_iq4_nl_levels[ignis_nibble(blk + 2, j)];
}

/* Q4_0 (WT 2) or IQ4_NL (WT 20) weight row . Q8_0 activation row */
static inline float ignis_scalar_vec_dot_sq4(int wt, int64_t nb, const uint8_t *w, const uint8_t *x) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * IGNIS_Q4_0_BYTES, *xb = x + b * IGNIS_Q8_0_BYTES;
        float s = ignis_scalar_f16_to_f32(ignis_load_u16(wb)) * ignis_scalar_f16_to_f32(ignis_load_u16(xb));
        int8_t q[32];
        if (wt == 2) ignis_q4_0_quants(wb, q);
        else ignis_iq4_nl_quants(wb, q);
        int32_t il, ih;
        ignis_halves_i8(q, (const int8_t *)(xb + 2), &il, &ih);
        lo = fmaf((float)il, s, lo);
        hi = fmaf((float)ih, s, hi);
    }
    return lo + hi;
}

/* Q5_1 quant j (0..31): the Q5_0 layout shifted by the 2 bytes of m */
static inline int ignis_q5_1_quant(const uint8_t *blk, int j) { return ignis_q5_0_quant(blk + 2, j); }

/* Q5_1 weight row . Q8_0 activation row (the Q4_1 definition with 5-bit quants) */
static inline float ignis_scalar_vec_dot_q5_1(int64_t nb, const uint8_t *w, const uint8_t *x) {
    return ignis_scalar_vec_dot_dm(nb, w, x, IGNIS_Q5_1_BYTES, ignis_q5_1_quant);
}

/* one float weight element, exactly */
static inline float ignis_wfloat(int wt, const uint8_t *w, int64_t i) {
    if (wt == 0) { float v; memcpy(&v, w + 4 * i, 4); return v; }
    if (wt == 1) return ignis_scalar_f16_to_f32(ignis_load_u16(w + 2 * i));
    return ignis_bits_f32((uint32_t)ignis_load_u16(w + 2 * i) << 16);
}

/* the definition's last steps from the 16 chains after element i0 (i0 a multiple of 16):
 * the remaining elements into their chains, then the fixed tree */
static inline float ignis_wdot_finish(float *c, int wt, int64_t i0, int64_t k, const uint8_t *w, const float *x) {
    for (int64_t i = i0; i < k; i++) c[i % IGNIS_WCHAINS] = fmaf(x[i], ignis_wfloat(wt, w, i), c[i % IGNIS_WCHAINS]);
    float c8[8], c4[4];
    for (int l = 0; l < 8; l++) c8[l] = c[l] + c[l + 8];
    for (int l = 0; l < 4; l++) c4[l] = c8[l] + c8[l + 4];
    return (c4[0] + c4[2]) + (c4[1] + c4[3]);
}

/* float weight row (F32 / F16 / BF16) . float activation row of k elements */
static inline float ignis_scalar_vec_dot_wfloat(int wt, int64_t k, const uint8_t *w, const uint8_t *x) {
    float c[IGNIS_WCHAINS] = {0};
    return ignis_wdot_finish(c, wt, 0, k, w, (const float *)x);
}

/* the scalar dot of every type this header defines */
static inline float ignis_scalar_vec_dot_32x(int wt, int64_t nblk, const uint8_t *w, const uint8_t *x) {
    switch (wt) {
    case 2: case 20: return ignis_scalar_vec_dot_sq4(wt, nblk, w, x);
    case 7: return ignis_scalar_vec_dot_q5_1(nblk, w, x);
    default: return ignis_scalar_vec_dot_wfloat(wt, nblk, w, x);
    }
}

/* 1 for the types of this header */
static inline int ignis_is_32x(int wt) { return wt == 2 || wt == 7 || wt == 20 || wt == 0 || wt == 1 || wt == 30; }

/* Row dequantizers (embedding lookups): bit for bit those of ignis.gguf.quant and of the gguf
 * package (d times the quant; Q5_1 then adds m). */
static inline void ignis_dequant_row_32x(int wt, const uint8_t *w, float *y, int64_t k) {
    if (wt == 0 || wt == 1 || wt == 30) {
        for (int64_t i = 0; i < k; i++) y[i] = ignis_wfloat(wt, w, i);
        return;
    }
    const int64_t bytes = wt == 7 ? IGNIS_Q5_1_BYTES : IGNIS_Q4_0_BYTES;
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const uint8_t *wb = w + b * bytes;
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        float *yb = y + b * IGNIS_QK;
        if (wt == 7) {
            float m = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 2));
            for (int j = 0; j < IGNIS_QK; j++) {
                float v = (float)ignis_q5_1_quant(wb, j) * d;
                yb[j] = v + m;
            }
        } else {
            int8_t q[32];
            if (wt == 2) ignis_q4_0_quants(wb, q);
            else ignis_iq4_nl_quants(wb, q);
            for (int j = 0; j < IGNIS_QK; j++) yb[j] = (float)q[j] * d;
        }
    }
}
