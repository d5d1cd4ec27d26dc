/* avx512_decode.h -- the AVX-512 decode kernels of Q4_K and Q6_K weights: 8 weight rows x RN <= 4
 * tokens (included by x86.h after avx512.h, inside the AVX-512 target region). They give the
 * bits of the scalar definitions: Q4_K the block rule (simd/kquants.h), Q6_K the half rule
 * (_neon.h).
 *
 * Decode streams every weight byte once per token, so these kernels are built to spend as few
 * instructions per weight byte as the definition allows (most of all on port 5, where every
 * 512-bit shuffle goes, and on port 0, the only one that runs vpdpbusd):
 * - Row pairs: a register holds 32 quant bytes of row p and of row p + 4 ([p | p+4], one load
 *   and one insert), vpdpbusd meets the token block broadcast twice, and one reduction of
 *   the four pairs leaves the exact half sums in "row-quad order": 128-bit lane 0 the low
 *   halves of rows 0..3, lane 1 their high halves, lanes 2 and 3 the same for rows 4..7.
 *   These are the lanes of Q6_K's lo and hi chains.
 * - Q4_K (block rule): blocks 2jp and 2jp + 1 share their quant bytes (low / high nibbles).
 *   Their whole-block sums are kept in "pair lanes", [2jp r0..3 | 2jp+1 r0..3 | 2jp r4..7 |
 *   2jp+1 r4..7]: the even and odd chains u, v of the rule side by side, three fused
 *   multiply-adds per block pair and token (A_j = sum * sc, u, v; zd_q4_k_fma), d and dmin
 *   applied once per super-block (zd_q4_k_end). zd spreads each register's token dwords as
 *   [low half of 2jp | high half of 2jp + 1] and the other way round (lane-swapped weights):
 *   eight vpdpbusd leave the whole sums in place. zt_decode.h's tables hold per-block spreads,
 *   so it merges two registers of half sums (one permute, a blend, an add: zd_q4_k_merge).
 *   The high nibbles are used in place (q * 16, masked, not shifted): the odd block's sums
 *   are 16x the rule's, exactly, and its sc is taken / 16 (exact), so A_j is the same exact
 *   integer; the int sums reach the floats through their bits (IGNIS_ZD_MAGIC), no convert.
 * - Scales: the packed scale bytes of four rows (one row per 128-bit lane) are unpacked for
 *   all four at once, transposed with one dword permute and one byte shuffle, and turned
 *   into float vectors in the lanes of the sums -- once per super-block, shared by every
 *   token.
 * - Token data: per super-block the eight blocks' f16 scales are converted together; Q4_K's
 *   block sums of x (for the min step, (float)c_j * d_x) come from four vpdpbusd and one
 *   reduction. */

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

/* the 16 bytes of lane q of a stored transposed register as floats (unsigned or signed bytes) */
IGNIS_INLINE __m512 IL(zd_lane_u8)(const uint8_t *t, int q) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(t + 16 * q))));
}
IGNIS_INLINE __m512 IL(zd_lane_i8)(const uint8_t *t, int q) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(t + 16 * q))));
}

/* the f16 values of the 8 rows at p[r] + off as floats, lane r the one of row r (Q6_K's d).
 * The halves are packed in 64-bit integers first: two vector inserts instead of eight. */
IGNIS_INLINE __m256 IL(zd_f16_single)(const uint8_t *const *p, size_t off) {
    uint64_t u[2] = {0, 0};
    for (int r = 0; r < 8; r++) u[r / 4] |= (uint64_t)ignis_load_u16(p[r] + off) << (16 * (r % 4));
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)u[1], (long long)u[0]));
}
/* lanes 2r (or 2r + 1: odd) of f in row-quad order ([r0..3 | r0..3 | r4..7 | r4..7]) */
IGNIS_INLINE __m512 IL(zd_rowquad)(__m512 f, int odd) {
    const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 8, 10, 12, 14, 8, 10, 12, 14),
                                         _mm512_set1_epi32(odd));
    return _mm512_permutexvar_ps(idx, f);
}

/* the 8 activation blocks' scales d_x of a super-block of token x (at xs) as floats */
IGNIS_INLINE __m256 IL(zd_token_dx)(const uint8_t *xs) {
    uint64_t u[2] = {0, 0};
    for (int j = 0; j < 8; j++) u[j / 4] |= (uint64_t)ignis_load_u16(xs + j * IGNIS_Q8_0_BYTES) << (16 * (j % 4));
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)u[1], (long long)u[0]));
}
IGNIS_INLINE void IL(zd_token_scales)(const uint8_t *xs, float *dxf) { _mm256_storeu_ps(dxf, IL(zd_token_dx)(xs)); }

/* the exact half sums of x of a super-block's 8 blocks (token at xs): c_lo of blocks 0..3,
 * c_hi of blocks 0..3, then the same for blocks 4..7 */
IGNIS_INLINE __m512i IL(zd_token_halves)(const uint8_t *xs) {
    const __m512i ones = _mm512_set1_epi8(1), z = _mm512_setzero_si512();
    __m512i c[4];
    for (int i = 0; i < 4; i++)
        c[i] = _mm512_dpbusd_epi32(z, ones, IL(zd_rows2)(xs + i * IGNIS_Q8_0_BYTES + 2, xs + (i + 4) * IGNIS_Q8_0_BYTES + 2));
    return IL(z_reduce4)(c[0], c[1], c[2], c[3]);
}
/* block j's half sums in row-quad order (c_lo in lanes 0, 2; c_hi in 1, 3), from the halves
 * stored as floats at cs[16]: two broadcasts */
IGNIS_INLINE __m512 IL(zd_block_sums)(const float *cs, int j) {
    const float *c = cs + 8 * (j / 4) + j % 4;
    return _mm512_mask_broadcastss_ps(_mm512_set1_ps(c[0]), 0xf0f0, _mm_load_ss(c + 4));
}

/* Q4_K's token values of a super-block (token at xs), per block pair jp as the pattern
 * [v_2jp x4, v_2jp+1 x4] (32 bytes, a 256-bit broadcast puts it in the lanes of the pair's
 * sums): d_x at dxp + 8 jp, (float)c_j * d_x (c_j = the exact sum of block j's 32 x, one
 * rounding) at cdxp + 8 jp. Both 64-aligned. h: zd_token_halves(xs). */
IGNIS_INLINE void IL(zd_token_blocks)(const uint8_t *xs, __m512i h, float *dxp, float *cdxp) {
    const __m512i s = _mm512_add_epi32(h, _mm512_shuffle_i32x4(h, h, _MM_SHUFFLE(2, 3, 0, 1)));   /* lanes 0, 2: c_j */
    const __m256 dx = IL(zd_token_dx)(xs);
    const __m256 cdx = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm512_castsi512_si256(_mm512_shuffle_i32x4(s, s, _MM_SHUFFLE(2, 0, 2, 0)))), dx);
    const __m512i p01 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i p23 = _mm512_add_epi32(p01, _mm512_set1_epi32(4));
    _mm512_store_ps(dxp, _mm512_permutexvar_ps(p01, _mm512_castps256_ps512(dx)));
    _mm512_store_ps(dxp + 16, _mm512_permutexvar_ps(p23, _mm512_castps256_ps512(dx)));
    _mm512_store_ps(cdxp, _mm512_permutexvar_ps(p01, _mm512_castps256_ps512(cdx)));
    _mm512_store_ps(cdxp + 16, _mm512_permutexvar_ps(p23, _mm512_castps256_ps512(cdx)));
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

/* a token block's 32 bytes twice ([x | x]) */
IGNIS_INLINE __m512i IL(zd_token)(const uint8_t *blk) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 2)));
}

/* Q4_K: per row (one per 128-bit lane) the super-block's first 16 bytes (f16 d, f16 dmin, the
 * 12 packed bytes s[0..11]) -> [sc0..7 | m0..7] as bytes: sc_j = s[j] & 63 (j < 4),
 * (s[j+4] & 15) | (s[j-4] >> 6) << 4 (j >= 4); m_j likewise from s[j+4] and the high nibbles
 * of s[8..11] (see ignis_q4_k_scale_min) */
IGNIS_INLINE __m512i IL(zd_q4_k_unpack)(__m512i z) {
    const __m512i p = _mm512_srlv_epi32(_mm512_shuffle_epi32(z, _MM_SHUFFLE(3, 2, 3, 1)), _mm512_set4_epi32(4, 0, 0, 0));
    const __m512i q = _mm512_srli_epi32(_mm512_shuffle_epi32(z, _MM_SHUFFLE(2, 2, 1, 1)), 2);
    const __m512i lo = _mm512_and_si512(p, _mm512_set4_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    return _mm512_ternarylogic_epi32(lo, q, _mm512_set4_epi32(0x30303030, 0, 0x30303030, 0), 0xF8);  /* lo | (q & hm) */
}

/* Q4_K super-block at wo of the 8 rows: per block pair jp the scales and mins as floats in the
 * lanes of the pair's sums (the pair lanes, see zd_q4_k_merge), sf[jp] = [sc_2jp r0..3 | sc_2jp+1 / 16 r0..3 |
 * sc_2jp r4..7 | sc_2jp+1 / 16 r4..7] (the odd block's sums are 16x: high nibbles in place),
 * sf[4 + jp] the same of m without the / 16; and d, dmin as [r0..3 | r0..3 | r4..7 | r4..7].
 * One 16-byte load per row holds d, dmin and the packed scales. */
IGNIS_INLINE void IL(zd_q4_k_sb)(const uint8_t *const *w, size_t wo, float (*sf)[16], __m512 *d, __m512 *dmin) {
    const __m512i h0 = IL(zd_rows4x16)(w, wo), h1 = IL(zd_rows4x16)(w + 4, wo);
    const __m512i t0 = IL(zd_transpose16)(IL(zd_q4_k_unpack)(h0)), t1 = IL(zd_transpose16)(IL(zd_q4_k_unpack)(h1));
    /* lane q of t0 / t1: values 4q..4q+3 (sc0..7, m0..7) of rows 0..3 / 4..7, a qword per
       two values: lane q of the low qwords' merge holds the pair 2q (sc for q < 2, m after),
       of the high ones' the pair 2q + 1 */
    _Alignas(64) uint8_t tb[128];
    _mm512_store_si512((__m512i *)tb, _mm512_unpacklo_epi64(t0, t1));
    _mm512_store_si512((__m512i *)(tb + 64), _mm512_unpackhi_epi64(t0, t1));
    IGNIS_ZD_IN_MEMORY(tb);
    const __m512 odd16 = _mm512_setr_ps(1, 1, 1, 1, 0.0625f, 0.0625f, 0.0625f, 0.0625f, 1, 1, 1, 1, 0.0625f, 0.0625f, 0.0625f, 0.0625f);
    for (int k = 0; k < 8; k++) {
        const int v = 2 * (k % 4) + k / 4;   /* sc pair v (v < 4), m pair v - 4 */
        const __m512 f = IL(zd_lane_u8)(tb, k);
        _mm512_store_ps(sf[v], v < 4 ? _mm512_mul_ps(f, odd16) : f);
    }
    /* dword 0 of each row's lane: its f16 d and dmin; as floats, d_r in lane 2r, dmin_r in 2r + 1 */
    const __m512i first = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512 dd = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi32(h0, first, h1)));
    *d = IL(zd_rowquad)(dd, 0);
    *dmin = IL(zd_rowquad)(dd, 1);
}

/* Q4_K blocks 2jp and 2jp + 1 of the super-block at wo: the 32 nibble bytes of rows p | p + 4,
 * transposed (raw[d] lane l dword p is dword d of lane l of row pair p, so that four vpdpbusd
 * into one register, each against token dword d of the lane's half, leave the exact half
 * sums), as low nibbles (block 2jp) and high (block 2jp + 1, 16 q) */
IGNIS_INLINE void IL(zd_q4_k_pair)(const uint8_t *const *w, size_t wo, int jp, __m512i *qlo, __m512i *qhi) {
    const __m512i low = _mm512_set1_epi8(0x0f), high = _mm512_set1_epi8((char)0xf0);
    __m512i raw[4];
    for (int p = 0; p < 4; p++) raw[p] = IL(zd_rows2)(w[p] + wo + 16 + 32 * jp, w[p + 4] + wo + 16 + 32 * jp);
    IL(zd_transpose4)(raw);
    for (int d = 0; d < 4; d++) {
        qlo[d] = _mm512_and_si512(raw[d], low);
        qhi[d] = _mm512_and_si512(raw[d], high);
    }
}

/* The whole blocks' sums reach the float steps without a conversion: the int32 sums start
 * from IGNIS_ZD_MAGIC (1.5 * 2^23) in the lanes that keep them, and for |S| < 2^22 the bits of
 * MAGIC + S are the float 12582912 + S exactly (|S| <= 16 * 32 * 15 * 127 < 2^20 here). Then
 * fma(12582912 + S, sc, -12582912 * sc) (both products exact) is S * sc exactly: (float)A_j,
 * as the block rule's cvt and multiply give it, in one step off the conversion port. */
#define IGNIS_ZD_MAGIC 0x4B400000

/* the starts of the even block's (alo) and the odd block's (ahi) sums: MAGIC in the lanes
 * that zd_q4_k_merge keeps in place (alo: 0, 2; ahi: 1, 3) */
IGNIS_INLINE __m512i IL(zd_magic_lo)(void) { return _mm512_maskz_set1_epi32(0x0f0f, IGNIS_ZD_MAGIC); }
IGNIS_INLINE __m512i IL(zd_magic_hi)(void) { return _mm512_maskz_set1_epi32(0xf0f0, IGNIS_ZD_MAGIC); }
/* -12582912 * sc for zd_q4_k_fma */
IGNIS_INLINE __m512 IL(zd_magic_sc)(__m512 sc) { return _mm512_mul_ps(sc, _mm512_set1_ps(-12582912.0f)); }

/* The pair lanes: the whole sums of blocks 2jp and 2jp + 1 (16x) of the 8 rows as
 * [2jp r0..3 | 2jp+1 r0..3 | 2jp r4..7 | 2jp+1 r4..7], the even and odd chains side by side.
 * zt_decode.h forms them from two registers of half sums (row-quad order, alo of block 2jp,
 * ahi of 2jp + 1, started by zd_magic_lo / _hi): one two-source permute brings each block's
 * other half next to the half that stays, a blend keeps those, an add */
IGNIS_INLINE __m512i IL(zd_q4_k_merge)(__m512i alo, __m512i ahi) {
    const __m512i hix = _mm512_setr_epi32(4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 24, 25, 26, 27);
    return _mm512_add_epi32(_mm512_mask_blend_epi32(0xf0f0, alo, ahi), _mm512_permutex2var_epi32(alo, hix, ahi));
}

/* the block rule's float steps of blocks 2jp, 2jp + 1 for one token, from their sums a
 * (+ MAGIC) in the pair lanes: (float)A_j = sum * sc (nsc = zd_magic_sc(sc)), then
 * u = fma(A_j, d_x, u) and v = fma(m, (float)c_j * d_x, v) */
IGNIS_INLINE void IL(zd_q4_k_fma)(__m512i a, __m512 sc, __m512 nsc, __m512 m, __m512 dx, __m512 cdx,
                                  __m512 *u, __m512 *v) {
    *u = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_castsi512_ps(a), sc, nsc), dx, *u);
    *v = _mm512_fmadd_ps(m, cdx, *v);
}

/* a super-block's end: acc = fma(u, d, acc), acc = fma(-v, dmin, acc), lane by lane */
IGNIS_INLINE __m512 IL(zd_q4_k_end)(__m512 acc, __m512 u, __m512 v, __m512 d, __m512 dmin) {
    return _mm512_fnmadd_ps(v, dmin, _mm512_fmadd_ps(u, d, acc));
}

/* zd's own form of a block pair (the tokens spread here, not from a table): each register
 * meets one half of each block, mx[0..3] the low half of block 2jp (low nibbles, lanes 0 and
 * 2) and the high half of block 2jp + 1 (high nibbles, lanes 1 and 3), mx[4..7] (lanes
 * swapped first) the high half of 2jp and the low half of 2jp + 1: eight vpdpbusd into one
 * register leave the whole blocks' sums in the pair lanes (see zd_q4_k_merge): no permute
 * per token, for four lane swaps per block pair. (zt's tables hold the per-block spreads
 * that Q6_K needs too, so zt merges instead.) */
IGNIS_INLINE void IL(zd_q4_k_pair_mixed)(const uint8_t *const *w, size_t wo, int jp, __m512i *mx) {
    const __m512i nib = _mm512_set_epi64((long long)0xf0f0f0f0f0f0f0f0ull, (long long)0xf0f0f0f0f0f0f0f0ull, 0x0f0f0f0f0f0f0f0fll,
                                         0x0f0f0f0f0f0f0f0fll, (long long)0xf0f0f0f0f0f0f0f0ull, (long long)0xf0f0f0f0f0f0f0f0ull,
                                         0x0f0f0f0f0f0f0f0fll, 0x0f0f0f0f0f0f0f0fll);
    __m512i raw[4];
    for (int p = 0; p < 4; p++) raw[p] = IL(zd_rows2)(w[p] + wo + 16 + 32 * jp, w[p + 4] + wo + 16 + 32 * jp);
    IL(zd_transpose4)(raw);
    for (int d = 0; d < 4; d++) {
        mx[d] = _mm512_and_si512(raw[d], nib);
        mx[4 + d] = _mm512_and_si512(_mm512_shuffle_i32x4(raw[d], raw[d], _MM_SHUFFLE(2, 3, 0, 1)), nib);
    }
}
/* the whole sums of blocks 2jp (token block at b0) and 2jp + 1 (at b0 + 34, 16x) from
 * zd_q4_k_pair_mixed's registers, started by MAGIC in every lane */
IGNIS_INLINE __m512i IL(zd_dots_mixed)(const __m512i *mx, const uint8_t *b0) {
    const uint8_t *b1 = b0 + IGNIS_Q8_0_BYTES;
    __m512i s = _mm512_set1_epi32(IGNIS_ZD_MAGIC), s2 = _mm512_setzero_si512();
    for (int d = 0; d < 4; d++) {
        int32_t lo0, hi0, lo1, hi1;
        memcpy(&lo0, b0 + 2 + 4 * d, 4);
        memcpy(&hi0, b0 + 18 + 4 * d, 4);
        memcpy(&lo1, b1 + 2 + 4 * d, 4);
        memcpy(&hi1, b1 + 18 + 4 * d, 4);
        s = _mm512_dpbusd_epi32(s, mx[d], _mm512_mask_set1_epi32(_mm512_set1_epi32(lo0), 0xf0f0, hi1));
        s2 = _mm512_dpbusd_epi32(s2, mx[4 + d], _mm512_mask_set1_epi32(_mm512_set1_epi32(hi0), 0xf0f0, lo1));
    }
    return _mm512_add_epi32(s, s2);
}

/* Q4_K, 8 weight rows x RN <= 4 tokens (decode) */
IGNIS_INLINE void IL(q4_k_zd)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                              float *out, const int RN) {
    __m512 acc[4];
    for (int t = 0; t < RN; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * IGNIS_Q4_K_BYTES, xo = (size_t)s * 8 * IGNIS_Q8_0_BYTES;
        _Alignas(64) float sf[8][16];
        __m512 d, dmin;
        IL(zd_q4_k_sb)(w, wo, sf, &d, &dmin);
        IGNIS_ZD_IN_MEMORY(sf);
        _Alignas(64) float dxp[4][32], cdxp[4][32];
        for (int t = 0; t < RN; t++) IL(zd_token_blocks)(x[t] + xo, IL(zd_token_halves)(x[t] + xo), dxp[t], cdxp[t]);
        IGNIS_ZD_IN_MEMORY(dxp);
        IGNIS_ZD_IN_MEMORY(cdxp);
        __m512 u[4], v[4];
        for (int t = 0; t < RN; t++) u[t] = v[t] = _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int jp = 0; jp < 4; jp++) {
            __m512i mx[8];
            IL(zd_q4_k_pair_mixed)(w, wo, jp, mx);
            const __m512 sc = _mm512_load_ps(sf[jp]), nsc = IL(zd_magic_sc)(sc), m = _mm512_load_ps(sf[4 + jp]);
            const int j0 = 2 * jp;
            for (int t = 0; t < RN; t++) {
                IL(zd_q4_k_fma)(IL(zd_dots_mixed)(mx, x[t] + xo + j0 * IGNIS_Q8_0_BYTES), sc, nsc, m,
                                _mm512_broadcast_f32x8(_mm256_load_ps(dxp[t] + 8 * jp)),
                                _mm512_broadcast_f32x8(_mm256_load_ps(cdxp[t] + 8 * jp)), &u[t], &v[t]);
            }
        }
        for (int t = 0; t < RN; t++) acc[t] = IL(zd_q4_k_end)(acc[t], u[t], v[t], d, dmin);
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
        /* the rows' 16 int8 scales: lane q of tb (rows 0..3) / tb + 64 (rows 4..7), dword i =
           scale 4q + i of the four rows */
        _Alignas(64) uint8_t tb[128];
        _mm512_store_si512((__m512i *)tb, IL(zd_transpose16)(IL(zd_rows4x16)(w, wo + 192)));
        _mm512_store_si512((__m512i *)(tb + 64), IL(zd_transpose16)(IL(zd_rows4x16)(w + 4, wo + 192)));
        /* as floats: sf[h][4v + r] = scale v of row 4h + r */
        __m512 fsc[8];
        for (int q = 0; q < 8; q++) fsc[q] = IL(zd_lane_i8)(tb, q);
        const __m256 d8 = IL(zd_f16_single)(w, wo + 208);
        const __m512 d = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7),
                                               _mm512_castps256_ps512(d8));
        float dxf[4][8];
        for (int t = 0; t < RN; t++) IL(zd_token_scales)(x[t] + xo, dxf[t]);
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
