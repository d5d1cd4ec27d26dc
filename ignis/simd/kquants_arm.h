/* kquants_arm.h -- the tiles of Q5_K, Q3_K, Q2_K and IQ4_XS weights (WT 13, 11, 10, 23)
 * against Q8_0 activations for the aarch64 levels (included by arm.h, once per level; neon
 * forms the integer sums with vmull/vmlal, dotprod and i8mm with sdot). The definition is
 * ignis_scalar_vec_dot_kx (simd/kquants.h); lanes are four weight rows, the lo and hi chains
 * apart, the scaled half sums exact int32 products, the min steps as in Q4_K's kq_4xn. */

/* activation block jb of one super-block: signed quants of its low and high halves */
IGNIS_INLINE void IL(kx_quants)(const uint8_t *sb, int jb, int wt, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m2 = vdupq_n_u8(3), m1 = vdupq_n_u8(1);
    if (wt == 13) {
        const uint8_t *qs = sb + 48 + (jb / 2) * 32;
        uint8x16_t v0 = vld1q_u8(qs), v1 = vld1q_u8(qs + 16);
        if (jb & 1) { v0 = vshrq_n_u8(v0, 4); v1 = vshrq_n_u8(v1, 4); }
        else { v0 = vandq_u8(v0, m4); v1 = vandq_u8(v1, m4); }
        const int8x16_t sh = vdupq_n_s8((int8_t)-jb);
        const uint8x16_t h0 = vandq_u8(vshlq_u8(vld1q_u8(sb + 16), sh), m1);
        const uint8x16_t h1 = vandq_u8(vshlq_u8(vld1q_u8(sb + 32), sh), m1);
        *lo = vreinterpretq_s8_u8(vorrq_u8(v0, vshlq_n_u8(h0, 4)));
        *hi = vreinterpretq_s8_u8(vorrq_u8(v1, vshlq_n_u8(h1, 4)));
    } else if (wt == 10 || wt == 11) {
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
    } else {
        const int8x16_t grid = vld1q_s8(ignis_iq4nl_values);
        const uint8x16_t qs = vld1q_u8(sb + 8 + jb * 16);
        *lo = vqtbl1q_s8(grid, vandq_u8(qs, m4));
        *hi = vqtbl1q_s8(grid, vshrq_n_u8(qs, 4));
    }
}

/* the integer scales (and mins) of the halves of activation block jb */
IGNIS_INLINE void IL(kx_scales)(const uint8_t *sb, int jb, int wt, int32_t *scl, int32_t *sch, int32_t *ml, int32_t *mh) {
    if (wt == 13) {
        int sc, m;
        ignis_q4_k_scale_min(sb + 4, jb, &sc, &m);
        *scl = *sch = sc;
        *ml = *mh = m;
    } else if (wt == 10) {
        *scl = sb[2 * jb] & 0x0f;
        *ml = sb[2 * jb] >> 4;
        *sch = sb[2 * jb + 1] & 0x0f;
        *mh = sb[2 * jb + 1] >> 4;
    } else if (wt == 11) {
        *scl = ignis_q3_k_scale(sb, 2 * jb);
        *sch = ignis_q3_k_scale(sb, 2 * jb + 1);
        *ml = *mh = 0;
    } else {
        *scl = *sch = ignis_iq4_xs_scale(sb, jb);
        *ml = *mh = 0;
    }
}

/* 4 weight rows x RN (1..8) tokens */
static void IL(kx_4xn)(int wt, int64_t nsb, const uint8_t *const *w, const uint8_t *const *x, float *out, int RN) {
    const size_t wbytes = ignis_kx_bytes(wt), doff = ignis_kx_d_off(wt), moff = ignis_kx_dmin_off(wt);
    const int has_min = wt == 13 || wt == 10;
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
