/* avx512.h -- the 512-bit prefill tiles of the AVX-512 level (included by x86.h inside the
 * AVX-512 target region only). Same arithmetic as the definition in _neon.h. */

/* Q8_0 (WT 8) or Q5_0 (WT 6, as signed quants q - 16), 8 weight rows x RN tokens. Lanes 0..7 of a register hold the low halves (elements
 * 0..15) of rows 0..7, lanes 8..15 their high halves. Per block the rows' quants are
 * transposed once, so that register k holds dword k (lanes 0..7) and dword k+4 (lanes 8..15)
 * of every row; a token's dwords are spread to match, and four vpdpbusd form all 16 exact
 * half sums. vpdpbusd multiplies unsigned by signed bytes: the token is offset to x + 128
 * (x ^ 0x80) and the sum starts from -128 * sum(w) of the half, so it ends at sum(w * x). */
/* one block's 32 signed weight quants */
IGNIS_INLINE __m256i IL(z8_quants)(const uint8_t *blk, const int WT) {
    if (WT == 8) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    return _mm256_sub_epi8(IL(q5_0_quants)(blk), _mm256_set1_epi8(16));
}

IGNIS_INLINE void IL(q8_z8)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                            float *out, const int RN, const int WT) {
    const size_t wbytes = WT == 8 ? IGNIS_Q8_0_BYTES : IGNIS_Q5_0_BYTES;
    /* stage 1: rows 0..3 (or 4..7) -> dwords {0,4,1,5} and {2,6,3,7} of the four rows */
    const __m512i s1a = _mm512_setr_epi32(0, 8, 16, 24, 4, 12, 20, 28, 1, 9, 17, 25, 5, 13, 21, 29);
    const __m512i s1b = _mm512_setr_epi32(2, 10, 18, 26, 6, 14, 22, 30, 3, 11, 19, 27, 7, 15, 23, 31);
    /* stage 2: join the two row groups */
    const __m512i s2a = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i s2b = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    const __m256i k80y = _mm256_set1_epi8((char)0x80);
    __m512i spread[4];
    for (int k = 0; k < 4; k++) {
        __m256i lo = _mm256_set1_epi32(k), hi = _mm256_set1_epi32(k + 4);
        spread[k] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    __m512 acc[8];
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * wbytes, xo = (size_t)b * IGNIS_Q8_0_BYTES;
#define IGNIS_ROWS2(r) _mm512_inserti64x4(_mm512_castsi256_si512(IL(z8_quants)(w[r] + off, WT)), IL(z8_quants)(w[r + 1] + off, WT), 1)
        const __m512i r01 = IGNIS_ROWS2(0), r23 = IGNIS_ROWS2(2), r45 = IGNIS_ROWS2(4), r67 = IGNIS_ROWS2(6);
#undef IGNIS_ROWS2
        const __m512i p0 = _mm512_permutex2var_epi32(r01, s1a, r23), p1 = _mm512_permutex2var_epi32(r01, s1b, r23);
        const __m512i q0 = _mm512_permutex2var_epi32(r45, s1a, r67), q1 = _mm512_permutex2var_epi32(r45, s1b, r67);
        __m512i wt[4];
        wt[0] = _mm512_permutex2var_epi32(p0, s2a, q0);
        wt[1] = _mm512_permutex2var_epi32(p0, s2b, q0);
        wt[2] = _mm512_permutex2var_epi32(p1, s2a, q1);
        wt[3] = _mm512_permutex2var_epi32(p1, s2b, q1);
        __m512i corr = _mm512_setzero_si512();
        for (int k = 0; k < 4; k++) corr = _mm512_dpbusd_epi32(corr, k80, wt[k]);
        const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(), corr);
        __m128i h = _mm_cvtsi32_si128(ignis_load_u16(w[0] + off));
        h = _mm_insert_epi16(h, ignis_load_u16(w[1] + off), 1);
        h = _mm_insert_epi16(h, ignis_load_u16(w[2] + off), 2);
        h = _mm_insert_epi16(h, ignis_load_u16(w[3] + off), 3);
        h = _mm_insert_epi16(h, ignis_load_u16(w[4] + off), 4);
        h = _mm_insert_epi16(h, ignis_load_u16(w[5] + off), 5);
        h = _mm_insert_epi16(h, ignis_load_u16(w[6] + off), 6);
        h = _mm_insert_epi16(h, ignis_load_u16(w[7] + off), 7);
        const __m256 dw8 = _mm256_cvtph_ps(h);
        const __m512 dw = _mm512_insertf32x8(_mm512_castps256_ps512(dw8), dw8, 1);
        for (int j = 0; j < RN; j++) {
            const __m256i xu = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x[j] + xo + 2)), k80y);
            const __m512i xz = _mm512_castsi256_si512(xu);
            __m512i s = start;
            for (int k = 0; k < 4; k++) s = _mm512_dpbusd_epi32(s, _mm512_permutexvar_epi32(spread[k], xz), wt[k]);
            const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo))));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, acc[j]);
        }
    }
    for (int j = 0; j < RN; j++) {
        const __m256 lo = _mm512_castps512_ps256(acc[j]), hi = _mm512_extractf32x8_ps(acc[j], 1);
        _mm256_storeu_ps(out + j * IGNIS_TILE, _mm256_add_ps(lo, hi));
    }
}
static void IL(q8_0_z8x4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_z8)(n, w, x, o, 4, 8); }
static void IL(q8_0_z8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_z8)(n, w, x, o, 8, 8); }
static void IL(q5_0_z8x4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_z8)(n, w, x, o, 4, 6); }
static void IL(q5_0_z8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_z8)(n, w, x, o, 8, 6); }
