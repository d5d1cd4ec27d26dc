/* kquants_arm.h -- the tiles of Q3_K and Q2_K (WT 11, 10: the half rule) and of the block-rule
 * types Q5_K, IQ4_XS (WT 13, 23) against Q8_0 activations for the aarch64 levels
 * (included by arm.h, once per level; neon forms the integer sums with vmull/vmlal, dotprod and
 * i8mm with sdot, i8mm's tiles of 2+ tokens with smmla).
 * Q3_K / Q2_K: ignis_scalar_vec_dot_kx (simd/kquants.h); lanes are four weight rows, the lo and
 * hi chains apart, the scaled half sums exact int32 products, the min steps per half.
 * Block rule: ignis_scalar_vec_dot_block_rule (simd/kquants.h), see br_4xn below. */

/* activation block jb of one Q3_K / Q2_K super-block: signed quants of its low and high halves */
IGNIS_INLINE void IL(kx_quants)(const uint8_t *sb, int jb, int wt, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t m2 = vdupq_n_u8(3), m1 = vdupq_n_u8(1);
    const int8x16_t sh = vdupq_n_s8((int8_t)(-2 * (jb % 4)));
    const uint8_t *qs = sb + (wt == 10 ? 16 : 32) + (jb / 4) * 32;
    uint8x16_t v0 = vandq_u8(vshlq_u8(vld1q_u8(qs), sh), m2);
    uint8x16_t v1 = vandq_u8(vshlq_u8(vld1q_u8(qs + 16), sh), m2);
    if (wt == 11) {
        const int8x16_t hs = vdupq_n_s8((int8_t)-(4 * (jb / 4) + jb % 4));
        const uint8x16_t h0 = vandq_u8(vshlq_u8(vld1q_u8(sb), hs), m1);
        const uint8x16_t h1 = vandq_u8(vshlq_u8(vld1q_u8(sb + 16), hs), m1);
        *lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(v0, vshlq_n_u8(h0, 2))), vdupq_n_s8(4));
        *hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(v1, vshlq_n_u8(h1, 2))), vdupq_n_s8(4));
    } else {
        *lo = vreinterpretq_s8_u8(v0);
        *hi = vreinterpretq_s8_u8(v1);
    }
}

/* the integer scales (and mins) of the halves of activation block jb (Q3_K / Q2_K) */
IGNIS_INLINE void IL(kx_scales)(const uint8_t *sb, int jb, int wt, int32_t *scl, int32_t *sch, int32_t *ml, int32_t *mh) {
    if (wt == 10) {
        *scl = sb[2 * jb] & 0x0f;
        *ml = sb[2 * jb] >> 4;
        *sch = sb[2 * jb + 1] & 0x0f;
        *mh = sb[2 * jb + 1] >> 4;
    } else {
        *scl = ignis_q3_k_scale(sb, 2 * jb);
        *sch = ignis_q3_k_scale(sb, 2 * jb + 1);
        *ml = *mh = 0;
    }
}

/* Q3_K / Q2_K: 4 weight rows x RN (1..8) tokens */
static void IL(kx_4xn)(int wt, int64_t nsb, const uint8_t *const *w, const uint8_t *const *x, float *out, int RN) {
    const size_t wbytes = ignis_kx_bytes(wt), doff = ignis_kx_d_off(wt), moff = ignis_kx_dmin_off(wt);
    const int has_min = wt == 10;
    float32x4_t lo[8], hi[8];
    for (int j = 0; j < RN; j++) lo[j] = hi[j] = vdupq_n_f32(0.0f);
    int8x16_t wl[4], wh[4];
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * wbytes;
        const float32x4_t d = IL(f16x4)(w[0] + wo + doff, w[1] + wo + doff, w[2] + wo + doff, w[3] + wo + doff);
        const float32x4_t dmin = has_min ? IL(f16x4)(w[0] + wo + moff, w[1] + wo + moff, w[2] + wo + moff, w[3] + wo + moff) : d;
        for (int jb = 0; jb < 8; jb++) {
            int32_t scl[4], sch[4], ml[4], mh[4];
            float mlf[4], mhf[4];
            for (int k = 0; k < 4; k++) {
                IL(kx_quants)(w[k] + wo, jb, wt, &wl[k], &wh[k]);
                IL(kx_scales)(w[k] + wo, jb, wt, &scl[k], &sch[k], &ml[k], &mh[k]);
                mlf[k] = (float)ml[k];
                mhf[k] = (float)mh[k];
            }
            const int32x4_t sl = vld1q_s32(scl), sh = vld1q_s32(sch);
            const float32x4_t mlv = vld1q_f32(mlf), mhv = vld1q_f32(mhf);
            const size_t xo = (size_t)(s * 8 + jb) * IGNIS_Q8_0_BYTES;
            for (int j = 0; j < RN; j++) {
                const int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + xo + 2)), x1 = vld1q_s8((const int8_t *)(x[j] + xo + 18));
                const float dx = IL(f16_to_f32)(ignis_load_u16(x[j] + xo));
                const float32x4_t sd = vmulq_n_f32(d, dx);
                const int32x4_t l = vmulq_s32(IL(rows4_dot16)(wl, x0), sl);
                const int32x4_t h = vmulq_s32(IL(rows4_dot16)(wh, x1), sh);
                lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(l), sd);
                if (has_min) lo[j] = vfmsq_f32(lo[j], vmulq_n_f32(mlv, (float)vaddlvq_s8(x0)), vmulq_n_f32(dmin, dx));
                hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(h), sd);
                if (has_min) hi[j] = vfmsq_f32(hi[j], vmulq_n_f32(mhv, (float)vaddlvq_s8(x1)), vmulq_n_f32(dmin, dx));
            }
        }
    }
    for (int j = 0; j < RN; j++) vst1q_f32(out + j * IGNIS_TILE, vaddq_f32(lo[j], hi[j]));
}

static inline void IL(kx_tile)(int wtype, int64_t nsb, const uint8_t *const *w, int rm,
                               const uint8_t *const *x, int rn, float *out) {
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
    for (int i0 = 0; i0 < rm; i0 += 4) IL(kx_4xn)(wtype, nsb, wp + i0, xp, tmp + i0, rn);
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}

/* ------------------------------------------------------------------------------------------------
 * The block rule (Q5_K, IQ4_XS). Per output (row r, token t) and super-block, block j:
 *     A = sc_j * (sum q*x over the 32 elements)        exact int32 (|A| < 2^24), converted once
 *     u[j%2] = fma(A, d_x, u[j%2]);   v[j%2] = fma(m_j, c_j * d_x, v[j%2])     (c_j = sum x)
 * and at the super-block's end acc[p] = fma(u[p], d, acc[p]); acc[p] = fms(acc[p], v[p], dmin).
 * The lo and hi integer half sums are simply one sum (dotprod: two sdot into one accumulator;
 * neon: vmull/vmlal per half, pairwise-added into int32; i8mm: four smmla into one). c_j * d_x
 * depends on the token only: one float multiply per token and block, shared by the rows. */

/* the quants of blocks j2 and j2 + 1 (j2 even; each block's low and high 16 elements) of one
 * super-block of type wt: Q5_K keeps the pair's quants in the low / high nibbles of the
 * same 32 bytes, read once */
IGNIS_INLINE void IL(br_quants2)(const uint8_t *sb, int j2, int wt, int8x16_t *lo0, int8x16_t *hi0,
                                 int8x16_t *lo1, int8x16_t *hi1) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    if (wt == 23) {
        const int8x16_t grid = vld1q_s8(ignis_iq4nl_values);
        const uint8x16_t q0 = vld1q_u8(sb + 8 + j2 * 16), q1 = vld1q_u8(sb + 24 + j2 * 16);
        *lo0 = vqtbl1q_s8(grid, vandq_u8(q0, m4));
        *hi0 = vqtbl1q_s8(grid, vshrq_n_u8(q0, 4));
        *lo1 = vqtbl1q_s8(grid, vandq_u8(q1, m4));
        *hi1 = vqtbl1q_s8(grid, vshrq_n_u8(q1, 4));
        return;
    }
    const uint8_t *qs = sb + 48 + j2 * 16;
    const uint8x16_t v0 = vld1q_u8(qs), v1 = vld1q_u8(qs + 16);
    uint8x16_t a0 = vandq_u8(v0, m4), a1 = vandq_u8(v1, m4);
    uint8x16_t b0 = vshrq_n_u8(v0, 4), b1 = vshrq_n_u8(v1, 4);
    if (wt == 13) {             /* Q5_K: bit jb of qh[l] is element l's fifth bit, moved to bit 4 */
        const uint8x16_t h0 = vld1q_u8(sb + 16), h1 = vld1q_u8(sb + 32), b4 = vdupq_n_u8(0x10);
        const int8x16_t s0 = vdupq_n_s8((int8_t)(4 - j2)), s1 = vdupq_n_s8((int8_t)(3 - j2));
        a0 = vorrq_u8(a0, vandq_u8(vshlq_u8(h0, s0), b4));
        a1 = vorrq_u8(a1, vandq_u8(vshlq_u8(h1, s0), b4));
        b0 = vorrq_u8(b0, vandq_u8(vshlq_u8(h0, s1), b4));
        b1 = vorrq_u8(b1, vandq_u8(vshlq_u8(h1, s1), b4));
    }
    *lo0 = vreinterpretq_s8_u8(a0);
    *hi0 = vreinterpretq_s8_u8(a1);
    *lo1 = vreinterpretq_s8_u8(b0);
    *hi1 = vreinterpretq_s8_u8(b1);
}

/* blocks j2, j2 + 1 of four rows: wl[p][k], wh[p][k] for block j2 + p of row k */
IGNIS_INLINE void IL(br_quants4)(int wt, const uint8_t *const *w, size_t wo, int j2, int8x16_t wl[2][4], int8x16_t wh[2][4]) {
    for (int k = 0; k < 4; k++) IL(br_quants2)(w[k] + wo, j2, wt, &wl[0][k], &wh[0][k], &wl[1][k], &wh[1][k]);
}

/* the scales sc[jb] and mins mf[jb] (as floats; 0 for IQ4_XS) of the 8 blocks of one super-block
 * (offset wo) of four rows, the rows in lanes: each row's 8 scales and 8 mins as bytes by table
 * lookups and shifts, then the four rows' bytes transposed by zips and widened. */
IGNIS_INLINE void IL(br_scales)(int wt, const uint8_t *const *w, size_t wo, int32x4_t *sc, float32x4_t *mf) {
    uint8x16_t r[4];                                /* bytes 0..7: scales of blocks 0..7; 8..15: mins */
    if (wt == 23) {                                 /* 4 bits of scales_l[j/2], 2 of scales_h (+2, u16) */
        static const uint8_t il[8] = {4, 4, 5, 5, 6, 6, 7, 7}, ih[8] = {2, 2, 2, 2, 3, 3, 3, 3};
        static const int8_t sl[8] = {0, -4, 0, -4, 0, -4, 0, -4}, sh[8] = {0, -2, -4, -6, 0, -2, -4, -6};
        for (int k = 0; k < 4; k++) {
            const uint8x8_t q = vld1_u8(w[k] + wo);
            const uint8x8_t lo = vand_u8(vshl_u8(vtbl1_u8(q, vld1_u8(il)), vld1_s8(sl)), vdup_n_u8(0x0f));
            const uint8x8_t hi = vand_u8(vshl_u8(vtbl1_u8(q, vld1_u8(ih)), vld1_s8(sh)), vdup_n_u8(3));
            r[k] = vcombine_u8(vsub_u8(vorr_u8(lo, vshl_n_u8(hi, 4)), vdup_n_u8(32)), vdup_n_u8(0));
        }
    } else {                                        /* ignis_q4_k_scale_min on the 12 bytes at +4 */
        static const uint8_t i1[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11};
        static const uint8_t m1[16] = {63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0xf0, 0xf0, 0xf0, 0xf0};
        static const int8_t s1[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -4, -4, -4, -4};
        static const uint8_t i2[16] = {255, 255, 255, 255, 0, 1, 2, 3, 255, 255, 255, 255, 4, 5, 6, 7};
        for (int k = 0; k < 4; k++) {
            const uint8x16_t q = vld1q_u8(w[k] + wo + 4);
            const uint8x16_t a = vshlq_u8(vandq_u8(vqtbl1q_u8(q, vld1q_u8(i1)), vld1q_u8(m1)), vld1q_s8(s1));
            r[k] = vorrq_u8(a, vshlq_n_u8(vshrq_n_u8(vqtbl1q_u8(q, vld1q_u8(i2)), 6), 4));
        }
    }
    /* [r0 j, r1 j, r2 j, r3 j] for j = 0..3 (s0), 4..7 (s1); the mins likewise (m0, m1) */
    const uint8x16_t t01 = vzip1q_u8(r[0], r[1]), t23 = vzip1q_u8(r[2], r[3]);
    const uint8x16_t u01 = vzip2q_u8(r[0], r[1]), u23 = vzip2q_u8(r[2], r[3]);
    const int8x16_t s[2] = {vreinterpretq_s8_u16(vzip1q_u16(vreinterpretq_u16_u8(t01), vreinterpretq_u16_u8(t23))),
                            vreinterpretq_s8_u16(vzip2q_u16(vreinterpretq_u16_u8(t01), vreinterpretq_u16_u8(t23)))};
    const uint8x16_t m[2] = {vreinterpretq_u8_u16(vzip1q_u16(vreinterpretq_u16_u8(u01), vreinterpretq_u16_u8(u23))),
                             vreinterpretq_u8_u16(vzip2q_u16(vreinterpretq_u16_u8(u01), vreinterpretq_u16_u8(u23)))};
    for (int h = 0; h < 2; h++) {
        const int16x8_t s0 = vmovl_s8(vget_low_s8(s[h])), s1 = vmovl_high_s8(s[h]);
        sc[4 * h + 0] = vmovl_s16(vget_low_s16(s0));
        sc[4 * h + 1] = vmovl_high_s16(s0);
        sc[4 * h + 2] = vmovl_s16(vget_low_s16(s1));
        sc[4 * h + 3] = vmovl_high_s16(s1);
        const uint16x8_t m0 = vmovl_u8(vget_low_u8(m[h])), m1 = vmovl_high_u8(m[h]);
        mf[4 * h + 0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(m0)));
        mf[4 * h + 1] = vcvtq_f32_u32(vmovl_high_u16(m0));
        mf[4 * h + 2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(m1)));
        mf[4 * h + 3] = vcvtq_f32_u32(vmovl_high_u16(m1));
    }
}

/* the exact int32 partials of one row's 32-element block (low half wl . x0, high half wh . x1) */
IGNIS_INLINE int32x4_t IL(isum32)(int8x16_t wl, int8x16_t wh, int8x16_t x0, int8x16_t x1) {
#if IGNIS_ARM_DOTPROD
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), wl, x0), wh, x1);
#else
    /* two products per int16 lane: |q x| <= 127 * 128 keeps them in range (IQ4_XS's grid) */
    int16x8_t pl = vmull_s8(vget_low_s8(wl), vget_low_s8(x0));
    pl = vmlal_high_s8(pl, wl, x0);
    int16x8_t ph = vmull_s8(vget_low_s8(wh), vget_low_s8(x1));
    ph = vmlal_high_s8(ph, wh, x1);
    return vpadalq_s16(vpaddlq_s16(pl), ph);
#endif
}

/* TN (1..4) tokens x[0..TN-1] of one super-block (its first block at xo0 in every token row):
 * the even/odd chains u, v per token (rows in lanes), then acc0/acc1 += the d, dmin steps.
 * FLY: the quants decoded here from w (one chunk per super-block), else read from wl/wh. */
IGNIS_INLINE void IL(br_chunk)(int wt, const uint8_t *const *w, size_t wo, int8x16_t wl[8][4], int8x16_t wh[8][4],
                               const int32x4_t *sc, const float32x4_t *mf, const uint8_t *const *x, size_t xo0,
                               float32x4_t d, float32x4_t dmin, float32x4_t *acc0, float32x4_t *acc1,
                               const int TN, const int FLY) {
    float32x4_t u[2][4], v[2][4];
    for (int t = 0; t < TN; t++) u[0][t] = u[1][t] = v[0][t] = v[1][t] = vdupq_n_f32(0.0f);
    for (int j2 = 0; j2 < 8; j2 += 2) {
        int8x16_t fl[2][4], fh[2][4];
        if (FLY) IL(br_quants4)(wt, w, wo, j2, fl, fh);
        for (int p = 0; p < 2; p++) {           /* block jb = j2 + p advances chain p */
            const int jb = j2 + p;
            const size_t xo = xo0 + (size_t)jb * IGNIS_Q8_0_BYTES;
            const int8x16_t *ql = FLY ? fl[p] : wl[jb], *qh = FLY ? fh[p] : wh[jb];
            for (int t = 0; t < TN; t++) {
                const uint8_t *xb = x[t] + xo;
                const int8x16_t x0 = vld1q_s8((const int8_t *)(xb + 2)), x1 = vld1q_s8((const int8_t *)(xb + 18));
                const float dx = IL(f16_to_f32)(ignis_load_u16(xb));
                const int32x4_t qx = IL(reduce4)(IL(isum32)(ql[0], qh[0], x0, x1), IL(isum32)(ql[1], qh[1], x0, x1),
                                                 IL(isum32)(ql[2], qh[2], x0, x1), IL(isum32)(ql[3], qh[3], x0, x1));
                u[p][t] = vfmaq_n_f32(u[p][t], vcvtq_f32_s32(vmulq_s32(qx, sc[jb])), dx);
                if (wt != 23) {
                    const int c = vaddlvq_s16(vpadalq_s8(vpaddlq_s8(x0), x1));
                    const float cdx = (float)c * dx;
                    v[p][t] = vfmaq_n_f32(v[p][t], mf[jb], cdx);
                }
            }
        }
    }
    for (int t = 0; t < TN; t++) {
        acc0[t] = vfmaq_f32(acc0[t], u[0][t], d);
        if (wt != 23) acc0[t] = vfmsq_f32(acc0[t], v[0][t], dmin);
        acc1[t] = vfmaq_f32(acc1[t], u[1][t], d);
        if (wt != 23) acc1[t] = vfmsq_f32(acc1[t], v[1][t], dmin);
    }
}

/* block rule, 4 weight rows x RN (1..8) tokens, rows in lanes. Up to 4 tokens: one chunk decoding
 * the quants as it goes; 5..8: the super-block's quants decoded once into wl/wh, then the tokens
 * in chunks of 4 (the chains of 8 tokens would not fit the registers). */
IGNIS_INLINE void IL(br_4xn)(int wt, int64_t nsb, const uint8_t *const *w, const uint8_t *const *x, float *out, int RN) {
    const size_t wbytes = ignis_kx_bytes(wt);
    float32x4_t acc0[8], acc1[8];
    for (int j = 0; j < RN; j++) acc0[j] = acc1[j] = vdupq_n_f32(0.0f);
    int8x16_t wl[8][4], wh[8][4];
    int32x4_t sc[8];
    float32x4_t mf[8];
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * wbytes, xo0 = (size_t)s * 8 * IGNIS_Q8_0_BYTES;
        const float32x4_t d = IL(f16x4)(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
        const float32x4_t dmin = wt != 23 ? IL(f16x4)(w[0] + wo + 2, w[1] + wo + 2, w[2] + wo + 2, w[3] + wo + 2) : d;
        IL(br_scales)(wt, w, wo, sc, mf);
#define IGNIS_BR_CHUNK(J0, TN, FLY) IL(br_chunk)(wt, w, wo, wl, wh, sc, mf, x + (J0), xo0, d, dmin, acc0 + (J0), acc1 + (J0), TN, FLY)
        switch (RN) {
        case 1: IGNIS_BR_CHUNK(0, 1, 1); break;
        case 2: IGNIS_BR_CHUNK(0, 2, 1); break;
        case 3: IGNIS_BR_CHUNK(0, 3, 1); break;
        case 4: IGNIS_BR_CHUNK(0, 4, 1); break;
        default:
            for (int j2 = 0; j2 < 8; j2 += 2) IL(br_quants4)(wt, w, wo, j2, wl + j2, wh + j2);
            IGNIS_BR_CHUNK(0, 4, 0);
            switch (RN) {
            case 5: IGNIS_BR_CHUNK(4, 1, 0); break;
            case 6: IGNIS_BR_CHUNK(4, 2, 0); break;
            case 7: IGNIS_BR_CHUNK(4, 3, 0); break;
            default: IGNIS_BR_CHUNK(4, 4, 0); break;
            }
        }
#undef IGNIS_BR_CHUNK
    }
    for (int j = 0; j < RN; j++) vst1q_f32(out + j * IGNIS_TILE, vaddq_f32(acc0[j], acc1[j]));
}

#if IGNIS_ARM_I8MM
/* QN (1, 2) token pairs q0.. of one super-block with smmla: lanes [r0t0, r0t1, r1t0, r1t1] per
 * (row pair p, token pair q); a[jb][p] are block jb's packed quants (pack_rows; FLY: decoded and
 * packed here from w instead), slp / mfp its scales / float mins per row pair ([r0, r0, r1, r1]),
 * dp / dmp the rows' d / dmin likewise. The same operations, in the same order, as br_chunk. */
IGNIS_INLINE void IL(br_mm_chunk)(int wt, const uint8_t *const *w, size_t wo, int8x16_t a[8][2][4],
                                  const int32x4_t slp[8][2], const float32x4_t mfp[8][2], const uint8_t *const *x,
                                  size_t xo0, const float32x4_t dp[2], const float32x4_t dmp[2],
                                  float32x4_t acc[2][2][4], int q0, const int QN, const int FLY) {
    const int8x16_t ones = vdupq_n_s8(1);
    const int32x4_t zi = vdupq_n_s32(0);
    float32x4_t u[2][2][2], v[2][2][2];     /* [block parity][row pair][token pair] */
    for (int e = 0; e < 2; e++)
        for (int p = 0; p < 2; p++)
            for (int q = 0; q < QN; q++) u[e][p][q] = v[e][p][q] = vdupq_n_f32(0.0f);
    for (int j2 = 0; j2 < 8; j2 += 2) {
        int8x16_t fa[2][2][4];                  /* [block of the pair][row pair][] */
        if (FLY) {
            int8x16_t wl[2][4], wh[2][4];
            IL(br_quants4)(wt, w, wo, j2, wl, wh);
            IL(pack_rows)(wl[0], wh[0], fa[0]);
            IL(pack_rows)(wl[1], wh[1], fa[1]);
        }
        for (int e = 0; e < 2; e++) {           /* block jb = j2 + e advances chain e */
            const int jb = j2 + e;
            const size_t xo = xo0 + (size_t)jb * IGNIS_Q8_0_BYTES;
            for (int q = 0; q < QN; q++) {
                const uint8_t *x0 = x[2 * (q0 + q)] + xo, *x1 = x[2 * (q0 + q) + 1] + xo;
                const int8x16_t l0 = vld1q_s8((const int8_t *)(x0 + 2)), l1 = vld1q_s8((const int8_t *)(x1 + 2));
                const int8x16_t h0 = vld1q_s8((const int8_t *)(x0 + 18)), h1 = vld1q_s8((const int8_t *)(x1 + 18));
                const int8x16_t bl0 = IL(pk0)(l0, l1), bl1 = IL(pk1)(l0, l1), bh0 = IL(pk0)(h0, h1), bh1 = IL(pk1)(h0, h1);
                const float32x4_t dx = IL(dx2)(x0, x1);                      /* [d_t0, d_t1, d_t0, d_t1] */
                float32x4_t cdx = dx;
                if (wt != 23) {                                              /* [c_t0, c_t1, c_t0, c_t1] * dx */
                    const int32x4_t c = vmmlaq_s32(vmmlaq_s32(vmmlaq_s32(vmmlaq_s32(zi, ones, bl0), ones, bl1), ones, bh0), ones, bh1);
                    cdx = vmulq_f32(vcvtq_f32_s32(c), dx);
                }
                for (int p = 0; p < 2; p++) {
                    const int8x16_t *ap = FLY ? fa[e][p] : a[jb][p];
                    const int32x4_t qx = vmmlaq_s32(vmmlaq_s32(vmmlaq_s32(vmmlaq_s32(zi, ap[0], bl0), ap[1], bl1), ap[2], bh0), ap[3], bh1);
                    u[e][p][q] = vfmaq_f32(u[e][p][q], vcvtq_f32_s32(vmulq_s32(qx, slp[jb][p])), dx);
                    if (wt != 23) v[e][p][q] = vfmaq_f32(v[e][p][q], mfp[jb][p], cdx);
                }
            }
        }
    }
    for (int e = 0; e < 2; e++)
        for (int p = 0; p < 2; p++)
            for (int q = 0; q < QN; q++) {
                float32x4_t r = vfmaq_f32(acc[e][p][q0 + q], u[e][p][q], dp[p]);
                if (wt != 23) r = vfmsq_f32(r, v[e][p][q], dmp[p]);
                acc[e][p][q0 + q] = r;
            }
}

/* block rule, 4 weight rows x RN (2..8) tokens with smmla: up to two token pairs in one chunk that
 * decodes the quants as it goes, more in chunks of two pairs on the super-block's packed quants; an
 * odd RN computes its last token twice (x holds 8 pointers, the padding repeats the last) and
 * stores it once */
IGNIS_INLINE void IL(br_4xn_mm)(int wt, int64_t nsb, const uint8_t *const *w, const uint8_t *const *x, float *out, int RN) {
    const size_t wbytes = ignis_kx_bytes(wt);
    const int NP = (RN + 1) / 2;
    float32x4_t acc[2][2][4];
    for (int e = 0; e < 2; e++)
        for (int p = 0; p < 2; p++)
            for (int q = 0; q < NP; q++) acc[e][p][q] = vdupq_n_f32(0.0f);
    int8x16_t a[8][2][4];
    int32x4_t sc[8], slp[8][2];
    float32x4_t mf[8], mfp[8][2];
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * wbytes, xo0 = (size_t)s * 8 * IGNIS_Q8_0_BYTES;
        const float32x4_t d = IL(f16x4)(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
        const float32x4_t dmin = wt != 23 ? IL(f16x4)(w[0] + wo + 2, w[1] + wo + 2, w[2] + wo + 2, w[3] + wo + 2) : d;
        const float32x4_t dp[2] = {vzip1q_f32(d, d), vzip2q_f32(d, d)};
        const float32x4_t dmp[2] = {vzip1q_f32(dmin, dmin), vzip2q_f32(dmin, dmin)};
        IL(br_scales)(wt, w, wo, sc, mf);
        for (int jb = 0; jb < 8; jb++) {
            slp[jb][0] = vzip1q_s32(sc[jb], sc[jb]);
            slp[jb][1] = vzip2q_s32(sc[jb], sc[jb]);
            mfp[jb][0] = vzip1q_f32(mf[jb], mf[jb]);
            mfp[jb][1] = vzip2q_f32(mf[jb], mf[jb]);
        }
        if (NP == 1) IL(br_mm_chunk)(wt, w, wo, a, slp, mfp, x, xo0, dp, dmp, acc, 0, 1, 1);
        else if (NP == 2) IL(br_mm_chunk)(wt, w, wo, a, slp, mfp, x, xo0, dp, dmp, acc, 0, 2, 1);
        else {
            for (int j2 = 0; j2 < 8; j2 += 2) {
                int8x16_t wl[2][4], wh[2][4];
                IL(br_quants4)(wt, w, wo, j2, wl, wh);
                IL(pack_rows)(wl[0], wh[0], a[j2]);
                IL(pack_rows)(wl[1], wh[1], a[j2 + 1]);
            }
            IL(br_mm_chunk)(wt, w, wo, a, slp, mfp, x, xo0, dp, dmp, acc, 0, 2, 0);
            if (NP == 3) IL(br_mm_chunk)(wt, w, wo, a, slp, mfp, x, xo0, dp, dmp, acc, 2, 1, 0);
            else IL(br_mm_chunk)(wt, w, wo, a, slp, mfp, x, xo0, dp, dmp, acc, 2, 2, 0);
        }
    }
    for (int q = 0; q < NP; q++)
        IL(store_pairs)(out, q, RN, vaddq_f32(acc[0][0][q], acc[1][0][q]), vaddq_f32(acc[0][1][q], acc[1][1][q]));
}
#endif

/* one specialization per type (wt a constant in each) */
static void IL(br_4xn_q5_k)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o, int rn) { IL(br_4xn)(13, n, w, x, o, rn); }
static void IL(br_4xn_iq4_xs)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o, int rn) { IL(br_4xn)(23, n, w, x, o, rn); }
#if IGNIS_ARM_I8MM
static void IL(br_4xn_mm_q5_k)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o, int rn) { IL(br_4xn_mm)(13, n, w, x, o, rn); }
static void IL(br_4xn_mm_iq4_xs)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o, int rn) { IL(br_4xn_mm)(23, n, w, x, o, rn); }
#endif

/* the block-rule tile (see ignis_scalar_tile): pads rows/tokens by repeating the last pointer */
static inline void IL(br_tile)(int wtype, int64_t nsb, const uint8_t *const *w, int rm,
                               const uint8_t *const *x, int rn, float *out) {
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    typedef void (*br_fn)(int64_t, const uint8_t *const *, const uint8_t *const *, float *, int);
    br_fn k = wtype == 13 ? IL(br_4xn_q5_k) : IL(br_4xn_iq4_xs);
#if IGNIS_ARM_I8MM
    if (rn >= 2) k = wtype == 13 ? IL(br_4xn_mm_q5_k) : IL(br_4xn_mm_iq4_xs);
#endif
    float tmp[IGNIS_TILE * IGNIS_TILE];
    for (int i0 = 0; i0 < rm; i0 += 4) k(nsb, wp + i0, xp, tmp + i0, rn);
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}
