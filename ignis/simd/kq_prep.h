/* kq_prep.h -- the prefill tiles of every quantized type at the AVX-512 level in two steps, for
 * a matmul of many token tiles (included by x86.h after kq_pairs.h and kx_pairs.h, inside the
 * AVX-512 target region only). Q4_K / Q6_K first (below), then the other K-quants and IQ4_XS,
 * then the 32-element block types; one token table format serves them all.
 *
 * IL(kp_8x8) unpacks its 8 weight rows (quants transposed and doubled, scale and min bytes,
 * d and dmin) for every 8 tokens it meets, the same work each time. Here kq_prep does that once
 * into a buffer and kq_prep_tile runs the 8-token step of kp_8x8 (IL(kp_block_tab), the very
 * same operations) on the buffer, so the bits are kp_8x8's, which are the definition's.
 *
 * The tokens' side is done once per 8 tokens too: kq_tokens writes the table IL(kp_tokens) makes
 * for every activation block, and one table serves every group of prepared rows.
 *
 * The rows' buffer (IGNIS_KP_SB_BYTES per super-block, a multiple of 64): d and dmin of the 8
 * rows as floats in lanes 2i, 2i + 1 (64 B each), then per activation block jb (0..7) w2[0..7]
 * (512 B) and the scales s0, s1 (64 B each). */

/* the 8 rows w[0..7] (nsb super-blocks each) into buf; Q5_K / Q3_K / Q2_K / IQ4_XS (the layout
 * below) too */
IGNIS_INLINE void IL(kp_prep_rows)(int64_t nsb, const uint8_t *const *w, uint8_t *buf, const int WT) {
    const int kq = WT == 12 || WT == 14;
    const size_t wbytes = WT == 12 ? IGNIS_Q4_K_BYTES : WT == 14 ? IGNIS_Q6_K_BYTES : ignis_kx_bytes(WT);
    const size_t sb_bytes = kq ? IGNIS_KP_SB_BYTES : IGNIS_KX_SB_BYTES, jb_bytes = kq ? 640 : 768;
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * wbytes;
        uint8_t *b = buf + (size_t)s * sb_bytes;
        __m512i v[4];
        __m512 d, dmin;
        if (kq) IL(kp_sb_fields)(w, wo, &v[0], &v[1], &d, &dmin, WT);
        else IL(xp_sb_fields)(w, wo, v, &d, &dmin, WT);
        _mm512_storeu_ps(b, d);
        _mm512_storeu_ps(b + 64, dmin);
        __m512i ctl = IL(kp_row_ctl)();
        for (int jb = 0; jb < 8; jb++, ctl = _mm512_add_epi8(ctl, _mm512_set1_epi8(1))) {
            uint8_t *q = b + 128 + (size_t)jb * jb_bytes;
            __m512i w2[8];
            __m512 sc[4];
            if (kq) IL(kp_unpack)(w, wo, jb, v[0], v[1], ctl, w2, &sc[0], &sc[1], WT);
            else IL(xp_unpack)(w, wo, jb, v, ctl, w2, sc, WT);
            for (int k = 0; k < 8; k++) _mm512_storeu_si512(q + 64 * k, w2[k]);
            for (int k = 0; k < (kq ? 2 : 4); k++) _mm512_storeu_ps(q + 512 + 64 * k, sc[k]);
        }
    }
}

/* the 8 tokens x[0..7] (nblk activation blocks each) as their tables: per block the table of
 * IL(kp_tokens) with the half sums as int32 and again as floats (IGNIS_KP_TOK_BYTES: xi 256 B,
 * cs 64 B, cs as floats 64 B, dx 32 B), then -(cs << u) for the quant offsets 1 << u of the
 * types (u = 2, 3, 4, 5, 7; 64 B each, at IGNIS_KP_CORR(u)): the unsigned quants' sums start
 * there, which takes the offset back with no work per tile (for the half rule's Q3_K (u = 2)
 * and Q6_K (u = 5) plus the bits of 1.5 * 2^23, IGNIS_KP_CORR_START); then the block rule's
 * (float)(sum x) * d_x of the 8 tokens (32 B at IGNIS_KP_Y) */
/* where the sums of the types with quant offset 1 << u start before -(sum x << u):
 * IGNIS_MAGIC_BITS for the half rule's u = 2, 5 (IL(kp_block_tab)), zero for the others */
#define IGNIS_KP_CORR_START(u) _mm512_set1_epi32((u) == 2 || (u) == 5 ? IGNIS_MAGIC_BITS : 0)

IGNIS_INLINE void IL(kp_tokens_all)(int64_t nblk, const uint8_t *const *x, uint8_t *tab) {
    static const int shifts[5] = {2, 3, 4, 5, 7};
    for (int64_t b = 0; b < nblk; b++) {
        uint8_t *t = tab + (size_t)b * IGNIS_KP_TOK_BYTES;
        IL(kp_tokens)(x, (size_t)b * IGNIS_Q8_0_BYTES, (uint64_t (*)[8])t, (uint64_t (*)[2])(t + 256), (float *)(t + 384),
                      (float *)(t + IGNIS_KP_Y), 0);
        const __m512i cs = _mm512_loadu_si512(t + 256);
        _mm512_storeu_ps(t + 320, _mm512_cvtepi32_ps(cs));
        for (int u = 0; u < 5; u++)
            _mm512_storeu_si512(t + IGNIS_KP_CORR(shifts[u]),
                                _mm512_sub_epi32(IGNIS_KP_CORR_START(shifts[u]), _mm512_sll_epi32(cs, _mm_cvtsi32_si128(shifts[u]))));
    }
}

/* a table block's -(sum x << u) section for WT's quant offset u; NULL for a type without one */
IGNIS_INLINE const uint64_t (*IL(kp_tab_corr)(const uint8_t *t, const int WT))[2] {
    const int u = ignis_quant_offset_shift(WT);
    return u ? (const uint64_t (*)[2])(t + IGNIS_KP_CORR(u)) : NULL;
}

/* The Q5_K / Q3_K / Q2_K / IQ4_XS rows of kx_pairs.h the same way (IGNIS_KX_SB_BYTES per
 * super-block: d and dmin as above, then per activation block jb w2[0..7] (512 B) and the lo /
 * hi scales and mins sc[0..3] (256 B), IL(xp_unpack)'s, written by IL(kp_prep_rows);
 * IL(kp_block_tab) runs them). */

/* the prepared rows x the 8 tokens of tab: out[j * 8 + i] as IL(kp_8x8) (Q4_K, Q6_K) or
 * IL(xp_8x8) (the others) */
IGNIS_INLINE void IL(kp_run)(int64_t nsb, const uint8_t *buf, const uint8_t *tab, float *out, const int WT) {
    const int kq = WT == 12 || WT == 14, has_min = WT == 12 || WT == 10;
    const size_t sb_bytes = kq ? IGNIS_KP_SB_BYTES : IGNIS_KX_SB_BYTES, jb_bytes = kq ? 640 : 768;
    if (IGNIS_IS_BLOCK_RULE(WT)) {      /* Q5_K, IQ4_XS: the block rule (kq_pairs.h) */
        IL(br_state) st;
        IL(br_zero)(&st);
        for (int64_t s = 0; s < nsb; s++) {
            const uint8_t *b = buf + (size_t)s * sb_bytes;
            /* two blocks a step, so that each block's chain (even, odd) is known when compiled */
            for (int jb = 0; jb < 8; jb += 2)
#pragma GCC unroll 2
                for (int par = 0; par < 2; par++) {
                    const uint8_t *q = b + 128 + (size_t)(jb + par) * jb_bytes;
                    const uint8_t *t = tab + (size_t)(s * 8 + jb + par) * IGNIS_KP_TOK_BYTES;
                    /* the scale and the min: the lo scale and lo min of the kx rows */
                    const __m512 sc = _mm512_loadu_ps(q + 512), mn = _mm512_loadu_ps(q + 640);
                    IL(br_block_tab)((const __m512i *)q, sc, mn, (const uint64_t (*)[8])t, (const uint64_t (*)[2])(t + 256),
                                     (const float *)(t + 384), (const float *)(t + IGNIS_KP_Y), IL(kp_tab_corr)(t, WT),
                                     par, &st, WT, 0, 4);
                }
            IL(br_sb_end)(&st, _mm512_loadu_ps(b), _mm512_loadu_ps(b + 64), WT, 0, 4);
        }
        IL(kp_store)(st.acc[0], st.acc[1], out);
        return;
    }
    __m512 lo[4], hi[4];
    for (int p = 0; p < 4; p++) lo[p] = hi[p] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *b = buf + (size_t)s * sb_bytes;
        const __m512 d = _mm512_loadu_ps(b), dmin = _mm512_loadu_ps(b + 64);
        for (int jb = 0; jb < 8; jb++) {
            const uint8_t *q = b + 128 + (size_t)jb * jb_bytes;
            const uint8_t *t = tab + (size_t)(s * 8 + jb) * IGNIS_KP_TOK_BYTES;
            const uint64_t (*xi)[8] = (const uint64_t (*)[8])t;
            const uint64_t (*cs)[2] = (const uint64_t (*)[2])(t + (has_min ? 320 : 256));
            const uint64_t (*corr)[2] = IL(kp_tab_corr)(t, WT);
            __m512 sq[4];
            if (kq) IL(kp_sc)(_mm512_loadu_ps(q + 512), _mm512_loadu_ps(q + 576), sq, WT);
            IL(kp_block_tab)((const __m512i *)q, kq ? sq : (const __m512 *)(q + 512), d, dmin, xi, cs,
                             (const float *)(t + 384), corr, lo, hi, WT);
        }
    }
    IL(kp_store)(lo, hi, out);
}

/* The 32-element block types the same way, in the pair lanes: Q8_0, Q5_0, Q4_0, IQ4_NL (one
 * scale, signed quants) and Q4_1, Q5_1 (scale and min). The quants go in unsigned: Q8_0 and
 * IQ4_NL as q + 128, Q5_0 as q + 16 (its 5-bit value), Q4_0 as q + 8 (its nibble); the offset
 * comes back exactly in integers (- u * sum x of the half, from the token table). Then the
 * definition's steps: s = d * d_x, lo = fma(i_lo, s, lo) (and lo = fma(c_lo, m * d_x, lo)).
 * A group's prepared block (IGNIS_ZP_BLOCK_BYTES): w2[0..7] (512 B), d and m of the 8 rows
 * in lanes 2i, 2i + 1 (64 B each). */
IGNIS_INLINE __m256i IL(zp_quants)(const uint8_t *blk, const int WT) {
    const __m256i k80 = _mm256_set1_epi8((char)0x80);
    switch (WT) {
    case 8: return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 2)), k80);
    case 6: return IL(q5_0_quants)(blk);
    case 2: return IL(nibbles32)(blk + 2);
    case 20: return _mm256_xor_si256(IL(iq4_nl_quants)(blk), k80);
    case 3: return IL(q4_1_quants)(blk);
    default: return IL(q5_0_quants)(blk + 2);     /* Q5_1: Q5_0's layout after m */
    }
}

IGNIS_INLINE size_t IL(zp_bytes)(const int WT) {
    return WT == 8 ? IGNIS_Q8_0_BYTES : WT == 6 ? IGNIS_Q5_0_BYTES : WT == 3 ? IGNIS_Q4_1_BYTES
         : WT == 7 ? IGNIS_Q5_1_BYTES : IGNIS_Q4_0_BYTES;
}

IGNIS_INLINE void IL(zp_prep_rows)(int64_t nb, const uint8_t *const *w, uint8_t *buf, const int WT) {
    const __m512i dup_lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i dup_hi = _mm512_add_epi32(dup_lo, _mm512_set1_epi32(8));
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * IL(zp_bytes)(WT);
        uint8_t *q = buf + (size_t)b * IGNIS_ZP_BLOCK_BYTES;
        __m256i r[8];
        for (int i = 0; i < 8; i++) r[i] = IL(zp_quants)(w[i] + wo, WT);
        __m512i wt[4];
        IL(z8_transpose)(r, wt);
        for (int k = 0; k < 4; k++) {
            _mm512_storeu_si512(q + 64 * k, _mm512_permutexvar_epi32(dup_lo, wt[k]));
            _mm512_storeu_si512(q + 64 * (k + 4), _mm512_permutexvar_epi32(dup_hi, wt[k]));
        }
        _mm512_storeu_ps(q + 512, IL(kp_f16x8)(w, wo));
        _mm512_storeu_ps(q + 576, WT == 3 || WT == 7 ? IL(kp_f16x8)(w, wo + 2) : _mm512_setzero_ps());
    }
}

IGNIS_INLINE void IL(zp_run)(int64_t nb, const uint8_t *buf, const uint8_t *tab, float *out, const int WT) {
    const int has_min = WT == 3 || WT == 7;
    __m512 lo[4], hi[4];
    for (int p = 0; p < 4; p++) lo[p] = hi[p] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q = buf + (size_t)b * IGNIS_ZP_BLOCK_BYTES;
        const uint8_t *t = tab + (size_t)b * IGNIS_KP_TOK_BYTES;
        const uint64_t (*xi)[8] = (const uint64_t (*)[8])t;
        const uint64_t (*cs)[2] = (const uint64_t (*)[2])(t + (has_min ? 320 : 256));
        const float *dx = (const float *)(t + 384);
        const uint64_t (*corr)[2] = IL(kp_tab_corr)(t, WT);
        const __m512 d = _mm512_loadu_ps(q + 512), m = _mm512_loadu_ps(q + 576);
        for (int p = 0; p < 4; p++) {
            __m512i al, ah;
            IL(kp_pair_sums)((const __m512i *)q, xi, cs, corr, p, _mm512_setzero_si512(), &al, &ah, WT);
            const __m512i cl = _mm512_set1_epi64((long long)cs[p][0]), ch = _mm512_set1_epi64((long long)cs[p][1]);
            double dxp;
            memcpy(&dxp, &dx[2 * p], 8);
            const __m512 dxv = _mm512_castpd_ps(_mm512_set1_pd(dxp));
            const __m512 sd = _mm512_mul_ps(d, dxv);
            lo[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(al), sd, lo[p]);
            hi[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ah), sd, hi[p]);
            if (has_min) {
                const __m512 sm = _mm512_mul_ps(m, dxv);
                lo[p] = _mm512_fmadd_ps(_mm512_castsi512_ps(cl), sm, lo[p]);
                hi[p] = _mm512_fmadd_ps(_mm512_castsi512_ps(ch), sm, hi[p]);
            }
        }
    }
    IL(kp_store)(lo, hi, out);
}

/* ignis_kq_row_bytes at this level: a group of 8 prepared rows of width k, 0 for the types it
 * does not prepare */
static int64_t IL(kq_row_bytes)(int wtype, int64_t k) {
    if (wtype == 12 || wtype == 14) return k / 256 * IGNIS_KP_SB_BYTES;
    if (wtype == 13 || wtype == 11 || wtype == 10 || wtype == 23) return k / 256 * IGNIS_KX_SB_BYTES;
    if (wtype == 8 || wtype == 6 || wtype == 2 || wtype == 20 || wtype == 3 || wtype == 7) return k / 32 * IGNIS_ZP_BLOCK_BYTES;
    return 0;
}

/* weight rows w[0..rm) (the last repeated up to 8) of width k, of a type ignis_kq_row_bytes
 * names, into buf */
static void IL(kq_prep)(int wtype, int64_t k, const uint8_t *const *w, int rm, uint8_t *buf) {
    const uint8_t *wp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    const int64_t nsb = k / 256, nb = k / 32;
    switch (wtype) {
    case 12: IL(kp_prep_rows)(nsb, wp, buf, 12); break;
    case 14: IL(kp_prep_rows)(nsb, wp, buf, 14); break;
    case 13: IL(kp_prep_rows)(nsb, wp, buf, 13); break;
    case 11: IL(kp_prep_rows)(nsb, wp, buf, 11); break;
    case 10: IL(kp_prep_rows)(nsb, wp, buf, 10); break;
    case 23: IL(kp_prep_rows)(nsb, wp, buf, 23); break;
    case 8: IL(zp_prep_rows)(nb, wp, buf, 8); break;
    case 6: IL(zp_prep_rows)(nb, wp, buf, 6); break;
    case 2: IL(zp_prep_rows)(nb, wp, buf, 2); break;
    case 20: IL(zp_prep_rows)(nb, wp, buf, 20); break;
    case 3: IL(zp_prep_rows)(nb, wp, buf, 3); break;
    default: IL(zp_prep_rows)(nb, wp, buf, 7); break;
    }
}

/* tokens x[0..rn) (the last repeated up to 8), nblk activation blocks, as tables into tab */
static void IL(kq_tokens)(int64_t nblk, const uint8_t *const *x, int rn, uint8_t *tab) {
    const uint8_t *xp[8];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    IL(kp_tokens_all)(nblk, xp, tab);
}

/* the rows kq_prep put in buf x the tokens kq_tokens put in tab: out[j * 8 + i], j, i < 8 */
static void IL(kq_prep_tile)(int wtype, int64_t k, const uint8_t *buf, const uint8_t *tab, float *out) {
    const int64_t nsb = k / 256, nb = k / 32;
    switch (wtype) {
    case 12: IL(kp_run)(nsb, buf, tab, out, 12); break;
    case 14: IL(kp_run)(nsb, buf, tab, out, 14); break;
    case 13: IL(kp_run)(nsb, buf, tab, out, 13); break;
    case 11: IL(kp_run)(nsb, buf, tab, out, 11); break;
    case 10: IL(kp_run)(nsb, buf, tab, out, 10); break;
    case 23: IL(kp_run)(nsb, buf, tab, out, 23); break;
    case 8: IL(zp_run)(nb, buf, tab, out, 8); break;
    case 6: IL(zp_run)(nb, buf, tab, out, 6); break;
    case 2: IL(zp_run)(nb, buf, tab, out, 2); break;
    case 20: IL(zp_run)(nb, buf, tab, out, 20); break;
    case 3: IL(zp_run)(nb, buf, tab, out, 3); break;
    default: IL(zp_run)(nb, buf, tab, out, 7); break;
    }
}
