
static inline float IL(f16_to_f32)(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

static inline uint16_t IL(f32_to_f16)(float f) {
    return vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(f))), 0);
}

static inline void IL(f16_to_f32_row)(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))));
    for (; i < n; i++) y[i] = IL(f16_to_f32)(x[i]);
}

static inline void IL(f32_to_f16_row)(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = IL(f32_to_f16)(x[i]);
}

static inline void IL(quantize_row_q8_0)(const float *x, uint8_t *y, int64_t k) {
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const float *xb = x + b * IGNIS_QK;
        uint8_t *yb = y + b * IGNIS_Q8_0_BYTES;
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int i = 0; i < 8; i++) {
            v[i] = vld1q_f32(xb + 4 * i);
            m = vmaxq_f32(m, vabsq_f32(v[i]));
        }
        float amax = vmaxvq_f32(m);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = IL(f32_to_f16)(d);
        memcpy(yb, &dh, 2);
        int16x8_t h[4];
        const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
        for (int i = 0; i < 4; i++) {
            /* clamp (NaN passes through and converts to 0); vcvta: ties away from zero == roundf */
            int32x4_t a = vcvtaq_s32_f32(vminq_f32(vmaxq_f32(vmulq_n_f32(v[2 * i], id), lo), hi));
            int32x4_t c = vcvtaq_s32_f32(vminq_f32(vmaxq_f32(vmulq_n_f32(v[2 * i + 1], id), lo), hi));
            h[i] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(c));
        }
        vst1q_s8((int8_t *)(yb + 2), vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
        vst1q_s8((int8_t *)(yb + 18), vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
    }
}

/* 4 int32 partial sums of 16 byte pairs (exact). */
IGNIS_INLINE int32x4_t IL(isum16)(int8x16_t w, int8x16_t x) {
#if IGNIS_ARM_DOTPROD
    return vdotq_s32(vdupq_n_s32(0), w, x);
#else
    int16x8_t p = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    p = vmlal_s8(p, vget_high_s8(w), vget_high_s8(x));
    return vpaddlq_s16(p);
#endif
}

/* Four pairs' partials -> [sum p0, sum p1, sum p2, sum p3] (exact). */
IGNIS_INLINE int32x4_t IL(reduce4)(int32x4_t p0, int32x4_t p1, int32x4_t p2, int32x4_t p3) {
    return vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3));
}

/* the sums of 16 byte pairs of four rows w[0..3] against x, one row a lane (exact) */
IGNIS_INLINE int32x4_t IL(rows4_dot16)(const int8x16_t *w, int8x16_t x) {
    return IL(reduce4)(IL(isum16)(w[0], x), IL(isum16)(w[1], x), IL(isum16)(w[2], x), IL(isum16)(w[3], x));
}

IGNIS_INLINE float32x4_t IL(f16x4)(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    uint16x4_t h = vdup_n_u16(ignis_load_u16(p0));
    h = vset_lane_u16(ignis_load_u16(p1), h, 1);
    h = vset_lane_u16(ignis_load_u16(p2), h, 2);
    h = vset_lane_u16(ignis_load_u16(p3), h, 3);
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
}

/* Q8_0, 4 weight rows x RN activation rows; lanes are the 4 rows; lo and hi chains apart. */
IGNIS_INLINE void IL(q8_0_4xn)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                                      float *out, const int RN) {
    float32x4_t lo[8], hi[8];
    for (int j = 0; j < RN; j++) lo[j] = hi[j] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * IGNIS_Q8_0_BYTES;
        int8x16_t w0[4], w1[4];
        for (int k = 0; k < 4; k++) {
            w0[k] = vld1q_s8((const int8_t *)(w[k] + off + 2));
            w1[k] = vld1q_s8((const int8_t *)(w[k] + off + 18));
        }
        float32x4_t dw = IL(f16x4)(w[0] + off, w[1] + off, w[2] + off, w[3] + off);
        for (int j = 0; j < RN; j++) {
            int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + off + 2));
            int8x16_t x1 = vld1q_s8((const int8_t *)(x[j] + off + 18));
            float32x4_t s = vmulq_n_f32(dw, IL(f16_to_f32)(ignis_load_u16(x[j] + off)));
            int32x4_t l = IL(rows4_dot16)(w0, x0);
            int32x4_t h = IL(rows4_dot16)(w1, x1);
            lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(l), s);
            hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(h), s);
        }
    }
    for (int j = 0; j < RN; j++) {
        float32x4_t r = vaddq_f32(lo[j], hi[j]);
        vst1q_f32(out + j * IGNIS_TILE, r);
    }
}

static void IL(q8_0_4x1)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_0_4xn)(n, w, x, o, 1); }
#if IGNIS_ARM_I8MM
/* SMMLA (vmmlaq_s32) tiles. An operand of vmmlaq_s32(acc, a, b) is a 2x8 int8 matrix whose rows
 * are its two 8-byte halves; acc += a * b^T as [a0.b0, a0.b1, a1.b0, a1.b1]. With a = two weight
 * rows (r0, r1) and b = two tokens (t0, t1) the lanes are [r0t0, r0t1, r1t0, r1t1]: a "pair
 * block". A 16-byte half of a block is two such 8-byte pieces: pk0 packs bytes 0..7 of two
 * rows, pk1 bytes 8..15; two smmla give the exact int32 half sums of the 2x2 pairs. */
IGNIS_INLINE int8x16_t IL(pk0)(int8x16_t r0, int8x16_t r1) {
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(r0), vreinterpretq_s64_s8(r1)));
}
IGNIS_INLINE int8x16_t IL(pk1)(int8x16_t r0, int8x16_t r1) {
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(r0), vreinterpretq_s64_s8(r1)));
}

/* exact 16-element half sums of a pair block: a0/a1 and b0/b1 are the pk0/pk1 packings */
IGNIS_INLINE int32x4_t IL(mm16)(int8x16_t a0, int8x16_t a1, int8x16_t b0, int8x16_t b1) {
    return vmmlaq_s32(vmmlaq_s32(vdupq_n_s32(0), a0, b0), a1, b1);
}

/* f16 scales of two tokens -> [d_t0, d_t1, d_t0, d_t1] (the token lanes of a pair block) */
IGNIS_INLINE float32x4_t IL(dx2)(const uint8_t *p0, const uint8_t *p1) {
    uint32_t u = (uint32_t)ignis_load_u16(p0) | ((uint32_t)ignis_load_u16(p1) << 16);
    return vcvt_f32_f16(vreinterpret_f16_u16(vreinterpret_u16_u32(vdup_n_u32(u))));
}

/* packs the 16-byte halves of four rows (lo[k], hi[k]) as a[pair][lo0, lo1, hi0, hi1] */
IGNIS_INLINE void IL(pack_rows)(const int8x16_t *lo, const int8x16_t *hi, int8x16_t a[2][4]) {
    for (int p = 0; p < 2; p++) {
        a[p][0] = IL(pk0)(lo[2 * p], lo[2 * p + 1]);
        a[p][1] = IL(pk1)(lo[2 * p], lo[2 * p + 1]);
        a[p][2] = IL(pk0)(hi[2 * p], hi[2 * p + 1]);
        a[p][3] = IL(pk1)(hi[2 * p], hi[2 * p + 1]);
    }
}

/* the results of pair blocks r[0] (rows 0,1) and r[1] (rows 2,3) for tokens t0 = 2q, t1 = 2q+1:
 * out[t*8 + i] for the 4 rows i; t1 only when it is < RN */
IGNIS_INLINE void IL(store_pairs)(float *out, int q, int RN, float32x4_t r0, float32x4_t r1) {
    vst1q_f32(out + (2 * q) * IGNIS_TILE, vuzp1q_f32(r0, r1));
    if (2 * q + 1 < RN) vst1q_f32(out + (2 * q + 1) * IGNIS_TILE, vuzp2q_f32(r0, r1));
}

/* Q8_0, 4 weight rows x RN (2, 4, 8) tokens: lo/hi chains per pair block (row pair p, token pair q). */
IGNIS_INLINE void IL(q8_0_4xn_mm)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                                  float *out, const int RN) {
    const int NP = RN / 2;
    float32x4_t lo[2][4], hi[2][4];
    for (int p = 0; p < 2; p++)
        for (int q = 0; q < NP; q++) lo[p][q] = hi[p][q] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * IGNIS_Q8_0_BYTES;
        int8x16_t wl[4], wh[4], a[2][4];
        for (int k = 0; k < 4; k++) {
            wl[k] = vld1q_s8((const int8_t *)(w[k] + off + 2));
            wh[k] = vld1q_s8((const int8_t *)(w[k] + off + 18));
        }
        IL(pack_rows)(wl, wh, a);
        float32x4_t dw = IL(f16x4)(w[0] + off, w[1] + off, w[2] + off, w[3] + off);
        const float32x4_t dwp[2] = {vzip1q_f32(dw, dw), vzip2q_f32(dw, dw)};   /* [d_r0, d_r0, d_r1, d_r1] */
        for (int q = 0; q < NP; q++) {
            const uint8_t *x0 = x[2 * q] + off, *x1 = x[2 * q + 1] + off;
            int8x16_t l0 = vld1q_s8((const int8_t *)(x0 + 2)), l1 = vld1q_s8((const int8_t *)(x1 + 2));
            int8x16_t h0 = vld1q_s8((const int8_t *)(x0 + 18)), h1 = vld1q_s8((const int8_t *)(x1 + 18));
            int8x16_t bl0 = IL(pk0)(l0, l1), bl1 = IL(pk1)(l0, l1), bh0 = IL(pk0)(h0, h1), bh1 = IL(pk1)(h0, h1);
            float32x4_t dx = IL(dx2)(x0, x1);
            for (int p = 0; p < 2; p++) {
                float32x4_t s = vmulq_f32(dwp[p], dx);                       /* d_w[r] * d_x[t] */
                int32x4_t il = IL(mm16)(a[p][0], a[p][1], bl0, bl1);
                int32x4_t ih = IL(mm16)(a[p][2], a[p][3], bh0, bh1);
                lo[p][q] = vfmaq_f32(lo[p][q], vcvtq_f32_s32(il), s);
                hi[p][q] = vfmaq_f32(hi[p][q], vcvtq_f32_s32(ih), s);
            }
        }
    }
    for (int q = 0; q < NP; q++)
        IL(store_pairs)(out, q, RN, vaddq_f32(lo[0][q], hi[0][q]), vaddq_f32(lo[1][q], hi[1][q]));
}

static void IL(q8_0_4x2)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_0_4xn_mm)(n, w, x, o, 2); }
static void IL(q8_0_4x4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_0_4xn_mm)(n, w, x, o, 4); }
static void IL(q8_0_4x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_0_4xn_mm)(n, w, x, o, 8); }
#else
static void IL(q8_0_4x2)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_0_4xn)(n, w, x, o, 2); }
static void IL(q8_0_4x4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_0_4xn)(n, w, x, o, 4); }
static void IL(q8_0_4x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_0_4xn)(n, w, x, o, 8); }
#endif


/* Q5_0 block -> signed quants q-16 for elements 0..15 (lo) and 16..31 (hi). */
IGNIS_INLINE void IL(q5_0_quants)(const uint8_t *blk, int8x16_t *lo, int8x16_t *hi) {
    static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t qs = vld1q_u8(blk + 6), bit = vld1q_u8(bits), sixteen = vdupq_n_u8(0x10);
    uint8x16_t b01 = vcombine_u8(vdup_n_u8(blk[2]), vdup_n_u8(blk[3]));
    uint8x16_t b23 = vcombine_u8(vdup_n_u8(blk[4]), vdup_n_u8(blk[5]));
    uint8x16_t ql = vorrq_u8(vandq_u8(qs, vdupq_n_u8(0x0f)), vandq_u8(vtstq_u8(b01, bit), sixteen));
    uint8x16_t qh = vorrq_u8(vshrq_n_u8(qs, 4), vandq_u8(vtstq_u8(b23, bit), sixteen));
    *lo = vsubq_s8(vreinterpretq_s8_u8(ql), vdupq_n_s8(16));
    *hi = vsubq_s8(vreinterpretq_s8_u8(qh), vdupq_n_s8(16));
}

/* Q4_1 block -> quants 0..15 for elements 0..15 (lo, low nibbles) and 16..31 (hi). */
IGNIS_INLINE void IL(q4_1_quants)(const uint8_t *blk, int8x16_t *lo, int8x16_t *hi) {
    uint8x16_t qs = vld1q_u8(blk + 4);
    *lo = vreinterpretq_s8_u8(vandq_u8(qs, vdupq_n_u8(0x0f)));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(qs, 4));
}

/* Q6_K super-block, activation block j -> signed quants q-32 for its two 16-element halves. */
IGNIS_INLINE void IL(q6_k_quants)(const uint8_t *blk, int j, int8x16_t *lo, int8x16_t *hi) {
    const int half = j / 4, k = j % 4;
    const uint8_t *ql = blk + half * 64 + (k % 2) * 32, *qh = blk + 128 + half * 32;
    uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 16);
    if (k / 2) { l0 = vshrq_n_u8(l0, 4); l1 = vshrq_n_u8(l1, 4); }
    else { l0 = vandq_u8(l0, vdupq_n_u8(0x0f)); l1 = vandq_u8(l1, vdupq_n_u8(0x0f)); }
    const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * k));
    uint8x16_t h0 = vandq_u8(vshlq_u8(vld1q_u8(qh), shift), vdupq_n_u8(3));
    uint8x16_t h1 = vandq_u8(vshlq_u8(vld1q_u8(qh + 16), shift), vdupq_n_u8(3));
    *lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l0, vshlq_n_u8(h0, 4))), vdupq_n_s8(32));
    *hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l1, vshlq_n_u8(h1, 4))), vdupq_n_s8(32));
}

/* sub-block sb of four Q4_K rows: the quants (0..15) of its low and high halves */
IGNIS_INLINE void IL(q4_k_rows)(const uint8_t *const *w, size_t wo, int sb, int8x16_t *wl, int8x16_t *wh) {
    for (int k = 0; k < 4; k++) {
        const uint8_t *qs = w[k] + wo + 16 + (sb / 2) * 32;
        uint8x16_t v0 = vld1q_u8(qs), v1 = vld1q_u8(qs + 16);
        if (sb & 1) { v0 = vshrq_n_u8(v0, 4); v1 = vshrq_n_u8(v1, 4); }
        else { v0 = vandq_u8(v0, vdupq_n_u8(0x0f)); v1 = vandq_u8(v1, vdupq_n_u8(0x0f)); }
        wl[k] = vreinterpretq_s8_u8(v0);
        wh[k] = vreinterpretq_s8_u8(v1);
    }
}

/* activation block jb of four Q6_K rows: signed quants (lo/hi halves) and the halves' scales */
IGNIS_INLINE void IL(q6_k_rows)(const uint8_t *const *w, size_t wo, int jb, int8x16_t *wl, int8x16_t *wh,
                                int32_t *scl, int32_t *sch) {
    for (int k = 0; k < 4; k++) {
        IL(q6_k_quants)(w[k] + wo, jb, &wl[k], &wh[k]);
        scl[k] = ((const int8_t *)(w[k] + wo + 192))[2 * jb];
        sch[k] = ((const int8_t *)(w[k] + wo + 192))[2 * jb + 1];
    }
}

#if IGNIS_ARM_I8MM
/* One activation block (offset xo in every token row) of the smmla K-quant tile: a[pair][] are the
 * packed weight quants (pack_rows), d the rows' scales. mode 0 (Q5_0): integer half sums as they
 * are; 1 (Q6_K): times the rows' sub-block scales scl (lo) / sch (hi); 2 (Q4_K): times scl for
 * both halves, then the min steps with the rows' mins mi and dmin; 3 (Q4_1): as they are, then
 * the min steps fma(sum x, m * d_x) with the rows' mins m passed as dmin. Same operations, same
 * order as kq_4xn, lanes [r0t0, r0t1, r1t0, r1t1] per (row pair p, token pair q). */
IGNIS_INLINE void IL(kq_mm_block)(const int8x16_t a[2][4], const uint8_t *const *x, size_t xo, int NP,
                                  float32x4_t d, int mode, int32x4_t scl, int32x4_t sch,
                                  float32x4_t dmin, int32x4_t mi,
                                  float32x4_t lo[2][4], float32x4_t hi[2][4]) {
    const float32x4_t dp[2] = {vzip1q_f32(d, d), vzip2q_f32(d, d)};
    const float32x4_t dmp[2] = {vzip1q_f32(dmin, dmin), vzip2q_f32(dmin, dmin)};
    const int32x4_t slp[2] = {vzip1q_s32(scl, scl), vzip2q_s32(scl, scl)};
    const int32x4_t shp[2] = {vzip1q_s32(sch, sch), vzip2q_s32(sch, sch)};
    const int32x4_t mip[2] = {vzip1q_s32(mi, mi), vzip2q_s32(mi, mi)};
    const int8x16_t ones = vdupq_n_s8(1);
    for (int q = 0; q < NP; q++) {
        const uint8_t *x0 = x[2 * q] + xo, *x1 = x[2 * q + 1] + xo;
        int8x16_t l0 = vld1q_s8((const int8_t *)(x0 + 2)), l1 = vld1q_s8((const int8_t *)(x1 + 2));
        int8x16_t h0 = vld1q_s8((const int8_t *)(x0 + 18)), h1 = vld1q_s8((const int8_t *)(x1 + 18));
        int8x16_t bl0 = IL(pk0)(l0, l1), bl1 = IL(pk1)(l0, l1), bh0 = IL(pk0)(h0, h1), bh1 = IL(pk1)(h0, h1);
        float32x4_t dx = IL(dx2)(x0, x1);
        int32x4_t cl = vdupq_n_s32(0), ch = vdupq_n_s32(0);
        if (mode >= 2) {                     /* [sum x_t0, sum x_t1, sum x_t0, sum x_t1] per half */
            cl = IL(mm16)(ones, ones, bl0, bl1);
            ch = IL(mm16)(ones, ones, bh0, bh1);
        }
        for (int p = 0; p < 2; p++) {
            float32x4_t sd = vmulq_f32(dp[p], dx);                          /* d[r] * d_x[t] */
            int32x4_t il = IL(mm16)(a[p][0], a[p][1], bl0, bl1);
            int32x4_t ih = IL(mm16)(a[p][2], a[p][3], bh0, bh1);
            if (mode == 1) { il = vmulq_s32(il, slp[p]); ih = vmulq_s32(ih, shp[p]); }
            if (mode == 2) { il = vmulq_s32(il, slp[p]); ih = vmulq_s32(ih, slp[p]); }
            lo[p][q] = vfmaq_f32(lo[p][q], vcvtq_f32_s32(il), sd);
            if (mode == 2) {
                float32x4_t sm = vmulq_f32(dmp[p], dx);                     /* dmin[r] * d_x[t] */
                lo[p][q] = vfmsq_f32(lo[p][q], vcvtq_f32_s32(vmulq_s32(cl, mip[p])), sm);
            }
            if (mode == 3) lo[p][q] = vfmaq_f32(lo[p][q], vcvtq_f32_s32(cl), vmulq_f32(dmp[p], dx));
            hi[p][q] = vfmaq_f32(hi[p][q], vcvtq_f32_s32(ih), sd);
            if (mode == 2) {
                float32x4_t sm = vmulq_f32(dmp[p], dx);
                hi[p][q] = vfmsq_f32(hi[p][q], vcvtq_f32_s32(vmulq_s32(ch, mip[p])), sm);
            }
            if (mode == 3) hi[p][q] = vfmaq_f32(hi[p][q], vcvtq_f32_s32(ch), vmulq_f32(dmp[p], dx));
        }
    }
}

/* Q5_0 / Q4_1 / Q4_K / Q6_K weights, 4 rows x RN (2..8) tokens with SMMLA; an odd RN computes its last
 * token twice (x holds 8 pointers, the padding repeats the last) and stores it once. */
static void IL(kq_4xn_mm)(int wtype, int64_t nblk, const uint8_t *const *w, const uint8_t *const *x,
                          float *out, int RN) {
    const int NP = (RN + 1) / 2;
    float32x4_t lo[2][4], hi[2][4];
    for (int p = 0; p < 2; p++)
        for (int q = 0; q < NP; q++) lo[p][q] = hi[p][q] = vdupq_n_f32(0.0f);
    int8x16_t wl[4], wh[4], a[2][4];
    const int32x4_t zi = vdupq_n_s32(0);
    const float32x4_t zf = vdupq_n_f32(0.0f);
    if (wtype == 6) {
        for (int64_t b = 0; b < nblk; b++) {
            const size_t wo = (size_t)b * IGNIS_Q5_0_BYTES, xo = (size_t)b * IGNIS_Q8_0_BYTES;
            for (int k = 0; k < 4; k++) IL(q5_0_quants)(w[k] + wo, &wl[k], &wh[k]);
            IL(pack_rows)(wl, wh, a);
            float32x4_t dw = IL(f16x4)(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
            IL(kq_mm_block)(a, x, xo, NP, dw, 0, zi, zi, zf, zi, lo, hi);
        }
    } else if (wtype == 3) {
        for (int64_t b = 0; b < nblk; b++) {
            const size_t wo = (size_t)b * IGNIS_Q4_1_BYTES, xo = (size_t)b * IGNIS_Q8_0_BYTES;
            for (int k = 0; k < 4; k++) IL(q4_1_quants)(w[k] + wo, &wl[k], &wh[k]);
            IL(pack_rows)(wl, wh, a);
            float32x4_t dw = IL(f16x4)(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
            float32x4_t mw = IL(f16x4)(w[0] + wo + 2, w[1] + wo + 2, w[2] + wo + 2, w[3] + wo + 2);
            IL(kq_mm_block)(a, x, xo, NP, dw, 3, zi, zi, mw, zi, lo, hi);
        }
    } else if (wtype == 14) {
        for (int64_t s = 0; s < nblk; s++) {
            const size_t wo = (size_t)s * IGNIS_Q6_K_BYTES;
            float32x4_t d = IL(f16x4)(w[0] + wo + 208, w[1] + wo + 208, w[2] + wo + 208, w[3] + wo + 208);
            for (int jb = 0; jb < 8; jb++) {
                int32_t scl[4], sch[4];
                IL(q6_k_rows)(w, wo, jb, wl, wh, scl, sch);
                IL(pack_rows)(wl, wh, a);
                const size_t xo = (size_t)(s * 8 + jb) * IGNIS_Q8_0_BYTES;
                IL(kq_mm_block)(a, x, xo, NP, d, 1, vld1q_s32(scl), vld1q_s32(sch), zf, zi, lo, hi);
            }
        }
    } else {    /* Q4_K */
        for (int64_t s = 0; s < nblk; s++) {
            const size_t wo = (size_t)s * IGNIS_Q4_K_BYTES;
            float32x4_t d = IL(f16x4)(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
            float32x4_t dmin = IL(f16x4)(w[0] + wo + 2, w[1] + wo + 2, w[2] + wo + 2, w[3] + wo + 2);
            int32_t sc[8][4], mn[8][4];
            for (int k = 0; k < 4; k++)
                for (int sb = 0; sb < 8; sb++) {
                    int c, m;
                    ignis_q4_k_scale_min(w[k] + wo + 4, sb, &c, &m);
                    sc[sb][k] = c;
                    mn[sb][k] = m;
                }
            for (int sb = 0; sb < 8; sb++) {
                IL(q4_k_rows)(w, wo, sb, wl, wh);
                IL(pack_rows)(wl, wh, a);
                const size_t xo = (size_t)(s * 8 + sb) * IGNIS_Q8_0_BYTES;
                IL(kq_mm_block)(a, x, xo, NP, d, 2, vld1q_s32(sc[sb]), zi, dmin, vld1q_s32(mn[sb]), lo, hi);
            }
        }
    }
    for (int q = 0; q < NP; q++)
        IL(store_pairs)(out, q, RN, vaddq_f32(lo[0][q], hi[0][q]), vaddq_f32(lo[1][q], hi[1][q]));
}
#endif


/* Q5_0 / Q4_1 / Q4_K / Q6_K weights, 4 rows x RN activation rows (lanes are the rows), the
 * definition's lo/hi chains per token (Q4_1 and Q4_K with their min steps). */
static void IL(kq_4xn)(int wtype, int64_t nblk, const uint8_t *const *w, const uint8_t *const *x,
                              float *out, int RN) {
    float32x4_t lo[8], hi[8];
    for (int j = 0; j < RN; j++) lo[j] = hi[j] = vdupq_n_f32(0.0f);
    int8x16_t wl[4], wh[4];
    if (wtype == 6) {
        for (int64_t b = 0; b < nblk; b++) {
            const size_t wo = (size_t)b * IGNIS_Q5_0_BYTES, xo = (size_t)b * IGNIS_Q8_0_BYTES;
            for (int k = 0; k < 4; k++) IL(q5_0_quants)(w[k] + wo, &wl[k], &wh[k]);
            float32x4_t dw = IL(f16x4)(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
            for (int j = 0; j < RN; j++) {
                int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + xo + 2)), x1 = vld1q_s8((const int8_t *)(x[j] + xo + 18));
                float32x4_t sd = vmulq_n_f32(dw, IL(f16_to_f32)(ignis_load_u16(x[j] + xo)));
                int32x4_t l = IL(rows4_dot16)(wl, x0);
                int32x4_t h = IL(rows4_dot16)(wh, x1);
                lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(l), sd);
                hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(h), sd);
            }
        }
    } else if (wtype == 3) {
        for (int64_t b = 0; b < nblk; b++) {
            const size_t wo = (size_t)b * IGNIS_Q4_1_BYTES, xo = (size_t)b * IGNIS_Q8_0_BYTES;
            for (int k = 0; k < 4; k++) IL(q4_1_quants)(w[k] + wo, &wl[k], &wh[k]);
            float32x4_t dw = IL(f16x4)(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
            float32x4_t mw = IL(f16x4)(w[0] + wo + 2, w[1] + wo + 2, w[2] + wo + 2, w[3] + wo + 2);
            for (int j = 0; j < RN; j++) {
                int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + xo + 2)), x1 = vld1q_s8((const int8_t *)(x[j] + xo + 18));
                float dx = IL(f16_to_f32)(ignis_load_u16(x[j] + xo));
                float32x4_t sd = vmulq_n_f32(dw, dx), sm = vmulq_n_f32(mw, dx);
                int32x4_t l = IL(rows4_dot16)(wl, x0);
                int32x4_t h = IL(rows4_dot16)(wh, x1);
                lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(l), sd);
                lo[j] = vfmaq_f32(lo[j], vdupq_n_f32((float)vaddlvq_s8(x0)), sm);
                hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(h), sd);
                hi[j] = vfmaq_f32(hi[j], vdupq_n_f32((float)vaddlvq_s8(x1)), sm);
            }
        }
    } else if (wtype == 14) {
        for (int64_t s = 0; s < nblk; s++) {
            const size_t wo = (size_t)s * IGNIS_Q6_K_BYTES;
            float32x4_t d = IL(f16x4)(w[0] + wo + 208, w[1] + wo + 208, w[2] + wo + 208, w[3] + wo + 208);
            for (int jb = 0; jb < 8; jb++) {
                int32_t scl[4], sch[4];
                IL(q6_k_rows)(w, wo, jb, wl, wh, scl, sch);
                int32x4_t sl = vld1q_s32(scl), sh = vld1q_s32(sch);
                const size_t xo = (size_t)(s * 8 + jb) * IGNIS_Q8_0_BYTES;
                for (int j = 0; j < RN; j++) {
                    int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + xo + 2)), x1 = vld1q_s8((const int8_t *)(x[j] + xo + 18));
                    float32x4_t sd = vmulq_n_f32(d, IL(f16_to_f32)(ignis_load_u16(x[j] + xo)));
                    int32x4_t l = IL(rows4_dot16)(wl, x0);
                    int32x4_t h = IL(rows4_dot16)(wh, x1);
                    lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(vmulq_s32(l, sl)), sd);
                    hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(vmulq_s32(h, sh)), sd);
                }
            }
        }
    } else {    /* Q4_K */
        for (int64_t s = 0; s < nblk; s++) {
            const size_t wo = (size_t)s * IGNIS_Q4_K_BYTES;
            float32x4_t d = IL(f16x4)(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
            float32x4_t dmin = IL(f16x4)(w[0] + wo + 2, w[1] + wo + 2, w[2] + wo + 2, w[3] + wo + 2);
            int32_t sc[8][4];
            float mf[8][4];
            for (int k = 0; k < 4; k++)
                for (int sb = 0; sb < 8; sb++) {
                    int a, m;
                    ignis_q4_k_scale_min(w[k] + wo + 4, sb, &a, &m);
                    sc[sb][k] = a;
                    mf[sb][k] = (float)m;
                }
            for (int sb = 0; sb < 8; sb++) {
                IL(q4_k_rows)(w, wo, sb, wl, wh);
                int32x4_t scv = vld1q_s32(sc[sb]);
                float32x4_t mv = vld1q_f32(mf[sb]);
                const size_t xo = (size_t)(s * 8 + sb) * IGNIS_Q8_0_BYTES;
                for (int j = 0; j < RN; j++) {
                    int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + xo + 2)), x1 = vld1q_s8((const int8_t *)(x[j] + xo + 18));
                    float dx = IL(f16_to_f32)(ignis_load_u16(x[j] + xo));
                    float32x4_t sd = vmulq_n_f32(d, dx), sm = vmulq_n_f32(dmin, dx);
                    int32x4_t l = IL(rows4_dot16)(wl, x0);
                    int32x4_t h = IL(rows4_dot16)(wh, x1);
                    float32x4_t bl = vmulq_n_f32(mv, (float)vaddlvq_s8(x0));
                    float32x4_t bh = vmulq_n_f32(mv, (float)vaddlvq_s8(x1));
                    lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(vmulq_s32(l, scv)), sd);
                    lo[j] = vfmsq_f32(lo[j], bl, sm);
                    hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(vmulq_s32(h, scv)), sd);
                    hi[j] = vfmsq_f32(hi[j], bh, sm);
                }
            }
        }
    }
    for (int j = 0; j < RN; j++) vst1q_f32(out + j * IGNIS_TILE, vaddq_f32(lo[j], hi[j]));
}

#include "arm_32.h"
#include "kquants_arm.h"

/* The tile (see ignis_scalar_tile): pads rows/tokens by repeating the last pointer. */
static inline void IL(tile)(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                                   const uint8_t *const *x, int rn, float *out) {
    if (ignis_is_32x(wtype)) { IL(tile_32x)(wtype, nblk, w, rm, x, rn, out); return; }
    if (IGNIS_IS_BLOCK_RULE(wtype)) { IL(br_tile)(wtype, nblk, w, rm, x, rn, out); return; }
    if (IGNIS_IS_KX(wtype)) { IL(kx_tile)(wtype, nblk, w, rm, x, rn, out); return; }
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
    if (wtype == 8) {
        ignis_kernel_fn k = rn > 4 ? IL(q8_0_4x8) : rn > 2 ? IL(q8_0_4x4) : rn > 1 ? IL(q8_0_4x2) : IL(q8_0_4x1);
        for (int i0 = 0; i0 < rm; i0 += 4) k(nblk, wp + i0, xp, tmp + i0);
    } else {
#if IGNIS_ARM_I8MM
        if (rn >= 2) {
            for (int i0 = 0; i0 < rm; i0 += 4) IL(kq_4xn_mm)(wtype, nblk, wp + i0, xp, tmp + i0, rn);
        } else {
            for (int i0 = 0; i0 < rm; i0 += 4) IL(kq_4xn)(wtype, nblk, wp + i0, xp, tmp + i0, 1);
        }
#else
        for (int i0 = 0; i0 < rm; i0 += 4) IL(kq_4xn)(wtype, nblk, wp + i0, xp, tmp + i0, rn);
#endif
    }
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}

static inline float IL(vec_dot)(int wtype, int64_t nblk, const uint8_t *w, const uint8_t *x) {
    float out[IGNIS_TILE * IGNIS_TILE];
    IL(tile)(wtype, nblk, &w, 1, &x, 1, out);
    return out[0];
}


static inline float IL(dot_f32)(const float *a, const float *b, int64_t n) {
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline float IL(dot_f32_f16)(const float *a, const uint16_t *b, int64_t n) {
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(b + i));
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vcvt_f32_f16(vget_low_f16(h)));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vcvt_high_f32_f16(h));
    }
    for (; i + 4 <= n; i += 4)
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(b + i))));
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) s += a[i] * IL(f16_to_f32)(b[i]);
    return s;
}

static inline void IL(axpy_f32)(float a, const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_n_f32(vld1q_f32(x + i), a)));
    for (; i < n; i++) y[i] = y[i] + a * x[i];
}

static inline void IL(axpy_f16)(float a, const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t xv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i)));
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_n_f32(xv, a)));
    }
    for (; i < n; i++) y[i] = y[i] + a * IL(f16_to_f32)(x[i]);
}

IGNIS_INLINE float32x4_t IL(expf)(float32x4_t x) {
    x = vminq_f32(x, vdupq_n_f32(IGNIS_EXP_HI));
    x = vmaxq_f32(x, vdupq_n_f32(IGNIS_EXP_LO));
    float32x4_t n = vrndmq_f32(vaddq_f32(vmulq_n_f32(x, IGNIS_LOG2E), vdupq_n_f32(0.5f)));
    float32x4_t r = vsubq_f32(x, vmulq_n_f32(n, IGNIS_LN2_HI));
    r = vsubq_f32(r, vmulq_n_f32(n, IGNIS_LN2_LO));
    float32x4_t r2 = vmulq_f32(r, r);
    float32x4_t p = vdupq_n_f32(IGNIS_EXP_P0);
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(IGNIS_EXP_P1));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(IGNIS_EXP_P2));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(IGNIS_EXP_P3));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(IGNIS_EXP_P4));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(IGNIS_EXP_P5));
    float32x4_t y = vaddq_f32(vmulq_f32(p, r2), r);
    y = vaddq_f32(y, vdupq_n_f32(1.0f));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

static inline void IL(silu_row)(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float32x4_t e = IL(expf)(vnegq_f32(v));
        vst1q_f32(y + i, vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), e)));
    }
    for (; i < n; i++) y[i] = x[i] / (1.0f + ignis_scalar_expf(-x[i]));
}

static inline float IL(exp_sub_sum)(float *x, float m, int64_t n) {
    float32x4_t acc = vdupq_n_f32(0.0f), vm = vdupq_n_f32(m);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = IL(expf)(vsubq_f32(vld1q_f32(x + i), vm));
        vst1q_f32(x + i, e);
        acc = vaddq_f32(acc, e);
    }
    float s = vaddvq_f32(acc);
    for (; i < n; i++) {
        x[i] = ignis_scalar_expf(x[i] - m);
        s += x[i];
    }
    return s;
}

static inline void IL(tile_q16)(int64_t nb, const uint8_t *const *w, int rm,
                                       const uint8_t *const *x, int rn, float *out) {
    ignis_scalar_tile_q16(nb, w, rm, x, rn, out);
}


/* the rest of the level's table: the scalar arithmetic through this level's axpy/dot */
static inline void IL(dot_f32_f16_heads)(const float *q, int64_t nt, int64_t qts, int64_t G, int64_t hd,
                                         const uint16_t *row, float *out, int64_t ots, int64_t ostride) {
    for (int64_t t = 0; t < nt; t++)
        for (int64_t h = 0; h < G; h++) out[t * ots + h * ostride] = IL(dot_f32_f16)(q + t * qts + h * hd, row, hd);
}
static inline void IL(div_row)(float *x, float d, int64_t n) { ignis_scalar_div_row(x, d, n); }
static inline void IL(av_head_acc)(const float *w, const uint16_t *v, int64_t vstride, int64_t n, float *o, int64_t hd) {
    for (int64_t s = 0; s < n; s++) IL(axpy_f16)(w[s], v + s * vstride, o, hd);
}

#include "rows.h"
