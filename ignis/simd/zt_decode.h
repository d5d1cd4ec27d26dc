/* zt_decode.h -- Q4_K, Q6_K, Q2_K, Q3_K and the 32-element one-scale types (Q8_0, Q5_0, Q4_0,
 * IQ4_NL) against a few tokens (decode, a speculative verify step: up to 8) read from per-matmul
 * token tables (included by x86.h after kq_prep.h, inside the AVX-512 target region). Same
 * arithmetic as the definitions in simd/defs.h; they give its bits.
 *
 * Why tables: the zd kernels (avx512_decode.h) spread each token block into the lanes of
 * the transposed row pairs (a broadcast and a masked broadcast per dword) and rebuild the
 * token's half sums and scales, for every 8 weight rows: 2 of every 3 instructions of a
 * 4-token step were that token work, repeated N / 8 times per matmul. IL(zt_tokens) does it
 * once per token and matmul; the tiles then meet each spread dword as a vpdpbusd memory
 * operand. With the token work gone the weight side is shared by up to 8 tokens.
 *
 * A token's table, per super-block (IGNIS_ZT_SB_BYTES; row-quad lane order, see
 * avx512_decode.h: 128-bit lanes 0 and 2 the low halves, 1 and 3 the high halves):
 *   0     pattern[j][d], j < 8 blocks, d < 4, 32 bytes: dword d of block j's low half
 *         (elements 4d..4d+3) four times, then of its high half (16 + 4d..) four times; a
 *         256-bit broadcast load puts them in lanes 0, 2 and 1, 3. Stored as pattern pairs
 *         [e][d], e < 4, 64 bytes: blocks j = 4 (e / 2) + e % 2 and j + 2 side by side
 *         (IGNIS_ZT_PAT_AT), so that Q4_K, whose register holds a row's 64 qs bytes (two blocks'
 *         halves each nibble), meets a pair as one vpdpbusd memory operand
 *   1024  block j's half sums of x as floats (Q4_K's min step), c_lo four times, c_hi four times
 *   1280  the same as int32 times -32, plus IGNIS_MAGIC_BITS (where Q6_K's q + 32
 *         sums start: they end as the float 12582912 + S, see avx512.h)
 *   1536  d_x of the 8 blocks, then d_x / 16 (Q4_K's high-nibble blocks)
 *   1600  the half sums as int32 times -8, 1856 times -16, 2112 times -128 (the starts of the
 *         32-element types' q + 8, q + 16, q + 128 sums: Q4_0, Q5_0, Q8_0 / IQ4_NL)
 *   2368  the half sums as int32 times -4, plus IGNIS_MAGIC_BITS (Q3_K's q + 4 sums); 2624
 *         times -16 and 2880 times -64, plus IGNIS_MAGIC_BITS (its 4 (q + 4) and 16 (q + 4))
 *   3136  d_x / 4 of the 8 blocks, then d_x / 64 (the Q2_K / Q3_K fields taken in place)
 * A width k that is not a multiple of 256 has a last, partial super-block: its blocks past k / 32
 * are not written and not read. */

/* pattern pair e's dword d, and pattern[j][d] inside its pair */
#define IGNIS_ZT_PAIR(e, d) (((e) * 4 + (d)) * 64)
#define IGNIS_ZT_PAT_AT(j, d) (IGNIS_ZT_PAIR(2 * ((j) / 4) + (j) % 2, d) + (j) % 4 / 2 * 32)
#define IGNIS_ZT_SUMS 1024
#define IGNIS_ZT_NEG32 1280
#define IGNIS_ZT_DX 1536
#define IGNIS_ZT_NEG(u) (1600 + 256 * ((u) == 3 ? 0 : (u) == 4 ? 1 : 2))     /* u = 3, 4, 7 */
#define IGNIS_ZT_NEGM(f) (2368 + 256 * ((f) == 4 ? 0 : (f) == 16 ? 1 : 2))     /* f = 4, 16, 64 */
#define IGNIS_ZT_DXQ 3136
/* d_x / f of block j (f = 1, 4, 16, 64: exact, a power of two on a normal float) */
#define IGNIS_ZT_DX_OVER(f) ((f) == 1 ? IGNIS_ZT_DX : (f) == 16 ? IGNIS_ZT_DX + 32 : (f) == 4 ? IGNIS_ZT_DXQ : IGNIS_ZT_DXQ + 32)

/* block j of a super-block's table (t) from the token's Q8_0 block xs */
static void IL(zt_token_block)(const uint8_t *xs, uint8_t *t, int j) {
    for (int d = 0; d < 4; d++)
        _mm256_store_si256((__m256i *)(t + IGNIS_ZT_PAT_AT(j, d)), _mm512_castsi512_si256(IL(zd_token_dword)(xs, d)));
    int32_t c[2] = {0, 0};
    for (int l = 0; l < 32; l++) c[l / 16] += (int8_t)xs[2 + l];
    const __m256i ci = _mm256_setr_epi32(c[0], c[0], c[0], c[0], c[1], c[1], c[1], c[1]);
    _mm256_store_ps((float *)(t + IGNIS_ZT_SUMS + j * 32), _mm256_cvtepi32_ps(ci));
    _mm256_store_si256((__m256i *)(t + IGNIS_ZT_NEG32 + j * 32),
                       _mm256_sub_epi32(_mm256_set1_epi32(IGNIS_MAGIC_BITS), _mm256_slli_epi32(ci, 5)));
    for (int u = 2; u <= 6; u += 2)
        _mm256_store_si256((__m256i *)(t + IGNIS_ZT_NEGM(1 << u) + j * 32),
                           _mm256_sub_epi32(_mm256_set1_epi32(IGNIS_MAGIC_BITS), _mm256_sllv_epi32(ci, _mm256_set1_epi32(u))));
    static const int shifts[3] = {3, 4, 7};
    for (int u = 0; u < 3; u++)
        _mm256_store_si256((__m256i *)(t + IGNIS_ZT_NEG(shifts[u]) + j * 32),
                           _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(ci, shifts[u])));
    const float dx = _cvtsh_ss(ignis_load_u16(xs));
    ((float *)(t + IGNIS_ZT_DX))[j] = dx;
    ((float *)(t + IGNIS_ZT_DX))[8 + j] = dx * 0.0625f;
    ((float *)(t + IGNIS_ZT_DXQ))[j] = dx * 0.25f;
    ((float *)(t + IGNIS_ZT_DXQ))[8 + j] = dx * 0.015625f;
}

/* super-blocks [s0, s1) of the table of the token at x (Q8_0 row of nblk blocks) */
static void IL(zt_tokens)(int64_t s0, int64_t s1, int64_t nblk, const uint8_t *x, uint8_t *tab) {
    for (int64_t s = s0; s < s1; s++)
        for (int j = 0; j < 8 && s * 8 + j < nblk; j++)
            IL(zt_token_block)(x + (size_t)(s * 8 + j) * IGNIS_Q8_0_BYTES, tab + (size_t)s * IGNIS_ZT_SB_BYTES, j);
}

/* the exact half sums (row-quad order) of transposed quants q[d] against block j's pattern */
IGNIS_INLINE __m512i IL(zt_dots)(__m512i start, const __m512i *q, const uint8_t *t, int j) {
    __m512i s = start;
    for (int d = 0; d < 4; d++)
        s = _mm512_dpbusd_epi32(s, q[d], _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)(t + IGNIS_ZT_PAT_AT(j, d)))));
    return s;
}

/* block j's half sums of x (row-quad order) from the table */
IGNIS_INLINE __m512 IL(zt_sums)(const uint8_t *t, int j) {
    return _mm512_broadcast_f32x8(_mm256_load_ps((const float *)(t + IGNIS_ZT_SUMS + j * 32)));
}

/* Q4_K qs bytes 64 jq.. of rows g..g + 3 (one load a row), transposed: lanes 0, 1 the low and
 * high halves of block pair 2 jq, lanes 2, 3 of pair 2 jq + 1, as low nibbles (blocks 4 jq and
 * 4 jq + 2) and high (4 jq + 1 and 4 jq + 3, 16 q) */
IGNIS_INLINE void IL(zt_q4_k_rows4)(const uint8_t *const *w, size_t off, __m512i *lo, __m512i *hi) {
    const __m512i low = _mm512_set1_epi8(0x0f), high = _mm512_set1_epi8((char)0xf0);
    __m512i r[4];
    for (int p = 0; p < 4; p++) r[p] = _mm512_loadu_si512((const void *)(w[p] + off));
    IL(zd_transpose4)(r);
    for (int d = 0; d < 4; d++) {
        lo[d] = _mm512_and_si512(r[d], low);
        hi[d] = _mm512_and_si512(r[d], high);
    }
}

/* the exact half sums of quants q[d] (two blocks' halves of four rows) against pattern pair e,
 * from IGNIS_MAGIC_BITS */
IGNIS_INLINE __m512i IL(zt_dots2)(const __m512i *q, const uint8_t *t, int e) {
    __m512i s = _mm512_set1_epi32(IGNIS_MAGIC_BITS);
    for (int d = 0; d < 4; d++)
        s = _mm512_dpbusd_epi32(s, q[d], _mm512_load_si512((const void *)(t + IGNIS_ZT_PAIR(e, d))));
    return s;
}

/* IL(zd_q4_k_scm)'s six registers for blocks 4 jq + 2 half and + 1 (half < 2), in registers:
 * from lanes jq (the scales) and 2 + jq (the mins) of IL(zd_q4_k_bytes)' t[0], t[1] as floats
 * (lo[0], lo[1]: rows 0..3; hi[0], hi[1]: rows 4..7), a two-source permute each */
IGNIS_INLINE void IL(zt_q4_k_scm)(const __m512 *lo, const __m512 *hi, int half, __m512 *scm) {
    for (int u = 0; u < 2; u++) {
        const int i = 4 * (2 * half + u);
        const __m512i idx = _mm512_setr_epi32(i, i + 1, i + 2, i + 3, i, i + 1, i + 2, i + 3,
                                              16 + i, 17 + i, 18 + i, 19 + i, 16 + i, 17 + i, 18 + i, 19 + i);
        scm[u] = _mm512_permutex2var_ps(lo[0], idx, hi[0]);
        scm[2 + u] = _mm512_permutex2var_ps(lo[1], idx, hi[1]);
    }
    scm[4] = IL(magic_neg)(scm[0]);
    scm[5] = IL(magic_neg)(scm[1]);
}

/* Q4_K, 8 weight rows x RN <= 8 tokens: q4_k_zd's steps, the token's from its table. Rows are read
 * 64 qs bytes at a time (four blocks), four rows transposed together; the sums of rows 0..3 and
 * 4..7 are then put in the row-quad order of one block pair (one lane shuffle each) */
IGNIS_INLINE void IL(q4_k_zt)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *xt,
                              float *out, const int RN) {
    __m512 acc[8];
    for (int t = 0; t < RN; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * IGNIS_Q4_K_BYTES, to = (size_t)s * IGNIS_ZT_SB_BYTES;
        IL(prefetch_rows)(w, 8, wo + IGNIS_ZD_AHEAD, IGNIS_Q4_K_BYTES);
        /* the scales stay in registers: zd_q4_k_sb, which stores them and reads them back, took
           27 % of a one-token step in L3 (this way the step is 9 % faster) */
        __m512i sct[2];
        __m512 dd;
        IL(zd_q4_k_bytes)(w, wo, sct, &dd);
        const __m512 d = IL(zd_rowquad)(dd, 0), dmin = IL(zd_rowquad)(dd, 1);
#pragma GCC unroll 2
        for (int jq = 0; jq < 2; jq++) {
            __m512i lo[2][4], hi[2][4];
            IL(zt_q4_k_rows4)(w, wo + 16 + 64 * jq, lo[0], hi[0]);
            IL(zt_q4_k_rows4)(w + 4, wo + 16 + 64 * jq, lo[1], hi[1]);
            const __m512 flo[2] = {IL(zd_lane_u8)(sct[0], jq), IL(zd_lane_u8)(sct[0], 2 + jq)};
            const __m512 fhi[2] = {IL(zd_lane_u8)(sct[1], jq), IL(zd_lane_u8)(sct[1], 2 + jq)};
            __m512 scm[2][6];
            IL(zt_q4_k_scm)(flo, fhi, 0, scm[0]);
            IL(zt_q4_k_scm)(flo, fhi, 1, scm[1]);
            /* unrolled for every RN: left to itself GCC keeps a loop for RN > 4, its accumulators
               in memory (bench/zt_tiles.c: 5-8 tokens at 49-56 GMAC/s, 63-67 unrolled) */
#pragma GCC unroll 8
            for (int t = 0; t < RN; t++) {
                const uint8_t *tt = xt[t] + to;
                const float *dx = (const float *)(tt + IGNIS_ZT_DX);
                const __m512i a = IL(zt_dots2)(lo[0], tt, 2 * jq), b = IL(zt_dots2)(hi[0], tt, 2 * jq + 1),
                              c = IL(zt_dots2)(lo[1], tt, 2 * jq), e = IL(zt_dots2)(hi[1], tt, 2 * jq + 1);
#pragma GCC unroll 2
                for (int half = 0; half < 2; half++) {
                    const int jp = 2 * jq + half, j0 = 2 * jp, j1 = 2 * jp + 1;
                    const __m512i alo = half ? _mm512_shuffle_i64x2(a, c, 0xEE) : _mm512_shuffle_i64x2(a, c, 0x44);
                    const __m512i ahi = half ? _mm512_shuffle_i64x2(b, e, 0xEE) : _mm512_shuffle_i64x2(b, e, 0x44);
                    acc[t] = IL(zd_q4_k_fma)(acc[t], alo, ahi, scm[half], d, dmin, _mm512_set1_ps(dx[j0]),
                                             _mm512_set1_ps(dx[j1]), _mm512_set1_ps(dx[8 + j1]),
                                             IL(zt_sums)(tt, j0), IL(zt_sums)(tt, j1));
                }
            }
        }
    }
    for (int t = 0; t < RN; t++) acc[t] = _mm512_shuffle_f32x4(acc[t], acc[t], IGNIS_ZD_TO_Z8);
    IL(z8_store)(acc, RN, out);
}

/* Q6_K, 8 weight rows x RN <= 8 tokens: q6_k_zd's quants (q + 32), transposed once per block
 * for every token, the sums starting from the table's 1.5 * 2^23 bits - 32 * sum(x) */
IGNIS_INLINE void IL(q6_k_zt)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *xt,
                              float *out, const int RN) {
    __m512 acc[8];
    for (int t = 0; t < RN; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * IGNIS_Q6_K_BYTES, to = (size_t)s * IGNIS_ZT_SB_BYTES;
        IL(prefetch_rows)(w, 8, wo + IGNIS_ZD_AHEAD, IGNIS_Q6_K_BYTES);
        _Alignas(64) uint8_t tb[128];
        _mm512_store_si512((__m512i *)tb, IL(zd_transpose16)(IL(zd_rows4x16)(w, wo + 192)));
        _mm512_store_si512((__m512i *)(tb + 64), IL(zd_transpose16)(IL(zd_rows4x16)(w + 4, wo + 192)));
        _Alignas(64) float fsc[8][16];
        for (int q = 0; q < 8; q++) _mm512_store_ps(fsc[q], IL(zd_lane_i8)(tb, q));
        IGNIS_ZD_IN_MEMORY(fsc);
        const __m512 d = IL(zd_f16_quad)(w, wo + 208);
        for (int h = 0; h < 2; h++) {
            __m512i qh[4], ql0[4], ql1[4];
            IL(zd_q6_k_half)(w, wo, h, qh, ql0, ql1);
            for (int k = 0; k < 4; k++) {
                const int j = 4 * h + k;
                __m512i q[4];
                IL(zd_q6_k_quants)(qh, ql0, ql1, k, q);
                IL(zd_transpose4)(q);
                const __m512 sc = IL(zd_q6_k_sc)(_mm512_load_ps(fsc[j / 2]), _mm512_load_ps(fsc[4 + j / 2]), j);
                const __m512 nsc = IL(magic_neg)(sc);
                for (int t = 0; t < RN; t++) {
                    const uint8_t *tt = xt[t] + to;
                    const __m512i a = IL(zt_dots)(_mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)(tt + IGNIS_ZT_NEG32 + j * 32))), q, tt, j);
                    acc[t] = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_castsi512_ps(a), sc, nsc),
                                             _mm512_mul_ps(d, _mm512_set1_ps(((const float *)(tt + IGNIS_ZT_DX))[j])), acc[t]);
                }
            }
        }
    }
    for (int t = 0; t < RN; t++) acc[t] = _mm512_shuffle_f32x4(acc[t], acc[t], IGNIS_ZD_TO_Z8);
    IL(z8_store)(acc, RN, out);
}

/* one block of rows a and b of a 32-element type as unsigned quants, [a 0..15 | a 16..31 | b
 * 0..15 | b 16..31]: Q5_0 and Q4_0 from both rows' nibbles at once (IL(zn_nibbles) leaves
 * [a lo | b lo | a hi | b hi], one lane shuffle restores the order, and then Q5_0's fifth bits
 * are simply qh of a, then of b) */
IGNIS_INLINE __m512i IL(zt_quant_pair)(const uint8_t *a, const uint8_t *b, const int WT) {
    if (WT == 6 || WT == 2) {
        const int at = WT == 6 ? 6 : 2;
        __m512i q = IL(zn_nibbles)(a + at, b + at);
        q = _mm512_shuffle_i64x2(q, q, _MM_SHUFFLE(3, 1, 2, 0));
        if (WT == 6)
            q = _mm512_mask_add_epi8(q, (__mmask64)(ignis_load_u32(a + 2) | (uint64_t)ignis_load_u32(b + 2) << 32), q,
                                     _mm512_set1_epi8(16));
        return q;
    }
    return _mm512_inserti64x4(_mm512_castsi256_si512(IL(zp_quants)(a, WT)), IL(zp_quants)(b, WT), 1);
}

/* The 32-element one-scale types (Q8_0, Q5_0, Q4_0, IQ4_NL), 8 weight rows x RN <= 8 tokens:
 * per block the rows' quants as unsigned bytes (IL(zp_quants): q + 128, q + 16, q + 8), rows p
 * and p + 4 in one register and transposed once (the Q4_K tiles' row-quad order), then per
 * token four vpdpbusd against the table's pattern from its -u * sum x start (the exact half
 * sums q . x), and the definition's s = d * d_x, chain = fma(i, s, chain) for both halves. */
IGNIS_INLINE void IL(z32_zt)(int64_t nb, const uint8_t *const *w, const uint8_t *const *xt, float *out,
                             const int RN, const int WT) {
    const int u = ignis_quant_offset_shift(WT);
    const size_t bytes = IL(zp_bytes)(WT);
    __m512 acc[8];
    for (int t = 0; t < RN; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * bytes, to = (size_t)(b / 8) * IGNIS_ZT_SB_BYTES;
        const int j = (int)(b % 8);
        IL(prefetch_block)(w, 8, b, bytes);
        __m512i q[4];
        for (int p = 0; p < 4; p++) q[p] = IL(zt_quant_pair)(w[p] + wo, w[p + 4] + wo, WT);
        IL(zd_transpose4)(q);
        const __m512 dw = IL(zd_f16_quad)(w, wo);
        for (int t = 0; t < RN; t++) {
            const uint8_t *tt = xt[t] + to;
            const __m512i a = IL(zt_dots)(_mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)(tt + IGNIS_ZT_NEG(u) + j * 32))), q, tt, j);
            const __m512 sd = _mm512_mul_ps(dw, _mm512_set1_ps(((const float *)(tt + IGNIS_ZT_DX))[j]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), sd, acc[t]);
        }
    }
    for (int t = 0; t < RN; t++) acc[t] = _mm512_shuffle_f32x4(acc[t], acc[t], IGNIS_ZD_TO_Z8);
    IL(z8_store)(acc, RN, out);
}

/* Block j's fields (k = j % 4) of the transposed 2-bit fields qz (and Q3_K's hmask hz), taken
 * in place: f * q with f = 4^k (Q2_K), f * (q + 4) with f = 4^k (Q3_K; its block 3 as 16 (q + 4)
 * after a shift right by 2, as its hmask bit would be bit 8). A register costs one and (Q2_K), or
 * a shift, an and and one ternary-logic op (Q3_K), where shifting the fields down cost a shift and
 * an and more. The factor f leaves the sums exact (|f S| < 2^22, |f S sc| < 2^24) and the table's
 * d_x / f takes it back exactly. The 16-bit shifts move no bit of one byte into the kept bits of
 * the other. */
IGNIS_INLINE int IL(kx_factor)(int j, const int WT) {
    return WT == 11 && j % 4 == 3 ? 16 : 1 << (2 * (j % 4));
}
IGNIS_INLINE void IL(kx_fields)(const __m512i *qz, const __m512i *hz, int j, __m512i *q, const int WT) {
    const int k = j % 4, top = WT == 11 && k == 3;
    const __m512i fields = _mm512_set1_epi8((char)(top ? 0x30 : 3 << (2 * k)));
    const int hbit = top ? 6 : 2 * k + 2, hshift = hbit - j;     /* hmask bit j of the byte to bit hbit */
    for (int p = 0; p < 4; p++) {
        const __m512i f = top ? _mm512_srli_epi16(qz[p], 2) : qz[p];
        if (WT == 10) {
            q[p] = _mm512_and_si512(f, fields);
        } else {
            const __m512i h = hshift >= 0 ? _mm512_slli_epi16(hz[p], hshift) : _mm512_srli_epi16(hz[p], -hshift);
            q[p] = _mm512_ternarylogic_epi32(f, _mm512_and_si512(h, _mm512_set1_epi8((char)(1 << hbit))), fields,
                                             0xEC);     /* (f & fields) | h */
        }
    }
}

/* Block j's scales (and Q2_K's mins) of 8 rows as floats in the row-quad order (lane P = 4 L + i:
 * row i + 4 (L / 2), half h = L % 2), from the fields in place: u[0] holds rows 0..3 (row r's 16
 * bytes in 128-bit lane r), u[1] rows 4..7. One two-source word permute a block brings each lane
 * the words that hold its row's fields, per-lane shifts bring them down. In place of a scalar
 * unpacking per row (Q3_K), an 8 x 16 transposition per super-block (IL(zn_scales)) and a lane
 * shuffle per block: Q3_K's one-token step was 40 % scale work, Q2_K's 128 of 430 instructions.
 *   Q2_K, the 16 bytes at 0 (sc | m << 4, half 2 j + h at byte 2 j + h): the word of block j;
 *     its nibbles as floats by a permute of 0..15, which reads an index's low 4 bits only.
 *   Q3_K, the 16 bytes at 94 (its 12 scale bytes at 2..13: scale i has low4 = nibble i / 8 of
 *     byte 2 + i % 8, high2 = bits 2 (i / 4) of byte 10 + i % 4; for i = 2 j + h those are byte h
 *     of words 1 + j % 4 and 5 + j % 2): the two words in the dword's halves, the fields shifted
 *     to bits 0..3 and 4..5 and joined by one ternary-logic op, then sc - 32. */
IGNIS_INLINE void IL(kx_zt_scales)(const __m512i *u, int j, __m512 *sv, __m512 *mv, const int WT) {
    const __m512i rowword = _mm512_setr_epi32(0, 8, 16, 24, 0, 8, 16, 24, 32, 40, 48, 56, 32, 40, 48, 56);
    const __m512i half8 = _mm512_setr_epi32(0, 0, 0, 0, 8, 8, 8, 8, 0, 0, 0, 0, 8, 8, 8, 8);
    if (WT == 10) {
        const __m512i v = _mm512_maskz_permutex2var_epi16((__mmask32)0x55555555u, u[0],
                                                          _mm512_add_epi32(rowword, _mm512_set1_epi32(j)), u[1]);
        const __m512 nibf = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        *sv = _mm512_permutexvar_ps(_mm512_srlv_epi32(v, half8), nibf);
        *mv = _mm512_permutexvar_ps(_mm512_srlv_epi32(v, _mm512_add_epi32(half8, _mm512_set1_epi32(4))), nibf);
    } else {
        const __m512i words = _mm512_add_epi32(rowword, _mm512_set1_epi32(1 + j % 4 + ((5 + j % 2) << 16)));
        const __m512i v = _mm512_permutex2var_epi16(u[0], _mm512_add_epi32(words, _mm512_slli_epi32(rowword, 16)), u[1]);
        const __m512i low4 = _mm512_srlv_epi32(v, _mm512_add_epi32(half8, _mm512_set1_epi32(4 * (j / 4))));
        const __m512i high2 = _mm512_srlv_epi32(v, _mm512_add_epi32(half8, _mm512_set1_epi32(12 + 2 * (j / 2))));
        const __m512i sc = _mm512_ternarylogic_epi32(low4, high2, _mm512_set1_epi32(0x0f), 0xE4);  /* C ? A : B */
        *sv = _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_and_si512(sc, _mm512_set1_epi32(63))), _mm512_set1_ps(32.0f));
        *mv = *sv;
    }
}

/* Q2_K / Q3_K (the half rule), 8 weight rows x RN <= 8 tokens: IL(kx_zn)'s steps in the row-quad
 * order, the token's from its table. The 2-bit fields of rows p and p + 4 (and Q3_K's hmask) are
 * paired and transposed once per super-block: the transposition moves whole dwords, so it
 * commutes with the byte-wise masks and shifts that pick a block's fields (IL(kx_fields)). The
 * sums start at IGNIS_MAGIC_BITS (Q3_K: minus 4 f * sum x, the table's section for its f (q + 4)),
 * so one fma gives f S * sc, exact, and d * (d_x / f) the definition's d * d_x / f. */
IGNIS_INLINE void IL(kx_zt)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *xt, float *out,
                            const int RN, const int WT) {
    const size_t wbytes = WT == 10 ? IGNIS_Q2_K_BYTES : IGNIS_Q3_K_BYTES;
    const size_t doff = WT == 10 ? 80 : 108, qo = WT == 10 ? 16 : 32;
    __m512 acc[8];
    for (int t = 0; t < RN; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * wbytes, to = (size_t)s * IGNIS_ZT_SB_BYTES;
        IL(prefetch_rows)(w, 8, wo + IGNIS_ZD_AHEAD, wbytes);
        const __m512 d = IL(zd_f16_quad)(w, wo + doff);
        const __m512 dmin = WT == 10 ? IL(zd_f16_quad)(w, wo + 82) : d;
        const size_t so = WT == 10 ? 0 : 94;      /* the scale fields, see IL(kx_zt_scales) */
        const __m512i u[2] = {IL(zd_rows4x16)(w, wo + so), IL(zd_rows4x16)(w + 4, wo + so)};
        __m512i qz[2][4], hz[4];
        for (int h = 0; h < 2; h++) {
            for (int p = 0; p < 4; p++)
                qz[h][p] = IL(zd_rows2)(w[p] + wo + qo + 32 * h, w[p + 4] + wo + qo + 32 * h);
            IL(zd_transpose4)(qz[h]);
        }
        if (WT == 11) {
            for (int p = 0; p < 4; p++) hz[p] = IL(zd_rows2)(w[p] + wo, w[p + 4] + wo);
            IL(zd_transpose4)(hz);
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m512i q[4];
            IL(kx_fields)(qz[j / 4], hz, j, q, WT);
            const int f = IL(kx_factor)(j, WT);
            __m512 sv, mv;
            IL(kx_zt_scales)(u, j, &sv, &mv, WT);
            const __m512 nsv = IL(magic_neg)(sv);
            for (int t = 0; t < RN; t++) {
                const uint8_t *tt = xt[t] + to;
                const __m512i start = WT == 10 ? _mm512_set1_epi32(IGNIS_MAGIC_BITS)
                    : _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)(tt + IGNIS_ZT_NEGM(4 * f) + j * 32)));
                const __m512i a = IL(zt_dots)(start, q, tt, j);
                const __m512 dxf = _mm512_set1_ps(((const float *)(tt + IGNIS_ZT_DX_OVER(f)))[j]);
                acc[t] = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_castsi512_ps(a), sv, nsv), _mm512_mul_ps(d, dxf), acc[t]);
                if (WT == 10) {
                    const __m512 dx = _mm512_set1_ps(((const float *)(tt + IGNIS_ZT_DX))[j]);
                    acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(IL(zt_sums)(tt, j), mv), _mm512_mul_ps(dmin, dx), acc[t]);
                }
            }
        }
    }
    for (int t = 0; t < RN; t++) acc[t] = _mm512_shuffle_f32x4(acc[t], acc[t], IGNIS_ZD_TO_Z8);
    IL(z8_store)(acc, RN, out);
}

#define IGNIS_ZT_BY_RN(name) \
    static void IL(name##1)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(name)(n, w, x, o, 1); } \
    static void IL(name##2)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(name)(n, w, x, o, 2); } \
    static void IL(name##3)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(name)(n, w, x, o, 3); } \
    static void IL(name##4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(name)(n, w, x, o, 4); } \
    static void IL(name##5)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(name)(n, w, x, o, 5); } \
    static void IL(name##6)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(name)(n, w, x, o, 6); } \
    static void IL(name##7)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(name)(n, w, x, o, 7); } \
    static void IL(name##8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(name)(n, w, x, o, 8); }
IGNIS_ZT_BY_RN(q4_k_zt)
IGNIS_ZT_BY_RN(q6_k_zt)
/* name_zt1..8: the tile `kernel` of one type WT */
#define IGNIS_TYPE_ZT(name, kernel, WT) \
    IGNIS_INLINE void IL(name)(int64_t n, const uint8_t *const *w, const uint8_t *const *xt, float *o, const int RN) { \
        IL(kernel)(n, w, xt, o, RN, WT); \
    } \
    IGNIS_ZT_BY_RN(name)
IGNIS_TYPE_ZT(q8_0_zt, z32_zt, 8)
IGNIS_TYPE_ZT(q5_0_zt, z32_zt, 6)
IGNIS_TYPE_ZT(q4_0_zt, z32_zt, 2)
IGNIS_TYPE_ZT(iq4_nl_zt, z32_zt, 20)
IGNIS_TYPE_ZT(q2_k_zt, kx_zt, 10)
IGNIS_TYPE_ZT(q3_k_zt, kx_zt, 11)

/* out[j*8 + i] (i < rm, j < rn <= 8): rows w[i] of wtype (one that ignis_zt_ok accepts) and
 * width k against the tokens whose tables are at xt[j]; the bits of IL(tile) on their Q8_0 rows */
static void IL(zt_tile)(int wtype, int64_t k, const uint8_t *const *w, int rm, const uint8_t *const *xt,
                        int rn, float *out) {
    static const ignis_kernel_fn ks[8][8] = {
        {IL(q4_k_zt1), IL(q4_k_zt2), IL(q4_k_zt3), IL(q4_k_zt4), IL(q4_k_zt5), IL(q4_k_zt6), IL(q4_k_zt7), IL(q4_k_zt8)},
        {IL(q6_k_zt1), IL(q6_k_zt2), IL(q6_k_zt3), IL(q6_k_zt4), IL(q6_k_zt5), IL(q6_k_zt6), IL(q6_k_zt7), IL(q6_k_zt8)},
        {IL(q8_0_zt1), IL(q8_0_zt2), IL(q8_0_zt3), IL(q8_0_zt4), IL(q8_0_zt5), IL(q8_0_zt6), IL(q8_0_zt7), IL(q8_0_zt8)},
        {IL(q5_0_zt1), IL(q5_0_zt2), IL(q5_0_zt3), IL(q5_0_zt4), IL(q5_0_zt5), IL(q5_0_zt6), IL(q5_0_zt7), IL(q5_0_zt8)},
        {IL(q4_0_zt1), IL(q4_0_zt2), IL(q4_0_zt3), IL(q4_0_zt4), IL(q4_0_zt5), IL(q4_0_zt6), IL(q4_0_zt7), IL(q4_0_zt8)},
        {IL(iq4_nl_zt1), IL(iq4_nl_zt2), IL(iq4_nl_zt3), IL(iq4_nl_zt4), IL(iq4_nl_zt5), IL(iq4_nl_zt6), IL(iq4_nl_zt7),
         IL(iq4_nl_zt8)},
        {IL(q2_k_zt1), IL(q2_k_zt2), IL(q2_k_zt3), IL(q2_k_zt4), IL(q2_k_zt5), IL(q2_k_zt6), IL(q2_k_zt7), IL(q2_k_zt8)},
        {IL(q3_k_zt1), IL(q3_k_zt2), IL(q3_k_zt3), IL(q3_k_zt4), IL(q3_k_zt5), IL(q3_k_zt6), IL(q3_k_zt7), IL(q3_k_zt8)}};
    const int which = wtype == 12 ? 0 : wtype == 14 ? 1 : wtype == 8 ? 2 : wtype == 6 ? 3 : wtype == 2 ? 4
                    : wtype == 20 ? 5 : wtype == 10 ? 6 : 7;
    const uint8_t *wp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
    ks[which][rn - 1](ignis_zt_super(wtype) ? k / 256 : k / 32, wp, xt, tmp);
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}
