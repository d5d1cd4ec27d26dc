/* kquants_x86.h -- the 256-element super-block tiles of the x86-64 levels but Q6_K's (included
 * by x86.h, once per level): Q4_K, Q5_K and IQ4_XS (WT 12, 13, 23) by the block rule
 * (ignis_scalar_vec_dot_block_rule in simd/kquants.h), Q3_K and Q2_K (WT 11, 10) by the half
 * rule (ignis_scalar_vec_dot_kx), against Q8_0 activations; they give those bits.
 *
 * Q4_K (IL(q4_k_8xn): avx2, avxvnni), Q5_K / IQ4_XS (IL(kb_8xn), and IL(kb_zn) for avx512
 * decode): the pair layout described below -- blocks 2p and 2p+1 in the two 128-bit halves,
 * one reduction of four rows per pair and token giving the exact whole-block sums of the even
 * and odd chains, then one fused multiply-add by d_x (and one for the min, m * (c * d_x)) per
 * pair, d and dmin once per super-block.
 *
 * Q3_K / Q2_K (IL(kx_8xn), IL(kx_zn)): per activation block, each of four rows' 32 quants is
 * decoded to bytes in element order (Q2_K 0..3 unsigned, Q3_K -4..3 signed, met by the sign
 * trick), vpmaddubsw against the token gives exact 16-bit pair sums, vpmaddwd against the
 * halves' integer scales the exact scaled half sums, and the reduction of four rows lays them
 * out as [lo r0..3 | hi r0..3]: the lanes of the definition's lo and hi chains. Q2_K's min
 * steps use the token's half sums times the mins as exact float products (small integers).
 * IL(kx_quants) and IL(kx_scale_bytes) decode all four types (the avx512 pair tiles of
 * kx_pairs.h take them). The AVX-512 level takes the zn kernels below for decode and
 * kx_pairs.h for prefill. */

/* The block rule on four weight rows. Activation blocks go in pairs (2p, 2p+1), and every
 * vector holds block 2p in its low 128-bit half and block 2p+1 in its high half: the weights
 * as w1 = [2p: elements 0..15 | 2p+1: 0..15] and w2 = [2p: 16..31 | 2p+1: 16..31], a token
 * pair the same way (X1, X2). The byte dots of w1.X1 and w2.X2 added give in each half
 * partial sums of one whole block, and one reduction of four rows leaves [A_2p r0..3 |
 * A_2p+1 r0..3]: the lanes of the definition's even and odd chains. Per pair, token and four rows: one convert (and on the
 * VNNI levels one exact multiply by the scales), one fused multiply-add into u, one into v;
 * d and dmin once per super-block. */

/* a token's data for the four block pairs of one super-block (its 8 blocks at xs): tx[2p],
 * tx[2p+1] = X1, X2; dx[p] = [d_x of 2p x4 | of 2p+1 x4]; MINS: cdx[p] = (float)c * d_x, c the
 * block's sum of x (exact); OFF (VNNI, signed quants met as v + 128): st[p] = -128 times the
 * token's partial sums, the start of every row's vpdpbusd chain. */
IGNIS_INLINE void IL(br_token)(const uint8_t *xs, __m256i *tx, __m256 *dx, __m256 *cdx, __m256i *st,
                               const int MINS, const int OFF) {
    for (int p = 0; p < 4; p++) {
        const uint8_t *be = xs + (size_t)(2 * p) * IGNIS_Q8_0_BYTES, *bo = be + IGNIS_Q8_0_BYTES;
        const __m256i x1 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(be + 2))),
                                                   _mm_loadu_si128((const __m128i *)(bo + 2)), 1);
        const __m256i x2 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(be + 18))),
                                                   _mm_loadu_si128((const __m128i *)(bo + 18)), 1);
        tx[2 * p] = x1;
        tx[2 * p + 1] = x2;
        dx[p] = _mm256_set_m128(_mm_set1_ps(_cvtsh_ss(ignis_load_u16(bo))), _mm_set1_ps(_cvtsh_ss(ignis_load_u16(be))));
        if (MINS) {
            const __m256i ones8 = _mm256_set1_epi8(1);
#if IGNIS_X86_VNNI
            __m256i c = IGNIS_DPBUSD(IGNIS_DPBUSD(_mm256_setzero_si256(), ones8, x1), ones8, x2);
#else
            __m256i c = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(ones8, x1), _mm256_maddubs_epi16(ones8, x2)),
                                          _mm256_set1_epi16(1));
#endif
            c = _mm256_add_epi32(c, _mm256_shuffle_epi32(c, 0x4E));
            c = _mm256_add_epi32(c, _mm256_shuffle_epi32(c, 0xB1));
            cdx[p] = _mm256_mul_ps(_mm256_cvtepi32_ps(c), dx[p]);
        }
#if IGNIS_X86_VNNI
        if (OFF) {
            const __m256i k80 = _mm256_set1_epi8((char)0x80), z = _mm256_setzero_si256();
            st[p] = _mm256_sub_epi32(z, IGNIS_DPBUSD(IGNIS_DPBUSD(z, k80, x1), k80, x2));
        }
#else
        (void)st;
        (void)OFF;
#endif
    }
}

/* four rows' values of the 8 blocks, each row as int32 lanes in block order 0 2 4 6 1 3 5 7
 * (r[k]) -> t[p] = [block 2p r0..3 | block 2p+1 r0..3] (a 4 x 8 transposition by unpacks) */
IGNIS_INLINE void IL(br_pairs4)(const __m256i *r, __m256i *t) {
    const __m256i a = _mm256_unpacklo_epi32(r[0], r[1]), b = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i c = _mm256_unpacklo_epi32(r[2], r[3]), e = _mm256_unpackhi_epi32(r[2], r[3]);
    t[0] = _mm256_unpacklo_epi64(a, c);
    t[1] = _mm256_unpackhi_epi64(a, c);
    t[2] = _mm256_unpacklo_epi64(b, e);
    t[3] = _mm256_unpackhi_epi64(b, e);
}

/* the Q4_K packing of eight 6-bit scales and mins (12 bytes at s) undone in 32-bit words:
 * byte j of *sc8 / *m8 is block j's */
static inline void IL(br_q4_k_bytes)(const uint8_t *s, uint64_t *sc8, uint64_t *m8) {
    const uint32_t a = ignis_load_u32(s), b = ignis_load_u32(s + 4), c = ignis_load_u32(s + 8);
    *sc8 = (uint64_t)(a & 0x3f3f3f3fu) | (uint64_t)((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32;
    *m8 = (uint64_t)(b & 0x3f3f3f3fu) | (uint64_t)(((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u)) << 32;
}

/* eight bytes (block j at byte j) as int32 lanes in the block order of br_pairs4 */
IGNIS_INLINE __m256i IL(br_row8)(uint64_t bytes) {
    const __m128i order = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm256_cvtepu8_epi32(_mm_shuffle_epi8(_mm_cvtsi64_si128((long long)bytes), order));
}

/* four rows' Q4_K / Q5_K scales and mins (packed at p[k] + off) in pair lanes */
IGNIS_INLINE void IL(br_q4_k_scales)(const uint8_t *const *p, size_t off, __m256i *sct, __m256i *mt) {
    __m256i rs[4], rm[4];
    for (int k = 0; k < 4; k++) {
        uint64_t sc8, m8;
        IL(br_q4_k_bytes)(p[k] + off, &sc8, &m8);
        rs[k] = IL(br_row8)(sc8);
        rm[k] = IL(br_row8)(m8);
    }
    IL(br_pairs4)(rs, sct);
    IL(br_pairs4)(rm, mt);
}

/* pair p's scales of four rows (t = [sc_2p r0..3 | sc_2p+1 r0..3], int32) as br_dot4 takes
 * them: VNNI as floats (scf), AVX2 per row as int16 [sc_2p x8 | sc_2p+1 x8] (sc16) */
IGNIS_INLINE void IL(br_scales)(__m256i t, __m256i *sc16, __m256 *scf) {
#if IGNIS_X86_VNNI
    *scf = _mm256_cvtepi32_ps(t);
    (void)sc16;
#else
    const __m256i t16 = _mm256_or_si256(_mm256_and_si256(t, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(t, 16));
    sc16[0] = _mm256_shuffle_epi32(t16, 0x00);
    sc16[1] = _mm256_shuffle_epi32(t16, 0x55);
    sc16[2] = _mm256_shuffle_epi32(t16, 0xAA);
    sc16[3] = _mm256_shuffle_epi32(t16, 0xFF);
    *scf = _mm256_setzero_ps();
#endif
}

/* [A_2p r0..3 | A_2p+1 r0..3] as floats (exact: |A| < 2^24) of four rows' w1, w2 against a
 * token pair (x1, x2). VNNI: two vpdpbusd from st (unsigned quants, or signed ones offset by
 * 128 with st from br_token), the exact sums times the scales as floats. AVX2: unsigned quants
 * (<= 31: the two byte-pair sums fit int16) add the two vpmaddubsw and scale in the vpmaddwd;
 * signed ones take the sign trick (|w| . x sign(w)) per half, each scaled. */
IGNIS_INLINE __m256 IL(br_dot4)(const __m256i *w1, const __m256i *w2, __m256i x1, __m256i x2,
                                const __m256i *sc16, __m256 scf, __m256i st, const int SIGNED) {
    __m256i p[4];
#if IGNIS_X86_VNNI
    for (int k = 0; k < 4; k++) p[k] = IGNIS_DPBUSD(IGNIS_DPBUSD(st, w1[k], x1), w2[k], x2);
    (void)sc16;
    (void)SIGNED;
    return _mm256_mul_ps(_mm256_cvtepi32_ps(IL(reduce4)(p[0], p[1], p[2], p[3])), scf);
#else
    for (int k = 0; k < 4; k++) {
        if (SIGNED) {
            const __m256i a1 = _mm256_maddubs_epi16(_mm256_sign_epi8(w1[k], w1[k]), _mm256_sign_epi8(x1, w1[k]));
            const __m256i a2 = _mm256_maddubs_epi16(_mm256_sign_epi8(w2[k], w2[k]), _mm256_sign_epi8(x2, w2[k]));
            p[k] = _mm256_add_epi32(_mm256_madd_epi16(a1, sc16[k]), _mm256_madd_epi16(a2, sc16[k]));
        } else {
            p[k] = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(w1[k], x1), _mm256_maddubs_epi16(w2[k], x2)), sc16[k]);
        }
    }
    (void)scf;
    (void)st;
    return _mm256_cvtepi32_ps(IL(reduce4)(p[0], p[1], p[2], p[3]));
#endif
}

/* the 32 nibble bytes at qs32 as w1, w2 of a pair whose block 2p has the low nibbles and
 * 2p+1 the high ones (Q4_K, Q5_K): each 16-byte half broadcast, shifted in its upper copy */
IGNIS_INLINE void IL(br_nibble_pair)(const uint8_t *qs32, __m256i *w1, __m256i *w2) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i a = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs32));
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(qs32 + 16)));
    *w1 = _mm256_and_si256(_mm256_blend_epi32(a, _mm256_srli_epi16(a, 4), 0xF0), low);
    *w2 = _mm256_and_si256(_mm256_blend_epi32(b, _mm256_srli_epi16(b, 4), 0xF0), low);
}


/* the quants of activation block jb (0..7) of one super-block, 32 bytes in element order (Q3_K's
 * offset to unsigned, q + 4) */
IGNIS_INLINE __m256i IL(kx_quants)(const uint8_t *sb, int jb, const int WT) {
    const __m256i low2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    if (WT == 13) {          /* Q5_K: nibble of qs, fifth bit jb of qh[l] */
        const __m256i v = _mm256_loadu_si256((const __m256i *)(sb + 48 + (jb / 2) * 32));
        const __m256i nib = _mm256_and_si256((jb & 1) ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0f));
        const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(sb + 16)),
                                                             _mm_cvtsi32_si128(jb)), one);
        return _mm256_or_si256(nib, _mm256_slli_epi16(hb, 4));
    }
    const __m128i sh2 = _mm_cvtsi32_si128(2 * (jb % 4));
    if (WT == 10)            /* Q2_K: two bits of qs */
        return _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(sb + 16 + (jb / 4) * 32)), sh2), low2);
    if (WT == 11) {          /* Q3_K as q + 4 (0..7, unsigned): two bits of qs, + 4 * bit of hmask */
        const __m256i l2 = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(sb + 32 + (jb / 4) * 32)), sh2), low2);
        const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)sb),
                                                             _mm_cvtsi32_si128(4 * (jb / 4) + jb % 4)), one);
        return _mm256_or_si256(l2, _mm256_slli_epi16(hb, 2));
    }
    /* IQ4_XS: the grid value of each nibble */
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ignis_iq4nl_values));
    return _mm256_shuffle_epi8(grid, IL(nibbles32)(sb + 8 + jb * 16));
}

/* one Q2_K / Q3_K row's 16 half-block scales (and Q2_K's mins) as bytes, half 2jb + h of activation
 * block jb at byte 2jb + h (Q3_K's signed, sc - 32; its mins are its scales) */
IGNIS_INLINE void IL(kx_half_scale_bytes)(const uint8_t *sb, const int WT, __m128i *sc, __m128i *m) {
    if (WT == 10) {
        const __m128i v = _mm_loadu_si128((const __m128i *)sb);
        *sc = _mm_and_si128(v, _mm_set1_epi8(0x0f));
        *m = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f));
    } else {
        const uint32_t a = ignis_load_u32(sb + 96), b = ignis_load_u32(sb + 100), c = ignis_load_u32(sb + 104);
        const __m128i low4 = _mm_setr_epi32((int)(a & 0x0f0f0f0fu), (int)(b & 0x0f0f0f0fu),
                                            (int)((a >> 4) & 0x0f0f0f0fu), (int)((b >> 4) & 0x0f0f0f0fu));
        const __m128i high2 = _mm_setr_epi32((int)(c & 0x03030303u), (int)((c >> 2) & 0x03030303u),
                                             (int)((c >> 4) & 0x03030303u), (int)((c >> 6) & 0x03030303u));
        *sc = _mm_sub_epi8(_mm_or_si128(low4, _mm_slli_epi16(high2, 4)), _mm_set1_epi8(32));
        *m = *sc;
    }
}

/* Q3_K / Q2_K (the half rule), 4G weight rows (G = 1 or 2 groups of four) x RN tokens (RN <= 4
 * with two groups, <= 8 with one). Per super-block the four rows' scales (and Q2_K's mins)
 * transposed to bytes [lo r0..3 | hi r0..3] per block (IL(halves_by_block)), widened per use; the
 * scales meet the exact half sums as a float product (|sc * sum| < 2^24: the definition's
 * (float)(sc * sum)); the tokens' half sums once per super-block. A scalar unpacking per row and
 * block had cost more than the arithmetic; a permute and a byte shuffle per row and block (the
 * scales as int16 for the multiply-add) 10 % of what was left. */
IGNIS_INLINE void IL(kx_8xn)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                             float *out, const int RN, const int G, const int WT) {
    const size_t wbytes = WT == 11 ? IGNIS_Q3_K_BYTES : IGNIS_Q2_K_BYTES;
    const size_t doff = WT == 11 ? 108 : 80, moff = 82;
    const int has_min = WT == 10;
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256 acc[8][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * wbytes;
        IL(prefetch_rows)(w, 4 * G, wo + IGNIS_ZD_AHEAD, wbytes);
        __m256 xs[8][8];        /* Q2_K: per token and block [c_lo x4 | c_hi x4] as floats */
        if (has_min)
            for (int j = 0; j < RN; j++)
                for (int jb = 0; jb < 8; jb++) {
                    const __m256i t = IL(udot4)(ones8, _mm256_loadu_si256((const __m256i *)(x[j] + (size_t)(s * 8 + jb) * IGNIS_Q8_0_BYTES + 2)));
                    xs[j][jb] = _mm256_cvtepi32_ps(IL(reduce4)(t, t, t, t));
                }
        for (int g = 0; g < G; g++) {
            const uint8_t *const *wg = w + 4 * g;
            const __m256 d = IL(f16x4_twice)(wg[0] + wo + doff, wg[1] + wo + doff, wg[2] + wo + doff, wg[3] + wo + doff);
            const __m256 dmin = has_min ? IL(f16x4_twice)(wg[0] + wo + moff, wg[1] + wo + moff, wg[2] + wo + moff,
                                                          wg[3] + wo + moff) : d;
            __m128i sb[4], mb[4];
            _Alignas(16) uint8_t sq[8][8], mq[8][8];
            for (int k = 0; k < 4; k++) IL(kx_half_scale_bytes)(wg[k] + wo, WT, &sb[k], &mb[k]);
            IL(halves_by_block)(sb, sq);
            if (has_min) IL(halves_by_block)(mb, mq);
#pragma GCC unroll 8
            for (int jb = 0; jb < 8; jb++) {      /* unrolled: the field shifts become immediates */
                __m256i q[4];
                for (int k = 0; k < 4; k++) q[k] = IL(kx_quants)(wg[k] + wo, jb, WT);
                const __m256 sc = IL(block_lanes)(sq[jb]);
                const __m256 m = has_min ? IL(block_lanes)(mq[jb]) : d;
                const size_t xo = (size_t)(s * 8 + jb) * IGNIS_Q8_0_BYTES;
                for (int j = 0; j < RN; j++) {
                    const __m256i xv = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 2));
                    const __m256 dx = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo)));
                    /* Q3_K's q + 4 meet x as they are; 4 x's pair sums off each (exact: |.| <= 1778) */
                    const __m256i x4 = WT == 11 ? _mm256_maddubs_epi16(_mm256_set1_epi8(4), xv) : _mm256_setzero_si256();
                    __m256i p[4];
                    for (int k = 0; k < 4; k++) {
                        const __m256i pq = _mm256_maddubs_epi16(q[k], xv);
                        p[k] = _mm256_madd_epi16(WT == 11 ? _mm256_sub_epi16(pq, x4) : pq, ones16);
                    }
                    const __m256i h = IL(reduce4)(p[0], p[1], p[2], p[3]);
                    acc[j][g] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(h), sc), _mm256_mul_ps(d, dx), acc[j][g]);
                    if (has_min)
                        acc[j][g] = _mm256_fnmadd_ps(_mm256_mul_ps(m, xs[j][jb]), _mm256_mul_ps(dmin, dx), acc[j][g]);
                }
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < G; g++) IL(store4)(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}

/* Q5_K (WT 13) and IQ4_XS (WT 23) by the block rule (ignis_scalar_vec_dot_block_rule), in the
 * pair layout of x86.h (IL(br_token) .. IL(br_dot4)): block 2p in the low 128-bit half of
 * every vector, block 2p+1 in the high one. */

/* one row's quants of block pair p as w1 = [2p: 0..15 | 2p+1: 0..15], w2 = [2p: 16..31 |
 * 2p+1: 16..31]. Q5_K: the nibbles as Q4_K's, the fifth bit (2p or 2p+1) of qh[l] shifted per
 * 64-bit lane. IQ4_XS: blocks 2p and 2p+1 are the 32 bytes at 16 * 2p, low nibbles elements
 * 0..15, high 16..31; the grid values signed (AVX2) or + 128 (VNNI, for the offset start). */
IGNIS_INLINE void IL(kb_pair_quants)(const uint8_t *sb, int p, const int WT, __m256i *w1, __m256i *w2) {
    if (WT == 13) {
        IL(br_nibble_pair)(sb + 48 + 32 * p, w1, w2);
        const __m256i cnt = _mm256_setr_epi64x(2 * p, 2 * p, 2 * p + 1, 2 * p + 1), one = _mm256_set1_epi8(1);
        const __m256i h1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(sb + 16)));
        const __m256i h2 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(sb + 32)));
        *w1 = _mm256_or_si256(*w1, _mm256_slli_epi16(_mm256_and_si256(_mm256_srlv_epi64(h1, cnt), one), 4));
        *w2 = _mm256_or_si256(*w2, _mm256_slli_epi16(_mm256_and_si256(_mm256_srlv_epi64(h2, cnt), one), 4));
        return;
    }
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ignis_iq4nl_values));
#if IGNIS_X86_VNNI
    grid = _mm256_add_epi8(grid, _mm256_set1_epi8((char)0x80));
#endif
    const __m256i v = _mm256_loadu_si256((const __m256i *)(sb + 8 + 32 * p));
    *w1 = _mm256_shuffle_epi8(grid, _mm256_and_si256(v, low));
    *w2 = _mm256_shuffle_epi8(grid, _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
}

/* one IQ4_XS row's eight signed 6-bit scales as int32 lanes in the block order of br_pairs4
 * (0 2 4 6 1 3 5 7): low nibble 4j of scales_l, two bits 2j of scales_h */
IGNIS_INLINE __m256i IL(iq4_xs_scale_row)(const uint8_t *sb) {
    const __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)ignis_load_u32(sb + 4)),
                                                          _mm256_setr_epi32(0, 8, 16, 24, 4, 12, 20, 28)), _mm256_set1_epi32(15));
    const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)ignis_load_u16(sb + 2)),
                                                          _mm256_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14)), _mm256_set1_epi32(3));
    return _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
}

/* four rows' scales (and Q5_K's mins) in pair lanes: t[p] = [sc_2p r0..3 | sc_2p+1 r0..3] */
IGNIS_INLINE void IL(kb_scales4)(const uint8_t *const *wg, size_t wo, const int WT, __m256i *sct, __m256i *mt) {
    if (WT == 13) {
        IL(br_q4_k_scales)(wg, wo + 4, sct, mt);
    } else {
        __m256i r[4];
        for (int k = 0; k < 4; k++) r[k] = IL(iq4_xs_scale_row)(wg[k] + wo);
        IL(br_pairs4)(r, sct);
    }
}

/* Q5_K / IQ4_XS, 4G weight rows (G = 1 or 2 groups of four) x RN tokens (RN <= 4 with two
 * groups, <= 8 with one), as IL(q4_k_8xn): per pair and token u += A * d_x, Q5_K's v += m *
 * (c * d_x), in the even / odd lanes; d (and dmin) at the super-block's end. */
IGNIS_INLINE void IL(kb_8xn)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                             float *out, const int RN, const int G, const int WT) {
    const size_t wbytes = WT == 13 ? IGNIS_Q5_K_BYTES : IGNIS_IQ4_XS_BYTES;
    const int mins = WT == 13, off = WT == 23 && IGNIS_X86_VNNI;
    __m256 acc[8][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * wbytes;
        IL(prefetch_rows)(w, 4 * G, wo + IGNIS_ZD_AHEAD, wbytes);
        __m256i tx[8][8], tst[8][4];
        __m256 tdx[8][4], tcdx[8][4];
        for (int j = 0; j < RN; j++)
            IL(br_token)(x[j] + (size_t)s * 8 * IGNIS_Q8_0_BYTES, tx[j], tdx[j], tcdx[j], tst[j], mins, off);
        for (int g = 0; g < G; g++) {
            const uint8_t *const *wg = w + 4 * g;
            __m256i sct[4], mt[4];
            IL(kb_scales4)(wg, wo, WT, sct, mt);
            const __m256 d = IL(f16x4_twice)(wg[0] + wo, wg[1] + wo, wg[2] + wo, wg[3] + wo);
            __m256 u[8], v[8];
            for (int j = 0; j < RN; j++) u[j] = v[j] = _mm256_setzero_ps();
            for (int p = 0; p < 4; p++) {
                __m256i w1[4], w2[4], sc16[4];
                __m256 scf;
                for (int k = 0; k < 4; k++) IL(kb_pair_quants)(wg[k] + wo, p, WT, &w1[k], &w2[k]);
                IL(br_scales)(sct[p], sc16, &scf);
                const __m256 m = mins ? _mm256_cvtepi32_ps(mt[p]) : scf;
                for (int j = 0; j < RN; j++) {
                    const __m256i st = off ? tst[j][p] : _mm256_setzero_si256();
                    const __m256 a = IL(br_dot4)(w1, w2, tx[j][2 * p], tx[j][2 * p + 1], sc16, scf, st, WT == 23);
                    u[j] = _mm256_fmadd_ps(a, tdx[j][p], u[j]);
                    if (mins) v[j] = _mm256_fmadd_ps(m, tcdx[j][p], v[j]);
                }
            }
            const __m256 dmin = mins ? IL(f16x4_twice)(wg[0] + wo + 2, wg[1] + wo + 2, wg[2] + wo + 2, wg[3] + wo + 2) : d;
            for (int j = 0; j < RN; j++) {
                acc[j][g] = _mm256_fmadd_ps(u[j], d, acc[j][g]);
                if (mins) acc[j][g] = _mm256_fnmadd_ps(v[j], dmin, acc[j][g]);
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < G; g++) IL(store4)(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}

#if !IGNIS_X86_512      /* avx512 takes the zn kernels and the pair tile below */
#define IGNIS_KX_KERNELS(name, kernel, WT) \
    static void IL(name##_8x1)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kernel)(n, w, x, o, 1, 2, WT); } \
    static void IL(name##_8x2)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kernel)(n, w, x, o, 2, 2, WT); } \
    static void IL(name##_8x3)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kernel)(n, w, x, o, 3, 2, WT); } \
    static void IL(name##_8x4)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kernel)(n, w, x, o, 4, 2, WT); } \
    static void IL(name##_4x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kernel)(n, w, x, o, 8, 1, WT); }
IGNIS_KX_KERNELS(q5_k, kb_8xn, 13) IGNIS_KX_KERNELS(q3_k, kx_8xn, 11) IGNIS_KX_KERNELS(q2_k, kx_8xn, 10)
IGNIS_KX_KERNELS(iq4_xs, kb_8xn, 23)
#undef IGNIS_KX_KERNELS
#endif

#if IGNIS_X86_512
/* IQ4_XS's eight signed 6-bit scales of one row, byte j for sub-block j (bytes 8..15 zero):
 * low nibbles from scales_l, the two high bits from scales_h shifted per 16-bit lane */
IGNIS_INLINE __m128i IL(iq4_xs_scales8)(const uint8_t *sb) {
    const __m128i l = _mm_cvtsi32_si128((int)ignis_load_u32(sb + 4));
    const __m128i nib = _mm_unpacklo_epi8(_mm_and_si128(l, _mm_set1_epi8(0x0f)),
                                          _mm_and_si128(_mm_srli_epi16(l, 4), _mm_set1_epi8(0x0f)));
    const __m128i h = _mm_and_si128(_mm_srlv_epi16(_mm_set1_epi16((short)ignis_load_u16(sb + 2)),
                                                   _mm_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14)), _mm_set1_epi16(3));
    const __m128i hb = _mm_packus_epi16(h, _mm_setzero_si128());
    return _mm_sub_epi8(_mm_or_si128(nib, _mm_slli_epi16(hb, 4)), _mm_setr_epi8(32, 32, 32, 32, 32, 32, 32, 32,
                                                                                 0, 0, 0, 0, 0, 0, 0, 0));
}

/* one row's 16 half-block scales (and mins) as bytes, half 2jb + h of activation block jb at
 * byte 2jb + h (the 32-element sub-blocks' values twice) */
IGNIS_INLINE void IL(kx_scale_bytes)(const uint8_t *sb, const int WT, __m128i *sc, __m128i *m) {
    if (WT == 13) {
        IL(q4_k_zn_scale_bytes)(sb + 4, sc, m);
    } else if (WT == 10 || WT == 11) {
        IL(kx_half_scale_bytes)(sb, WT, sc, m);
    } else {
        const __m128i b = IL(iq4_xs_scales8)(sb);
        *sc = _mm_unpacklo_epi8(b, b);
        *m = *sc;
    }
}

/* avx512 decode of Q3_K / Q2_K (the half rule): 8 weight rows x RN <= 4 tokens, rows p and
 * p + 4 sharing a 512-bit register in the lane order of IL(q5_0_zn) ([p 0..15 | p+4 0..15 |
 * p 16..31 | p+4 16..31]). vpdpbusd takes the quants unsigned: Q3_K as q + 4, the offset
 * folded into a start of -u times the token's partial sums; the exact half sums times the
 * integer scales (an exact float product, below 2^24), then the definition's steps. */
IGNIS_INLINE void IL(kx_zn)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                            float *out, const int RN, const int WT) {
    const size_t wbytes = WT == 13 ? IGNIS_Q5_K_BYTES : WT == 11 ? IGNIS_Q3_K_BYTES
                        : WT == 10 ? IGNIS_Q2_K_BYTES : IGNIS_IQ4_XS_BYTES;
    const size_t doff = WT == 11 ? 108 : WT == 10 ? 80 : 0, moff = WT == 10 ? 82 : 2;
    const int has_min = WT == 13 || WT == 10;
    const char u = WT == 11 ? 4 : WT == 23 ? (char)0x80 : 0;
    const __m256i uv = _mm256_set1_epi8(u);
    __m512 acc[4];
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * wbytes;
        IL(prefetch_rows)(w, 8, wo + IGNIS_ZD_AHEAD, wbytes);
        const __m512 d = IL(z8_f16x8)(w, wo + doff);
        const __m512 dmin = has_min ? IL(z8_f16x8)(w, wo + moff) : d;
        /* the rows' scales (and mins) of every activation block, lanes as the sums' */
        __m512 scf[8], mf[8];
        __m128i scb[8], mb[8];
        for (int r = 0; r < 8; r++) IL(kx_scale_bytes)(w[r] + wo, WT, &scb[r], &mb[r]);
        IL(zn_scales)(scb, scf);
        if (has_min) IL(zn_scales)(mb, mf);
        /* Q2_K / Q3_K: the 2-bit fields of a row pair are paired once per super-block (the two
           32-byte halves of qs; Q3_K also hmask) and each block shifts and masks them in place */
        __m512i qz[4][2], hz[4];
        if (WT == 10 || WT == 11) {
            const size_t qo = WT == 10 ? 16 : 32;
            for (int p = 0; p < 4; p++) {
                for (int h = 0; h < 2; h++)
                    qz[p][h] = IL(zn_pair)(_mm256_loadu_si256((const __m256i *)(w[p] + wo + qo + 32 * h)),
                                           _mm256_loadu_si256((const __m256i *)(w[p + 4] + wo + qo + 32 * h)));
                if (WT == 11)
                    hz[p] = IL(zn_pair)(_mm256_loadu_si256((const __m256i *)(w[p] + wo)),
                                        _mm256_loadu_si256((const __m256i *)(w[p + 4] + wo)));
            }
        }
        for (int jb = 0; jb < 8; jb++) {
            __m512i q[4];
            for (int p = 0; p < 4; p++) {
                if (WT == 10 || WT == 11) {     /* as IL(kx_quants), Q3_K as q + 4 */
                    const __m128i sh2 = _mm_cvtsi32_si128(2 * (jb % 4));
                    q[p] = _mm512_and_si512(_mm512_srl_epi16(qz[p][jb / 4], sh2), _mm512_set1_epi8(3));
                    if (WT == 11) {
                        const __m512i hb = _mm512_and_si512(_mm512_srl_epi16(hz[p], _mm_cvtsi32_si128(4 * (jb / 4) + jb % 4)),
                                                            _mm512_set1_epi8(1));
                        q[p] = _mm512_or_si512(q[p], _mm512_slli_epi16(hb, 2));
                    }
                } else {
                    q[p] = IL(zn_pair)(_mm256_add_epi8(IL(kx_quants)(w[p] + wo, jb, WT), uv),
                                       _mm256_add_epi8(IL(kx_quants)(w[p + 4] + wo, jb, WT), uv));
                }
            }
            const __m512 sv = scf[jb], mv = has_min ? mf[jb] : sv;
            const size_t xo = (size_t)(s * 8 + jb) * IGNIS_Q8_0_BYTES;
            for (int j = 0; j < RN; j++) {
                const __m512i xz = IL(zn_token)(x[j] + xo);
                const __m512 dx = _mm512_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo)));
                const __m512i start = u ? IL(zn_neg_partials)(xz, u) : _mm512_setzero_si512();
                const __m512i a = IL(zn_dots)(start, q, xz);
                acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a), sv), _mm512_mul_ps(d, dx), acc[j]);
                if (has_min) {
                    const __m512i c = IL(zn_xsums)(xz, 1);
                    acc[j] = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(c), mv), _mm512_mul_ps(dmin, dx), acc[j]);
                }
            }
        }
    }
    IL(z8_store)(acc, RN, out);
}
/* the 8 rows' scales (and Q5_K's mins) of every block pair in kb_zn's lanes [2p r0..3 | 2p+1
 * r0..3 | 2p r4..7 | 2p+1 r4..7]: each row's 8 bytes (block j at byte j) in one 64-bit lane,
 * pair p's two bytes of every row narrowed out (vpmovqw), widened, and put in order */
IGNIS_INLINE void IL(kb_zn_scales)(const uint8_t *const *w, size_t wo, const int WT, __m512 *scf, __m512 *mf) {
    const __m512i order = _mm512_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    uint64_t sc8[8], m8[8];
    for (int r = 0; r < 8; r++) {
        if (WT == 13) IL(br_q4_k_bytes)(w[r] + wo + 4, &sc8[r], &m8[r]);
        else sc8[r] = (uint64_t)_mm_cvtsi128_si64(IL(iq4_xs_scales8)(w[r] + wo));
    }
    const __m512i vs = _mm512_loadu_si512(sc8), vm = WT == 13 ? _mm512_loadu_si512(m8) : vs;
    for (int p = 0; p < 4; p++) {
        scf[p] = _mm512_cvtepi32_ps(_mm512_permutexvar_epi32(order, _mm512_cvtepi8_epi32(_mm512_cvtepi64_epi16(_mm512_srli_epi64(vs, 16 * p)))));
        if (WT == 13)
            mf[p] = _mm512_cvtepi32_ps(_mm512_permutexvar_epi32(order, _mm512_cvtepi8_epi32(_mm512_cvtepi64_epi16(_mm512_srli_epi64(vm, 16 * p)))));
    }
}

/* avx512 decode of Q5_K / IQ4_XS by the block rule: 8 weight rows x RN <= 4 tokens. Rows k and
 * k + 4 share a register per block pair p, 128-bit lanes [k: 2p | k: 2p+1 | k+4: 2p | k+4:
 * 2p+1] (W1: elements 0..15, W2: 16..31), against the token pair of br_token broadcast twice;
 * two vpdpbusd and one reduction of the four row pairs leave [A_2p r0..3 | A_2p+1 r0..3 |
 * A_2p r4..7 | A_2p+1 r4..7]: the 256-bit pair lanes of rows 0..3 then 4..7, so the scales,
 * d_x and c * d_x vectors are the 256-bit ones side by side. The chains' lanes are put in
 * z8_store's order once, at the end. */
IGNIS_INLINE void IL(kb_zn)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                            float *out, const int RN, const int WT) {
    const size_t wbytes = WT == 13 ? IGNIS_Q5_K_BYTES : IGNIS_IQ4_XS_BYTES;
    const int mins = WT == 13, off = WT == 23;
    const __m512i low = _mm512_set1_epi8(0x0f);
    const __m512i grid = _mm512_add_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)ignis_iq4nl_values)),
                                         _mm512_set1_epi8((char)0x80));
    __m512 acc[4];
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * wbytes;
        IL(prefetch_rows)(w, 8, wo + IGNIS_ZD_AHEAD, wbytes);
        __m256i tx[4][8], tst[4][4];
        __m256 tdx[4][4], tcdx[4][4];
        for (int j = 0; j < RN; j++)
            IL(br_token)(x[j] + (size_t)s * 8 * IGNIS_Q8_0_BYTES, tx[j], tdx[j], tcdx[j], tst[j], mins, off);
        __m512 scv[4], mv[4];
        IL(kb_zn_scales)(w, wo, WT, scv, mv);
        __m512 u[4], v[4];
        for (int j = 0; j < RN; j++) u[j] = v[j] = _mm512_setzero_ps();
        for (int p = 0; p < 4; p++) {
            __m512i w1[4], w2[4];
            for (int k = 0; k < 4; k++) {
                const uint8_t *a = w[k] + wo, *b = w[k + 4] + wo;
                if (WT == 13) {     /* nibbles: [a a b b] of each 16 bytes, the upper copy shifted */
                    const uint8_t *qa = a + 48 + 32 * p, *qb = b + 48 + 32 * p;
                    const __m512i n1 = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qa)),
                                                                   0xff00, _mm_loadu_si128((const __m128i *)qb));
                    const __m512i n2 = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(qa + 16))),
                                                                   0xff00, _mm_loadu_si128((const __m128i *)(qb + 16)));
                    const __m512i h1 = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(a + 16))),
                                                                   0xff00, _mm_loadu_si128((const __m128i *)(b + 16)));
                    const __m512i h2 = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(a + 32))),
                                                                   0xff00, _mm_loadu_si128((const __m128i *)(b + 32)));
                    /* the fifth bit: bit 2p of qh in lanes 0 and 2, bit 2p + 1 in lanes 1 and 3 */
                    const __m512i bit = _mm512_mask_blend_epi32(0xf0f0, _mm512_set1_epi8((char)(1 << (2 * p))),
                                                                _mm512_set1_epi8((char)(2 << (2 * p))));
                    const __m512i q1 = _mm512_and_si512(_mm512_mask_blend_epi32(0xf0f0, n1, _mm512_srli_epi16(n1, 4)), low);
                    const __m512i q2 = _mm512_and_si512(_mm512_mask_blend_epi32(0xf0f0, n2, _mm512_srli_epi16(n2, 4)), low);
                    w1[k] = _mm512_mask_add_epi8(q1, _mm512_test_epi8_mask(h1, bit), q1, _mm512_set1_epi8(16));
                    w2[k] = _mm512_mask_add_epi8(q2, _mm512_test_epi8_mask(h2, bit), q2, _mm512_set1_epi8(16));
                } else {            /* blocks 2p, 2p+1 of row k, then of row k + 4: 32 bytes each */
                    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 8 + 32 * p))),
                                                         _mm256_loadu_si256((const __m256i *)(b + 8 + 32 * p)), 1);
                    w1[k] = _mm512_shuffle_epi8(grid, _mm512_and_si512(q, low));
                    w2[k] = _mm512_shuffle_epi8(grid, _mm512_and_si512(_mm512_srli_epi16(q, 4), low));
                }
            }
            const __m512 scf = scv[p], m = mins ? mv[p] : scf;
            for (int j = 0; j < RN; j++) {
                const __m512i x1 = _mm512_broadcast_i64x4(tx[j][2 * p]), x2 = _mm512_broadcast_i64x4(tx[j][2 * p + 1]);
                const __m512i st = off ? _mm512_broadcast_i64x4(tst[j][p]) : _mm512_setzero_si512();
                __m512i pr[4];
                for (int k = 0; k < 4; k++) pr[k] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(st, w1[k], x1), w2[k], x2);
                const __m512 a = _mm512_mul_ps(_mm512_cvtepi32_ps(IL(z_reduce4)(pr[0], pr[1], pr[2], pr[3])), scf);
                u[j] = _mm512_fmadd_ps(a, _mm512_broadcast_f32x8(tdx[j][p]), u[j]);
                if (mins) v[j] = _mm512_fmadd_ps(m, _mm512_broadcast_f32x8(tcdx[j][p]), v[j]);
            }
        }
        const __m512 d = _mm512_insertf32x8(_mm512_castps256_ps512(IL(f16x4_twice)(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo)),
                                            IL(f16x4_twice)(w[4] + wo, w[5] + wo, w[6] + wo, w[7] + wo), 1);
        const __m512 dmin = mins ? _mm512_insertf32x8(_mm512_castps256_ps512(IL(f16x4_twice)(w[0] + wo + 2, w[1] + wo + 2, w[2] + wo + 2, w[3] + wo + 2)),
                                                      IL(f16x4_twice)(w[4] + wo + 2, w[5] + wo + 2, w[6] + wo + 2, w[7] + wo + 2), 1) : d;
        for (int j = 0; j < RN; j++) {
            acc[j] = _mm512_fmadd_ps(u[j], d, acc[j]);
            if (mins) acc[j] = _mm512_fnmadd_ps(v[j], dmin, acc[j]);
        }
    }
    /* [even r0..3 | odd r0..3 | even r4..7 | odd r4..7] -> [even r0..7 | odd r0..7] */
    for (int j = 0; j < RN; j++) acc[j] = _mm512_shuffle_f32x4(acc[j], acc[j], _MM_SHUFFLE(3, 1, 2, 0));
    IL(z8_store)(acc, RN, out);
}
IGNIS_ZN_BY_RN(q5_k, kb_zn, 13) IGNIS_ZN_BY_RN(q3_k, kx_zn, 11) IGNIS_ZN_BY_RN(q2_k, kx_zn, 10)
IGNIS_ZN_BY_RN(iq4_xs, kb_zn, 23)
#include "kx_pairs.h"      /* avx512 prefill: 8 rows x 8 tokens in row/token-pair lanes */
#endif

/* the tile of these types (see ignis_scalar_tile): 8 rows x up to 4 tokens at a time, or
 * 4 rows x 8 tokens (each decoded weight block used for 8 tokens) from 5 tokens on; avx512:
 * the zn kernels up to 4 tokens, the 8 x 8 pair tile (kx_pairs.h) from 5 on */
static inline void IL(kx_tile)(int wtype, int64_t nsb, const uint8_t *const *w, int rm,
                               const uint8_t *const *x, int rn, float *out) {
    const int t = wtype == 13 ? 0 : wtype == 11 ? 1 : wtype == 10 ? 2 : 3;
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
#if IGNIS_X86_512
    static const ignis_kernel_fn zn[4][4] = {
        {IL(q5_k_zn1), IL(q5_k_zn2), IL(q5_k_zn3), IL(q5_k_zn4)},
        {IL(q3_k_zn1), IL(q3_k_zn2), IL(q3_k_zn3), IL(q3_k_zn4)},
        {IL(q2_k_zn1), IL(q2_k_zn2), IL(q2_k_zn3), IL(q2_k_zn4)},
        {IL(iq4_xs_zn1), IL(iq4_xs_zn2), IL(iq4_xs_zn3), IL(iq4_xs_zn4)}};
    static const ignis_kernel_fn pairs[4] = {IL(q5_k_p8x8), IL(q3_k_p8x8), IL(q2_k_p8x8), IL(iq4_xs_p8x8)};
    if (rn <= 4) {
        zn[t][rn - 1](nsb, wp, xp, tmp);
    } else {
        pairs[t](nsb, wp, xp, tmp);
    }
#else
    static const ignis_kernel_fn ks[4][5] = {
        {IL(q5_k_8x1), IL(q5_k_8x2), IL(q5_k_8x3), IL(q5_k_8x4), IL(q5_k_4x8)},
        {IL(q3_k_8x1), IL(q3_k_8x2), IL(q3_k_8x3), IL(q3_k_8x4), IL(q3_k_4x8)},
        {IL(q2_k_8x1), IL(q2_k_8x2), IL(q2_k_8x3), IL(q2_k_8x4), IL(q2_k_4x8)},
        {IL(iq4_xs_8x1), IL(iq4_xs_8x2), IL(iq4_xs_8x3), IL(iq4_xs_8x4), IL(iq4_xs_4x8)}};
    if (rn > 4) {
        ks[t][4](nsb, wp, xp, tmp);
        if (rm > 4) ks[t][4](nsb, wp + 4, xp, tmp + 4);
    } else {
        ks[t][rn - 1](nsb, wp, xp, tmp);
    }
#endif
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}
