/* kx_pairs.h -- the 8-row x 8-token prefill tiles of Q5_K, Q3_K, Q2_K and IQ4_XS weights
 * (WT 13, 11, 10, 23) for the AVX-512 level (included by kquants_x86.h inside its AVX-512
 * region). Same arithmetic as the definitions of simd/kquants.h (Q3_K, Q2_K: the half rule of
 * ignis_scalar_vec_dot_kx; Q5_K, IQ4_XS: the block rule, run by kq_pairs.h's IL(br_block_tab)).
 *
 * The lane layout is kq_pairs.h's (lane 2i + e: weight row i, token 2p + e of pair p; one
 * register per pair for the lo chain, one for the hi chain) and it uses that file's token
 * table (IL(kp_tokens)), scale-byte spreading (IL(kp_row_bytes)) and f16 loads. The quants
 * meet the token unsigned through vpdpbusd: Q5_K 0..31 and Q2_K 0..3 as they are, Q3_K as
 * q + 4 (0..7) and IQ4_XS as its grid value + 128; those two take the offset back exactly in
 * integers (- u * sum x of the half). The half sums times the integer scales are exact float
 * products (below 2^24, as in IL(kx_zn)); the min steps multiply the half sums of x (exact
 * floats) by the mins. Then the definition's fused multiply-adds, in its order. */

/* one row's scale (and min) bytes of one super-block as qwords, byte jb for activation block
 * jb: *sl / *sh the scales of its lo / hi half, *ml / *mh the mins (types with mins only) */
IGNIS_INLINE void IL(xp_row_scales)(const uint8_t *sb, const int WT, uint64_t *sl, uint64_t *sh,
                                    uint64_t *ml, uint64_t *mh) {
    const __m128i even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    if (WT == 13) {                      /* Q5_K: Q4_K's packing, one scale per block */
        IL(kp_q4_k_scales)(sb + 4, sl, ml);
        *sh = *sl;
        *mh = *ml;
    } else if (WT == 10) {               /* Q2_K: byte 2jb + h = sc | m << 4 */
        const __m128i v = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)sb), even_odd);
        const __m128i sc = _mm_and_si128(v, _mm_set1_epi8(0x0f));
        const __m128i m = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f));
        *sl = (uint64_t)_mm_cvtsi128_si64(sc);
        *sh = (uint64_t)_mm_extract_epi64(sc, 1);
        *ml = (uint64_t)_mm_cvtsi128_si64(m);
        *mh = (uint64_t)_mm_extract_epi64(m, 1);
    } else if (WT == 11) {               /* Q3_K: 16 signed scales, byte 2jb + h */
        __m128i sc, unused;
        IL(kx_scale_bytes)(sb, WT, &sc, &unused);
        sc = _mm_shuffle_epi8(sc, even_odd);
        *sl = (uint64_t)_mm_cvtsi128_si64(sc);
        *sh = (uint64_t)_mm_extract_epi64(sc, 1);
    } else {                             /* IQ4_XS: 8 signed scales, one per block */
        *sl = *sh = (uint64_t)_mm_cvtsi128_si64(IL(iq4_xs_scales8)(sb));
    }
}

/* one super-block's fields of the 8 rows: the scale (and min) bytes as qwords per row (v[0..3]:
 * lo scales, hi scales, lo mins, hi mins), d and dmin in lanes 2i, 2i + 1 */
IGNIS_INLINE void IL(xp_sb_fields)(const uint8_t *const *w, size_t wo, __m512i v[4], __m512 *d, __m512 *dmin,
                                   const int WT) {
    const int has_min = WT == 13 || WT == 10;
    uint64_t b[4][8];
    for (int i = 0; i < 8; i++) IL(xp_row_scales)(w[i] + wo, WT, &b[0][i], &b[1][i], &b[2][i], &b[3][i]);
    for (int k = 0; k < 4; k++) v[k] = _mm512_loadu_si512(b[has_min || k < 2 ? k : 0]);
    *d = IL(kp_f16x8)(w, wo + ignis_kx_d_off(WT));
    *dmin = has_min ? IL(kp_f16x8)(w, wo + ignis_kx_dmin_off(WT)) : *d;
}

/* activation block jb of the 8 rows: the quants transposed and doubled into the pair lanes
 * (w2[0..3] the lo chain's, w2[4..7] the hi chain's, offset to unsigned) and sc[0..3] the lo
 * scales, hi scales, lo mins, hi mins as floats (ctl: IL(kp_row_ctl)() plus jb) */
IGNIS_INLINE void IL(xp_unpack)(const uint8_t *const *w, size_t wo, int jb, const __m512i v[4], __m512i ctl,
                                __m512i w2[8], __m512 sc[4], const int WT) {
    const int has_min = WT == 13 || WT == 10, split = WT == 11 || WT == 10;   /* split: lo/hi scales differ */
    const __m256i uv = _mm256_set1_epi8(WT == 23 ? (char)0x80 : 0);   /* Q3_K comes as q + 4 already */
    const __m512i dup_lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i dup_hi = _mm512_add_epi32(dup_lo, _mm512_set1_epi32(8));
    __m256i r[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_add_epi8(IL(kx_quants)(w[i] + wo, jb, WT), uv);
    __m512i wt[4];
    IL(z8_transpose)(r, wt);
    for (int k = 0; k < 4; k++) {
        w2[k] = _mm512_permutexvar_epi32(dup_lo, wt[k]);
        w2[k + 4] = _mm512_permutexvar_epi32(dup_hi, wt[k]);
    }
    sc[0] = IL(kp_row_bytes)(v[0], ctl);
    sc[1] = split ? IL(kp_row_bytes)(v[1], ctl) : sc[0];
    sc[2] = has_min ? IL(kp_row_bytes)(v[2], ctl) : sc[0];
    sc[3] = has_min ? (split ? IL(kp_row_bytes)(v[3], ctl) : sc[2]) : sc[0];
}

/* Q5_K / Q3_K / Q2_K / IQ4_XS, 8 weight rows x 8 tokens (pad pointers for fewer): Q5_K and IQ4_XS
 * by the block rule (kq_pairs.h's IL(br_block)), Q3_K and Q2_K by the half rule */
IGNIS_INLINE void IL(xp_8x8)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x, float *out, const int WT) {
    const int block_rule = IGNIS_IS_BLOCK_RULE(WT);
    IL(br_state) st;
    IL(br_zero)(&st);
    __m512 lo[4], hi[4];
    for (int p = 0; p < 4; p++) lo[p] = hi[p] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * ignis_kx_bytes(WT);
        __m512i v[4];
        __m512 d, dmin;
        IL(xp_sb_fields)(w, wo, v, &d, &dmin, WT);
        __m512i ctl = IL(kp_row_ctl)();
        /* two blocks a step: each block's chain of the block rule (even, odd) known when compiled */
        for (int jb = 0; jb < 8; jb += 2)
#pragma GCC unroll 2
            for (int par = 0; par < 2; par++, ctl = _mm512_add_epi8(ctl, _mm512_set1_epi8(1))) {
                const size_t xo = (size_t)(s * 8 + jb + par) * IGNIS_Q8_0_BYTES;
                __m512i w2[8];
                __m512 sc[4];
                IL(xp_unpack)(w, wo, jb + par, v, ctl, w2, sc, WT);
                if (block_rule) {
                    IL(br_block)(w2, sc[0], sc[2], x, xo, par, &st, WT);
                    continue;
                }
                uint64_t xi[4][8];
                uint64_t cs[4][2];
                float dx[8];
                IL(kp_tokens)(x, xo, xi, cs, dx, NULL, WT == 10);
                /* the table read back from memory: broadcast loads, no shuffles (see kq_pairs.h) */
                __asm__ volatile("" : : "r"(xi), "r"(cs), "r"(dx) : "memory");
                IL(kp_block_tab)(w2, sc, d, dmin, (const uint64_t (*)[8])xi, (const uint64_t (*)[2])cs, dx, NULL, lo, hi, WT);
            }
        if (block_rule) IL(br_sb_end)(&st, d, dmin, WT, 0, 4);
    }
    if (block_rule) IL(kp_store)(st.acc[0], st.acc[1], out);
    else IL(kp_store)(lo, hi, out);
}
static void IL(q5_k_p8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(xp_8x8)(n, w, x, o, 13); }
static void IL(q3_k_p8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(xp_8x8)(n, w, x, o, 11); }
static void IL(q2_k_p8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(xp_8x8)(n, w, x, o, 10); }
static void IL(iq4_xs_p8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(xp_8x8)(n, w, x, o, 23); }
