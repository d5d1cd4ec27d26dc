/* att_x86.h -- the attention scores of a few queries at the AVX-512 level (included by x86.h
 * inside its AVX-512 region, before dot_f32_f16_rows, which calls IL(dot_rows_direct) when the
 * tokens times heads of a call are few: a decode step). */

/* IL(dot_f32_f16)'s two 8-lane accumulators of 16 rows (row r's acc0 in lanes 0-7 of acc[r], its
 * acc1 in lanes 8-15) -> lane r: row r's score, by IL(hsum)'s tree on acc0 + acc1 (v_i + v_i+4,
 * then s_0 + s_2 and s_1 + s_3, then their sum), done for 16 rows with one add per step and row
 * group: pairs of rows, then fours, eights and all 16 (the lanes end permuted, then restored) */
IGNIS_INLINE __m512 IL(hsum16_rows)(const __m512 *acc) {
    __m512 v[8], w[4], x[2];
    for (int k = 0; k < 8; k++)     /* rows 2k, 2k + 1: acc0 + acc1 */
        v[k] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * k], acc[2 * k + 1], 0x44),
                             _mm512_shuffle_f32x4(acc[2 * k], acc[2 * k + 1], 0xEE));
    for (int k = 0; k < 4; k++)     /* rows 4k .. 4k + 3, a 128-bit lane each: v_i + v_i+4 */
        w[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x88),
                             _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xDD));
    for (int k = 0; k < 2; k++) {   /* lane L: rows 8k + L, 8k + 4 + L: s_0 + s_2, s_1 + s_3 */
        const __m512d a = _mm512_castps_pd(w[2 * k]), b = _mm512_castps_pd(w[2 * k + 1]);
        x[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    /* lane 4L + j: row L + 4j */
    const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(x[0], x[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(x[0], x[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
}

/* dot_f32_f16_rows for a few queries (nt * G small): each row's dot in one 512-bit register,
 * 16 consecutive elements a step (lanes 0-7: IL(dot_f32_f16)'s acc0, 8-15: its acc1, the same
 * fused multiply-adds in the same order), 16 rows' sums reduced together (IL(hsum16_rows)); the
 * rows converted once into a buffer for every query */
static inline void IL(dot_rows_direct)(const float *q, int64_t nt, int64_t qts, int64_t G, int64_t hd,
                                       const uint16_t *rows, int64_t rstride, int64_t R, float *out,
                                       int64_t ots, int64_t ostride) {
    const int64_t c16 = hd / 16;
    for (int64_t r0 = 0; r0 < R; r0 += 16) {
        const int64_t n = R - r0 < 16 ? R - r0 : 16;
        __m512 kf[256];     /* row r's chunk c at kf[r * c16 + c] */
        for (int64_t r = 0; r < 16; r++)
            for (int64_t c = 0; c < c16; c++)
                kf[r * c16 + c] = _mm512_cvtph_ps(_mm256_loadu_si256(
                    (const __m256i *)(rows + (r0 + (r < n ? r : n - 1)) * rstride + 16 * c)));
        const __mmask16 keep = (__mmask16)((1u << n) - 1);
        for (int64_t t = 0; t < nt; t++)
            for (int64_t h = 0; h < G; h++) {
                const float *a = q + t * qts + h * hd;
                __m512 acc[16];
                for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
                for (int64_t c = 0; c < c16; c++) {
                    const __m512 qa = _mm512_loadu_ps(a + 16 * c);
                    for (int r = 0; r < 16; r++) acc[r] = _mm512_fmadd_ps(qa, kf[r * c16 + c], acc[r]);
                }
                _mm512_mask_storeu_ps(out + t * ots + h * ostride + r0, keep, IL(hsum16_rows)(acc));
            }
    }
}
