/* kq_pairs.h -- the 8-row x 8-token prefill tiles of Q4_K and Q6_K weights for the AVX-512
 * level (included by x86.h after avx512.h, inside the AVX-512 target region only). Same
 * arithmetic as ignis_scalar_vec_dot_q4_k / _q6_k (simd/defs.h): these give their bits.
 *
 * Lanes: lane 2i + e holds weight row i and token 2p + e of token pair p (i < 8, e < 2), one
 * register per pair for the definition's lo chain and one for its hi chain. So a register of
 * weights holds one dword k (4 quants) of every row, each twice ("w2[k]"), and the matching
 * tokens are one 8-byte broadcast load: dword k of token 2p then of token 2p + 1, interleaved
 * once per activation block into a small table. vpdpbusd then needs no shuffle per token:
 * four of them (k = 0..3) give the exact lo half sums of all 16 (row, token) lanes, four more
 * (k = 4..7) the hi ones. The quants meet the token unsigned (Q4_K 0..15, Q6_K q + 32 in 0..63);
 * Q6_K takes its offset back exactly in integers (- 32 * sum x of the half). The integer scales
 * multiply as floats (exact: below 2^24), then the definition's fused multiply-adds in its order:
 * Q4_K and Q6_K per half into the lo / hi chains (Q4_K's min step with the same half sums of x);
 * Q5_K and IQ4_XS (kx_pairs.h) by the block rule, lo + hi sums added as integers, the even / odd
 * blocks' chains (IL(br_block_tab)). */

/* One activation block of the 8 tokens: xi[p][slot(k)] the qword (dword k of token 2p, dword
 * k of token 2p + 1) with slot(k) = {0, 1, 4, 5, 2, 3, 6, 7}[k]; cs[p] = the pair's exact half
 * sums of x as pairs (lo(2p), lo(2p+1)) and (hi(2p), hi(2p+1)) of int32 (or of floats, exact,
 * when as_float); dx[j] the tokens' scales. */
IGNIS_INLINE void IL(kp_tokens)(const uint8_t *const *x, size_t xo, uint64_t xi[4][8], uint64_t cs[4][2], float dx[8],
                              float *y, const int as_float) {
    const __m256i ones = _mm256_set1_epi8(1);
    uint16_t h[8];
    for (int j = 0; j < 8; j++) h[j] = ignis_load_u16(x[j] + xo);
    __asm__ volatile("" : : "r"(h) : "memory");     /* 8 stores and one load, not 8 inserts */
    _mm256_storeu_ps(dx, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)));
    for (int p = 0; p < 4; p++) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(x[2 * p] + xo + 2));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(x[2 * p + 1] + xo + 2));
        const __m256i ul = _mm256_unpacklo_epi32(a, b), uh = _mm256_unpackhi_epi32(a, b);
        _mm256_storeu_si256((__m256i *)&xi[p][0], ul);
        _mm256_storeu_si256((__m256i *)&xi[p][4], uh);
        /* [k0+k2, k1+k3 | k4+k6, k5+k7] per token, then the two qwords of each 128-bit half */
        const __m256i s = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, ul), ones, uh);
        const __m256i t = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
        const __m256i u = as_float ? _mm256_castps_si256(_mm256_cvtepi32_ps(t)) : t;
        _mm_storel_epi64((__m128i *)&cs[p][0], _mm256_castsi256_si128(u));
        _mm_storel_epi64((__m128i *)&cs[p][1], _mm256_extracti128_si256(u, 1));
        if (y != NULL) {        /* the block rule's (float)(sum x) * d_x of tokens 2p, 2p + 1 */
            int32_t c[4];
            _mm_storel_epi64((__m128i *)&c[0], _mm256_castsi256_si128(t));
            _mm_storel_epi64((__m128i *)&c[2], _mm256_extracti128_si256(t, 1));
            for (int e = 0; e < 2; e++) y[2 * p + e] = (float)(c[e] + c[2 + e]) * dx[2 * p + e];
        }
    }
}

/* The 8 rows' byte jb of their 8 bytes as floats in lanes 2i and 2i + 1, from v holding row
 * i's 8 bytes in qword i (sign-extended). ctl is IL(kp_row_ctl)() plus jb in every byte. */
IGNIS_INLINE __m512 IL(kp_row_bytes)(__m512i v, __m512i ctl) {
    return _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_shuffle_epi8(v, ctl), 24));
}

/* the byte shuffle of IL(kp_row_bytes) for jb = 0: in each 128-bit lane (rows 2L, 2L + 1) the
 * top byte of dwords 0, 1 takes byte 0 (row 2L), of dwords 2, 3 byte 8 (row 2L + 1); the other
 * bytes are zeroed (0x80, which stays >= 0x80 when jb is added) */
IGNIS_INLINE __m512i IL(kp_row_ctl)(void) {
    const char z = (char)0x80;
    return _mm512_broadcast_i32x4(_mm_setr_epi8(z, z, z, 0, z, z, z, 0, z, z, z, 8, z, z, z, 8));
}

/* rows' 8 values at p[i] + off (f16) as floats in lanes 2i and 2i + 1 */
IGNIS_INLINE __m512 IL(kp_f16x8)(const uint8_t *const *p, size_t off) {
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    return _mm512_permutexvar_ps(dup, IL(z8_f16x8)(p, off));
}

/* Q4_K's eight 6-bit scales (*sc) and mins (*m) of one row as the bytes of a qword */
IGNIS_INLINE void IL(kp_q4_k_scales)(const uint8_t *s, uint64_t *sc, uint64_t *m) {
    const uint32_t a = ignis_load_u32(s), b = ignis_load_u32(s + 4), c = ignis_load_u32(s + 8);
    *sc = (uint64_t)(a & 0x3f3f3f3fu) | (uint64_t)((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32;
    *m = (uint64_t)(b & 0x3f3f3f3fu) | (uint64_t)(((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u)) << 32;
}

/* Q6_K's 16 scales of one row split into its even (*lo: sub-blocks 2jb) and odd (*hi) bytes */
IGNIS_INLINE void IL(kp_q6_k_scales)(const uint8_t *s, uint64_t *lo, uint64_t *hi) {
    const __m128i v = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)s),
                                       _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
    *lo = (uint64_t)_mm_cvtsi128_si64(v);
    *hi = (uint64_t)_mm_extract_epi64(v, 1);
}

/* One super-block's per-row fields for the 8 rows: the scale/min bytes (v0, v1: Q4_K scales and
 * mins, Q6_K lo and hi scales, row i's 8 bytes in qword i) and d, dmin as floats (lanes 2i, 2i + 1) */
IGNIS_INLINE void IL(kp_sb_fields)(const uint8_t *const *w, size_t wo, __m512i *v0, __m512i *v1, __m512 *d,
                                   __m512 *dmin, const int WT) {
    uint64_t b0[8], b1[8];
    for (int i = 0; i < 8; i++) {
        if (WT == 12) IL(kp_q4_k_scales)(w[i] + wo + 4, &b0[i], &b1[i]);
        else IL(kp_q6_k_scales)(w[i] + wo + 192, &b0[i], &b1[i]);
    }
    *v0 = _mm512_loadu_si512(b0);
    *v1 = _mm512_loadu_si512(b1);
    *d = IL(kp_f16x8)(w, wo + (WT == 12 ? 0 : 208));
    *dmin = WT == 12 ? IL(kp_f16x8)(w, wo + 2) : *d;
}

/* activation block jb of the super-block at w[i] + wo, unpacked for the 8 rows: w2[k] (k < 4 the
 * lo dwords, k >= 4 the hi ones, each row twice) and its scales s0 / s1 (Q4_K scale and min,
 * Q6_K lo and hi scale) as floats; ctl is IL(kp_row_ctl)() plus jb in every byte */
IGNIS_INLINE void IL(kp_unpack)(const uint8_t *const *w, size_t wo, int jb, __m512i v0, __m512i v1, __m512i ctl,
                                __m512i *w2, __m512 *s0, __m512 *s1, const int WT) {
    const __m512i dup_lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i dup_hi = _mm512_add_epi32(dup_lo, _mm512_set1_epi32(8));
    __m256i r[8];
    for (int i = 0; i < 8; i++)
        r[i] = WT == 12 ? IL(q4_k_block_quants)(w[i] + wo, jb) : IL(q6_k_block_quants)(w[i] + wo, jb);
    __m512i wt[4];
    IL(z8_transpose)(r, wt);
    for (int k = 0; k < 4; k++) {
        w2[k] = _mm512_permutexvar_epi32(dup_lo, wt[k]);
        w2[k + 4] = _mm512_permutexvar_epi32(dup_hi, wt[k]);
    }
    *s0 = IL(kp_row_bytes)(v0, ctl);
    *s1 = IL(kp_row_bytes)(v1, ctl);
}

/* The exact half sums q . x of pair p (tokens 2p, 2p + 1) against the unpacked rows w2, whose
 * quants carry the type's offset u (ignis_quant_offset_shift; 0: none): *al (lo half), *ah (hi
 * half). (q + u) . x - u sum x = q . x: IL(kp_pair_sums) starts the sums at the table's -u sum x
 * (corr, IGNIS_KP_CORR) when given, else at start (zero or IGNIS_MAGIC_BITS) and subtracts u
 * times the half sums (cs, int32) at the end.
 * w2 may be registers or memory: unaligned loads (a prepared buffer need not be 64-byte aligned). */
IGNIS_INLINE void IL(kp_pair_sums_from)(__m512i l, __m512i h, const __m512i *w2, const uint64_t xi[4][8],
                                        int p, __m512i *al, __m512i *ah) {
    static const int slot[8] = {0, 1, 4, 5, 2, 3, 6, 7};
    for (int k = 0; k < 4; k++) {
        l = _mm512_dpbusd_epi32(l, _mm512_loadu_si512(&w2[k]), _mm512_set1_epi64((long long)xi[p][slot[k]]));
        h = _mm512_dpbusd_epi32(h, _mm512_loadu_si512(&w2[k + 4]), _mm512_set1_epi64((long long)xi[p][slot[k + 4]]));
    }
    *al = l;
    *ah = h;
}

IGNIS_INLINE void IL(kp_pair_sums)(const __m512i *w2, const uint64_t xi[4][8], const uint64_t cs[4][2],
                                   const uint64_t (*corr)[2], int p, __m512i start, __m512i *al, __m512i *ah,
                                   const int WT) {
    const int ushift = ignis_quant_offset_shift(WT), from_corr = ushift && corr != NULL;
    __m512i l = from_corr ? _mm512_set1_epi64((long long)corr[p][0]) : start;
    __m512i h = from_corr ? _mm512_set1_epi64((long long)corr[p][1]) : start;
    IL(kp_pair_sums_from)(l, h, w2, xi, p, &l, &h);
    if (ushift && !from_corr) {
        l = _mm512_sub_epi32(l, _mm512_slli_epi32(_mm512_set1_epi64((long long)cs[p][0]), ushift));
        h = _mm512_sub_epi32(h, _mm512_slli_epi32(_mm512_set1_epi64((long long)cs[p][1]), ushift));
    }
    *al = l;
    *ah = h;
}

/* One activation block of the 8 tokens, given as their table (IL(kp_tokens); cs: the half sums
 * as floats for types with mins, as int32 otherwise), against the unpacked rows: the exact half
 * sums, then the half rule's float steps into the lo / hi chains of the 4 pairs (Q4_K, Q6_K,
 * Q3_K, Q2_K; the block rule's types take IL(br_block_tab)). sc: the lo and hi scales, the lo
 * and hi mins (Q4_K, Q2_K). w2, sc and the table may be registers or memory (the same operations). */
IGNIS_INLINE void IL(kp_block_tab)(const __m512i *w2, const __m512 *sc, __m512 d, __m512 dmin,
                                   const uint64_t xi[4][8], const uint64_t cs[4][2], const float *dx,
                                   const uint64_t (*corr)[2], __m512 *lo, __m512 *hi, const int WT) {
    const int has_min = WT == 12 || WT == 10;
    const __m512 scl = _mm512_loadu_ps(&sc[0]), sch = _mm512_loadu_ps(&sc[1]);
    const __m512 mnl = _mm512_loadu_ps(&sc[2]), mnh = _mm512_loadu_ps(&sc[3]);
    /* the half sums start from IGNIS_MAGIC_BITS (avx512.h; |S| < 2^22 for every type here, and
       the table's corr sections for Q3_K, Q6_K hold it already: IGNIS_KP_CORR_START), so one fma
       gives the definition's S * sc without the conversion */
    const __m512 nscl = IL(magic_neg)(scl), nsch = IL(magic_neg)(sch);
    for (int p = 0; p < 4; p++) {
        __m512i al, ah;
        IL(kp_pair_sums)(w2, xi, cs, corr, p, _mm512_set1_epi32(IGNIS_MAGIC_BITS), &al, &ah, WT);
        const __m512i cl = _mm512_set1_epi64((long long)cs[p][0]), ch = _mm512_set1_epi64((long long)cs[p][1]);
        double dxp;
        memcpy(&dxp, &dx[2 * p], 8);
        const __m512 dxv = _mm512_castpd_ps(_mm512_set1_pd(dxp));
        const __m512 sd = _mm512_mul_ps(d, dxv);
        lo[p] = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_castsi512_ps(al), scl, nscl), sd, lo[p]);
        if (has_min)
            lo[p] = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_castsi512_ps(cl), mnl), _mm512_mul_ps(dmin, dxv), lo[p]);
        hi[p] = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_castsi512_ps(ah), sch, nsch), sd, hi[p]);
        if (has_min)
            hi[p] = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_castsi512_ps(ch), mnh), _mm512_mul_ps(dmin, dxv), hi[p]);
    }
}

/* Q4_K's scale and min (s0, s1) or Q6_K's lo and hi scales as the sc of IL(kp_block_tab) */
IGNIS_INLINE void IL(kp_sc)(__m512 s0, __m512 s1, __m512 *sc, const int WT) {
    sc[0] = s0;
    sc[1] = WT == 12 ? s0 : s1;
    sc[2] = sc[3] = s1;
}

/* the same for the block at xo of the 8 tokens x[j], their table made on the spot */
IGNIS_INLINE void IL(kp_block)(const __m512i *w2, __m512 s0, __m512 s1, __m512 d, __m512 dmin,
                               const uint8_t *const *x, size_t xo, __m512 *lo, __m512 *hi, const int WT) {
    uint64_t xi[4][8];
    uint64_t cs[4][2];
    float dx[8];
    IL(kp_tokens)(x, xo, xi, cs, dx, NULL, WT == 12);
    /* read the table back from memory: a broadcast load costs no shuffle, a broadcast
       of a value the compiler kept in a register does */
    __asm__ volatile("" : : "r"(xi), "r"(cs), "r"(dx) : "memory");
    __m512 sc[4];
    IL(kp_sc)(s0, s1, sc, WT);
    IL(kp_block_tab)(w2, sc, d, dmin, (const uint64_t (*)[8])xi, (const uint64_t (*)[2])cs, dx, NULL, lo, hi, WT);
}

/* The block rule (simd/kquants.h; Q5_K, IQ4_XS) in the pair lanes. One tile's state:
 * per pair p the even and odd blocks' chains u[par][p], v[par][p] (zeroed at each super-block)
 * and acc[par][p]. */
typedef struct { __m512 u[2][4], v[2][4], acc[2][4]; } IL(br_state);

IGNIS_INLINE void IL(br_zero)(IL(br_state) *st) {
    for (int par = 0; par < 2; par++)
        for (int p = 0; p < 4; p++) st->u[par][p] = st->v[par][p] = st->acc[par][p] = _mm512_setzero_ps();
}

/* one activation block (parity par) of the 8 tokens of the table (xi; cs as int32 when corr is
 * NULL; dx; y = (float)(sum x) * d_x) against the unpacked rows w2 with their block scale sc and
 * min mn (floats, lanes 2i, 2i + 1): A = sc * (lo + hi half sums), u = fma(A, d_x, u), v = fma(m, y, v) */
IGNIS_INLINE void IL(br_block_tab)(const __m512i *w2, __m512 sc, __m512 mn, const uint64_t xi[4][8],
                                   const uint64_t cs[4][2], const float *dx, const float *y,
                                   const uint64_t (*corr)[2], int par, IL(br_state) *st, const int WT,
                                   const int P0, const int P1) {
    /* Q4_K, Q5_K (no quant offset): the sums start from IGNIS_MAGIC_BITS (avx512.h), once for a
       pair's lo + hi, so one fma gives (float)A * sc (exact here) without the conversion */
    const int magic = ignis_quant_offset_shift(WT) == 0;
    const __m512 nsc = IL(magic_neg)(sc);
    for (int p = P0; p < P1; p++) {
        __m512i al, ah;
        if (magic) IL(kp_pair_sums_from)(_mm512_set1_epi32(IGNIS_MAGIC_BITS), _mm512_setzero_si512(), w2, xi, p, &al, &ah);
        else IL(kp_pair_sums)(w2, xi, cs, corr, p, _mm512_setzero_si512(), &al, &ah, WT);
        double dxp;
        memcpy(&dxp, &dx[2 * p], 8);
        const __m512 a = magic ? _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_add_epi32(al, ah)), sc, nsc)
                               : _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(al, ah)), sc);
        st->u[par][p] = _mm512_fmadd_ps(a, _mm512_castpd_ps(_mm512_set1_pd(dxp)), st->u[par][p]);
        if (WT != 23) {
            double yp;
            memcpy(&yp, &y[2 * p], 8);
            st->v[par][p] = _mm512_fmadd_ps(mn, _mm512_castpd_ps(_mm512_set1_pd(yp)), st->v[par][p]);
        }
    }
}

/* a super-block's end: acc = fma(u, d, acc), acc = fma(-v, dmin, acc), even then odd; u, v zeroed */
IGNIS_INLINE void IL(br_sb_end)(IL(br_state) *st, __m512 d, __m512 dmin, const int WT, const int P0, const int P1) {
    for (int par = 0; par < 2; par++)
        for (int p = P0; p < P1; p++) {
            st->acc[par][p] = _mm512_fmadd_ps(st->u[par][p], d, st->acc[par][p]);
            if (WT != 23) st->acc[par][p] = _mm512_fnmadd_ps(st->v[par][p], dmin, st->acc[par][p]);
            st->u[par][p] = st->v[par][p] = _mm512_setzero_ps();
        }
}

/* the block rule's block of the 8 tokens x[j] at xo, their table made on the spot */
IGNIS_INLINE void IL(br_block)(const __m512i *w2, __m512 sc, __m512 mn, const uint8_t *const *x, size_t xo, int par,
                               IL(br_state) *st, const int WT) {
    uint64_t xi[4][8];
    uint64_t cs[4][2];
    float dx[8], y[8];
    IL(kp_tokens)(x, xo, xi, cs, dx, y, 0);
    __asm__ volatile("" : : "r"(xi), "r"(cs), "r"(dx), "r"(y) : "memory");
    IL(br_block_tab)(w2, sc, mn, (const uint64_t (*)[8])xi, (const uint64_t (*)[2])cs, dx, y, NULL, par, st, WT, 0, 4);
}

/* out[j * 8 + i] = lo + hi of row i, token j (lane 2i + e of pair p is token 2p + e) */
IGNIS_INLINE void IL(kp_store)(const __m512 *lo, const __m512 *hi, float *out) {
    for (int p = 0; p < 4; p++) {
        float t[16];
        _mm512_storeu_ps(t, _mm512_add_ps(lo[p], hi[p]));
        for (int i = 0; i < 8; i++) {
            out[(2 * p) * IGNIS_TILE + i] = t[2 * i];
            out[(2 * p + 1) * IGNIS_TILE + i] = t[2 * i + 1];
        }
    }
}

/* Q4_K (WT 12) or Q6_K (WT 14), 8 weight rows x 8 tokens (pad pointers for fewer) */
IGNIS_INLINE void IL(kp_8x8)(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x, float *out, const int WT) {
    const size_t wbytes = WT == 12 ? IGNIS_Q4_K_BYTES : IGNIS_Q6_K_BYTES;
    __m512 lo[4], hi[4];
    for (int p = 0; p < 4; p++) lo[p] = hi[p] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * wbytes;
        __m512i v0, v1;
        __m512 d, dmin;
        IL(kp_sb_fields)(w, wo, &v0, &v1, &d, &dmin, WT);
        __m512i ctl = IL(kp_row_ctl)();
        for (int jb = 0; jb < 8; jb++, ctl = _mm512_add_epi8(ctl, _mm512_set1_epi8(1))) {
            __m512i w2[8];
            __m512 s0, s1;
            IL(kp_unpack)(w, wo, jb, v0, v1, ctl, w2, &s0, &s1, WT);
            IL(kp_block)(w2, s0, s1, d, dmin, x, (size_t)(s * 8 + jb) * IGNIS_Q8_0_BYTES, lo, hi, WT);
        }
    }
    IL(kp_store)(lo, hi, out);
}
static void IL(q4_k_p8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kp_8x8)(n, w, x, o, 12); }
static void IL(q6_k_p8x8)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(kp_8x8)(n, w, x, o, 14); }
