/* q4k_rows_x86.h -- Q4_K decode (8 weight rows x 1 token) with the rows in lanes, for the avx2 /
 * avxvnni levels (included by x86.h once per level; avx512 decodes on simd/avx512_decode.h).
 * Same arithmetic as ignis_scalar_vec_dot_q4_k: these give its bits.
 *
 * IL(q4_k_8xn) reduces each row's vpmaddubsw lanes to half sums, 9 operations a block for four
 * rows, and broadcasts every row's scale. Here the 8 rows' 32 quant bytes of a block pair are
 * transposed once as dwords (IL(p2_transpose8) of simd/prep_x86.h, the prefill rows'
 * transposition), so that register k holds bytes 4k..4k+3 of row i in lane i. Then per half,
 * four vpmaddubsw against the token's dwords k (broadcast), added as int16 (at most
 * 4 * 2 * 15 * 127 = 15240), and one vpmaddwd with the rows' scales as int16 pairs give
 * sc * (the half's exact sum) in lane i, with nothing to reduce. The scales and mins of a
 * super-block are transposed as bytes. Then the definition's steps per half:
 * fma((float)(sc * sum), d * d_x, chain), fma(-(float)(m * sum x), dmin * d_x, chain).
 * Measured (Zen 4, avx2): one thread, Q4_K rows in cache (bench/decode_kernels.c), 13.7 -> 16.0
 * GB/s against IL(q4_k_8xn); the 1.5B's Q4_K_M file, two threads, 1.07x tok/s (won 4 rounds of 4). */

/* The 8 rows' scales and mins as bytes (ignis_q4_k_scales8's sc8, m8), computed for two rows a
 * register from each row's 12 bytes a = u32[0], b = u32[1], c = u32[2]:
 * sc8 = a & 0x3f.. | (c & 0x0f.. | (a >> 2) & 0x30..) << 32, m8 = b & 0x3f.. | ((c >> 4) & 0x0f.. |
 * (b >> 2) & 0x30..) << 32. q[k] = [sc8 of row k, m8 of row k | sc8, m8 of row k + 4]. */
IGNIS_INLINE void IL(rows8_scales)(const uint8_t *const *w, size_t off, __m256i *q) {
    const __m256i sh_ab = _mm256_setr_epi32(0, 2, 0, 2, 0, 2, 0, 2), sh_c = _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4);
    const __m256i m_ab = _mm256_setr_epi32(0x3f3f3f3f, 0x30303030, 0x3f3f3f3f, 0x30303030, 0x3f3f3f3f, 0x30303030, 0x3f3f3f3f, 0x30303030);
    const __m256i m_c = _mm256_setr_epi32(0, 0x0f0f0f0f, 0, 0x0f0f0f0f, 0, 0x0f0f0f0f, 0, 0x0f0f0f0f);
    for (int k = 0; k < 4; k++) {      /* 16 bytes from off: the 12 scale bytes, then quants */
        const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(w[k] + off))),
                                                  _mm_loadu_si128((const __m128i *)(w[k + 4] + off)), 1);
        const __m256i ab = _mm256_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));    /* a a b b */
        const __m256i cc = _mm256_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));    /* a c b c */
        q[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srlv_epi32(ab, sh_ab), m_ab), _mm256_and_si256(_mm256_srlv_epi32(cc, sh_c), m_c));
    }
}

/* 8 rows' 8 bytes (qword e of IL(rows8_scales)'s q: 0 the scales, 1 the mins; byte j) -> z[j / 2]:
 * qword (j % 2) holds byte j of rows 0..7 */
IGNIS_INLINE void IL(rows8_bytes)(const __m256i *q, int e, __m128i *z) {
    __m128i r[8], x[4], y[4];
    for (int k = 0; k < 4; k++) {
        const __m128i lo = _mm256_castsi256_si128(q[k]), hi = _mm256_extracti128_si256(q[k], 1);
        r[k] = e ? _mm_unpackhi_epi64(lo, lo) : lo;
        r[k + 4] = e ? _mm_unpackhi_epi64(hi, hi) : hi;
    }
    for (int i = 0; i < 4; i++) x[i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
    y[0] = _mm_unpacklo_epi16(x[0], x[1]);     /* bytes 0..3 of rows 0..3 */
    y[1] = _mm_unpackhi_epi16(x[0], x[1]);     /* bytes 4..7 of rows 0..3 */
    y[2] = _mm_unpacklo_epi16(x[2], x[3]);
    y[3] = _mm_unpackhi_epi16(x[2], x[3]);
    z[0] = _mm_unpacklo_epi32(y[0], y[2]);
    z[1] = _mm_unpackhi_epi32(y[0], y[2]);
    z[2] = _mm_unpacklo_epi32(y[1], y[3]);
    z[3] = _mm_unpackhi_epi32(y[1], y[3]);
}

static void IL(q4_k_t8x1)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x, float *out) {
    const __m256i low = _mm256_set1_epi8(0x0f), k80 = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();
    const __m256i k2048 = _mm256_set1_epi32(16 * 128);
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * IGNIS_Q4_K_BYTES;
        IL(prefetch_rows)(w, 8, wo + IGNIS_ZD_AHEAD, IGNIS_Q4_K_BYTES);
        uint16_t dh[8], mh[8];
        for (int i = 0; i < 8; i++) {
            dh[i] = ignis_load_u16(w[i] + wo);
            mh[i] = ignis_load_u16(w[i] + wo + 2);
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dh));
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)mh));
        __m256i q8[4];
        __m128i zs[4], zm[4];
        IL(rows8_scales)(w, wo + 4, q8);
        IL(rows8_bytes)(q8, 0, zs);
        IL(rows8_bytes)(q8, 1, zm);
        /* per sub-block: the scales as int16 pairs (sc, sc) and the mins as floats, lane i = row i */
        _Alignas(32) int32_t scp[8][8];
        _Alignas(32) float mf[8][8];
        for (int j = 0; j < 8; j++) {
            const __m128i bs = j & 1 ? _mm_unpackhi_epi64(zs[j / 2], zs[j / 2]) : zs[j / 2];
            const __m128i bm = j & 1 ? _mm_unpackhi_epi64(zm[j / 2], zm[j / 2]) : zm[j / 2];
            const __m256i s32 = _mm256_cvtepu8_epi32(bs);
            _mm256_store_si256((__m256i *)scp[j], _mm256_or_si256(s32, _mm256_slli_epi32(s32, 16)));
            _mm256_store_ps(mf[j], _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bm)));
        }
        for (int p = 0; p < 4; p++) {
            __m256i r[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_si256((const __m256i *)(w[i] + wo + 16 + p * 32));
            IL(p2_transpose8)(r);      /* simd/prep_x86.h, included before this file */
            for (int h = 0; h < 2; h++) {      /* sub-block 2p: the low nibbles, 2p + 1: the high */
                const int sb = 2 * p + h;
                const uint8_t *xb = x[0] + (size_t)(s * 8 + sb) * IGNIS_Q8_0_BYTES;
                const __m256 dx = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(xb)));
                /* the token's half sums of x as floats, [lo x8] and [hi x8]: vpsadbw sums x + 128 by 8
                   bytes, 16 * 128 is taken back */
                const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(xb + 2)), k80), zero);
                const __m256i t = _mm256_sub_epi32(_mm256_add_epi32(sad, _mm256_shuffle_epi32(sad, _MM_SHUFFLE(1, 0, 3, 2))), k2048);
                const __m256 cf = _mm256_cvtepi32_ps(_mm256_shuffle_epi32(t, 0));
                const __m256 clo = _mm256_permute2f128_ps(cf, cf, 0x00), chi = _mm256_permute2f128_ps(cf, cf, 0x11);
                __m256i a[2];
                for (int half = 0; half < 2; half++) {
                    __m256i acc = _mm256_setzero_si256();
                    for (int k = 4 * half; k < 4 * half + 4; k++) {
                        const __m256i q = h ? _mm256_and_si256(_mm256_srli_epi16(r[k], 4), low) : _mm256_and_si256(r[k], low);
                        acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(q, _mm256_set1_epi32((int)ignis_load_u32(xb + 2 + 4 * k))));
                    }
                    a[half] = _mm256_madd_epi16(acc, _mm256_load_si256((const __m256i *)scp[sb]));
                }
                const __m256 sd = _mm256_mul_ps(d, dx), sm = _mm256_mul_ps(dmin, dx), m = _mm256_load_ps(mf[sb]);
                lo = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[0]), sd, lo);
                lo = _mm256_fnmadd_ps(_mm256_mul_ps(m, clo), sm, lo);
                hi = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[1]), sd, hi);
                hi = _mm256_fnmadd_ps(_mm256_mul_ps(m, chi), sm, hi);
            }
        }
    }
    _mm256_storeu_ps(out, _mm256_add_ps(lo, hi));
}
