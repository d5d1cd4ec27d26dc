/* arm_32.h -- the NEON / dotprod / i8mm kernels of the types simd/defs32.h defines (included
 * by arm.h once per aarch64 level). Same arithmetic as the definition:
 *   Q4_0, Q5_1, IQ4_NL  4 rows x up to 8 tokens, lanes are the rows, the lo/hi chains per
 *                       token (as kq_4xn in arm.h): vmull/vmlal (neon) or sdot (dotprod and
 *                       i8mm: these types take no smmla tile yet).
 *   F32, F16, BF16      the 16 chains of the definition as four 4-lane registers, up to 4
 *                       (row, token) pairs at once, then ignis_wdot_finish. */

/* Q4_0 (WT 2: nibble - 8) or IQ4_NL (WT 20: the level) block -> signed quants of elements
 * 0..15 (lo) and 16..31 (hi) */
IGNIS_INLINE void IL(sq4_quants)(const uint8_t *blk, const int WT, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t qs = vld1q_u8(blk + 2);
    const uint8x16_t l = vandq_u8(qs, vdupq_n_u8(0x0f)), h = vshrq_n_u8(qs, 4);
    if (WT == 2) {
        *lo = vsubq_s8(vreinterpretq_s8_u8(l), vdupq_n_s8(8));
        *hi = vsubq_s8(vreinterpretq_s8_u8(h), vdupq_n_s8(8));
    } else {
        const int8x16_t t = vld1q_s8(ignis_iq4_nl_levels);
        *lo = vqtbl1q_s8(t, l);
        *hi = vqtbl1q_s8(t, h);
    }
}

/* Q5_1 block -> quants 0..31 (the Q5_0 quants of the block shifted by m's two bytes, + 16) */
IGNIS_INLINE void IL(q5_1_quants)(const uint8_t *blk, int8x16_t *lo, int8x16_t *hi) {
    IL(q5_0_quants)(blk + 2, lo, hi);
    *lo = vaddq_s8(*lo, vdupq_n_s8(16));
    *hi = vaddq_s8(*hi, vdupq_n_s8(16));
}

/* Q4_0 / Q5_1 / IQ4_NL weights, 4 rows x RN <= 8 tokens */
IGNIS_INLINE void IL(b32_4xn)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                              float *out, const int RN, const int WT) {
    const size_t wbytes = WT == 7 ? IGNIS_Q5_1_BYTES : IGNIS_Q4_0_BYTES;
    float32x4_t lo[8], hi[8];
    for (int j = 0; j < RN; j++) lo[j] = hi[j] = vdupq_n_f32(0.0f);
    int8x16_t wl[4], wh[4];
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * wbytes, xo = (size_t)b * IGNIS_Q8_0_BYTES;
        for (int k = 0; k < 4; k++) {
            if (WT == 7) IL(q5_1_quants)(w[k] + wo, &wl[k], &wh[k]);
            else IL(sq4_quants)(w[k] + wo, WT, &wl[k], &wh[k]);
        }
        const float32x4_t dw = IL(f16x4)(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
        const float32x4_t mw = WT == 7 ? IL(f16x4)(w[0] + wo + 2, w[1] + wo + 2, w[2] + wo + 2, w[3] + wo + 2) : dw;
        for (int j = 0; j < RN; j++) {
            const int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + xo + 2)), x1 = vld1q_s8((const int8_t *)(x[j] + xo + 18));
            const float dx = IL(f16_to_f32)(ignis_load_u16(x[j] + xo));
            const float32x4_t sd = vmulq_n_f32(dw, dx);
            const int32x4_t l = IL(rows4_dot16)(wl, x0), h = IL(rows4_dot16)(wh, x1);
            lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(l), sd);
            if (WT == 7) lo[j] = vfmaq_f32(lo[j], vdupq_n_f32((float)vaddlvq_s8(x0)), vmulq_n_f32(mw, dx));
            hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(h), sd);
            if (WT == 7) hi[j] = vfmaq_f32(hi[j], vdupq_n_f32((float)vaddlvq_s8(x1)), vmulq_n_f32(mw, dx));
        }
    }
    for (int j = 0; j < RN; j++) vst1q_f32(out + j * IGNIS_TILE, vaddq_f32(lo[j], hi[j]));
}

/* ---- float weights: 4 f32 values of weight row w from element i (exact conversions) */
IGNIS_INLINE float32x4_t IL(wf4)(const uint8_t *w, int64_t i, const int WT) {
    if (WT == 0) return vld1q_f32((const float *)w + i);
    const uint16x4_t h = vld1_u16((const uint16_t *)(w + 2 * i));
    if (WT == 1) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/* RM rows x RN tokens (RM * RN <= 4) of float weights: per (row, token) the 16 chains as
 * four registers over the whole 16-element steps, then ignis_wdot_finish */
IGNIS_INLINE void IL(wf_block)(int64_t k, const uint8_t *const *w, const uint8_t *const *x, float *out,
                               const int RM, const int RN, const int WT) {
    float32x4_t a[4][4];
    for (int p = 0; p < RM * RN; p++)
        for (int q = 0; q < 4; q++) a[p][q] = vdupq_n_f32(0.0f);
    const int64_t k16 = k / IGNIS_WCHAINS * IGNIS_WCHAINS;
    for (int64_t i = 0; i < k16; i += 16) {
        float32x4_t xv[2][4];
        for (int j = 0; j < RN; j++)
            for (int q = 0; q < 4; q++) xv[j][q] = vld1q_f32((const float *)x[j] + i + 4 * q);
        for (int r = 0; r < RM; r++) {
            float32x4_t wv[4];
            for (int q = 0; q < 4; q++) wv[q] = IL(wf4)(w[r], i + 4 * q, WT);
            for (int j = 0; j < RN; j++)
                for (int q = 0; q < 4; q++) a[r * RN + j][q] = vfmaq_f32(a[r * RN + j][q], xv[j][q], wv[q]);
        }
    }
    for (int r = 0; r < RM; r++)
        for (int j = 0; j < RN; j++) {
            float c[IGNIS_WCHAINS];
            for (int q = 0; q < 4; q++) vst1q_f32(c + 4 * q, a[r * RN + j][q]);
            out[j * IGNIS_TILE + r] = ignis_wdot_finish(c, WT, k16, k, w[r], (const float *)x[j]);
        }
}

IGNIS_INLINE void IL(wf_tile)(int64_t k, const uint8_t *const *wp, const uint8_t *const *xp, int rm, int rn,
                              float *tmp, const int WT) {
    if (rn == 1) {
        for (int i0 = 0; i0 < rm; i0 += 4) IL(wf_block)(k, wp + i0, xp, tmp + i0, 4, 1, WT);
        return;
    }
    for (int j0 = 0; j0 < rn; j0 += 2)
        for (int i0 = 0; i0 < rm; i0 += 2) IL(wf_block)(k, wp + i0, xp + j0, tmp + j0 * IGNIS_TILE + i0, 2, 2, WT);
}

static void IL(b32_4xn_any)(int wtype, int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                            float *out, int rn) {
#define IGNIS_B32_CASE(WT) \
    switch (rn) { \
    case 1: IL(b32_4xn)(nb, w, x, out, 1, WT); break; \
    case 2: IL(b32_4xn)(nb, w, x, out, 2, WT); break; \
    case 3: case 4: IL(b32_4xn)(nb, w, x, out, 4, WT); break; \
    default: IL(b32_4xn)(nb, w, x, out, 8, WT); break; \
    }
    if (wtype == 2) { IGNIS_B32_CASE(2) }
    else if (wtype == 7) { IGNIS_B32_CASE(7) }
    else { IGNIS_B32_CASE(20) }
#undef IGNIS_B32_CASE
}

/* The tile of the types of defs32.h (see ignis_scalar_tile): pads rows/tokens by repeating
 * the last pointer. */
static inline void IL(tile_32x)(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                                const uint8_t *const *x, int rn, float *out) {
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
    if (wtype == 0) IL(wf_tile)(nblk, wp, xp, rm, rn, tmp, 0);
    else if (wtype == 1) IL(wf_tile)(nblk, wp, xp, rm, rn, tmp, 1);
    else if (wtype == 30) IL(wf_tile)(nblk, wp, xp, rm, rn, tmp, 30);
    else
        for (int i0 = 0; i0 < rm; i0 += 4) IL(b32_4xn_any)(wtype, nblk, wp + i0, xp, tmp + i0, rn);
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}
