/* kquants.h -- the scalar definitions of the 256-element super-block types Q5_K, Q3_K, Q2_K
 * and IQ4_XS against Q8_0 activations (included by _neon.h before the levels; the levels'
 * tiles are in simd/kquants_x86.h and simd/kquants_arm.h).
 *
 * Each follows the rule of the header of _neon.h: per 32-element activation block (in
 * order) the exact integer sums of its low (elements 0..15) and high (16..31) halves, each
 * times its sub-block's integer scale (still an exact integer, below 2^24), then one fused
 * multiply-add per half into the lo / hi chains with d * d_x, and for the types with mins
 * (Q5_K, Q2_K) a second step per half, fmaf(-(float)(m * sum x), dmin * d_x, chain).
 *
 *   Q5_K 176 B: f16 d, f16 dmin, u8 scales[12] (packed as Q4_K's), u8 qh[32], u8 qs[128]
 *               sub-block j (32 elements) = activation block j; element j*32 + l has the
 *               nibble (j%2) of qs[(j/2)*32 + l] plus bit j of qh[l] as its fifth bit (q 0..31);
 *               x = d*sc_j*q - dmin*m_j.
 *   Q3_K 110 B: u8 hmask[32], u8 qs[64], u8 scales[12], f16 d
 *               element e = h*128 + s*32 + l: q = ((qs[h*32 + l] >> 2s) & 3) + 4*bit (4h+s) of
 *               hmask[l] - 4 (-4..3); 16 six-bit scales, sc_i = (low4 | high2 << 4) - 32 with
 *               low4 = nibble (i/8) of scales[i%8], high2 = bits 2(i/4).. of scales[8 + i%4];
 *               x = d*sc_(e/16)*q. Activation block j has sub-blocks 2j (lo) and 2j+1 (hi).
 *   Q2_K  84 B: u8 scales[16], u8 qs[64], f16 d, f16 dmin
 *               element e = h*128 + s*32 + l: q = (qs[h*32 + l] >> 2s) & 3; scales[e/16] holds
 *               sc (low nibble) and m (high nibble); x = d*sc*q - dmin*m. Halves as Q3_K.
 *   IQ4_XS 136 B: f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128]
 *               sub-block j: ls = nibble (j%2) of scales_l[j/2] | ((scales_h >> 2j) & 3) << 4,
 *               element j*32 + l is IQ4_NL_VALUES[nibble] of qs[j*16 + l%16] (low nibble for
 *               l < 16, high for l >= 16); x = d*(ls - 32)*value.
 */

#define IGNIS_Q2_K_BYTES 84
#define IGNIS_Q3_K_BYTES 110
#define IGNIS_Q5_K_BYTES 176
#define IGNIS_IQ4_XS_BYTES 136

/* the non-linear 4-bit grid of IQ4_NL / IQ4_XS */
static const int8_t ignis_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                              1, 13, 25, 38, 53, 69, 89, 113};

/* 1 for the types of this file (their tiles live in the kquants templates) */
#define IGNIS_IS_KX(t) ((t) == 10 || (t) == 11 || (t) == 13 || (t) == 23)

static inline int ignis_q5_k_quant(const uint8_t *blk, int e) {
    const int j = e / 32, l = e % 32;
    const uint8_t byte = blk[48 + (j / 2) * 32 + l];
    const int nib = (j & 1) ? (byte >> 4) : (byte & 0x0f);
    return nib | (((blk[16 + l] >> j) & 1) << 4);
}

static inline int ignis_q3_k_scale(const uint8_t *blk, int i) {
    const uint8_t *s = blk + 96;
    const int low4 = i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4);
    const int high2 = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (low4 | (high2 << 4)) - 32;
}

static inline int ignis_q3_k_quant(const uint8_t *blk, int e) {
    const int h = e / 128, s = (e % 128) / 32, l = e % 32;
    const int low2 = (blk[32 + h * 32 + l] >> (2 * s)) & 3;
    const int hbit = (blk[l] >> (4 * h + s)) & 1;
    return low2 + 4 * hbit - 4;
}

static inline int ignis_q2_k_quant(const uint8_t *blk, int e) {
    const int h = e / 128, s = (e % 128) / 32, l = e % 32;
    return (blk[16 + h * 32 + l] >> (2 * s)) & 3;
}

static inline int ignis_iq4_xs_scale(const uint8_t *blk, int j) {
    const int lo = (blk[4 + j / 2] >> (4 * (j % 2))) & 0x0f;
    const int hi = (ignis_load_u16(blk + 2) >> (2 * j)) & 3;
    return (lo | (hi << 4)) - 32;
}

static inline int ignis_iq4_xs_quant(const uint8_t *blk, int e) {
    const int j = e / 32, l = e % 32;
    const uint8_t byte = blk[8 + j * 16 + l % 16];
    return ignis_iq4nl_values[l < 16 ? (byte & 0x0f) : (byte >> 4)];
}

/* the integer parts of activation block j (0..7) of one super-block of type t: per half,
 * A = scale * sum q*x and B = m * sum x (0 for the types without mins) */
static inline void ignis_kx_block_ints(int t, const uint8_t *blk, int j, const int8_t *xq,
                                       int32_t a[2], int32_t bm[2]) {
    int32_t qx[2] = {0, 0}, c[2] = {0, 0};
    for (int l = 0; l < 32; l++) {
        const int e = j * 32 + l;
        const int q = t == 13 ? ignis_q5_k_quant(blk, e) : t == 11 ? ignis_q3_k_quant(blk, e)
                    : t == 10 ? ignis_q2_k_quant(blk, e) : ignis_iq4_xs_quant(blk, e);
        qx[l / 16] += q * (int32_t)xq[l];
        c[l / 16] += xq[l];
    }
    for (int h = 0; h < 2; h++) {
        if (t == 13) {
            int sc, m;
            ignis_q4_k_scale_min(blk + 4, j, &sc, &m);
            a[h] = sc * qx[h];
            bm[h] = m * c[h];
        } else if (t == 11) {
            a[h] = ignis_q3_k_scale(blk, 2 * j + h) * qx[h];
            bm[h] = 0;
        } else if (t == 10) {
            const uint8_t sm = blk[2 * j + h];
            a[h] = (sm & 0x0f) * qx[h];
            bm[h] = (sm >> 4) * c[h];
        } else {
            a[h] = ignis_iq4_xs_scale(blk, j) * qx[h];
            bm[h] = 0;
        }
    }
}

static inline size_t ignis_kx_bytes(int t) {
    return t == 13 ? IGNIS_Q5_K_BYTES : t == 11 ? IGNIS_Q3_K_BYTES : t == 10 ? IGNIS_Q2_K_BYTES : IGNIS_IQ4_XS_BYTES;
}

/* the f16 d and dmin fields' offsets */
static inline size_t ignis_kx_d_off(int t) { return t == 11 ? 108 : t == 10 ? 80 : 0; }
static inline size_t ignis_kx_dmin_off(int t) { return t == 10 ? 82 : 2; }

/* Q5_K / Q3_K / Q2_K / IQ4_XS weight row . Q8_0 activation row over nsb super-blocks:
 * lo = fmaf((float)A_lo, d*d_x, lo); [lo = fmaf(-(float)B_lo, dmin*d_x, lo)]; the same for hi. */
static inline float ignis_scalar_vec_dot_kx(int t, int64_t nsb, const uint8_t *w, const uint8_t *x) {
    const size_t bytes = ignis_kx_bytes(t);
    const int has_min = t == 13 || t == 10;
    float lo = 0.0f, hi = 0.0f;
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *wb = w + s * bytes;
        const float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb + ignis_kx_d_off(t)));
        const float dmin = has_min ? ignis_scalar_f16_to_f32(ignis_load_u16(wb + ignis_kx_dmin_off(t))) : 0.0f;
        for (int j = 0; j < 8; j++) {
            const uint8_t *xb = x + (s * 8 + j) * IGNIS_Q8_0_BYTES;
            const float dx = ignis_scalar_f16_to_f32(ignis_load_u16(xb));
            int32_t a[2], bm[2];
            ignis_kx_block_ints(t, wb, j, (const int8_t *)(xb + 2), a, bm);
            const float sd = d * dx;
            lo = fmaf((float)a[0], sd, lo);
            if (has_min) lo = fmaf(-(float)bm[0], dmin * dx, lo);
            hi = fmaf((float)a[1], sd, hi);
            if (has_min) hi = fmaf(-(float)bm[1], dmin * dx, hi);
        }
    }
    return lo + hi;
}

/* The block rule: Q5_K (13) and IQ4_XS (23), types with one scale per 32-element block. (Q4_K, of
 * the same shape, keeps the half rule of simd/defs.h: on the block rule, every level of it built,
 * the default model's top-1 against the float reference moved below its bar by near-tie flips;
 * see the branch blockrule-q4k.)
 * Per activation block j of a super-block, two exact integers over the whole block:
 *     A_j = sc_j * sum q*x,   c_j = sum x,
 * then the even and the odd blocks advance their own chains (p = j % 2):
 *     u[p] = fmaf((float)A_j, d_x, u[p]);   v[p] = fmaf((float)m_j, (float)c_j * d_x, v[p])
 * ((float)c_j * d_x a float product: exact, as d_x is an f16 and |c_j| < 2^13; v only for Q5_K,
 * which has mins).
 * At the super-block's end, from zero at each super-block,
 *     acc[p] = fmaf(u[p], d, acc[p]);   acc[p] = fmaf(-v[p], dmin, acc[p])
 * and the result is acc[0] + acc[1]. |A_j| < 2^24 (Q5_K: 32 * 31 * 127 * 63), so the integer
 * steps are exact on every path; one rounding per block and chain instead of the half rule's
 * per half (and none for d, dmin until the super-block's end) is what lets a tile do it in
 * fewer steps. */
#define IGNIS_IS_BLOCK_RULE(t) ((t) == 13 || (t) == 23)

/* block j's sc_j * sum q*x (*a), sum x (*c) and m_j (*m; 0 without mins) */
static inline void ignis_block_rule_ints(int t, const uint8_t *blk, int j, const int8_t *xq, int32_t *a,
                                         int32_t *c, int *m) {
    int32_t qx = 0, cs = 0;
    for (int l = 0; l < 32; l++) {
        const int e = j * 32 + l;
        const int q = t == 13 ? ignis_q5_k_quant(blk, e) : ignis_iq4_xs_quant(blk, e);
        qx += q * (int32_t)xq[l];
        cs += xq[l];
    }
    int sc;
    if (t == 23) {
        sc = ignis_iq4_xs_scale(blk, j);
        *m = 0;
    } else {
        ignis_q4_k_scale_min(blk + 4, j, &sc, m);
    }
    *a = sc * qx;
    *c = cs;
}

static inline float ignis_scalar_vec_dot_block_rule(int t, int64_t nsb, const uint8_t *w, const uint8_t *x) {
    const size_t bytes = ignis_kx_bytes(t);
    const int has_min = t != 23;
    float acc[2] = {0.0f, 0.0f};
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *wb = w + s * bytes;
        const float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        const float dmin = has_min ? ignis_scalar_f16_to_f32(ignis_load_u16(wb + 2)) : 0.0f;
        float u[2] = {0.0f, 0.0f}, v[2] = {0.0f, 0.0f};
        for (int j = 0; j < 8; j++) {
            const uint8_t *xb = x + (s * 8 + j) * IGNIS_Q8_0_BYTES;
            const float dx = ignis_scalar_f16_to_f32(ignis_load_u16(xb));
            int32_t a, c;
            int m;
            ignis_block_rule_ints(t, wb, j, (const int8_t *)(xb + 2), &a, &c, &m);
            u[j % 2] = fmaf((float)a, dx, u[j % 2]);
            if (has_min) v[j % 2] = fmaf((float)m, (float)c * dx, v[j % 2]);
        }
        for (int p = 0; p < 2; p++) {
            acc[p] = fmaf(u[p], d, acc[p]);
            if (has_min) acc[p] = fmaf(-v[p], dmin, acc[p]);
        }
    }
    return acc[0] + acc[1];
}

/* Row dequantizers (embedding lookups), bit-exact with ignis.gguf.quant.dequantize:
 * q * (d * sc) [- dmin * m], each product rounded once. */
static inline void ignis_dequant_row_kx(int t, const uint8_t *w, float *y, int64_t k) {
    const size_t bytes = ignis_kx_bytes(t);
    for (int64_t s = 0; s < k / IGNIS_QK_K; s++) {
        const uint8_t *wb = w + s * bytes;
        const float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb + ignis_kx_d_off(t)));
        const float dmin = ignis_scalar_f16_to_f32(ignis_load_u16(wb + ignis_kx_dmin_off(t)));
        float *ys = y + s * IGNIS_QK_K;
        for (int e = 0; e < IGNIS_QK_K; e++) {
            const int i = e / 16, j = e / 32;
            if (t == 13) {
                int sc, m;
                ignis_q4_k_scale_min(wb + 4, j, &sc, &m);
                ys[e] = (float)ignis_q5_k_quant(wb, e) * (d * (float)sc) - dmin * (float)m;
            } else if (t == 11) {
                ys[e] = (float)ignis_q3_k_quant(wb, e) * (d * (float)ignis_q3_k_scale(wb, i));
            } else if (t == 10) {
                ys[e] = (float)ignis_q2_k_quant(wb, e) * (d * (float)(wb[i] & 0x0f)) - dmin * (float)(wb[i] >> 4);
            } else {
                ys[e] = (float)ignis_iq4_xs_quant(wb, e) * (d * (float)ignis_iq4_xs_scale(wb, j));
            }
        }
    }
}
