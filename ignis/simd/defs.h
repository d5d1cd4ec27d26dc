/* simd/defs.h -- the scalar definitions of the Q8_0, Q5_0, Q4_1, Q4_K and Q6_K dot products
 * (what every SIMD level must reproduce bit for bit; the rule is in _neon.h's header comment)
 * and their row dequantizers. Included by _neon.h after its small helpers and f16 conversions. */
#ifndef IGNIS_SIMD_DEFS_H
#define IGNIS_SIMD_DEFS_H

/* Integer halves of one 32-element block: lo = sum over elements 0..15 of w*x, hi = 16..31. */
static inline void ignis_halves_i8(const int8_t *w, const int8_t *x, int32_t *lo, int32_t *hi) {
    int32_t a = 0, b = 0;
    for (int i = 0; i < 16; i++) a += (int32_t)w[i] * (int32_t)x[i];
    for (int i = 16; i < 32; i++) b += (int32_t)w[i] * (int32_t)x[i];
    *lo = a;
    *hi = b;
}

/* Q8_0 weight row . Q8_0 activation row over nb blocks (see the header for the definition). */
static inline float ignis_scalar_vec_dot_q8_0(int64_t nb, const uint8_t *w, const uint8_t *x) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * IGNIS_Q8_0_BYTES, *xb = x + b * IGNIS_Q8_0_BYTES;
        float s = ignis_scalar_f16_to_f32(ignis_load_u16(wb)) * ignis_scalar_f16_to_f32(ignis_load_u16(xb));
        int32_t il, ih;
        ignis_halves_i8((const int8_t *)(wb + 2), (const int8_t *)(xb + 2), &il, &ih);
        lo = fmaf((float)il, s, lo);
        hi = fmaf((float)ih, s, hi);
    }
    return lo + hi;
}

/* Q5_0 block: quant j (0..31) in 0..31. */
static inline int ignis_q5_0_quant(const uint8_t *blk, int j) {
    uint32_t qh = ignis_load_u32(blk + 2);
    const uint8_t *qs = blk + 6;
    int nib = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
    return nib | (int)(((qh >> j) & 1u) << 4);
}

/* Q5_0 weight row . Q8_0 activation row: as Q8_0 with weights q - 16. */
static inline float ignis_scalar_vec_dot_q5_0(int64_t nb, const uint8_t *w, const uint8_t *x) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * IGNIS_Q5_0_BYTES, *xb = x + b * IGNIS_Q8_0_BYTES;
        float s = ignis_scalar_f16_to_f32(ignis_load_u16(wb)) * ignis_scalar_f16_to_f32(ignis_load_u16(xb));
        int8_t q[32];
        for (int j = 0; j < 32; j++) q[j] = (int8_t)(ignis_q5_0_quant(wb, j) - 16);
        int32_t il, ih;
        ignis_halves_i8(q, (const int8_t *)(xb + 2), &il, &ih);
        lo = fmaf((float)il, s, lo);
        hi = fmaf((float)ih, s, hi);
    }
    return lo + hi;
}

/* Q4_1 block: quant j (0..31) in 0..15 (low nibbles are elements 0..15). */
static inline int ignis_q4_1_quant(const uint8_t *blk, int j) {
    const uint8_t *qs = blk + 4;
    return j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
}

/* A weight row of 32-element blocks "d (f16), m (f16), quants" . Q8_0 activation row:
 * s = d*d_x, sm = m*d_x; per half the exact sums i = sum q*x and c = sum x, then
 * lo = fmaf(i_lo, s, lo); lo = fmaf(c_lo, sm, lo); hi alike. Q4_1 and Q5_1 differ only in
 * their block size and how quant j is read. */
static inline float ignis_scalar_vec_dot_dm(int64_t nb, const uint8_t *w, const uint8_t *x, int64_t block_bytes,
                                            int (*quant)(const uint8_t *, int)) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * block_bytes, *xb = x + b * IGNIS_Q8_0_BYTES;
        const int8_t *xq = (const int8_t *)(xb + 2);
        float dx = ignis_scalar_f16_to_f32(ignis_load_u16(xb));
        float s = ignis_scalar_f16_to_f32(ignis_load_u16(wb)) * dx;
        float sm = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 2)) * dx;
        int32_t a[2] = {0, 0}, c[2] = {0, 0};
        for (int j = 0; j < 32; j++) {
            a[j / 16] += quant(wb, j) * (int32_t)xq[j];
            c[j / 16] += xq[j];
        }
        lo = fmaf((float)a[0], s, lo);
        lo = fmaf((float)c[0], sm, lo);
        hi = fmaf((float)a[1], s, hi);
        hi = fmaf((float)c[1], sm, hi);
    }
    return lo + hi;
}

/* Q4_1 weight row . Q8_0 activation row */
static inline float ignis_scalar_vec_dot_q4_1(int64_t nb, const uint8_t *w, const uint8_t *x) {
    return ignis_scalar_vec_dot_dm(nb, w, x, IGNIS_Q4_1_BYTES, ignis_q4_1_quant);
}

/* Q4_K: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes. */
static inline void ignis_q4_k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* all eight 6-bit scales and mins of a Q4_K (or Q5_K) super-block at once, byte j of *sc8 and *m8
 * being ignis_q4_k_scale_min's sc and m of sub-block j: the packing undone four at a time in
 * 32-bit words (the vector levels' scale unpack) */
static inline void ignis_q4_k_scales8(const uint8_t *s, uint64_t *sc8, uint64_t *m8) {
    const uint32_t a = ignis_load_u32(s), b = ignis_load_u32(s + 4), c = ignis_load_u32(s + 8);
    *sc8 = (uint64_t)(a & 0x3f3f3f3fu) | (uint64_t)((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32;
    *m8 = (uint64_t)(b & 0x3f3f3f3fu) | (uint64_t)(((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u)) << 32;
}

/* Q4_K quant of element e (0..255): nibble (j%2) of qs[(j/2)*32 + l], j = e/32, l = e%32. */
static inline int ignis_q4_k_quant(const uint8_t *blk, int e) {
    const uint8_t *qs = blk + 16;
    int j = e / 32, l = e % 32;
    uint8_t byte = qs[(j / 2) * 32 + l];
    return (j & 1) ? (byte >> 4) : (byte & 0x0f);
}

/* Q4_K weight row . Q8_0 activation row; nsb super-blocks (8 activation blocks each).
 * Sub-block j (activation block b): halves A = sc * sum q*x, B = m * sum x (exact ints);
 * lo = fmaf(A_lo, d*d_x, lo); lo = fmaf(-B_lo, dmin*d_x, lo); the same for hi. */
static inline float ignis_scalar_vec_dot_q4_k(int64_t nsb, const uint8_t *w, const uint8_t *x) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *wb = w + s * IGNIS_Q4_K_BYTES;
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        float dmin = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 2));
        for (int j = 0; j < 8; j++) {
            const uint8_t *xb = x + (s * 8 + j) * IGNIS_Q8_0_BYTES;
            const int8_t *xq = (const int8_t *)(xb + 2);
            float dx = ignis_scalar_f16_to_f32(ignis_load_u16(xb));
            int sc, m;
            ignis_q4_k_scale_min(wb + 4, j, &sc, &m);
            int32_t a[2] = {0, 0}, c[2] = {0, 0};
            for (int l = 0; l < 32; l++) {
                a[l / 16] += ignis_q4_k_quant(wb, j * 32 + l) * (int32_t)xq[l];
                c[l / 16] += xq[l];
            }
            float sd = d * dx, sm = dmin * dx;
            lo = fmaf((float)(sc * a[0]), sd, lo);
            lo = fmaf(-(float)(m * c[0]), sm, lo);
            hi = fmaf((float)(sc * a[1]), sd, hi);
            hi = fmaf(-(float)(m * c[1]), sm, hi);
        }
    }
    return lo + hi;
}

/* Q6_K quant of element e (0..255), in -32..31:
 * e = half*128 + k*32 + l: low 4 bits are nibble k/2 of ql[half*64 + (k%2)*32 + l],
 * high 2 bits are bits 2k..2k+1 of qh[half*32 + l]. Its scale is sc[e/16]. */
static inline int ignis_q6_k_quant(const uint8_t *blk, int e) {
    const uint8_t *ql = blk, *qh = blk + 128;
    int half = e / 128, k = (e % 128) / 32, l = e % 32;
    uint8_t lo = ql[half * 64 + (k % 2) * 32 + l];
    int low4 = (k / 2) ? (lo >> 4) : (lo & 0x0f);
    int high2 = (qh[half * 32 + l] >> (2 * k)) & 3;
    return (low4 | (high2 << 4)) - 32;
}

/* Q6_K weight row . Q8_0 activation row. Activation block j covers the 16-element
 * sub-blocks 2j (low half) and 2j+1 (high half): lo_int = sc[2j] * sum q*x, hi_int = sc[2j+1] * ...;
 * s = d * d_x. */
static inline float ignis_scalar_vec_dot_q6_k(int64_t nsb, const uint8_t *w, const uint8_t *x) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *wb = w + s * IGNIS_Q6_K_BYTES;
        const int8_t *sc = (const int8_t *)(wb + 192);
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 208));
        for (int j = 0; j < 8; j++) {
            const uint8_t *xb = x + (s * 8 + j) * IGNIS_Q8_0_BYTES;
            float dx = ignis_scalar_f16_to_f32(ignis_load_u16(xb));
            int8_t q[32];
            for (int l = 0; l < 32; l++) q[l] = (int8_t)ignis_q6_k_quant(wb, j * 32 + l);
            int32_t il, ih;
            ignis_halves_i8(q, (const int8_t *)(xb + 2), &il, &ih);
            float sd = d * dx;
            lo = fmaf((float)(sc[2 * j] * il), sd, lo);
            hi = fmaf((float)(sc[2 * j + 1] * ih), sd, hi);
        }
    }
    return lo + hi;
}

/* Row dequantizers (embedding lookups). Bit-exact with ignis.gguf.quant.dequantize. */
static inline void ignis_dequant_row_q8_0(const uint8_t *w, float *y, int64_t k) {
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const uint8_t *wb = w + b * IGNIS_Q8_0_BYTES;
        const int8_t *q = (const int8_t *)(wb + 2);
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        for (int i = 0; i < IGNIS_QK; i++) y[b * IGNIS_QK + i] = (float)q[i] * d;
    }
}

static inline void ignis_dequant_row_q5_0(const uint8_t *w, float *y, int64_t k) {
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const uint8_t *wb = w + b * IGNIS_Q5_0_BYTES;
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        for (int j = 0; j < IGNIS_QK; j++) y[b * IGNIS_QK + j] = (float)(ignis_q5_0_quant(wb, j) - 16) * d;
    }
}

/* d*q then + m: two roundings, as ignis.gguf.quant's decode (a multiply, then an add) */
static inline void ignis_dequant_row_q4_1(const uint8_t *w, float *y, int64_t k) {
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const uint8_t *wb = w + b * IGNIS_Q4_1_BYTES;
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        float m = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 2));
        for (int j = 0; j < IGNIS_QK; j++) {
            float v = (float)ignis_q4_1_quant(wb, j) * d;
            y[b * IGNIS_QK + j] = v + m;
        }
    }
}

static inline void ignis_dequant_row_q4_k(const uint8_t *w, float *y, int64_t k) {
    for (int64_t s = 0; s < k / IGNIS_QK_K; s++) {
        const uint8_t *wb = w + s * IGNIS_Q4_K_BYTES;
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        float dmin = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 2));
        for (int j = 0; j < 8; j++) {
            int sc, m;
            ignis_q4_k_scale_min(wb + 4, j, &sc, &m);
            float ds = d * (float)sc, dm = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                y[s * IGNIS_QK_K + j * 32 + l] = (float)ignis_q4_k_quant(wb, j * 32 + l) * ds - dm;
        }
    }
}

static inline void ignis_dequant_row_q6_k(const uint8_t *w, float *y, int64_t k) {
    for (int64_t s = 0; s < k / IGNIS_QK_K; s++) {
        const uint8_t *wb = w + s * IGNIS_Q6_K_BYTES;
        const int8_t *sc = (const int8_t *)(wb + 192);
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 208));
        for (int e = 0; e < IGNIS_QK_K; e++)
            y[s * IGNIS_QK_K + e] = (float)ignis_q6_k_quant(wb, e) * (d * (float)sc[e / 16]);
    }
}

#endif
