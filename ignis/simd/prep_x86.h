/* prep_x86.h -- the prefill of 8 rows x 8 tokens on prepared rows at the avx2 / avxvnni levels
 * (included by x86.h for those levels; avx512 has its own, simd/kq_prep.h, behind the same four
 * entry points), for every quantized type: Q4_0, Q5_0, Q4_1, Q5_1, Q8_0, IQ4_NL (32-element
 * blocks), Q4_K, Q6_K, Q3_K, Q2_K (the half rule), Q5_K and IQ4_XS (the block rule). Same
 * arithmetic as their definitions in simd/defs.h, defs32.h and kquants.h, so the same bits.
 * The signed quants (Q8_0, IQ4_NL, IQ4_XS) take the sign trick per register and token, each
 * register's pair sums widened alone (they reach 2 * 128 * 127); what follows is for the rest.
 *
 * The plain 8xn tiles spend most of their instructions reducing each row's vpmaddubsw lanes to
 * one half sum (a reduction of four rows per block and token). Here the rows are transposed
 * once, when the matmul prepares them (matmul.pxi kp_prepared_rows): register d of a block holds
 * quants 4d..4d+3 of each of the 8 rows, so vpmaddubsw against the token's dword d (a broadcast
 * load) leaves 16-bit lanes (row r, pair p) with no reduction at all:
 * - the four registers of a half added as int16 lanes give per lane the sum over 8 of the
 *   half's elements (|.| < 2^15 for quants below 32 and Q6_K's less its offset: the adds wrap,
 *   and the true sum comes back exactly once the offset is taken off);
 * - the offset (Q4_0 8, Q5_0 16, Q6_K 32, Q3_K's q + 4) is taken off as 16-bit lanes from the
 *   token table (that many times the token's pair sums), then one vpmaddwd against the rows'
 *   scales as int16 (1 for the 32-element types) gives the exact sc * half sum of each row;
 * - one convert and the definition's fused multiply-adds in order follow (the min steps with
 *   -(float)m * (float)c, an exact product of small integers).
 *
 * Prepared rows of 8 (kq_prep): 32-element types IGNIS_P2_BLK_BYTES per block: the 8 registers
 * (256 B), d and m of the 8 rows as floats. K-quants IGNIS_P2_SB_BYTES per super-block: d, dmin
 * of the 8 rows as floats, then per activation block the 8 registers, the scales of each half
 * as int16 lane pairs and -m of each half as floats (Q5_K: m, for the block rule's v).
 * Token tables (kq_tokens, IGNIS_KP_TOK_BYTES per block of 8 tokens): the 8 tokens' 32 quant
 * bytes, their d_x, the half sums as floats, per offset shift u (2..5) the dwords
 * [(pair sums p = 0) << u, (p = 1) << u] of each token and half, and (float)(block sum) * d_x. */

#ifndef IGNIS_P2_BLK_BYTES
#define IGNIS_P2_BLK_BYTES 320                       /* a prepared 32-element block of 8 rows */
#define IGNIS_P2_KB_BYTES 384                        /* an activation block in a K-quant super-block */
#define IGNIS_P2_SB_BYTES (64 + 8 * IGNIS_P2_KB_BYTES) /* a prepared K-quant super-block of 8 rows */
#define IGNIS_P2_DX 256                              /* token table: d_x of the 8 tokens */
#define IGNIS_P2_CF 288                              /* token table: half sums as floats [j][h] */
#define IGNIS_P2_CORR(u) (352 + 64 * ((u) - 2))      /* token table: offset dwords [j][h], u = 2..5 */
#define IGNIS_P2_CDX 608                             /* token table: (float)(block sum of x) * d_x [j] */
#define IGNIS_P2_KQ(t) (((t) >= 10 && (t) <= 14) || (t) == 23)   /* the super-block layout */
#endif

/* 8 rows' 32 quant bytes (r[i] = row i, dword d = quants 4d..4d+3) transposed in place:
 * r[d] = [dword d of rows 0..7] */
IGNIS_INLINE void IL(p2_transpose8)(__m256i *r) {
    __m256i a[8], b[8];
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);       /* d0 d1 | d4 d5 of rows 2i, 2i+1 */
        a[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);   /* d2 d3 | d6 d7 */
    }
    for (int g = 0; g < 2; g++) {                                       /* rows 0..3, then 4..7 */
        b[4 * g] = _mm256_unpacklo_epi64(a[4 * g], a[4 * g + 2]);       /* d0 | d4 */
        b[4 * g + 1] = _mm256_unpackhi_epi64(a[4 * g], a[4 * g + 2]);   /* d1 | d5 */
        b[4 * g + 2] = _mm256_unpacklo_epi64(a[4 * g + 1], a[4 * g + 3]);
        b[4 * g + 3] = _mm256_unpackhi_epi64(a[4 * g + 1], a[4 * g + 3]);
    }
    for (int d = 0; d < 4; d++) {
        r[d] = _mm256_permute2x128_si256(b[d], b[4 + d], 0x20);
        r[d + 4] = _mm256_permute2x128_si256(b[d], b[4 + d], 0x31);
    }
}

/* bits (v >> n) & mask of each byte (n a run-time count) */
IGNIS_INLINE __m256i IL(p2_bits)(__m256i v, int n, int mask) {
    return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(n)), _mm256_set1_epi8((char)mask));
}

/* a block's bytes of the 32-element types */
static inline size_t IL(p2_block_bytes)(const int WT) {
    return WT == 2 ? IGNIS_Q4_0_BYTES : WT == 20 ? IGNIS_IQ4_NL_BYTES : WT == 6 ? IGNIS_Q5_0_BYTES
         : WT == 3 ? IGNIS_Q4_1_BYTES : WT == 8 ? IGNIS_Q8_0_BYTES : IGNIS_Q5_1_BYTES;
}

/* a row's 32 quants of activation block b as bytes in element order: unsigned (the definition's
 * quant plus its offset: Q3_K's q + 4, Q6_K's q + 32) but for Q8_0, IQ4_NL and IQ4_XS */
IGNIS_INLINE __m256i IL(p2_quants)(const uint8_t *row, int64_t b, const int WT) {
    if (!IGNIS_P2_KQ(WT)) {
        const uint8_t *blk = row + b * IL(p2_block_bytes)(WT);
        if (WT == 2) return IL(nibbles32)(blk + 2);
        if (WT == 8) return _mm256_loadu_si256((const __m256i *)(blk + 2));
        if (WT == 20) return IL(iq4_nl_quants)(blk);
        if (WT == 6) return IL(q5_0_quants)(blk);
        if (WT == 3) return IL(q4_1_quants)(blk);
        return IL(q5_0_quants)(blk + 2);                    /* Q5_1: its qh and qs past d, m */
    }
    const int jb = (int)(b % 8), h = jb / 4, sp = jb % 4;
    if (WT == 12) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(row + (b / 8) * IGNIS_Q4_K_BYTES + 16 + (jb / 2) * 32));
        return IL(p2_bits)(v, 4 * (jb & 1), 0x0f);
    }
    if (WT == 14) {
        const uint8_t *blk = row + (b / 8) * IGNIS_Q6_K_BYTES;
        const __m256i lo4 = IL(p2_bits)(_mm256_loadu_si256((const __m256i *)(blk + h * 64 + (sp & 1) * 32)), 4 * (sp >> 1), 0x0f);
        const __m256i hi2 = IL(p2_bits)(_mm256_loadu_si256((const __m256i *)(blk + 128 + h * 32)), 2 * sp, 3);
        return _mm256_or_si256(lo4, _mm256_slli_epi16(hi2, 4));
    }
    return IL(kx_quants)(row + (b / 8) * ignis_kx_bytes(WT), jb, WT);   /* Q5_K, Q3_K, Q2_K, IQ4_XS */
}

/* a K-quant row's d and dmin (0 without mins) of super-block s */
static inline void IL(p2_k_d)(const uint8_t *row, int64_t s, const int WT, float *d, float *dmin) {
    const size_t bytes = WT == 12 ? IGNIS_Q4_K_BYTES : WT == 14 ? IGNIS_Q6_K_BYTES : ignis_kx_bytes(WT);
    const uint8_t *blk = row + s * bytes;
    const int mins = WT == 12 || WT == 13 || WT == 10;
    *d = ignis_scalar_f16_to_f32(ignis_load_u16(blk + (WT == 12 ? 0 : WT == 14 ? 208 : ignis_kx_d_off(WT))));
    *dmin = mins ? ignis_scalar_f16_to_f32(ignis_load_u16(blk + (WT == 12 ? 2 : ignis_kx_dmin_off(WT)))) : 0.0f;
}

/* a K-quant row's scale and min (0 without mins) of half h of activation block jb of super-block s */
static inline void IL(p2_k_scale)(const uint8_t *row, int64_t s, int jb, int h, const int WT, int *sc, int *m) {
    const size_t bytes = WT == 12 ? IGNIS_Q4_K_BYTES : WT == 14 ? IGNIS_Q6_K_BYTES : ignis_kx_bytes(WT);
    const uint8_t *blk = row + s * bytes;
    *m = 0;
    if (WT == 12 || WT == 13) ignis_q4_k_scale_min(blk + 4, jb, sc, m);
    else if (WT == 14) *sc = (int8_t)blk[192 + 2 * jb + h];
    else if (WT == 23) *sc = ignis_iq4_xs_scale(blk, jb);
    else if (WT == 11) *sc = ignis_q3_k_scale(blk, 2 * jb + h);
    else {
        *sc = blk[2 * jb + h] & 0x0f;
        *m = blk[2 * jb + h] >> 4;
    }
}

/* the 8 rows w[0..7] (nb activation blocks each) into buf */
IGNIS_INLINE void IL(p2_prep_rows)(int64_t nb, const uint8_t *const *w, uint8_t *buf, const int WT) {
    const int kq = IGNIS_P2_KQ(WT);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *q;
        if (kq) {
            const int64_t s = b / 8;
            const int jb = (int)(b % 8);
            uint8_t *sb = buf + (size_t)s * IGNIS_P2_SB_BYTES;
            _Alignas(32) int16_t sc16[2][16];
            _Alignas(32) float mneg[2][8];
            if (jb == 0)
                for (int i = 0; i < 8; i++) IL(p2_k_d)(w[i], s, WT, (float *)sb + i, (float *)(sb + 32) + i);
            for (int i = 0; i < 8; i++)
                for (int h = 0; h < 2; h++) {
                    int sc, m;
                    IL(p2_k_scale)(w[i], s, jb, h, WT, &sc, &m);
                    sc16[h][2 * i] = sc16[h][2 * i + 1] = (int16_t)sc;
                    mneg[h][i] = WT == 13 ? (float)m : -(float)m;     /* the block rule's v takes m itself */
                }
            q = sb + 64 + (size_t)jb * IGNIS_P2_KB_BYTES;
            memcpy(q + 256, sc16, sizeof sc16);
            memcpy(q + 320, mneg, sizeof mneg);
        } else {
            q = buf + (size_t)b * IGNIS_P2_BLK_BYTES;
            float *d = (float *)(q + 256), *m = (float *)(q + 288);
            for (int i = 0; i < 8; i++) {
                const uint8_t *blk = w[i] + (size_t)b * IL(p2_block_bytes)(WT);
                d[i] = ignis_scalar_f16_to_f32(ignis_load_u16(blk));
                m[i] = WT == 3 || WT == 7 ? ignis_scalar_f16_to_f32(ignis_load_u16(blk + 2)) : 0.0f;
            }
        }
        __m256i r[8];
        for (int i = 0; i < 8; i++) r[i] = IL(p2_quants)(w[i], b, WT);
        IL(p2_transpose8)(r);
        for (int d = 0; d < 8; d++) _mm256_storeu_si256((__m256i *)(q + 32 * d), r[d]);
    }
}

/* the 8 tokens x[0..7] (nblk activation blocks each) as their tables */
IGNIS_INLINE void IL(p2_tokens_all)(int64_t nblk, const uint8_t *const *x, uint8_t *tab) {
    const __m256i ones8 = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < nblk; b++) {
        uint8_t *t = tab + (size_t)b * IGNIS_KP_TOK_BYTES;
        for (int j = 0; j < 8; j++) {
            const uint8_t *xb = x[j] + (size_t)b * IGNIS_Q8_0_BYTES;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xb + 2));
            _mm256_storeu_si256((__m256i *)(t + 32 * j), xv);
            ((float *)(t + IGNIS_P2_DX))[j] = ignis_scalar_f16_to_f32(ignis_load_u16(xb));
            /* pair sums x_2i + x_2i+1, then the four dwords of each 128-bit lane added as int16 */
            __m256i s = _mm256_maddubs_epi16(ones8, xv);
            s = _mm256_add_epi16(s, _mm256_shuffle_epi32(s, 0x4E));
            s = _mm256_add_epi16(s, _mm256_shuffle_epi32(s, 0xB1));
            int csum = 0;
            for (int h = 0; h < 2; h++) {
                const uint32_t c = (uint32_t)(h ? _mm256_extract_epi32(s, 4) : _mm256_cvtsi256_si32(s));
                const int p0 = (int16_t)(c & 0xffff), p1 = (int16_t)(c >> 16);
                ((float *)(t + IGNIS_P2_CF))[2 * j + h] = (float)(p0 + p1);
                csum += p0 + p1;
                for (int u = 2; u <= 5; u++) {
                    const uint32_t v = (uint32_t)(uint16_t)(p0 * (1 << u)) | (uint32_t)(uint16_t)(p1 * (1 << u)) << 16;
                    memcpy(t + IGNIS_P2_CORR(u) + 4 * (2 * j + h), &v, 4);
                }
            }
            ((float *)(t + IGNIS_P2_CDX))[j] = (float)csum * ((float *)(t + IGNIS_P2_DX))[j];
        }
    }
}

/* 32 bits at p in every dword */
IGNIS_INLINE __m256i IL(p2_dword)(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* the prepared rows in buf x the 8 tokens of tab over nb activation blocks: out[j * 8 + i].
 * NJ tokens at a time (their lo and hi chains live across the blocks), the rows' registers of a half
 * loaded once for them. */
IGNIS_INLINE void IL(p2_run)(int64_t nb, const uint8_t *buf, const uint8_t *tab, float *out, const int WT) {
    enum { NJ = 4 };        /* of 2, 4 and 8 the fastest (one core, every type) */
    const int kq = IGNIS_P2_KQ(WT), sgn = WT == 8 || WT == 20, u = sgn ? 0 : ignis_quant_offset_shift(WT);
    const int kmin = WT == 12 || WT == 10, bmin = WT == 3 || WT == 7;
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int j0 = 0; j0 < 8; j0 += NJ) {
        __m256 acc[NJ][2];
        for (int jj = 0; jj < NJ; jj++) acc[jj][0] = acc[jj][1] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *t = tab + (size_t)b * IGNIS_KP_TOK_BYTES, *q, *dp;
            if (kq) {
                dp = buf + (size_t)(b / 8) * IGNIS_P2_SB_BYTES;
                q = dp + 64 + (size_t)(b % 8) * IGNIS_P2_KB_BYTES;
            } else {
                q = buf + (size_t)b * IGNIS_P2_BLK_BYTES;
                dp = q + 256;
            }
            const __m256 dv = _mm256_loadu_ps((const float *)dp), mv = _mm256_loadu_ps((const float *)(dp + 32));
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)(q + 128 * h));
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(q + 128 * h + 32));
                const __m256i w2 = _mm256_loadu_si256((const __m256i *)(q + 128 * h + 64));
                const __m256i w3 = _mm256_loadu_si256((const __m256i *)(q + 128 * h + 96));
                const __m256i sc = kq ? _mm256_loadu_si256((const __m256i *)(q + 256 + 32 * h)) : ones16;
                /* signed quants (Q8_0, IQ4_NL): |w| . sign(x, w), each register's pair sums
                   (up to 2 * 128 * 127) widened alone */
                const __m256i a0 = _mm256_sign_epi8(w0, w0), a1 = _mm256_sign_epi8(w1, w1);
                const __m256i a2 = _mm256_sign_epi8(w2, w2), a3 = _mm256_sign_epi8(w3, w3);
#pragma GCC unroll 4
                for (int jj = 0; jj < NJ; jj++) {
                    const int j = j0 + jj;
                    const uint8_t *xj = t + 32 * j + 16 * h;
                    __m256i ia;
                    if (sgn) {
                        ia = _mm256_madd_epi16(_mm256_maddubs_epi16(a0, _mm256_sign_epi8(IL(p2_dword)(xj), w0)), ones16);
                        ia = _mm256_add_epi32(ia, _mm256_madd_epi16(_mm256_maddubs_epi16(a1, _mm256_sign_epi8(IL(p2_dword)(xj + 4), w1)), ones16));
                        ia = _mm256_add_epi32(ia, _mm256_madd_epi16(_mm256_maddubs_epi16(a2, _mm256_sign_epi8(IL(p2_dword)(xj + 8), w2)), ones16));
                        ia = _mm256_add_epi32(ia, _mm256_madd_epi16(_mm256_maddubs_epi16(a3, _mm256_sign_epi8(IL(p2_dword)(xj + 12), w3)), ones16));
                    } else {
                        __m256i s = _mm256_maddubs_epi16(w0, IL(p2_dword)(xj));
                        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w1, IL(p2_dword)(xj + 4)));
                        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w2, IL(p2_dword)(xj + 8)));
                        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w3, IL(p2_dword)(xj + 12)));
                        if (u) s = _mm256_sub_epi16(s, IL(p2_dword)(t + IGNIS_P2_CORR(u) + 4 * (2 * j + h)));
                        ia = _mm256_madd_epi16(s, sc);
                    }
                    const __m256 dx = _mm256_broadcast_ss((const float *)(t + IGNIS_P2_DX) + j);
                    const __m256 a = _mm256_cvtepi32_ps(ia);
                    acc[jj][h] = _mm256_fmadd_ps(a, _mm256_mul_ps(dv, dx), acc[jj][h]);
                    const __m256 c = _mm256_broadcast_ss((const float *)(t + IGNIS_P2_CF) + 2 * j + h);
                    if (kmin) {
                        const __m256 mc = _mm256_mul_ps(_mm256_loadu_ps((const float *)(q + 320 + 32 * h)), c);
                        acc[jj][h] = _mm256_fmadd_ps(mc, _mm256_mul_ps(mv, dx), acc[jj][h]);
                    }
                    if (bmin) acc[jj][h] = _mm256_fmadd_ps(c, _mm256_mul_ps(mv, dx), acc[jj][h]);
                }
            }
        }
        for (int jj = 0; jj < NJ; jj++) _mm256_storeu_ps(out + 8 * (j0 + jj), _mm256_add_ps(acc[jj][0], acc[jj][1]));
    }
}

/* Q5_K by the block rule of simd/kquants.h on the same prepared rows: per token and activation
 * block the whole block's sc * sum q*x (the two halves' vpmaddwd added: the int16 lanes of one
 * half stay below 2^15, of both they would not), u[p] = fmaf(A, d_x, u[p]) and v[p] =
 * fmaf(m, c * d_x, v[p]) for the block's parity p, then d and dmin once per super-block. */
IGNIS_INLINE void IL(p2_run_br)(int64_t nsb, const uint8_t *buf, const uint8_t *tab, float *out, const int WT) {
    enum { NJ = 2 };
    const int mins = WT == 13;          /* IQ4_XS: no mins, signed levels (the sign trick) */
    for (int j0 = 0; j0 < 8; j0 += NJ) {
        __m256 acc[NJ][2];
        for (int jj = 0; jj < NJ; jj++) acc[jj][0] = acc[jj][1] = _mm256_setzero_ps();
        for (int64_t s = 0; s < nsb; s++) {
            const uint8_t *sb = buf + (size_t)s * IGNIS_P2_SB_BYTES;
            __m256 u[NJ][2], v[NJ][2];
            for (int jj = 0; jj < NJ; jj++) u[jj][0] = u[jj][1] = v[jj][0] = v[jj][1] = _mm256_setzero_ps();
            for (int jb2 = 0; jb2 < 8; jb2 += 2)
#pragma GCC unroll 2
            for (int p = 0; p < 2; p++) {          /* the block's parity: its chains u[p], v[p] */
                const int jb = jb2 + p;
                const uint8_t *q = sb + 64 + (size_t)jb * IGNIS_P2_KB_BYTES;
                const uint8_t *t = tab + (size_t)(s * 8 + jb) * IGNIS_KP_TOK_BYTES;
                const __m256i sc = _mm256_loadu_si256((const __m256i *)(q + 256));
                const __m256 m = _mm256_loadu_ps((const float *)(q + 320));
                __m256i w[8];
#pragma GCC unroll 8
                for (int d = 0; d < 8; d++) w[d] = _mm256_loadu_si256((const __m256i *)(q + 32 * d));
                __m256i aw[8];
#pragma GCC unroll 8
                for (int d = 0; d < 8; d++) aw[d] = _mm256_sign_epi8(w[d], w[d]);
#pragma GCC unroll 2
                for (int jj = 0; jj < NJ; jj++) {
                    const int j = j0 + jj;
                    const uint8_t *xj = t + 32 * j;
                    __m256i a = _mm256_setzero_si256();
                    if (!mins) {
#pragma GCC unroll 8
                        for (int d = 0; d < 8; d++)
                            a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(aw[d], _mm256_sign_epi8(IL(p2_dword)(xj + 4 * d), w[d])), sc));
                    } else
#pragma GCC unroll 2
                    for (int h = 0; h < 2; h++) {
                        __m256i x16 = _mm256_maddubs_epi16(w[4 * h], IL(p2_dword)(xj + 16 * h));
#pragma GCC unroll 3
                        for (int d = 1; d < 4; d++)
                            x16 = _mm256_add_epi16(x16, _mm256_maddubs_epi16(w[4 * h + d], IL(p2_dword)(xj + 16 * h + 4 * d)));
                        a = _mm256_add_epi32(a, _mm256_madd_epi16(x16, sc));
                    }
                    const __m256 dx = _mm256_broadcast_ss((const float *)(t + IGNIS_P2_DX) + j);
                    const __m256 cdx = _mm256_broadcast_ss((const float *)(t + IGNIS_P2_CDX) + j);
                    u[jj][p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), dx, u[jj][p]);
                    if (mins) v[jj][p] = _mm256_fmadd_ps(m, cdx, v[jj][p]);
                }
            }
            const __m256 d = _mm256_loadu_ps((const float *)sb), dmin = _mm256_loadu_ps((const float *)(sb + 32));
            for (int jj = 0; jj < NJ; jj++)
                for (int p = 0; p < 2; p++) {
                    acc[jj][p] = _mm256_fmadd_ps(u[jj][p], d, acc[jj][p]);
                    if (mins) acc[jj][p] = _mm256_fnmadd_ps(v[jj][p], dmin, acc[jj][p]);
                }
        }
        for (int jj = 0; jj < NJ; jj++) _mm256_storeu_ps(out + 8 * (j0 + jj), _mm256_add_ps(acc[jj][0], acc[jj][1]));
    }
}

/* ignis_kq_row_bytes at this level: a group of 8 prepared rows of width k, 0 for the types it
 * does not prepare */
static int64_t IL(kq_row_bytes)(int wtype, int64_t k) {
    if (IGNIS_P2_KQ(wtype)) return k / 256 * IGNIS_P2_SB_BYTES;
    if (wtype == 2 || wtype == 6 || wtype == 3 || wtype == 7 || wtype == 8 || wtype == 20) return k / 32 * IGNIS_P2_BLK_BYTES;
    return 0;
}

/* weight rows w[0..rm) (the last repeated up to 8) of width k into buf */
static void IL(kq_prep)(int wtype, int64_t k, const uint8_t *const *w, int rm, uint8_t *buf) {
    const uint8_t *wp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    const int64_t nb = k / 32;
    switch (wtype) {
    case 12: IL(p2_prep_rows)(nb, wp, buf, 12); break;
    case 14: IL(p2_prep_rows)(nb, wp, buf, 14); break;
    case 11: IL(p2_prep_rows)(nb, wp, buf, 11); break;
    case 10: IL(p2_prep_rows)(nb, wp, buf, 10); break;
    case 13: IL(p2_prep_rows)(nb, wp, buf, 13); break;
    case 23: IL(p2_prep_rows)(nb, wp, buf, 23); break;
    case 2: IL(p2_prep_rows)(nb, wp, buf, 2); break;
    case 6: IL(p2_prep_rows)(nb, wp, buf, 6); break;
    case 3: IL(p2_prep_rows)(nb, wp, buf, 3); break;
    case 8: IL(p2_prep_rows)(nb, wp, buf, 8); break;
    case 20: IL(p2_prep_rows)(nb, wp, buf, 20); break;
    default: IL(p2_prep_rows)(nb, wp, buf, 7); break;
    }
}

/* tokens x[0..rn) (the last repeated up to 8), nblk activation blocks, as tables into tab */
static void IL(kq_tokens)(int64_t nblk, const uint8_t *const *x, int rn, uint8_t *tab) {
    const uint8_t *xp[8];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    IL(p2_tokens_all)(nblk, xp, tab);
}

/* the rows kq_prep put in buf x the tokens kq_tokens put in tab: out[j * 8 + i], j, i < 8 */
static void IL(kq_prep_tile)(int wtype, int64_t k, const uint8_t *buf, const uint8_t *tab, float *out) {
    const int64_t nb = k / 32;
    switch (wtype) {
    case 12: IL(p2_run)(nb, buf, tab, out, 12); break;
    case 14: IL(p2_run)(nb, buf, tab, out, 14); break;
    case 11: IL(p2_run)(nb, buf, tab, out, 11); break;
    case 10: IL(p2_run)(nb, buf, tab, out, 10); break;
    case 13: IL(p2_run_br)(k / 256, buf, tab, out, 13); break;
    case 23: IL(p2_run_br)(k / 256, buf, tab, out, 23); break;
    case 2: IL(p2_run)(nb, buf, tab, out, 2); break;
    case 6: IL(p2_run)(nb, buf, tab, out, 6); break;
    case 3: IL(p2_run)(nb, buf, tab, out, 3); break;
    case 8: IL(p2_run)(nb, buf, tab, out, 8); break;
    case 20: IL(p2_run)(nb, buf, tab, out, 20); break;
    default: IL(p2_run)(nb, buf, tab, out, 7); break;
    }
}
