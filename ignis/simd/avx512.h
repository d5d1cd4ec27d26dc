/* avx512.h -- the 512-bit kernels of the AVX-512 level (included by x86.h inside the AVX-512
 * target region only): prefill tiles of 8 rows x 4/8 tokens on transposed weights ("z8"),
 * decode kernels with two rows per register ("zn"). Same arithmetic as the definition in
 * _neon.h.
 *
 * z8 lanes: lanes 0..7 of a register hold the low halves (elements 0..15) of rows 0..7, lanes
 * 8..15 their high halves. Per block the rows' quants are transposed once, so that register k
 * holds dword k (lanes 0..7) and dword k+4 (lanes 8..15) of every row; a token's dwords are
 * spread to match, and four vpdpbusd form all 16 exact half sums. vpdpbusd multiplies
 * unsigned by signed bytes: unsigned quants meet the token as it is; signed ones meet the
 * token offset to x + 128 (x ^ 0x80), the sum starting from -128 * sum(w) of the half. */

/* Exact integer sums to floats without a conversion (the half and block rules' tiles): sums
 * started from IGNIS_MAGIC_BITS, the bits of the float 1.5 * 2^23, end for |S| < 2^22 as the
 * float 12582912 + S exactly; then fma(that, sc, IL(magic_neg)(sc)) = fma(that, sc, -12582912 *
 * sc) (exact for an integer |sc| < 2^22 / 3) rounds S * sc once, as (float)S * sc would. */
#define IGNIS_MAGIC_BITS 0x4B400000
IGNIS_INLINE __m512 IL(magic_neg)(__m512 sc) { return _mm512_mul_ps(sc, _mm512_set1_ps(-12582912.0f)); }


/* The decode entry points name##_zn1..4 of a kernel taking the token count RN (and any
 * further arguments): the tile's table picks one by the number of tokens. */
#ifndef IGNIS_ZN_BY_RN
#  define IGNIS_ZN_BY_RN(name, kernel, ...) \
    static void IL(name##_zn1)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kernel)(n, w, x, o, 1, ##__VA_ARGS__); } \
    static void IL(name##_zn2)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kernel)(n, w, x, o, 2, ##__VA_ARGS__); } \
    static void IL(name##_zn3)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kernel)(n, w, x, o, 3, ##__VA_ARGS__); } \
    static void IL(name##_zn4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kernel)(n, w, x, o, 4, ##__VA_ARGS__); }
#endif

/* 8 rows of one block's 32 quant bytes -> wt[k]: dword k of every row in lanes 0..7, dword
 * k + 4 in lanes 8..15 */
IGNIS_INLINE void IL(z8_transpose)(const __m256i *r, __m512i *wt) {
    const __m512i s1a = _mm512_setr_epi32(0, 8, 16, 24, 4, 12, 20, 28, 1, 9, 17, 25, 5, 13, 21, 29);
    const __m512i s1b = _mm512_setr_epi32(2, 10, 18, 26, 6, 14, 22, 30, 3, 11, 19, 27, 7, 15, 23, 31);
    const __m512i s2a = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i s2b = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    const __m512i r01 = _mm512_inserti64x4(_mm512_castsi256_si512(r[0]), r[1], 1);
    const __m512i r23 = _mm512_inserti64x4(_mm512_castsi256_si512(r[2]), r[3], 1);
    const __m512i r45 = _mm512_inserti64x4(_mm512_castsi256_si512(r[4]), r[5], 1);
    const __m512i r67 = _mm512_inserti64x4(_mm512_castsi256_si512(r[6]), r[7], 1);
    const __m512i p0 = _mm512_permutex2var_epi32(r01, s1a, r23), p1 = _mm512_permutex2var_epi32(r01, s1b, r23);
    const __m512i q0 = _mm512_permutex2var_epi32(r45, s1a, r67), q1 = _mm512_permutex2var_epi32(r45, s1b, r67);
    wt[0] = _mm512_permutex2var_epi32(p0, s2a, q0);
    wt[1] = _mm512_permutex2var_epi32(p0, s2b, q0);
    wt[2] = _mm512_permutex2var_epi32(p1, s2a, q1);
    wt[3] = _mm512_permutex2var_epi32(p1, s2b, q1);
}

/* 8 f16 values at p[i] + off as floats in lanes i and i + 8 */
IGNIS_INLINE __m512 IL(z8_f16x8)(const uint8_t *const *p, size_t off) {
    uint16_t u[8];
    for (int i = 0; i < 8; i++) u[i] = ignis_load_u16(p[i] + off);
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)u));
    return _mm512_insertf32x8(_mm512_castps256_ps512(v), v, 1);
}

/* out[j*8 + i] = lo + hi of row i, token j: the two lane halves of acc[j] */
IGNIS_INLINE void IL(z8_store)(const __m512 *acc, const int RN, float *out) {
    for (int j = 0; j < RN; j++) {
        const __m256 lo = _mm512_castps512_ps256(acc[j]), hi = _mm512_extractf32x8_ps(acc[j], 1);
        _mm256_storeu_ps(out + j * IGNIS_TILE, _mm256_add_ps(lo, hi));
    }
}

/* spread[k] picks a token's dword k for lanes 0..7 and dword k + 4 for lanes 8..15 */
IGNIS_INLINE void IL(z8_spread)(__m512i *spread) {
    for (int k = 0; k < 4; k++)
        spread[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(k)), _mm256_set1_epi32(k + 4), 1);
}

/* signed quants: -128 * sum(w) per lane, where the offset token's sums start */
IGNIS_INLINE __m512i IL(z8_offset_start)(const __m512i *wt) {
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    __m512i corr = _mm512_setzero_si512();
    for (int k = 0; k < 4; k++) corr = _mm512_dpbusd_epi32(corr, k80, wt[k]);
    return _mm512_sub_epi32(_mm512_setzero_si512(), corr);
}

/* signed quants . the Q8_0 block at blk: the 16 exact half sums (start from z8_offset_start) */
IGNIS_INLINE __m512i IL(z8_dot_signed)(__m512i start, const __m512i *wt, const __m512i *spread, const uint8_t *blk) {
    const __m256i xu = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 2)), _mm256_set1_epi8((char)0x80));
    const __m512i xz = _mm512_castsi256_si512(xu);
    __m512i s = start;
    for (int k = 0; k < 4; k++) s = _mm512_dpbusd_epi32(s, _mm512_permutexvar_epi32(spread[k], xz), wt[k]);
    return s;
}

/* unsigned quants . the Q8_0 block at blk (*a), and the block's half sums of x (*c) */
IGNIS_INLINE void IL(z8_dot_unsigned)(const __m512i *wt, const __m512i *spread, const uint8_t *blk,
                                      __m512i *a, __m512i *c) {
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i xz = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + 2)));
    __m512i sa = _mm512_setzero_si512(), sc = _mm512_setzero_si512();
    for (int k = 0; k < 4; k++) {
        const __m512i xk = _mm512_permutexvar_epi32(spread[k], xz);
        sa = _mm512_dpbusd_epi32(sa, wt[k], xk);
        sc = _mm512_dpbusd_epi32(sc, ones, xk);
    }
    *a = sa;
    *c = sc;
}

/* the quants of activation block jb (0..7) of a K-quant super-block, as loaded for one row:
 * Q4_K 0..15; Q6_K q + 32 in 0..63 (both unsigned) */
IGNIS_INLINE __m256i IL(q4_k_block_quants)(const uint8_t *sb, int jb) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(sb + 16 + (jb / 2) * 32));
    return _mm256_and_si256((jb & 1) ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0f));
}
IGNIS_INLINE __m256i IL(q6_k_block_quants)(const uint8_t *sb, int jb) {
    const int half = jb / 4, kk = jb % 4;
    __m256i l = _mm256_loadu_si256((const __m256i *)(sb + half * 64 + (kk & 1) * 32));
    __m256i h = _mm256_loadu_si256((const __m256i *)(sb + 128 + half * 32));
    l = _mm256_and_si256((kk >> 1) ? _mm256_srli_epi16(l, 4) : l, _mm256_set1_epi8(0x0f));
    h = _mm256_and_si256(_mm256_srli_epi16(h, 2 * kk), _mm256_set1_epi8(3));
    return _mm256_or_si256(l, _mm256_slli_epi16(h, 4));
}

/* one block's 32 signed weight quants */
IGNIS_INLINE __m256i IL(z8_quants)(const uint8_t *blk, const int WT) {
    if (WT == 8) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    return _mm256_sub_epi8(IL(q5_0_quants)(blk), _mm256_set1_epi8(16));
}

/* Q8_0 (WT 8) or Q5_0 (WT 6, as signed quants q - 16), 8 weight rows x RN tokens (z8) */
IGNIS_INLINE void IL(q8_z8)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                            float *out, const int RN, const int WT) {
    const size_t wbytes = WT == 8 ? IGNIS_Q8_0_BYTES : IGNIS_Q5_0_BYTES;
    __m512i spread[4];
    IL(z8_spread)(spread);
    __m512 acc[8];
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * wbytes, xo = (size_t)b * IGNIS_Q8_0_BYTES;
        __m256i r[8];
        for (int i = 0; i < 8; i++) r[i] = IL(z8_quants)(w[i] + off, WT);
        __m512i wt[4];
        IL(z8_transpose)(r, wt);
        const __m512i start = IL(z8_offset_start)(wt);
        const __m512 dw = IL(z8_f16x8)(w, off);
        for (int j = 0; j < RN; j++) {
            const __m512i s = IL(z8_dot_signed)(start, wt, spread, x[j] + xo);
            const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo))));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, acc[j]);
        }
    }
    IL(z8_store)(acc, RN, out);
}
static void IL(q8_0_z8x4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_z8)(n, w, x, o, 4, 8); }
static void IL(q8_0_z8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_z8)(n, w, x, o, 8, 8); }
static void IL(q5_0_z8x4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_z8)(n, w, x, o, 4, 6); }
static void IL(q5_0_z8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q8_z8)(n, w, x, o, 8, 6); }

/* The Q4_1 definition's last step for one token, on 16 lanes of exact integer half sums:
 * acc += q.x * (d * d_x), then acc += sum(x) * (m * d_x), in that order (both tile shapes
 * share it, so they round alike). */
IGNIS_INLINE __m512 IL(q4_1_fma2)(__m512 acc, __m512i qx, __m512i xsum, __m512 dw, __m512 mw,
                                   const uint8_t *xblock) {
    const __m512 dx = _mm512_set1_ps(_cvtsh_ss(ignis_load_u16(xblock)));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(qx), _mm512_mul_ps(dw, dx), acc);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(xsum), _mm512_mul_ps(mw, dx), acc);
}

/* Q4_1, 8 weight rows x RN tokens, in the lane layout of the Q8_0 tile: the quants (0..15,
 * unsigned) transposed as above meet the token as it is (no offset), the half sums of x come
 * from the same spread token against ones, then the definition's two fused multiply-adds
 * (d * d_x, then m * d_x). */
IGNIS_INLINE void IL(q4_1_z8)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                              float *out, const int RN) {
    __m512i spread[4];
    IL(z8_spread)(spread);
    __m512 acc[8];
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * IGNIS_Q4_1_BYTES, xo = (size_t)b * IGNIS_Q8_0_BYTES;
        __m256i r[8];
        for (int i = 0; i < 8; i++) r[i] = IL(q4_1_quants)(w[i] + off);
        __m512i wt[4];
        IL(z8_transpose)(r, wt);
        const __m512 dw = IL(z8_f16x8)(w, off), mw = IL(z8_f16x8)(w, off + 2);
        for (int j = 0; j < RN; j++) {
            __m512i a, c;
            IL(z8_dot_unsigned)(wt, spread, x[j] + xo, &a, &c);
            acc[j] = IL(q4_1_fma2)(acc[j], a, c, dw, mw, x[j] + xo);
        }
    }
    IL(z8_store)(acc, RN, out);
}
static void IL(q4_1_z8x4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q4_1_z8)(n, w, x, o, 4); }
static void IL(q4_1_z8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(q4_1_z8)(n, w, x, o, 8); }


/* [sum P0.L, sum P1.L, sum P2.L, sum P3.L] in each 128-bit lane L (exact int sums) */
IGNIS_INLINE __m512i IL(z_reduce4)(__m512i p0, __m512i p1, __m512i p2, __m512i p3) {
    __m512i a = _mm512_add_epi32(_mm512_unpacklo_epi32(p0, p1), _mm512_unpackhi_epi32(p0, p1));
    __m512i b = _mm512_add_epi32(_mm512_unpacklo_epi32(p2, p3), _mm512_unpackhi_epi32(p2, p3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

/* a token's Q8_0 block spread to the decode lane order [0..15 | 0..15 | 16..31 | 16..31] */
IGNIS_INLINE __m512i IL(zn_token)(const uint8_t *blk) {
    const __m512i spread = _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3);
    return _mm512_permutexvar_epi64(spread, _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + 2))));
}

/* the exact half sums of the four row pairs q[p] against the spread token xz, from start:
 * [lo r0..3 | lo r4..7 | hi r0..3 | hi r4..7] */
IGNIS_INLINE __m512i IL(zn_dots)(__m512i start, const __m512i *q, __m512i xz) {
    return IL(z_reduce4)(_mm512_dpbusd_epi32(start, q[0], xz), _mm512_dpbusd_epi32(start, q[1], xz),
                         _mm512_dpbusd_epi32(start, q[2], xz), _mm512_dpbusd_epi32(start, q[3], xz));
}

/* -u times the spread token's partial sums (4 bytes a lane, not yet reduced): the start
 * that turns (q + u) . x into q . x once zn_dots has reduced */
IGNIS_INLINE __m512i IL(zn_neg_partials)(__m512i xz, char u) {
    return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(u), xz));
}

/* the spread token's half sums, times u (a byte), in that lane order */
IGNIS_INLINE __m512i IL(zn_xsums)(__m512i xz, char u) {
    const __m512i c1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(u), xz);
    return IL(z_reduce4)(c1, c1, c1, c1);
}

/* the 16 nibble bytes at a and at b (rows p and p + 4) in the decode lane order */
IGNIS_INLINE __m512i IL(zn_nibbles)(const uint8_t *a, const uint8_t *b) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
                                              _mm_loadu_si128((const __m128i *)b), 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(y, low)),
                              _mm256_and_si256(_mm256_srli_epi16(y, 4), low), 1);
}

/* Q5_0, 8 weight rows x RN <= 4 tokens (decode). Rows p and p + 4 share a register whose
 * 128-bit lanes hold [row p 0..15 | row p+4 0..15 | row p 16..31 | row p+4 16..31] (the
 * nibble split gives this order for free; the fifth bits come from a 64-bit mask). The
 * token is spread to match, vpdpbusd starts from -16 * its partial sums (q - 16 = q . x -
 * 16 sum x), and one reduction of the four row pairs leaves [lo r0..3 | lo r4..7 | hi r0..3
 * | hi r4..7]: the lane layout of the tiles above. */
IGNIS_INLINE void IL(q5_0_zn)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                              float *out, const int RN) {
    const __m512i sixteen = _mm512_set1_epi8(16);      /* the fifth bit */
    __m512 acc[4];
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * IGNIS_Q5_0_BYTES, xo = (size_t)b * IGNIS_Q8_0_BYTES;
        IL(prefetch_block)(w, 8, b, IGNIS_Q5_0_BYTES);
        __m512i q[4];
        for (int p = 0; p < 4; p++) {
            const uint8_t *b0 = w[p] + wo, *b1 = w[p + 4] + wo;
            const __m512i nib = IL(zn_nibbles)(b0 + 6, b1 + 6);
            const uint64_t h0 = ignis_load_u32(b0 + 2), h1 = ignis_load_u32(b1 + 2);
            const __mmask64 bits = (h0 & 0xffff) | ((h1 & 0xffff) << 16) | ((h0 >> 16) << 32) | ((h1 >> 16) << 48);
            q[p] = _mm512_mask_add_epi8(nib, bits, nib, sixteen);
        }
        const __m512 dw = IL(z8_f16x8)(w, wo);
        for (int j = 0; j < RN; j++) {
            const __m512i xz = IL(zn_token)(x[j] + xo);
            const __m512i start = IL(zn_neg_partials)(xz, 16);
            const __m512i h = IL(zn_dots)(start, q, xz);
            const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo))));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(h), sc, acc[j]);
        }
    }
    IL(z8_store)(acc, RN, out);
}
IGNIS_ZN_BY_RN(q5_0, q5_0_zn)

/* Q4_1, 8 weight rows x RN <= 4 tokens (decode), in the lane order of IL(q5_0_zn): the
 * nibbles (0..15, unsigned) meet the token as it is, the token's half sums give the min step,
 * then the definition's two fused multiply-adds. */
IGNIS_INLINE void IL(q4_1_zn)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                              float *out, const int RN) {
    __m512 acc[4];
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * IGNIS_Q4_1_BYTES, xo = (size_t)b * IGNIS_Q8_0_BYTES;
        IL(prefetch_block)(w, 8, b, IGNIS_Q4_1_BYTES);
        __m512i q[4];
        for (int p = 0; p < 4; p++) q[p] = IL(zn_nibbles)(w[p] + wo + 4, w[p + 4] + wo + 4);
        const __m512 dw = IL(z8_f16x8)(w, wo), mw = IL(z8_f16x8)(w, wo + 2);
        for (int j = 0; j < RN; j++) {
            const __m512i xz = IL(zn_token)(x[j] + xo);
            const __m512i h = IL(zn_dots)(_mm512_setzero_si512(), q, xz), c = IL(zn_xsums)(xz, 1);
            acc[j] = IL(q4_1_fma2)(acc[j], h, c, dw, mw, x[j] + xo);
        }
    }
    IL(z8_store)(acc, RN, out);
}
IGNIS_ZN_BY_RN(q4_1, q4_1_zn)

/* rows p and p + 4 of one activation block's 32 quant bytes (each as loaded: [0..15 | 16..31])
 * in the decode lane order [p 0..15 | p+4 0..15 | p 16..31 | p+4 16..31] */
IGNIS_INLINE __m512i IL(zn_pair)(__m256i a, __m256i b) {
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
}

/* 16 int8 values sc_r[0..15] of 8 rows as floats per activation block jb, in the decode
 * lane order: scf[jb] = [sc_r0..3[2jb], sc_r4..7[2jb], sc_r0..3[2jb+1], sc_r4..7[2jb+1]]
 * (an 8 x 16 transposition: unpacks gather four rows per column, lane shuffles pick
 * columns). Q6_K passes its 16 scales; Q4_K each 6-bit scale (or min) twice. */
IGNIS_INLINE void IL(zn_scales)(const __m128i *bytes, __m512 *scf) {
    __m512i v[8];
    for (int r = 0; r < 8; r++) v[r] = _mm512_cvtepi8_epi32(bytes[r]);
    __m512i c[2][4];                /* c[g][m] lane L: rows 4g..4g+3 of column 4L + m */
    for (int g = 0; g < 2; g++) {
        const __m512i *u = v + 4 * g;
        const __m512i a01 = _mm512_unpacklo_epi32(u[0], u[1]), b01 = _mm512_unpackhi_epi32(u[0], u[1]);
        const __m512i a23 = _mm512_unpacklo_epi32(u[2], u[3]), b23 = _mm512_unpackhi_epi32(u[2], u[3]);
        c[g][0] = _mm512_unpacklo_epi64(a01, a23);
        c[g][1] = _mm512_unpackhi_epi64(a01, a23);
        c[g][2] = _mm512_unpacklo_epi64(b01, b23);
        c[g][3] = _mm512_unpackhi_epi64(b01, b23);
    }
#define IGNIS_PICK_LANE(a, b, L) _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(L, L, L, L))
#define IGNIS_SCALES_OF_LANE(L) \
    for (int h = 0; h < 2; h++) { \
        const __m512i lo = IGNIS_PICK_LANE(c[0][2 * h], c[0][2 * h + 1], L); \
        const __m512i hi = IGNIS_PICK_LANE(c[1][2 * h], c[1][2 * h + 1], L); \
        scf[2 * (L) + h] = _mm512_cvtepi32_ps(_mm512_mask_blend_epi32(0xf0f0, lo, hi)); \
    }
    IGNIS_SCALES_OF_LANE(0) IGNIS_SCALES_OF_LANE(1) IGNIS_SCALES_OF_LANE(2) IGNIS_SCALES_OF_LANE(3)
#undef IGNIS_SCALES_OF_LANE
#undef IGNIS_PICK_LANE
}

/* Q4_K's eight 6-bit scales and mins of one row, each byte twice (16 bytes apiece) */
IGNIS_INLINE void IL(q4_k_zn_scale_bytes)(const uint8_t *s, __m128i *sc, __m128i *m) {
    uint64_t sc8, m8;
    ignis_q4_k_scales8(s, &sc8, &m8);
    const __m128i vs = _mm_cvtsi64_si128((long long)sc8), vm = _mm_cvtsi64_si128((long long)m8);
    *sc = _mm_unpacklo_epi8(vs, vs);
    *m = _mm_unpacklo_epi8(vm, vm);
}
