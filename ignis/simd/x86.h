
static inline float IL(f16_to_f32)(uint16_t h) { return _cvtsh_ss(h); }
static inline uint16_t IL(f32_to_f16)(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

static inline void IL(f16_to_f32_row)(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = _cvtsh_ss(x[i]);
}

static inline void IL(f32_to_f16_row)(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = IL(f32_to_f16)(x[i]);
}

/* horizontal sum in a fixed order: (lo4 + hi4) -> 2 -> 1 */
IGNIS_INLINE float IL(hsum)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* NaN -> 0, clamp to [-127, 127], then roundf (ties away from zero), as int32 lanes. */
IGNIS_INLINE __m256i IL(round_away)(__m256 v) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    __m256 a = _mm256_andnot_ps(sign_mask, v);
    __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_sub_ps(a, t);
    t = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), _mm256_set1_ps(1.0f)));
    t = _mm256_or_ps(t, _mm256_and_ps(sign_mask, v));
    return _mm256_cvttps_epi32(t);
}

static inline void IL(quantize_row_q8_0)(const float *x, uint8_t *y, int64_t k) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const float *xb = x + b * IGNIS_QK;
        uint8_t *yb = y + b * IGNIS_Q8_0_BYTES;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign_mask, v0), _mm256_andnot_ps(sign_mask, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign_mask, v2), _mm256_andnot_ps(sign_mask, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = IL(f32_to_f16)(d);
        memcpy(yb, &dh, 2);
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = IL(round_away)(_mm256_mul_ps(v0, vid));
        __m256i i1 = IL(round_away)(_mm256_mul_ps(v1, vid));
        __m256i i2 = IL(round_away)(_mm256_mul_ps(v2, vid));
        __m256i i3 = IL(round_away)(_mm256_mul_ps(v3, vid));
        /* packs work within 128-bit lanes: fix the order with a dword permute */
        __m256i p01 = _mm256_packs_epi32(i0, i1);
        __m256i p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(yb + 2), p);
    }
}

/* 8 int32 partial sums of one block pair: lanes 0..3 cover elements 0..15, lanes 4..7
 * elements 16..31. The sign trick: |w| (unsigned) times x*sign(w) (signed) feeds maddubs
 * without overflow because activations never hold -128 (weights may). */
IGNIS_INLINE __m256i IL(pair_i8)(__m256i w, __m256i aw, __m256i x) {
#if IGNIS_X86_VNNI
    return IGNIS_DPBUSD(_mm256_setzero_si256(), aw, _mm256_sign_epi8(x, w));
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
#endif
}

/* 8 int32 sums of 4 products u8 q . s8 x (q <= 127 here, so maddubs cannot saturate) */
IGNIS_INLINE __m256i IL(udot4)(__m256i q, __m256i x) {
#if IGNIS_X86_VNNI
    return IGNIS_DPBUSD(_mm256_setzero_si256(), q, x);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1));
#endif
}

/* Four pairs' partials -> [lo0 lo1 lo2 lo3 | hi0 hi1 hi2 hi3] (exact int sums). Unpacks and
 * adds: vphaddd is 4x slower on Zen 3. */
IGNIS_INLINE __m256i IL(reduce4)(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    __m256i a = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
    __m256i b = _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
}

#include "prefetch_x86.h"   /* IL(prefetch_rows), IL(prefetch_block): the decode kernels' prefetch */

/* Four f16 values (from four pointers) as [v0 v1 v2 v3 | v0 v1 v2 v3]. */
IGNIS_INLINE __m256 IL(f16x4_twice)(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    __m128i h = _mm_cvtsi32_si128(ignis_load_u16(p0));
    h = _mm_insert_epi16(h, ignis_load_u16(p1), 1);
    h = _mm_insert_epi16(h, ignis_load_u16(p2), 2);
    h = _mm_insert_epi16(h, ignis_load_u16(p3), 3);
    __m128 v = _mm_cvtph_ps(h);
    return _mm256_set_m128(v, v);
}

/* acc lanes [lo0..lo3 | hi0..hi3] -> out[k * stride] = lo_k + hi_k */
IGNIS_INLINE void IL(store4)(__m256 acc, float *out, int stride) {
    float l[8];
    _mm256_storeu_ps(l, acc);
    for (int k = 0; k < 4; k++) out[k * stride] = l[k] + l[k + 4];
}

/* Q8_0, 4 weight rows x 4G activation rows (prefill): each row's block meets the 4-token
 * groups; one accumulator per (row, group) holds the 8 lo/hi chains. */
IGNIS_INLINE void IL(q8_0_4xg)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                                      float *out, const int G) {
    __m256 acc[4][2];
    for (int i = 0; i < 4; i++)
        for (int g = 0; g < G; g++) acc[i][g] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * IGNIS_Q8_0_BYTES;
        __m256i xv[8];
        __m256 dx[2];
        for (int g = 0; g < G; g++) {
            for (int k = 0; k < 4; k++) xv[4 * g + k] = _mm256_loadu_si256((const __m256i *)(x[4 * g + k] + off + 2));
            dx[g] = IL(f16x4_twice)(x[4 * g] + off, x[4 * g + 1] + off, x[4 * g + 2] + off, x[4 * g + 3] + off);
        }
        for (int i = 0; i < 4; i++) {
            __m256i wv = _mm256_loadu_si256((const __m256i *)(w[i] + off + 2));
            __m256i aw = _mm256_sign_epi8(wv, wv);
            __m256 dw = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(w[i] + off)));
            for (int g = 0; g < G; g++) {
                __m256i h = IL(reduce4)(IL(pair_i8)(wv, aw, xv[4 * g]), IL(pair_i8)(wv, aw, xv[4 * g + 1]),
                                               IL(pair_i8)(wv, aw, xv[4 * g + 2]), IL(pair_i8)(wv, aw, xv[4 * g + 3]));
                acc[i][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw, dx[g]), acc[i][g]);
            }
        }
    }
    for (int i = 0; i < 4; i++)
        for (int g = 0; g < G; g++) IL(store4)(acc[i][g], out + 4 * g * IGNIS_TILE + i, IGNIS_TILE);
}

/* 16 bytes of nibbles as 32 bytes 0..15: low nibbles (elements 0..15), then high nibbles */
IGNIS_INLINE __m256i IL(nibbles32)(const uint8_t *qs16) {
    /* the 16 bytes in both lanes (a broadcast load), the high lane's shifted down a nibble, one
       mask: two instructions where a shift, two masks and a lane insert were four */
    const __m256i qs = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs16));
    return _mm256_and_si256(_mm256_srlv_epi32(qs, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0f));
}

/* Q5_0 block quants as 32 unsigned bytes 0..31: nibble | bit << 4. */
IGNIS_INLINE __m256i IL(q5_0_quants)(const uint8_t *blk) {
    __m256i nib = IL(nibbles32)(blk + 6);
#if IGNIS_X86_512
    /* AVX-512BW: bit i of qh is the mask of byte i */
    return _mm256_mask_add_epi8(nib, (__mmask32)ignis_load_u32(blk + 2), nib, _mm256_set1_epi8(0x10));
#endif
    /* byte i of the result takes byte i/8 of qh, then tests bit i%8 */
    __m256i qh = _mm256_set1_epi32((int)ignis_load_u32(blk + 2));
    __m256i bytes = _mm256_shuffle_epi8(qh, _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    return _mm256_or_si256(nib, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
}

/* Q4_1 block quants as 32 unsigned bytes 0..15. */
IGNIS_INLINE __m256i IL(q4_1_quants)(const uint8_t *blk) { return IL(nibbles32)(blk + 4); }

/* Q8_0 / Q5_0 / Q4_1 (WT 8 / 6 / 3), 8 weight rows x RN activation rows (decode): rows in two
 * groups of four, each group's block meets each token; one accumulator per (token, group).
 * Q5_0 skips the sign trick: sum (q-16)*x = maddubs(q, x) - 16 * sum x, with the activation
 * sums computed once per token block. Q4_1 takes maddubs(q, x) as it is (q <= 15), then the
 * min step with the half sums of x ([c_lo x4 | c_hi x4], exact) and m * d_x. */
IGNIS_INLINE void IL(q8_8xn)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                                    float *out, const int RN, const int WT) {
    const size_t wbytes = WT == 8 ? IGNIS_Q8_0_BYTES : WT == 6 ? IGNIS_Q5_0_BYTES : IGNIS_Q4_1_BYTES;
    __m256 acc[4][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t xo = (size_t)b * IGNIS_Q8_0_BYTES, wo = (size_t)b * wbytes;
        IL(prefetch_block)(w, 8, b, wbytes);
        __m256i xv[4], xs16[4];
        __m256 dx[4], xsf[4];
        for (int j = 0; j < RN; j++) {
            xv[j] = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 2));
            dx[j] = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo)));
            if (WT == 6)
                xs16[j] = IL(udot4)(_mm256_set1_epi8(16), xv[j]);
            if (WT == 3) {
                const __m256i t = IL(udot4)(_mm256_set1_epi8(1), xv[j]);
                xsf[j] = _mm256_cvtepi32_ps(IL(reduce4)(t, t, t, t));
            }
        }
        for (int g = 0; g < 2; g++) {
            const uint8_t *const *wg = w + 4 * g;
            __m256i wv[4], aw[4];
            for (int k = 0; k < 4; k++) {
                if (WT == 8) {
                    wv[k] = _mm256_loadu_si256((const __m256i *)(wg[k] + wo + 2));
                    aw[k] = _mm256_sign_epi8(wv[k], wv[k]);
                } else if (WT == 6) {
                    wv[k] = IL(q5_0_quants)(wg[k] + wo);
                } else {
                    wv[k] = IL(q4_1_quants)(wg[k] + wo);
                }
            }
            __m256 dw = IL(f16x4_twice)(wg[0] + wo, wg[1] + wo, wg[2] + wo, wg[3] + wo);
            __m256 mw = WT == 3 ? IL(f16x4_twice)(wg[0] + wo + 2, wg[1] + wo + 2, wg[2] + wo + 2, wg[3] + wo + 2) : dw;
            for (int j = 0; j < RN; j++) {
                __m256i p[4];
                for (int k = 0; k < 4; k++)
                    p[k] = WT == 8 ? IL(pair_i8)(wv[k], aw[k], xv[j])
                         : WT == 6 ? _mm256_sub_epi32(IL(udot4)(wv[k], xv[j]), xs16[j])
                                   : IL(udot4)(wv[k], xv[j]);
                __m256i h = IL(reduce4)(p[0], p[1], p[2], p[3]);
                acc[j][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw, dx[j]), acc[j][g]);
                if (WT == 3)
                    acc[j][g] = _mm256_fmadd_ps(xsf[j], _mm256_mul_ps(mw, dx[j]), acc[j][g]);
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < 2; g++) IL(store4)(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}

/* four rows' 16 half-block bytes (scales or mins; byte 2 jb + h of mb[k]: row k, block jb, half h)
 * transposed to bytes per block, mq[jb] = [lo r0..3 | hi r0..3] (the lanes of the 8xn tiles,
 * widened per use by IL(block_lanes)) */
IGNIS_INLINE void IL(halves_by_block)(const __m128i *mb, uint8_t (*mq)[8]) {
    const __m128i t0 = _mm_unpacklo_epi8(mb[0], mb[1]), t0h = _mm_unpackhi_epi8(mb[0], mb[1]);
    const __m128i t1 = _mm_unpacklo_epi8(mb[2], mb[3]), t1h = _mm_unpackhi_epi8(mb[2], mb[3]);
    _mm_store_si128((__m128i *)mq[0], _mm_unpacklo_epi16(t0, t1));      /* halves 0..3: blocks 0, 1 */
    _mm_store_si128((__m128i *)mq[2], _mm_unpackhi_epi16(t0, t1));
    _mm_store_si128((__m128i *)mq[4], _mm_unpacklo_epi16(t0h, t1h));
    _mm_store_si128((__m128i *)mq[6], _mm_unpackhi_epi16(t0h, t1h));
}

/* one block's eight lane bytes of IL(halves_by_block) as floats, widened signed: Q6_K's and Q3_K's
 * scales are int8, and every other field put there (Q2_K's scales, Q2_K's and Q4_K's mins) is
 * below 64, the same either way */
IGNIS_INLINE __m256 IL(block_lanes)(const uint8_t *b8) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)b8)));
}

/* Q4_K, 4G weight rows (G = 1 or 2 groups of four) x RN activation rows (RN <= 4, or <= 8
 * with one group: prefill reuses each decoded weight block for 8 tokens). Per sub-block: A = sc * q.x halves for four rows
 * at once (reduced like Q8_0), B = m * (sum x) halves as exact float products (both factors are
 * small integers), then fma(A, d*dx) and fnmadd(B, dmin*dx) per lane. */
IGNIS_INLINE void IL(q4_k_8xn)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                                      float *out, const int RN, const int G) {
    const __m256i low = _mm256_set1_epi8(0x0f), ones8 = _mm256_set1_epi8(1);
    __m256 acc[8][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * IGNIS_Q4_K_BYTES;
        IL(prefetch_rows)(w, 4 * G, wo + IGNIS_ZD_AHEAD, IGNIS_Q4_K_BYTES);
        /* per token and sub-block: [xs_lo x4 | xs_hi x4] as floats */
        __m256 xs[8][8];
        for (int j = 0; j < RN; j++)
            for (int sb = 0; sb < 8; sb++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x[j] + (size_t)(s * 8 + sb) * IGNIS_Q8_0_BYTES + 2));
                __m256i t = IL(udot4)(ones8, xv);
                xs[j][sb] = _mm256_cvtepi32_ps(IL(reduce4)(t, t, t, t));
            }
        for (int g = 0; g < G; g++) {
            const uint8_t *const *wg = w + 4 * g;
            /* the scales as int16 per row (sc[k][sb], broadcast per use); the mins transposed to
               bytes [m r0..3 | m r0..3] per sub-block (IL(halves_by_block), each min as both halves'):
               a scalar unpacking per scale and a float store per min took most of a decode step */
            _Alignas(16) int16_t sc[4][8];
            _Alignas(16) uint8_t mq[8][8];
            __m128i mr[4];
            for (int k = 0; k < 4; k++) {
                uint64_t sc8, m8;
                ignis_q4_k_scales8(wg[k] + wo + 4, &sc8, &m8);
                _mm_store_si128((__m128i *)sc[k], _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
                const __m128i m = _mm_cvtsi64_si128((long long)m8);
                mr[k] = _mm_unpacklo_epi8(m, m);        /* a sub-block's min for both its halves */
            }
            IL(halves_by_block)(mr, mq);
            __m256 d = IL(f16x4_twice)(wg[0] + wo, wg[1] + wo, wg[2] + wo, wg[3] + wo);
            __m256 dmin = IL(f16x4_twice)(wg[0] + wo + 2, wg[1] + wo + 2, wg[2] + wo + 2, wg[3] + wo + 2);
            for (int p = 0; p < 4; p++) {
                __m256i q[4][2];
                for (int k = 0; k < 4; k++) {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(wg[k] + wo + 16 + p * 32));
                    q[k][0] = _mm256_and_si256(v, low);
                    q[k][1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                }
                for (int h = 0; h < 2; h++) {
                    const int sb = 2 * p + h;
                    const size_t xo = (size_t)(s * 8 + sb) * IGNIS_Q8_0_BYTES;
                    const __m256 m = IL(block_lanes)(mq[sb]);
                    for (int j = 0; j < RN; j++) {
                        __m256i xv = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 2));
                        __m256 dx = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo)));
                        __m256i pa[4];
                        for (int k = 0; k < 4; k++)
                            pa[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(q[k][h], xv), _mm256_set1_epi16(sc[k][sb]));
                        __m256i ha = IL(reduce4)(pa[0], pa[1], pa[2], pa[3]);
                        acc[j][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ha), _mm256_mul_ps(d, dx), acc[j][g]);
                        acc[j][g] = _mm256_fnmadd_ps(_mm256_mul_ps(m, xs[j][sb]), _mm256_mul_ps(dmin, dx), acc[j][g]);
                    }
                }
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < G; g++) IL(store4)(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}

/* Q6_K, 4G weight rows x RN activation rows (as Q4_K). q (0..63) . x - 32 * sum x per 16-element half
 * for four rows at once, as floats times the halves' int8 scales (exact: |sc * sum| < 2^24, so the
 * float product is the definition's (float)(sc * sum)). The scales are transposed to lanes once
 * per super-block (IL(halves_by_block)): broadcasting one per row and block took 5 of a block's 16
 * instructions a row. */
IGNIS_INLINE void IL(q6_k_8xn)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                                      float *out, const int RN, const int G) {
    const __m256i low = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc[8][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * IGNIS_Q6_K_BYTES;
        IL(prefetch_rows)(w, 4 * G, wo + IGNIS_ZD_AHEAD, IGNIS_Q6_K_BYTES);
        for (int g = 0; g < G; g++) {
            const uint8_t *const *wg = w + 4 * g;
            __m256 d = IL(f16x4_twice)(wg[0] + wo + 208, wg[1] + wo + 208, wg[2] + wo + 208, wg[3] + wo + 208);
            __m128i sr[4];
            _Alignas(16) uint8_t sq[8][8];
            for (int k = 0; k < 4; k++) sr[k] = _mm_loadu_si128((const __m128i *)(wg[k] + wo + 192));
            IL(halves_by_block)(sr, sq);
#pragma GCC unroll 2
            for (int half = 0; half < 2; half++) {
                __m256i l0[4], l1[4], hv[4];
                for (int k = 0; k < 4; k++) {
                    l0[k] = _mm256_loadu_si256((const __m256i *)(wg[k] + wo + half * 64));
                    l1[k] = _mm256_loadu_si256((const __m256i *)(wg[k] + wo + half * 64 + 32));
                    hv[k] = _mm256_loadu_si256((const __m256i *)(wg[k] + wo + 128 + half * 32));
                }
#pragma GCC unroll 4
                for (int kk = 0; kk < 4; kk++) {
                    const int jb = half * 4 + kk;                 /* activation block in the super-block */
                    const size_t xo = (size_t)(s * 8 + jb) * IGNIS_Q8_0_BYTES;
                    const __m256 sc = IL(block_lanes)(sq[jb]);
                    __m256i q[4];
                    for (int k = 0; k < 4; k++) {
                        __m256i lo4 = (kk & 1) ? l1[k] : l0[k];
                        lo4 = (kk >> 1) ? _mm256_srli_epi16(lo4, 4) : lo4;
                        __m256i hi2 = _mm256_and_si256(_mm256_srli_epi16(hv[k], 2 * kk), three);
                        q[k] = _mm256_or_si256(_mm256_and_si256(lo4, low), _mm256_slli_epi16(hi2, 4));
                    }
                    for (int j = 0; j < RN; j++) {
                        __m256i xv = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 2));
                        __m256 dx = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo)));
                        __m256i x32 = _mm256_maddubs_epi16(k32, xv);
                        __m256i p[4];
                        for (int k = 0; k < 4; k++)
                            p[k] = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(q[k], xv), x32), ones16);
                        __m256i h = IL(reduce4)(p[0], p[1], p[2], p[3]);
                        acc[j][g] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(h), sc), _mm256_mul_ps(d, dx), acc[j][g]);
                    }
                }
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < G; g++) IL(store4)(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}

#define IGNIS_X86_KERNELS(RN) \
    static void IL(q8_0_8x##RN)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_8xn)(n, w, x, o, RN, 8); } \
    static void IL(q5_0_8x##RN)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_8xn)(n, w, x, o, RN, 6); } \
    static void IL(q4_1_8x##RN)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_8xn)(n, w, x, o, RN, 3); } \
    static void IL(q4_k_8x##RN)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q4_k_8xn)(n, w, x, o, RN, 2); } \
    static void IL(q6_k_8x##RN)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q6_k_8xn)(n, w, x, o, RN, 2); }
IGNIS_X86_KERNELS(1) IGNIS_X86_KERNELS(2) IGNIS_X86_KERNELS(3) IGNIS_X86_KERNELS(4)
static void IL(q8_0_4x4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_0_4xg)(n, w, x, o, 1); }
static void IL(q4_k_4x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q4_k_8xn)(n, w, x, o, 8, 1); }
static void IL(q6_k_4x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q6_k_8xn)(n, w, x, o, 8, 1); }
static void IL(q8_0_4x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_0_4xg)(n, w, x, o, 2); }


#if IGNIS_X86_512
#  include "avx512.h"
#  include "avx512_decode.h"   /* the Q4_K and Q6_K decode kernels */
#  include "kq_pairs.h"
#endif
#include "x86_32.h"
#include "kquants_x86.h"
#if IGNIS_X86_512
#  include "kq_prep.h"      /* the K-quant tiles on rows unpacked once for many token tiles */
#  include "zt_decode.h"    /* few-token tiles on per-matmul token tables */
#else
#  include "prep_x86.h"     /* avx2 / avxvnni: prefill tiles on prepared (transposed) rows */
#  include "q4k_rows_x86.h" /* avx2 / avxvnni: Q4_K decode with the rows in lanes */
#endif

/* The tile (see ignis_scalar_tile): pads rows/tokens by repeating the last pointer. avx512:
 * the z8 tiles from 4 tokens, the zn kernels below (Q8_0 decode: the 8-row kernel). Otherwise
 * Q8_0 with 4+ tokens and Q4_K/Q6_K with 5+ take the 4-row x 4/8-token kernels, everything
 * else 8 rows x up to 4 tokens. */
static inline void IL(tile)(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                                   const uint8_t *const *x, int rn, float *out) {
    if (ignis_is_32x(wtype)) { IL(tile_32x)(wtype, nblk, w, rm, x, rn, out); return; }
    if (IGNIS_IS_KX(wtype)) { IL(kx_tile)(wtype, nblk, w, rm, x, rn, out); return; }
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
    const int t = wtype == 8 ? 0 : wtype == 6 ? 1 : wtype == 12 ? 2 : wtype == 14 ? 3 : 4;   /* 4: Q4_1 */
#if IGNIS_X86_512
    /* 5+ tokens (Q8_0: 4+): 8 rows x 4/8 tokens on transposed weights; fewer (decode, a
       speculative verify step): row pairs in 512-bit registers (4 tokens there: ~1.7x the
       z8x4 tile's speed; Q8_0 decode, memory-bound, stays on the 256-bit kernel) */
    static const ignis_kernel_fn z8[5][2] = {{IL(q8_0_z8x4), IL(q8_0_z8x8)}, {IL(q5_0_z8x4), IL(q5_0_z8x8)},
                                             {NULL, NULL}, {NULL, NULL},   /* Q4_K, Q6_K: the pair tiles */
                                             {IL(q4_1_z8x4), IL(q4_1_z8x8)}};
    static const ignis_kernel_fn zn[5][4] = {{NULL, NULL, NULL, NULL},
                                             {IL(q5_0_zn1), IL(q5_0_zn2), IL(q5_0_zn3), IL(q5_0_zn4)},
                                             {IL(q4_k_zn1), IL(q4_k_zn2), IL(q4_k_zn3), IL(q4_k_zn4)},
                                             {IL(q6_k_zn1), IL(q6_k_zn2), IL(q6_k_zn3), IL(q6_k_zn4)},
                                             {IL(q4_1_zn1), IL(q4_1_zn2), IL(q4_1_zn3), IL(q4_1_zn4)}};
    if (rn > 4 && (t == 2 || t == 3)) {
        (t == 2 ? IL(q4_k_p8x8) : IL(q6_k_p8x8))(nblk, wp, xp, tmp);
    } else if (rn > 4 || (rn == 4 && t == 0)) {
        z8[t][rn > 4](nblk, wp, xp, tmp);
    } else if (t > 0) {
        zn[t][rn - 1](nblk, wp, xp, tmp);
    } else
#endif
    if ((wtype == 8 && rn >= 4) || ((wtype == 12 || wtype == 14) && rn > 4)) {
        /* prefill: 4 rows x 8 tokens (Q8_0 also 4 x 4), each weight block decoded once */
        ignis_kernel_fn k = wtype == 12 ? IL(q4_k_4x8) : wtype == 14 ? IL(q6_k_4x8) : rn > 4 ? IL(q8_0_4x8) : IL(q8_0_4x4);
        k(nblk, wp, xp, tmp);
        if (rm > 4) k(nblk, wp + 4, xp, tmp + 4);
    }
#if !IGNIS_X86_512
    else if (t == 2 && rn == 1) IL(q4_k_t8x1)(nblk, wp, xp, tmp);     /* decode */
#endif
    else {
        static const ignis_kernel_fn ks[5][4] = {
            {IL(q8_0_8x1), IL(q8_0_8x2), IL(q8_0_8x3), IL(q8_0_8x4)},
            {IL(q5_0_8x1), IL(q5_0_8x2), IL(q5_0_8x3), IL(q5_0_8x4)},
            {IL(q4_k_8x1), IL(q4_k_8x2), IL(q4_k_8x3), IL(q4_k_8x4)},
            {IL(q6_k_8x1), IL(q6_k_8x2), IL(q6_k_8x3), IL(q6_k_8x4)},
            {IL(q4_1_8x1), IL(q4_1_8x2), IL(q4_1_8x3), IL(q4_1_8x4)}};
        for (int j0 = 0; j0 < rn; j0 += 4) {
            int n = rn - j0 < 4 ? rn - j0 : 4;
            ks[t][n - 1](nblk, wp, xp + j0, tmp + j0 * IGNIS_TILE);
        }
    }
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}

static inline float IL(vec_dot)(int wtype, int64_t nblk, const uint8_t *w, const uint8_t *x) {
    float out[IGNIS_TILE * IGNIS_TILE];
    IL(tile)(wtype, nblk, &w, 1, &x, 1, out);
    return out[0];
}


/* f32 dot: two 8-lane FMA accumulators over 16-element steps, one 8-step, fixed hsum, scalar tail. */
static inline float IL(dot_f32)(const float *a, const float *b, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float s = IL(hsum)(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline float IL(dot_f32_f16)(const float *a, const uint16_t *b, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8))), acc1);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
    float s = IL(hsum)(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * _cvtsh_ss(b[i]);
    return s;
}

/* The same bits as nt x G calls of IL(dot_f32_f16) (the row converted once: cvtph is exact). */
static inline void IL(dot_f32_f16_heads)(const float *q, int64_t nt, int64_t qts, int64_t G, int64_t hd,
                                         const uint16_t *row, float *out, int64_t ots, int64_t ostride) {
    if (hd % 16 != 0 || hd > 256) {
        for (int64_t t = 0; t < nt; t++)
            for (int64_t h = 0; h < G; h++) out[t * ots + h * ostride] = IL(dot_f32_f16)(q + t * qts + h * hd, row, hd);
        return;
    }
    __m256 kv[32];
    for (int64_t i = 0; i < hd / 8; i++) kv[i] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 8 * i)));
    for (int64_t t = 0; t < nt; t++) {
        for (int64_t h = 0; h < G; h++) {
            const float *a = q + t * qts + h * hd;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
            for (int64_t i = 0; i < hd / 8; i += 2) {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8 * i), kv[i], acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8 * i + 8), kv[i + 1], acc1);
            }
            out[t * ots + h * ostride] = IL(hsum)(_mm256_add_ps(acc0, acc1));
        }
    }
}

static inline void IL(div_row)(float *x, float d, int64_t n) {
    __m256 vd = _mm256_set1_ps(d);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), vd));
    for (; i < n; i++) x[i] = x[i] / d;
}

static inline void IL(axpy_f32)(float a, const float *x, float *y, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] = y[i] + a * x[i];
}

static inline void IL(axpy_f16)(float a, const uint16_t *x, float *y, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, xv)));
    }
    for (; i < n; i++) y[i] = y[i] + a * _cvtsh_ss(x[i]);
}

/* o[0..hd) = sum over s < n (in order) of w[s] * f16 row v + s*vstride: the same bits as
 * zeroing o then n calls of IL(axpy_f16), with o held in registers. */
/* o += sum_s w[s] * v[s * vstride ..] (o holds the sum so far: a paged cache is summed a
   block at a time, and the sums of consecutive calls are those of one call over all rows) */
static inline void IL(av_head_acc)(const float *w, const uint16_t *v, int64_t vstride, int64_t n,
                                          float *o, int64_t hd) {
    if (hd % 8 != 0 || hd > 128) {
        for (int64_t s = 0; s < n; s++) IL(axpy_f16)(w[s], v + s * vstride, o, hd);
        return;
    }
    __m256 acc[16];
    const int64_t c8 = hd / 8;
    for (int64_t c = 0; c < c8; c++) acc[c] = _mm256_loadu_ps(o + 8 * c);
    for (int64_t s = 0; s < n; s++) {
        const __m256 a = _mm256_set1_ps(w[s]);
        const uint16_t *r = v + s * vstride;
        for (int64_t c = 0; c < c8; c++)
            acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(a, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 8 * c)))));
    }
    for (int64_t c = 0; c < c8; c++) _mm256_storeu_ps(o + 8 * c, acc[c]);
}

static inline void IL(av_head)(const float *w, const uint16_t *v, int64_t vstride, int64_t n,
                                      float *o, int64_t hd) {
    memset(o, 0, (size_t)hd * sizeof(float));
    IL(av_head_acc)(w, v, vstride, n, o, hd);
}

#if IGNIS_X86_512
/* av_heads_acc (rows.h) with each v row converted once for NH heads of C * 16 elements, their
 * sums held in registers over the rows */
IGNIS_INLINE void IL(av_heads_z)(const float *w, int64_t wstride, const uint16_t *v, int64_t vstride,
                                 int64_t n, float *o, const int C, const int NH) {
    __m512 acc[24];
    for (int h = 0; h < NH; h++)
        for (int c = 0; c < C; c++) acc[h * C + c] = _mm512_loadu_ps(o + h * C * 16 + 16 * c);
    for (int64_t s = 0; s < n; s++) {
        const uint16_t *r = v + s * vstride;
        __m512 x[8];
        for (int c = 0; c < C; c++) x[c] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + 16 * c)));
        for (int h = 0; h < NH; h++) {
            const __m512 a = _mm512_set1_ps(w[h * wstride + s]);
            for (int c = 0; c < C; c++) acc[h * C + c] = _mm512_add_ps(acc[h * C + c], _mm512_mul_ps(a, x[c]));
        }
    }
    for (int h = 0; h < NH; h++)
        for (int c = 0; c < C; c++) _mm512_storeu_ps(o + h * C * 16 + 16 * c, acc[h * C + c]);
}

/* 16 rows of 16 floats (r[i] = row i) -> c[j] = column j (lane i: row i's element j) */
IGNIS_INLINE void IL(transpose16)(const __m512 *r, __m512 *c) {
    __m512 a[16], b[16];
    for (int k = 0; k < 8; k++) {
        a[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    /* b[4k + cc], 128-bit lane L: column 4L + cc of rows 4k..4k+3 */
    for (int k = 0; k < 4; k++) {
        const __m512d a0 = _mm512_castps_pd(a[4 * k]), a1 = _mm512_castps_pd(a[4 * k + 1]);
        const __m512d a2 = _mm512_castps_pd(a[4 * k + 2]), a3 = _mm512_castps_pd(a[4 * k + 3]);
        b[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    /* per cc, the 4x4 transposition of 128-bit lanes of b[cc], b[4 + cc], b[8 + cc], b[12 + cc] */
    for (int cc = 0; cc < 4; cc++) {
        const __m512 e0 = _mm512_shuffle_f32x4(b[cc], b[4 + cc], 0x44), e1 = _mm512_shuffle_f32x4(b[cc], b[4 + cc], 0xEE);
        const __m512 e2 = _mm512_shuffle_f32x4(b[8 + cc], b[12 + cc], 0x44), e3 = _mm512_shuffle_f32x4(b[8 + cc], b[12 + cc], 0xEE);
        c[cc] = _mm512_shuffle_f32x4(e0, e2, 0x88);
        c[4 + cc] = _mm512_shuffle_f32x4(e0, e2, 0xDD);
        c[8 + cc] = _mm512_shuffle_f32x4(e1, e3, 0x88);
        c[12 + cc] = _mm512_shuffle_f32x4(e1, e3, 0xDD);
    }
}

#include "att_x86.h"

/* dot_f32_f16_rows (rows.h) for up to 16 rows at once, one row per lane: the rows transposed
 * once for every token and head, then lane r runs IL(dot_f32_f16)'s steps for row r -- its
 * two accumulators (16 lanes each: acc0 of the even 8-element chunks, acc1 of the odd), the
 * same fused multiply-adds in the same order, and IL(hsum)'s tree over the 8 positions */
#define IGNIS_DOT_ROWS_OWN
static inline void IL(dot_f32_f16_rows)(const float *q, int64_t nt, int64_t qts, int64_t G, int64_t hd,
                                        const uint16_t *rows, int64_t rstride, int64_t R, float *out,
                                        int64_t ots, int64_t ostride) {
    if (hd % 16 != 0 || hd > 256 || R < 4) {
        for (int64_t r = 0; r < R; r++) IL(dot_f32_f16_heads)(q, nt, qts, G, hd, rows + r * rstride, out + r, ots, ostride);
        return;
    }
    if (nt * G <= 8) {      /* a decode step's few queries: no transposition to amortise */
        IL(dot_rows_direct)(q, nt, qts, G, hd, rows, rstride, R, out, ots, ostride);
        return;
    }
    for (int64_t r0 = 0; r0 < R; r0 += 16) {
        const int64_t n = R - r0 < 16 ? R - r0 : 16;
        __m512 kt[256];
        for (int64_t e0 = 0; e0 < hd; e0 += 16) {
            __m512 rr[16];
            for (int64_t r = 0; r < 16; r++)
                rr[r] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(rows + (r0 + (r < n ? r : n - 1)) * rstride + e0)));
            IL(transpose16)(rr, kt + e0);
        }
        const __mmask16 keep = (__mmask16)((1u << n) - 1);
        for (int64_t t = 0; t < nt; t++)
            for (int64_t h = 0; h < G; h++) {
                const float *a = q + t * qts + h * hd;
                __m512 acc[16];
                for (int p = 0; p < 16; p++) acc[p] = _mm512_setzero_ps();
                for (int64_t c = 0; c < hd / 8; c++)
                    for (int j = 0; j < 8; j++)
                        acc[(c & 1) * 8 + j] = _mm512_fmadd_ps(_mm512_set1_ps(a[8 * c + j]), kt[8 * c + j], acc[(c & 1) * 8 + j]);
                __m512 v[8];
                for (int j = 0; j < 8; j++) v[j] = _mm512_add_ps(acc[j], acc[8 + j]);
                const __m512 s0 = _mm512_add_ps(v[0], v[4]), s1 = _mm512_add_ps(v[1], v[5]);
                const __m512 s2 = _mm512_add_ps(v[2], v[6]), s3 = _mm512_add_ps(v[3], v[7]);
                const __m512 s = _mm512_add_ps(_mm512_add_ps(s0, s2), _mm512_add_ps(s1, s3));
                _mm512_mask_storeu_ps(out + t * ots + h * ostride + r0, keep, s);
            }
    }
}

#define IGNIS_AV_HEADS_OWN
static inline void IL(av_heads_acc)(const float *w, int64_t wstride, const uint16_t *v, int64_t vstride,
                                    int64_t n, float *o, int64_t hd, int64_t G) {
    int64_t h = 0;
    if (hd == 64) {
        for (; h + 6 <= G; h += 6) IL(av_heads_z)(w + h * wstride, wstride, v, vstride, n, o + h * hd, 4, 6);
        for (; h + 3 <= G; h += 3) IL(av_heads_z)(w + h * wstride, wstride, v, vstride, n, o + h * hd, 4, 3);
        for (; h + 2 <= G; h += 2) IL(av_heads_z)(w + h * wstride, wstride, v, vstride, n, o + h * hd, 4, 2);
        for (; h < G; h++) IL(av_heads_z)(w + h * wstride, wstride, v, vstride, n, o + h * hd, 4, 1);
    } else if (hd == 128) {
        for (; h + 3 <= G; h += 3) IL(av_heads_z)(w + h * wstride, wstride, v, vstride, n, o + h * hd, 8, 3);
        for (; h < G; h++) IL(av_heads_z)(w + h * wstride, wstride, v, vstride, n, o + h * hd, 8, 1);
    } else if (hd == 256) {     /* per head, its two halves of 128 elements (sums of their own) */
        for (; h < G; h++)
            for (int half = 0; half < 2; half++)
                IL(av_heads_z)(w + h * wstride, wstride, v + 128 * half, vstride, n, o + h * hd + 128 * half, 8, 1);
    }
    for (; h < G; h++) IL(av_head_acc)(w + h * wstride, v, vstride, n, o + h * hd, hd);
}
#endif

IGNIS_INLINE __m256 IL(expf)(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(IGNIS_EXP_HI));
    x = _mm256_max_ps(x, _mm256_set1_ps(IGNIS_EXP_LO));
    __m256 n = _mm256_floor_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(IGNIS_LOG2E)), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(IGNIS_LN2_HI)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(IGNIS_LN2_LO)));
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(IGNIS_EXP_P0);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(IGNIS_EXP_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(IGNIS_EXP_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(IGNIS_EXP_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(IGNIS_EXP_P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(IGNIS_EXP_P5));
    __m256 y = _mm256_add_ps(_mm256_mul_ps(p, r2), r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

static inline void IL(silu_row)(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = IL(expf)(_mm256_xor_ps(v, neg));
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) y[i] = x[i] / (1.0f + ignis_scalar_expf(-x[i]));
}

static inline float IL(exp_sub_sum)(float *x, float m, int64_t n) {
    __m256 acc = _mm256_setzero_ps(), vm = _mm256_set1_ps(m);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = IL(expf)(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float s = IL(hsum)(acc);
    for (; i < n; i++) {
        x[i] = ignis_scalar_expf(x[i] - m);
        s += x[i];
    }
    return s;
}


/* Q8_0 weights x Q16 activations, 8 rows x RN tokens: weights widened to int16 by the load,
 * two vpmaddwd per pair give the A (lanes 0..3) and B (lanes 4..7) half sums directly. */
IGNIS_INLINE void IL(q16_8xn)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                                     float *out, const int RN) {
    __m256 acc[4][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * IGNIS_Q8_0_BYTES, xo = (size_t)b * IGNIS_Q16_BYTES;
        __m256i xa[4], xb[4];
        __m256 dx[4];
        for (int j = 0; j < RN; j++) {
            float d;
            memcpy(&d, x[j] + xo, 4);
            dx[j] = _mm256_set1_ps(d);
            xa[j] = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 4));
            xb[j] = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 36));
        }
        for (int g = 0; g < 2; g++) {
            const uint8_t *const *wg = w + 4 * g;
            __m256i wa[4], wb[4];
            for (int k = 0; k < 4; k++) {
                wa[k] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wg[k] + wo + 2)));
                wb[k] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wg[k] + wo + 18)));
            }
            __m256 dw = IL(f16x4_twice)(wg[0] + wo, wg[1] + wo, wg[2] + wo, wg[3] + wo);
            for (int j = 0; j < RN; j++) {
                __m256i p[4];
                for (int k = 0; k < 4; k++)
                    p[k] = _mm256_add_epi32(_mm256_madd_epi16(wa[k], xa[j]), _mm256_madd_epi16(wb[k], xb[j]));
                __m256i h = IL(reduce4)(p[0], p[1], p[2], p[3]);
                acc[j][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw, dx[j]), acc[j][g]);
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < 2; g++) IL(store4)(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}
static void IL(q16_8x1)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q16_8xn)(n, w, x, o, 1); }
static void IL(q16_8x2)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q16_8xn)(n, w, x, o, 2); }
static void IL(q16_8x3)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q16_8xn)(n, w, x, o, 3); }
static void IL(q16_8x4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q16_8xn)(n, w, x, o, 4); }

static inline void IL(tile_q16)(int64_t nb, const uint8_t *const *w, int rm,
                                       const uint8_t *const *x, int rn, float *out) {
    static const ignis_kernel_fn ks[4] = {IL(q16_8x1), IL(q16_8x2), IL(q16_8x3), IL(q16_8x4)};
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
    for (int j0 = 0; j0 < rn; j0 += 4) {
        int n = rn - j0 < 4 ? rn - j0 : 4;
        ks[n - 1](nb, wp, xp + j0, tmp + j0 * IGNIS_TILE);
    }
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}

#undef IGNIS_X86_KERNELS

#include "rows.h"
#undef IGNIS_AV_HEADS_OWN
#undef IGNIS_DOT_ROWS_OWN
