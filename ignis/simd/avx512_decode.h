/* avx512_decode.h -- the AVX-512 decode kernels of Q4_K and Q6_K weights: 8 weight rows x RN <= 4
 * tokens (included by x86.h after avx512.h, inside the AVX-512 target region). Same arithmetic
 * as the definitions in simd/defs.h; they give its bits.
 *
 * Decode streams every weight byte once per token, so these kernels are built to spend as few
 * instructions per weight byte as the definition allows (most of all on port 5, where every
 * 512-bit shuffle goes):
 * - Row pairs: a register holds 32 quant bytes of row p and of row p + 4 ([p | p+4], one load
 *   and one insert), vpdpbusd meets the token block broadcast twice, and one reduction of
 *   the four pairs leaves the exact half sums in "row-quad order": 128-bit lane 0 the low
 *   halves of rows 0..3, lane 1 their high halves, lanes 2 and 3 the same for rows 4..7.
 *   These are the lanes of the definition's lo and hi chains.
 * - Scales: the packed scale bytes of four rows (one row per 128-bit lane) are unpacked for
 *   all four at once, transposed with one dword permute and one byte shuffle, and turned
 *   into one float vector per activation block with a single two-source permute (Q4_K) or
 *   lane shuffle (Q6_K) -- once per super-block, shared by every token.
 * - Token data: per super-block the eight blocks' f16 scales are converted together, and
 *   Q4_K's half sums of x (for the min step) come from four vpdpbusd and one reduction.
 * - Q4_K's high nibbles are used in place (q * 16, masked, not shifted): the sums are 16x
 *   the definition's, exactly, and the block's d * d_x is taken / 16 (exact: a power of
 *   two on a normal float), so the fused multiply-add sees the same real product. */

/* the compiler must take the values of v from memory from here on (it would otherwise rebuild
 * the broadcasts below from registers with shuffles: port 5 again) */
#define IGNIS_ZD_IN_MEMORY(v) __asm__("" : "+m"(v))

/* row-quad order -> the order z8_store expects ([lo r0..3 | lo r4..7 | hi r0..3 | hi r4..7]) */
#define IGNIS_ZD_TO_Z8 _MM_SHUFFLE(3, 1, 2, 0)

/* 32 bytes at a (lanes 0, 1) and at b (lanes 2, 3) */
IGNIS_INLINE __m512i IL(zd_rows2)(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

/* 16 bytes at p[r] + off in 128-bit lane r, r = 0..3 */
IGNIS_INLINE __m512i IL(zd_rows4x16)(const uint8_t *const *p, size_t off) {
    __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p[0] + off)));
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(p[1] + off)), 1);
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(p[2] + off)), 2);
    return _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(p[3] + off)), 3);
}

/* four rows' 16 bytes (row r in lane r) -> lane q, dword i holds byte 4q + i of rows 0..3 */
IGNIS_INLINE __m512i IL(zd_transpose16)(__m512i u) {
    const __m512i didx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i bidx = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    return _mm512_shuffle_epi8(_mm512_permutexvar_epi32(didx, u), bidx);
}

/* the 16 unsigned bytes of lane q (< 4) of t as floats (a literal lane in each case: extract
 * takes an immediate) */
IGNIS_INLINE __m512 IL(zd_lane_u8)(__m512i t, int q) {
    __m128i b;
    switch (q) {
    case 0: b = _mm512_castsi512_si128(t); break;
    case 1: b = _mm512_extracti32x4_epi32(t, 1); break;
    case 2: b = _mm512_extracti32x4_epi32(t, 2); break;
    default: b = _mm512_extracti32x4_epi32(t, 3); break;
    }
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
}
/* the 16 signed bytes of lane q of a stored transposed register as floats */
IGNIS_INLINE __m512 IL(zd_lane_i8)(const uint8_t *t, int q) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(t + 16 * q))));
}

/* the f16 values of the 8 rows at p[r] + off as floats: lane r holds the one at + off */
IGNIS_INLINE __m256 IL(zd_f16_single)(const uint8_t *const *p, size_t off) {
    uint64_t u[2] = {0, 0};
    for (int r = 0; r < 8; r++) u[r / 4] |= (uint64_t)ignis_load_u16(p[r] + off) << (16 * (r % 4));
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)u[1], (long long)u[0]));
}
/* the 8 rows' f16 values at p[r] + off as floats in row-quad order [r0..3 | r0..3 | r4..7 | r4..7] */
IGNIS_INLINE __m512 IL(zd_f16_quad)(const uint8_t *const *p, size_t off) {
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7),
                                 _mm512_castps256_ps512(IL(zd_f16_single)(p, off)));
}
/* lanes 2r (or 2r + 1: odd) of f in row-quad order */
IGNIS_INLINE __m512 IL(zd_rowquad)(__m512 f, int odd) {
    const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 8, 10, 12, 14, 8, 10, 12, 14),
                                         _mm512_set1_epi32(odd));
    return _mm512_permutexvar_ps(idx, f);
}

/* the 8 activation blocks' scales d_x of a super-block of token x (at xs) as floats, and
 * the same / 16 for the odd blocks (Q4_K's high-nibble blocks) */
IGNIS_INLINE void IL(zd_token_scales)(const uint8_t *xs, float *dxf, float *dx16) {
    uint64_t u[2] = {0, 0};
    for (int j = 0; j < 8; j++) u[j / 4] |= (uint64_t)ignis_load_u16(xs + j * IGNIS_Q8_0_BYTES) << (16 * (j % 4));
    const __m256 v = _mm256_cvtph_ps(_mm_set_epi64x((long long)u[1], (long long)u[0]));
    _mm256_storeu_ps(dxf, v);
    if (dx16) _mm256_storeu_ps(dx16, _mm256_mul_ps(v, _mm256_setr_ps(1, 0.0625f, 1, 0.0625f, 1, 0.0625f, 1, 0.0625f)));
}

/* the half sums of x of a super-block's 8 blocks (token at xs), as floats at cs[16]: c_lo of
 * blocks 0..3, c_hi of blocks 0..3, then the same for blocks 4..7 */
IGNIS_INLINE void IL(zd_token_sums)(const uint8_t *xs, float *cs) {
    const __m512i ones = _mm512_set1_epi8(1), z = _mm512_setzero_si512();
    __m512i c[4];
    for (int i = 0; i < 4; i++)
        c[i] = _mm512_dpbusd_epi32(z, ones, IL(zd_rows2)(xs + i * IGNIS_Q8_0_BYTES + 2, xs + (i + 4) * IGNIS_Q8_0_BYTES + 2));
    _mm512_store_ps(cs, _mm512_cvtepi32_ps(IL(z_reduce4)(c[0], c[1], c[2], c[3])));
}
/* block j's half sums in row-quad order (c_lo in lanes 0, 2; c_hi in 1, 3): two broadcasts */
IGNIS_INLINE __m512 IL(zd_block_sums)(const float *cs, int j) {
    const float *c = cs + 8 * (j / 4) + j % 4;
    return _mm512_mask_broadcastss_ps(_mm512_set1_ps(c[0]), 0xf0f0, _mm_load_ss(c + 4));
}

/* [a a b b]: the 4 floats at a in lanes 0, 1 and those at b in lanes 2, 3 (two broadcasts
 * from memory: no shuffle) */
IGNIS_INLINE __m512 IL(zd_quads)(const float *a, const float *b) {
    return _mm512_mask_broadcast_f32x4(_mm512_broadcast_f32x4(_mm_load_ps(a)), 0xff00, _mm_load_ps(b));
}
/* [a b]: the 8 floats at a in lanes 0, 1 and those at b in lanes 2, 3 */
IGNIS_INLINE __m512 IL(zd_octs)(const float *a, const float *b) {
    return _mm512_mask_broadcast_f32x8(_mm512_broadcast_f32x8(_mm256_load_ps(a)), 0xff00, _mm256_load_ps(b));
}

/* 4x4 transposition of the dwords of each 128-bit lane across v[0..3]: v[d] lane l dword p
 * becomes the old v[p] lane l dword d */
IGNIS_INLINE void IL(zd_transpose4)(__m512i *v) {
    const __m512i t0 = _mm512_unpacklo_epi32(v[0], v[1]), t1 = _mm512_unpackhi_epi32(v[0], v[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(v[2], v[3]), t3 = _mm512_unpackhi_epi32(v[2], v[3]);
    v[0] = _mm512_unpacklo_epi64(t0, t2);
    v[1] = _mm512_unpackhi_epi64(t0, t2);
    v[2] = _mm512_unpacklo_epi64(t1, t3);
    v[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* dword d of the token block's low half (elements 4d..4d+3) in lanes 0 and 2, of its high
 * half (16 + 4d..) in lanes 1 and 3: a broadcast and a masked broadcast from memory */
IGNIS_INLINE __m512i IL(zd_token_dword)(const uint8_t *blk, int d) {
    int32_t lo, hi;
    memcpy(&lo, blk + 2 + 4 * d, 4);
    memcpy(&hi, blk + 18 + 4 * d, 4);
    return _mm512_mask_set1_epi32(_mm512_set1_epi32(lo), 0xf0f0, hi);
}

/* the exact half sums (row-quad order) of transposed quants q[d] against the token block at blk */
IGNIS_INLINE __m512i IL(zd_dots_t)(__m512i start, const __m512i *q, const uint8_t *blk) {
    __m512i s = start;
    for (int d = 0; d < 4; d++) s = _mm512_dpbusd_epi32(s, q[d], IL(zd_token_dword)(blk, d));
    return s;
}

/* a token block's 32 bytes twice ([x | x]) */
IGNIS_INLINE __m512i IL(zd_token)(const uint8_t *blk) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 2)));
}

/* Q4_K: per row (one per 128-bit lane) a super-block's first 16 bytes (d, dmin, then the 12
 * packed bytes s at 4..15) -> [sc0..7 | m0..7] as bytes: sc_j = s[j] & 63 (j < 4),
 * (s[j+4] & 15) | (s[j-4] >> 6) << 4 (j >= 4); m_j likewise from s[j+4] and the high nibbles of
 * s[8..11] (see ignis_q4_k_scale_min) */
IGNIS_INLINE __m512i IL(zd_q4_k_unpack)(__m512i z) {
    const __m512i p = _mm512_srlv_epi32(_mm512_shuffle_epi32(z, _MM_SHUFFLE(3, 2, 3, 1)), _mm512_set4_epi32(4, 0, 0, 0));
    const __m512i q = _mm512_srli_epi32(_mm512_shuffle_epi32(z, _MM_SHUFFLE(2, 2, 1, 1)), 2);
    const __m512i lo = _mm512_and_si512(p, _mm512_set4_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    return _mm512_ternarylogic_epi32(lo, q, _mm512_set4_epi32(0x30303030, 0, 0x30303030, 0), 0xF8);  /* lo | (q & hm) */
}

/* Q4_K super-block at wo of the 8 rows, one 16-byte load a row: the scales and mins as bytes,
 * transposed (t[h] lane q, dword i: value 4q + i (sc0..7, then m0..7) of rows 4h..4h + 3), and
 * d, dmin as floats (lanes 2r and 2r + 1: row r's) */
IGNIS_INLINE void IL(zd_q4_k_bytes)(const uint8_t *const *w, size_t wo, __m512i *t, __m512 *dd) {
    const __m512i a = IL(zd_rows4x16)(w, wo), b = IL(zd_rows4x16)(w + 4, wo);
    *dd = _mm512_cvtph_ps(_mm512_castsi512_si256(
        _mm512_permutex2var_epi32(a, _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0), b)));
    t[0] = IL(zd_transpose16)(IL(zd_q4_k_unpack)(a));
    t[1] = IL(zd_transpose16)(IL(zd_q4_k_unpack)(b));
}

/* Q4_K super-block at wo of the 8 rows: the scales and mins as floats, sf[h][4v + r] = value v
 * (sc0..7, then m0..7) of row 4h + r, and d, dmin in row-quad order */
IGNIS_INLINE void IL(zd_q4_k_sb)(const uint8_t *const *w, size_t wo, float (*sf)[64], __m512 *d, __m512 *dmin) {
    __m512i t[2];
    __m512 dd;
    IL(zd_q4_k_bytes)(w, wo, t, &dd);
    for (int q = 0; q < 8; q++) _mm512_store_ps(sf[q / 4] + 16 * (q % 4), IL(zd_lane_u8)(t[q / 4], q % 4));
    *d = IL(zd_rowquad)(dd, 0);
    *dmin = IL(zd_rowquad)(dd, 1);
}

/* Q4_K blocks 2jp and 2jp + 1: sc and m of rows 0..3, 0..3, 4..7, 4..7 from zd_q4_k_sb's sf (scm:
 * sc0, sc1, m0, m1, then -12582912 sc0, -12582912 sc1 for IL(zd_q4_k_fma)) */
IGNIS_INLINE void IL(zd_q4_k_scm)(float (*sf)[64], int jp, __m512 *scm) {
    const int j0 = 2 * jp, j1 = 2 * jp + 1;
    scm[0] = IL(zd_quads)(sf[0] + 4 * j0, sf[1] + 4 * j0);
    scm[1] = IL(zd_quads)(sf[0] + 4 * j1, sf[1] + 4 * j1);
    scm[2] = IL(zd_quads)(sf[0] + 32 + 4 * j0, sf[1] + 32 + 4 * j0);
    scm[3] = IL(zd_quads)(sf[0] + 32 + 4 * j1, sf[1] + 32 + 4 * j1);
    scm[4] = IL(magic_neg)(scm[0]);
    scm[5] = IL(magic_neg)(scm[1]);
}

/* Q4_K blocks 2jp and 2jp + 1 of the super-block at wo: the 32 nibble bytes of rows p | p + 4,
 * transposed (raw[d] lane l dword p is dword d of lane l of row pair p, so that four vpdpbusd
 * into one register, each against token dword d of the lane's half, leave the exact half
 * sums), as low nibbles (block 2jp) and high (block 2jp + 1, 16 q); and IL(zd_q4_k_scm) */
IGNIS_INLINE void IL(zd_q4_k_pair)(const uint8_t *const *w, size_t wo, int jp, float (*sf)[64],
                                   __m512i *qlo, __m512i *qhi, __m512 *scm) {
    const __m512i low = _mm512_set1_epi8(0x0f), high = _mm512_set1_epi8((char)0xf0);
    __m512i raw[4];
    for (int p = 0; p < 4; p++) raw[p] = IL(zd_rows2)(w[p] + wo + 16 + 32 * jp, w[p + 4] + wo + 16 + 32 * jp);
    IL(zd_transpose4)(raw);
    for (int d = 0; d < 4; d++) {
        qlo[d] = _mm512_and_si512(raw[d], low);
        qhi[d] = _mm512_and_si512(raw[d], high);
    }
    IL(zd_q4_k_scm)(sf, jp, scm);
}

/* the definition's last steps of blocks 2jp, 2jp + 1 for one token: its exact half sums alo,
 * ahi (16x), started from IGNIS_MAGIC_BITS (avx512.h; scm[4], scm[5] the IL(magic_neg) of the
 * scales), scales dx0, dx1 and dx1 / 16 (dx1s), the blocks' half sums of x b0, b1 */
IGNIS_INLINE __m512 IL(zd_q4_k_fma)(__m512 a, __m512i alo, __m512i ahi, const __m512 *scm, __m512 d, __m512 dmin,
                                    __m512 dx0, __m512 dx1, __m512 dx1s, __m512 b0, __m512 b1) {
    a = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_castsi512_ps(alo), scm[0], scm[4]), _mm512_mul_ps(d, dx0), a);
    a = _mm512_fnmadd_ps(_mm512_mul_ps(scm[2], b0), _mm512_mul_ps(dmin, dx0), a);
    a = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_castsi512_ps(ahi), scm[1], scm[5]), _mm512_mul_ps(d, dx1s), a);
    return _mm512_fnmadd_ps(_mm512_mul_ps(scm[3], b1), _mm512_mul_ps(dmin, dx1), a);
}

/* Q4_K, 8 weight rows x RN <= 4 tokens (decode) */
IGNIS_INLINE void IL(q4_k_zd)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                              float *out, const int RN) {
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[4];
    for (int t = 0; t < RN; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * IGNIS_Q4_K_BYTES, xo = (size_t)s * 8 * IGNIS_Q8_0_BYTES;
        IL(prefetch_rows)(w, 8, wo + IGNIS_ZD_AHEAD, IGNIS_Q4_K_BYTES);
        _Alignas(64) float sf[2][64];
        __m512 d, dmin;
        IL(zd_q4_k_sb)(w, wo, sf, &d, &dmin);
        IGNIS_ZD_IN_MEMORY(sf);
        _Alignas(64) float cs[4][16];
        float dxf[4][8], dx16[4][8];
        for (int t = 0; t < RN; t++) {
            IL(zd_token_scales)(x[t] + xo, dxf[t], dx16[t]);
            IL(zd_token_sums)(x[t] + xo, cs[t]);
        }
        IGNIS_ZD_IN_MEMORY(cs);
        IGNIS_ZD_IN_MEMORY(dxf);
        IGNIS_ZD_IN_MEMORY(dx16);
#pragma GCC unroll 4
        for (int jp = 0; jp < 4; jp++) {
            __m512i qlo[4], qhi[4];
            __m512 scm[6];
            IL(zd_q4_k_pair)(w, wo, jp, sf, qlo, qhi, scm);
            const int j0 = 2 * jp, j1 = 2 * jp + 1;
            for (int t = 0; t < RN; t++) {
                const uint8_t *xb = x[t] + xo + j0 * IGNIS_Q8_0_BYTES;
                const __m512i alo = IL(zd_dots_t)(_mm512_set1_epi32(IGNIS_MAGIC_BITS), qlo, xb),
                             ahi = IL(zd_dots_t)(_mm512_set1_epi32(IGNIS_MAGIC_BITS), qhi, xb + IGNIS_Q8_0_BYTES);
                acc[t] = IL(zd_q4_k_fma)(acc[t], alo, ahi, scm, d, dmin, _mm512_set1_ps(dxf[t][j0]),
                                         _mm512_set1_ps(dxf[t][j1]), _mm512_set1_ps(dx16[t][j1]),
                                         IL(zd_block_sums)(cs[t], j0), IL(zd_block_sums)(cs[t], j1));
            }
        }
    }
    for (int t = 0; t < RN; t++) acc[t] = _mm512_shuffle_f32x4(acc[t], acc[t], IGNIS_ZD_TO_Z8);
    IL(z8_store)(acc, RN, out);
}
IGNIS_ZN_BY_RN(q4_k, q4_k_zd)

/* Q6_K: block j = 4h + k's quants + 32 of the row pairs p | p + 4 (0..63, unsigned: the low
 * or high nibble of ql merged with two bits of qh by one ternary-logic op), from the half's
 * qh and ql bytes (ql0: bytes 0..31 of the half, ql1: 32..63) */
IGNIS_INLINE void IL(zd_q6_k_quants)(const __m512i *qh, const __m512i *ql0, const __m512i *ql1, int k, __m512i *q) {
    const __m512i low = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    for (int p = 0; p < 4; p++) {
        const __m512i l = k >= 2 ? _mm512_srli_epi16(k & 1 ? ql1[p] : ql0[p], 4) : (k & 1 ? ql1[p] : ql0[p]);
        const __m512i hs = k == 0 ? _mm512_slli_epi16(qh[p], 4) : k == 1 ? _mm512_slli_epi16(qh[p], 2)
                         : k == 2 ? qh[p] : _mm512_srli_epi16(qh[p], 2);
        q[p] = _mm512_ternarylogic_epi32(l, _mm512_and_si512(hs, bits45), low, 0xEC);  /* (l & low) | hs */
    }
}
/* the half's qh, ql0, ql1 bytes of the row pairs */
IGNIS_INLINE void IL(zd_q6_k_half)(const uint8_t *const *w, size_t wo, int h, __m512i *qh, __m512i *ql0, __m512i *ql1) {
    for (int p = 0; p < 4; p++) {
        qh[p] = IL(zd_rows2)(w[p] + wo + 128 + 32 * h, w[p + 4] + wo + 128 + 32 * h);
        ql0[p] = IL(zd_rows2)(w[p] + wo + 64 * h, w[p + 4] + wo + 64 * h);
        ql1[p] = IL(zd_rows2)(w[p] + wo + 64 * h + 32, w[p + 4] + wo + 64 * h + 32);
    }
}
/* scales 2j (low halves) and 2j + 1 (high halves) of rows 0..3, then 4..7, from the scale
 * vectors f0 = fsc[j / 2] (rows 0..3) and f1 = fsc[4 + j / 2] (rows 4..7) */
IGNIS_INLINE __m512 IL(zd_q6_k_sc)(__m512 f0, __m512 f1, int j) {
    return (j & 1) ? _mm512_shuffle_f32x4(f0, f1, _MM_SHUFFLE(3, 2, 3, 2)) : _mm512_shuffle_f32x4(f0, f1, _MM_SHUFFLE(1, 0, 1, 0));
}

/* Q6_K, 8 weight rows x RN <= 4 tokens (decode). The quants are taken as q + 32 (0..63,
 * unsigned: the low nibble of ql merged with two bits of qh by one ternary-logic op), the
 * -32 folded into a start of -32 times the token's partial sums. */
IGNIS_INLINE void IL(q6_k_zd)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                              float *out, const int RN) {
    __m512 acc[4];
    for (int t = 0; t < RN; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * IGNIS_Q6_K_BYTES, xo = (size_t)s * 8 * IGNIS_Q8_0_BYTES;
        IL(prefetch_rows)(w, 8, wo + IGNIS_ZD_AHEAD, IGNIS_Q6_K_BYTES);
        /* the rows' 16 int8 scales: lane q of tb (rows 0..3) / tb + 64 (rows 4..7), dword i =
           scale 4q + i of the four rows */
        _Alignas(64) uint8_t tb[128];
        _mm512_store_si512((__m512i *)tb, IL(zd_transpose16)(IL(zd_rows4x16)(w, wo + 192)));
        _mm512_store_si512((__m512i *)(tb + 64), IL(zd_transpose16)(IL(zd_rows4x16)(w + 4, wo + 192)));
        /* as floats: sf[h][4v + r] = scale v of row 4h + r */
        __m512 fsc[8];
        for (int q = 0; q < 8; q++) fsc[q] = IL(zd_lane_i8)(tb, q);
        const __m512 d = IL(zd_f16_quad)(w, wo + 208);
        float dxf[4][8];
        for (int t = 0; t < RN; t++) IL(zd_token_scales)(x[t] + xo, dxf[t], NULL);
        IGNIS_ZD_IN_MEMORY(dxf);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i qh[4], ql0[4], ql1[4];
            IL(zd_q6_k_half)(w, wo, h, qh, ql0, ql1);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int j = 4 * h + k;
                __m512i q[4];
                IL(zd_q6_k_quants)(qh, ql0, ql1, k, q);
                const __m512 sc = IL(zd_q6_k_sc)(fsc[j / 2], fsc[4 + j / 2], j);
                for (int t = 0; t < RN; t++) {
                    const uint8_t *xb = x[t] + xo + j * IGNIS_Q8_0_BYTES;
                    const __m512i xz = IL(zd_token)(xb);
                    const __m512i a = IL(zn_dots)(IL(zn_neg_partials)(xz, 32), q, xz);
                    acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a), sc),
                                             _mm512_mul_ps(d, _mm512_set1_ps(dxf[t][j])), acc[t]);
                }
            }
        }
    }
    for (int t = 0; t < RN; t++) acc[t] = _mm512_shuffle_f32x4(acc[t], acc[t], IGNIS_ZD_TO_Z8);
    IL(z8_store)(acc, RN, out);
}
IGNIS_ZN_BY_RN(q6_k, q6_k_zd)
