/* x86_32.h -- the AVX2 / AVX-VNNI / AVX-512 kernels of the types simd/defs32.h defines
 * (included by x86.h once per x86-64 level, after avx512.h). Same arithmetic as the
 * definition: exact integer half sums, then the definition's fused multiply-adds in order.
 *
 *   Q4_0, Q5_1, IQ4_NL  8 rows x 1..4 tokens in the lane layout of IL(q8_8xn) (every level);
 *                       avx512: 8 rows x 4/8 tokens on transposed weights (z8) and decode
 *                       with two rows per 512-bit register (zn), as Q5_0/Q4_1 in avx512.h.
 *   F32, F16, BF16      the 16 chains of the definition as two 8-lane registers, up to 4
 *                       (row, token) pairs at once; the tail elements and the tree as the
 *                       definition (ignis_wdot_finish). */

/* IQ4_NL block quants as 32 signed bytes: the nibbles looked up in the levels table */
IGNIS_INLINE __m256i IL(iq4_nl_quants)(const uint8_t *blk) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ignis_iq4_nl_levels));
    return _mm256_shuffle_epi8(table, IL(nibbles32)(blk + 2));
}

/* Q4_0 (WT 2), Q5_1 (WT 7), IQ4_NL (WT 20): 8 weight rows x RN <= 4 tokens. Q4_0 takes the
 * nibbles unsigned: sum (q-8)*x = maddubs(q, x) - 8 * sum x (the token's partials, per lane);
 * Q5_1 as Q4_1 with the Q5_0 quants; IQ4_NL's signed levels take the sign trick of Q8_0. */
IGNIS_INLINE void IL(b32_8xn)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                              float *out, const int RN, const int WT) {
    const size_t wbytes = WT == 7 ? IGNIS_Q5_1_BYTES : IGNIS_Q4_0_BYTES;
    __m256 acc[4][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t xo = (size_t)b * IGNIS_Q8_0_BYTES, wo = (size_t)b * wbytes;
        IL(prefetch_block)(w, 8, b, wbytes);
        __m256i xv[4], x8[4];
        __m256 dx[4], xsf[4];
        for (int j = 0; j < RN; j++) {
            xv[j] = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 2));
            dx[j] = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo)));
            if (WT == 2) x8[j] = IL(udot4)(_mm256_set1_epi8(8), xv[j]);
            if (WT == 7) {
                const __m256i t = IL(udot4)(_mm256_set1_epi8(1), xv[j]);
                xsf[j] = _mm256_cvtepi32_ps(IL(reduce4)(t, t, t, t));
            }
        }
        for (int g = 0; g < 2; g++) {
            const uint8_t *const *wg = w + 4 * g;
            __m256i wv[4], aw[4];
            for (int k = 0; k < 4; k++) {
                if (WT == 2) wv[k] = IL(nibbles32)(wg[k] + wo + 2);
                else if (WT == 7) wv[k] = IL(q5_0_quants)(wg[k] + wo + 2);
                else {
                    wv[k] = IL(iq4_nl_quants)(wg[k] + wo);
                    aw[k] = _mm256_sign_epi8(wv[k], wv[k]);
                }
            }
            const __m256 dw = IL(f16x4_twice)(wg[0] + wo, wg[1] + wo, wg[2] + wo, wg[3] + wo);
            const __m256 mw = WT == 7 ? IL(f16x4_twice)(wg[0] + wo + 2, wg[1] + wo + 2, wg[2] + wo + 2, wg[3] + wo + 2) : dw;
            for (int j = 0; j < RN; j++) {
                __m256i p[4];
                for (int k = 0; k < 4; k++)
                    p[k] = WT == 2 ? _mm256_sub_epi32(IL(udot4)(wv[k], xv[j]), x8[j])
                         : WT == 7 ? IL(udot4)(wv[k], xv[j])
                                   : IL(pair_i8)(wv[k], aw[k], xv[j]);
                const __m256i h = IL(reduce4)(p[0], p[1], p[2], p[3]);
                acc[j][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw, dx[j]), acc[j][g]);
                if (WT == 7) acc[j][g] = _mm256_fmadd_ps(xsf[j], _mm256_mul_ps(mw, dx[j]), acc[j][g]);
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < 2; g++) IL(store4)(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}

#if !IGNIS_X86_512      /* avx512 takes the z8 / zn kernels below */
#define IGNIS_B32_KERNELS(RN) \
    static void IL(q4_0_8x##RN)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(b32_8xn)(n, w, x, o, RN, 2); } \
    static void IL(q5_1_8x##RN)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(b32_8xn)(n, w, x, o, RN, 7); } \
    static void IL(iq4_nl_8x##RN)(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { IL(b32_8xn)(n, w, x, o, RN, 20); }
IGNIS_B32_KERNELS(1) IGNIS_B32_KERNELS(2) IGNIS_B32_KERNELS(3) IGNIS_B32_KERNELS(4)
#undef IGNIS_B32_KERNELS
#endif

#if IGNIS_X86_512
/* the signed quants of one Q4_0 (nibble - 8) or IQ4_NL (level) block */
IGNIS_INLINE __m256i IL(sq4_quants)(const uint8_t *blk, const int WT) {
    if (WT == 2) return _mm256_sub_epi8(IL(nibbles32)(blk + 2), _mm256_set1_epi8(8));
    return IL(iq4_nl_quants)(blk);
}

/* Q4_0 / IQ4_NL (signed quants, as Q8_0 in IL(q8_z8)) and Q5_1 (unsigned, as IL(q4_1_z8)):
 * 8 weight rows x RN tokens on transposed weights */
IGNIS_INLINE void IL(b32_z8)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                             float *out, const int RN, const int WT) {
    const size_t wbytes = WT == 7 ? IGNIS_Q5_1_BYTES : IGNIS_Q4_0_BYTES;
    __m512i spread[4];
    IL(z8_spread)(spread);
    __m512 acc[8];
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * wbytes, xo = (size_t)b * IGNIS_Q8_0_BYTES;
        __m256i r[8];
        for (int i = 0; i < 8; i++) r[i] = WT == 7 ? IL(q5_0_quants)(w[i] + off + 2) : IL(sq4_quants)(w[i] + off, WT);
        __m512i wt[4];
        IL(z8_transpose)(r, wt);
        const __m512 dw = IL(z8_f16x8)(w, off);
        if (WT == 7) {
            const __m512 mw = IL(z8_f16x8)(w, off + 2);
            for (int j = 0; j < RN; j++) {
                __m512i a, c;
                IL(z8_dot_unsigned)(wt, spread, x[j] + xo, &a, &c);
                acc[j] = IL(q4_1_fma2)(acc[j], a, c, dw, mw, x[j] + xo);
            }
        } else {
            const __m512i start = IL(z8_offset_start)(wt);
            for (int j = 0; j < RN; j++) {
                const __m512i s = IL(z8_dot_signed)(start, wt, spread, x[j] + xo);
                const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo))));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, acc[j]);
            }
        }
    }
    IL(z8_store)(acc, RN, out);
}

/* decode, 8 rows x RN <= 4 tokens, rows p and p + 4 in one register (the lane order of
 * IL(q5_0_zn)). Q4_0: nibbles unsigned, the start -8 * the token's partials; IQ4_NL: the
 * levels + 128 (unsigned), the start -128 * the partials; Q5_1: the nibbles plus the fifth
 * bits, then IL(q4_1_zn)'s steps. */
IGNIS_INLINE void IL(b32_zn)(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                             float *out, const int RN, const int WT) {
    const size_t wbytes = WT == 7 ? IGNIS_Q5_1_BYTES : IGNIS_Q4_0_BYTES;
    const size_t qs = WT == 7 ? 8 : 2;
    const __m512i table = _mm512_xor_si512(
        _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)ignis_iq4_nl_levels)), _mm512_set1_epi8((char)0x80));
    const char offset = WT == 2 ? 8 : (char)0x80;
    __m512 acc[4];
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * wbytes, xo = (size_t)b * IGNIS_Q8_0_BYTES;
        IL(prefetch_block)(w, 8, b, wbytes);
        __m512i q[4];
        for (int p = 0; p < 4; p++) {
            const uint8_t *b0 = w[p] + wo, *b1 = w[p + 4] + wo;
            q[p] = IL(zn_nibbles)(b0 + qs, b1 + qs);
            if (WT == 20) q[p] = _mm512_shuffle_epi8(table, q[p]);
            if (WT == 7) {
                const uint64_t h0 = ignis_load_u32(b0 + 4), h1 = ignis_load_u32(b1 + 4);
                const __mmask64 bits = (h0 & 0xffff) | ((h1 & 0xffff) << 16) | ((h0 >> 16) << 32) | ((h1 >> 16) << 48);
                q[p] = _mm512_mask_add_epi8(q[p], bits, q[p], _mm512_set1_epi8(16));
            }
        }
        const __m512 dw = IL(z8_f16x8)(w, wo);
        const __m512 mw = WT == 7 ? IL(z8_f16x8)(w, wo + 2) : dw;
        for (int j = 0; j < RN; j++) {
            const __m512i xz = IL(zn_token)(x[j] + xo);
            if (WT == 7) {
                const __m512i h = IL(zn_dots)(_mm512_setzero_si512(), q, xz), c = IL(zn_xsums)(xz, 1);
                acc[j] = IL(q4_1_fma2)(acc[j], h, c, dw, mw, x[j] + xo);
            } else {
                const __m512i h = IL(zn_dots)(IL(zn_neg_partials)(xz, offset), q, xz);
                const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo))));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(h), sc, acc[j]);
            }
        }
    }
    IL(z8_store)(acc, RN, out);
}
#endif

/* ---- float weights: 8 f32 values of weight row w from element i (exact conversions) */
IGNIS_INLINE __m256 IL(wf8)(const uint8_t *w, int64_t i, const int WT) {
    if (WT == 0) return _mm256_loadu_ps((const float *)w + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * i));
    if (WT == 1) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* the fixed tree (ignis_wdot_finish) of four outputs' chains, each as two 8-lane registers,
 * with the same additions on the same operands: lane p of the result is the tree of a[p] */
IGNIS_INLINE __m128 IL(wf_tree4)(__m256 (*a)[2]) {
    __m256 c8[4];
    for (int p = 0; p < 4; p++) c8[p] = _mm256_add_ps(a[p][0], a[p][1]);     /* c[l] + c[l+8] */
    /* halves 0 / 1: the c4 of a[0] / a[1] (t01) and of a[2] / a[3] (t23) */
    const __m256 t01 = _mm256_add_ps(_mm256_permute2f128_ps(c8[0], c8[1], 0x20), _mm256_permute2f128_ps(c8[0], c8[1], 0x31));
    const __m256 t23 = _mm256_add_ps(_mm256_permute2f128_ps(c8[2], c8[3], 0x20), _mm256_permute2f128_ps(c8[2], c8[3], 0x31));
    const __m256 u = _mm256_add_ps(_mm256_shuffle_ps(t01, t23, 0x44), _mm256_shuffle_ps(t01, t23, 0xEE));
    const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(u, u, 0x88), _mm256_shuffle_ps(u, u, 0xDD));
    /* r: lanes 0, 1 the trees of a[0], a[2]; lanes 4, 5 those of a[1], a[3] */
    return _mm_unpacklo_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
}

/* RM rows x RN tokens (RM * RN <= 4) of float weights: per (row, token) the 16 chains as two
 * registers over the whole 16-element steps, then ignis_wdot_finish (four outputs with no
 * elements left: IL(wf_tree4)) */
IGNIS_INLINE void IL(wf_block)(int64_t k, const uint8_t *const *w, const uint8_t *const *x, float *out,
                               const int RM, const int RN, const int WT) {
    __m256 a[4][2];
    for (int p = 0; p < RM * RN; p++) a[p][0] = a[p][1] = _mm256_setzero_ps();
    const int64_t k16 = k / IGNIS_WCHAINS * IGNIS_WCHAINS;
    for (int64_t i = 0; i < k16; i += 16) {
        __m256 xv[2][2];
        for (int j = 0; j < RN; j++) {
            xv[j][0] = _mm256_loadu_ps((const float *)x[j] + i);
            xv[j][1] = _mm256_loadu_ps((const float *)x[j] + i + 8);
        }
        for (int r = 0; r < RM; r++) {
            const __m256 w0 = IL(wf8)(w[r], i, WT), w1 = IL(wf8)(w[r], i + 8, WT);
            for (int j = 0; j < RN; j++) {
                a[r * RN + j][0] = _mm256_fmadd_ps(xv[j][0], w0, a[r * RN + j][0]);
                a[r * RN + j][1] = _mm256_fmadd_ps(xv[j][1], w1, a[r * RN + j][1]);
            }
        }
    }
    if (k16 == k && RM * RN == 4) {
        float t[4];
        _mm_storeu_ps(t, IL(wf_tree4)(a));
        for (int r = 0; r < RM; r++)
            for (int j = 0; j < RN; j++) out[j * IGNIS_TILE + r] = t[r * RN + j];
        return;
    }
    for (int r = 0; r < RM; r++)
        for (int j = 0; j < RN; j++) {
            float c[IGNIS_WCHAINS];
            _mm256_storeu_ps(c, a[r * RN + j][0]);
            _mm256_storeu_ps(c + 8, a[r * RN + j][1]);
            out[j * IGNIS_TILE + r] = ignis_wdot_finish(c, WT, k16, k, w[r], (const float *)x[j]);
        }
}

#if IGNIS_X86_512
/* 16 f32 values of weight row w from element i (exact conversions; BF16: one vpermw puts value
 * i in the high half of dword i and zeroes the low halves, where a widening and a shift took two
 * operations from the fma ports) */
IGNIS_INLINE __m512 IL(wf16)(const uint8_t *w, int64_t i, const int WT) {
    if (WT == 0) return _mm512_loadu_ps((const float *)w + i);
    const __m256i h = _mm256_loadu_si256((const __m256i *)(w + 2 * i));
    if (WT == 1) return _mm512_cvtph_ps(h);
    const __m512i to_high = _mm512_set_epi16(15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8, 0,
                                             7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0, 1, 0, 0, 0);
    return _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xAAAAAAAAu, to_high, _mm512_castsi256_si512(h)));
}

/* the definition's fixed tree (ignis_wdot_finish) of 16 chain registers at once, the same
 * additions on the same operands: a[p]'s c8 (lanes l + l+8), c4 (l + l+4), then (c4[0] + c4[2]) +
 * (c4[1] + c4[3]). Lane 4j + r of the result is the tree of a[4r + j]: with a[r*4 + j] the
 * chains of (row r, token j), quarter j holds token j's four rows. */
IGNIS_INLINE __m512 IL(wf_tree16)(const __m512 *a) {
    __m512 c8[8], c4[4];
    for (int i = 0; i < 8; i++)     /* lanes 0-7: c8 of a[2i], 8-15: of a[2i+1] */
        c8[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                              _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++)     /* quarter m: c4 of a[4i + m] */
        c4[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c8[2 * i], c8[2 * i + 1], 0x88),
                              _mm512_shuffle_f32x4(c8[2 * i], c8[2 * i + 1], 0xDD));
    /* per quarter: c4[0] + c4[2] and c4[1] + c4[3] of two registers, then their sum */
    const __m512 h01 = _mm512_add_ps(_mm512_shuffle_ps(c4[0], c4[1], 0x44), _mm512_shuffle_ps(c4[0], c4[1], 0xEE));
    const __m512 h23 = _mm512_add_ps(_mm512_shuffle_ps(c4[2], c4[3], 0x44), _mm512_shuffle_ps(c4[2], c4[3], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(h01, h23, 0x88), _mm512_shuffle_ps(h01, h23, 0xDD));
}

/* 4 rows x 4 tokens of float weights with the 16 chains of a (row, token) in one 512-bit register
 * (lane i: chain i, as the two 8-lane registers of IL(wf_block)): each row's 16 values widened once
 * for 4 tokens, each token's loaded once for 4 rows */
IGNIS_INLINE void IL(wf_block16)(int64_t k, const uint8_t *const *w, const uint8_t *const *x, float *out,
                                 const int WT) {
    __m512 a[16];
    for (int p = 0; p < 16; p++) a[p] = _mm512_setzero_ps();
    const int64_t k16 = k / IGNIS_WCHAINS * IGNIS_WCHAINS;
    for (int64_t i = 0; i < k16; i += 16) {
        __m512 xv[4];
        for (int j = 0; j < 4; j++) xv[j] = _mm512_loadu_ps((const float *)x[j] + i);
        for (int r = 0; r < 4; r++) {
            const __m512 wv = IL(wf16)(w[r], i, WT);
            for (int j = 0; j < 4; j++) a[r * 4 + j] = _mm512_fmadd_ps(xv[j], wv, a[r * 4 + j]);
        }
    }
    if (k16 == k) {     /* no elements left for the chains: the tree of all 16 outputs at once */
        const __m512 t = IL(wf_tree16)(a);
        _mm_storeu_ps(out, _mm512_castps512_ps128(t));
        _mm_storeu_ps(out + IGNIS_TILE, _mm512_extractf32x4_ps(t, 1));
        _mm_storeu_ps(out + 2 * IGNIS_TILE, _mm512_extractf32x4_ps(t, 2));
        _mm_storeu_ps(out + 3 * IGNIS_TILE, _mm512_extractf32x4_ps(t, 3));
        return;
    }
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 4; j++) {
            float c[IGNIS_WCHAINS];
            _mm512_storeu_ps(c, a[r * 4 + j]);
            out[j * IGNIS_TILE + r] = ignis_wdot_finish(c, WT, k16, k, w[r], (const float *)x[j]);
        }
}

/* 8 rows x 1 token of float weights (decode): IL(wf_block16)'s chains, the token's 16 values
 * loaded once for 8 rows, and the 8 row streams prefetched IGNIS_ZD_AHEAD bytes ahead (prefetch_x86.h) */
IGNIS_INLINE void IL(wf_rows8)(int64_t k, const uint8_t *const *w, const uint8_t *x, float *out, const int WT) {
    const int esz = WT == 0 ? 4 : 2;
    __m512 a[8];
    for (int r = 0; r < 8; r++) a[r] = _mm512_setzero_ps();
    const int64_t k16 = k / IGNIS_WCHAINS * IGNIS_WCHAINS;
    for (int64_t i = 0; i < k16; i += 16) {
        if ((i * esz) % 64 == 0) IL(prefetch_rows)(w, 8, (size_t)(i * esz) + IGNIS_ZD_AHEAD, 1);
        const __m512 xv = _mm512_loadu_ps((const float *)x + i);
        for (int r = 0; r < 8; r++) a[r] = _mm512_fmadd_ps(xv, IL(wf16)(w[r], i, WT), a[r]);
    }
    for (int r = 0; r < 8; r++) {
        float c[IGNIS_WCHAINS];
        _mm512_storeu_ps(c, a[r]);
        out[r] = ignis_wdot_finish(c, WT, k16, k, w[r], (const float *)x);
    }
}
#endif

IGNIS_INLINE void IL(wf_tile)(int64_t k, const uint8_t *const *wp, const uint8_t *const *xp, int rm, int rn,
                              float *tmp, const int WT) {
#if IGNIS_X86_512
    if (rn > 2) {       /* prefill: 4 x 4 blocks of the padded pointers (wp, xp hold 8 each) */
        for (int j0 = 0; j0 < rn; j0 += 4)
            for (int i0 = 0; i0 < rm; i0 += 4) IL(wf_block16)(k, wp + i0, xp + j0, tmp + j0 * IGNIS_TILE + i0, WT);
        return;
    }
#endif
    if (rn == 1) {
#if IGNIS_X86_512
        IL(wf_rows8)(k, wp, xp[0], tmp, WT);
#else
        for (int i0 = 0; i0 < rm; i0 += 4) IL(wf_block)(k, wp + i0, xp, tmp + i0, 4, 1, WT);
#endif
        return;
    }
    for (int j0 = 0; j0 < rn; j0 += 2)
        for (int i0 = 0; i0 < rm; i0 += 2) IL(wf_block)(k, wp + i0, xp + j0, tmp + j0 * IGNIS_TILE + i0, 2, 2, WT);
}

/* The tile of the types of defs32.h (see ignis_scalar_tile): pads rows/tokens by repeating
 * the last pointer. */
static inline void IL(tile_32x)(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                                const uint8_t *const *x, int rn, float *out) {
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
    if (wtype == 0 || wtype == 1 || wtype == 30) {
        if (wtype == 0) IL(wf_tile)(nblk, wp, xp, rm, rn, tmp, 0);
        else if (wtype == 1) IL(wf_tile)(nblk, wp, xp, rm, rn, tmp, 1);
        else IL(wf_tile)(nblk, wp, xp, rm, rn, tmp, 30);
    } else {
        const int t = wtype == 2 ? 0 : wtype == 7 ? 1 : 2;
#if IGNIS_X86_512
        if (rn >= 4) {
            if (t == 0) IL(b32_z8)(nblk, wp, xp, tmp, rn > 4 ? 8 : 4, 2);
            else if (t == 1) IL(b32_z8)(nblk, wp, xp, tmp, rn > 4 ? 8 : 4, 7);
            else IL(b32_z8)(nblk, wp, xp, tmp, rn > 4 ? 8 : 4, 20);
        } else {
            static const int wts[3] = {2, 7, 20};
            switch (wts[t] * 4 + rn) {
            case 9: IL(b32_zn)(nblk, wp, xp, tmp, 1, 2); break;
            case 10: IL(b32_zn)(nblk, wp, xp, tmp, 2, 2); break;
            case 11: IL(b32_zn)(nblk, wp, xp, tmp, 3, 2); break;
            case 29: IL(b32_zn)(nblk, wp, xp, tmp, 1, 7); break;
            case 30: IL(b32_zn)(nblk, wp, xp, tmp, 2, 7); break;
            case 31: IL(b32_zn)(nblk, wp, xp, tmp, 3, 7); break;
            case 81: IL(b32_zn)(nblk, wp, xp, tmp, 1, 20); break;
            case 82: IL(b32_zn)(nblk, wp, xp, tmp, 2, 20); break;
            default: IL(b32_zn)(nblk, wp, xp, tmp, 3, 20); break;
            }
        }
#else
        static const ignis_kernel_fn ks[3][4] = {
            {IL(q4_0_8x1), IL(q4_0_8x2), IL(q4_0_8x3), IL(q4_0_8x4)},
            {IL(q5_1_8x1), IL(q5_1_8x2), IL(q5_1_8x3), IL(q5_1_8x4)},
            {IL(iq4_nl_8x1), IL(iq4_nl_8x2), IL(iq4_nl_8x3), IL(iq4_nl_8x4)}};
        for (int j0 = 0; j0 < rn; j0 += 4) {
            int n = rn - j0 < 4 ? rn - j0 : 4;
            ks[t][n - 1](nblk, wp, xp + j0, tmp + j0 * IGNIS_TILE);
        }
#endif
    }
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}
