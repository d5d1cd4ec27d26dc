/* Cross-checks one kernel level of ignis/_neon.h against its scalar definition.
 *
 * Build (x86-64):   cc -O2 -ffp-contract=off -Iignis tests/simd/harness.c -lm      (every x86 level)
 * Build (aarch64):  aarch64-linux-gnu-gcc -O2 -static -ffp-contract=off -Iignis tests/simd/harness.c -lm
 * Run: harness LEVEL (avx2, avxvnni, avx512 / neon, dotprod, i8mm; scalar checks the definition
 * against itself). Prints "SIMD <level>", then one "PASS name: detail" / "FAIL name: detail" line per
 * check; exits 1 if anything failed. Inputs are pseudo-random with a fixed seed.
 *
 * Exact checks: f16<->f32, Q8_0 quantization bytes, every quantized dot and matmul tile
 * (Q8_0, Q5_0, Q4_1, Q4_K, Q6_K, Q5_K, Q3_K, Q2_K, IQ4_XS weights; all tile shapes up to 8x8), axpy, exp, silu.
 * Tolerance checks (reordered float sums):
 * |simd - scalar| <= 1e-5 * sum |terms| + 1e-30.
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <math.h>
#include "_neon.h"

#define TOL 1e-5

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd32(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rndu(void) { return (float)(rnd32() & 0xffffff) / 16777216.0f * 2.0f - 1.0f; }  /* [-1, 1) */
static float rndn(void) { float s = 0; for (int i = 0; i < 4; i++) s += rndu(); return s; }
static int rndi(int lo, int hi) { return lo + (int)(rnd32() % (uint32_t)(hi - lo + 1)); }

static int failures = 0;
static void report(const char *name, int ok, const char *fmt, ...) {
    va_list ap;
    printf("%s %s: ", ok ? "PASS" : "FAIL", name);
    va_start(ap, fmt); vprintf(fmt, ap); va_end(ap);
    printf("\n");
    if (!ok) failures++;
}

/* the dispatching names are the SIMD path (or scalar in a scalar build) */
#define SIMD(fn) ignis_##fn

static void put_f16(uint8_t *p, float v) { uint16_t h = ignis_scalar_f32_to_f16(v); memcpy(p, &h, 2); }

/* ---------------------------------------------------------------- conversions */

static void check_f16(void) {
    int bad = 0;
    uint16_t all[65536]; float a[65536], b[65536];
    for (int h = 0; h < 65536; h++) {
        all[h] = (uint16_t)h;
        float s = ignis_scalar_f16_to_f32((uint16_t)h), v = SIMD(f16_to_f32)((uint16_t)h);
        if (ignis_f32_bits(s) != ignis_f32_bits(v)) bad++;
    }
    volatile int64_t n_all = 65536;  /* not a constant: keeps GCC's loop analysis quiet */
    ignis_scalar_f16_to_f32_row(all, a, n_all);
    SIMD(f16_to_f32_row)(all, b, n_all);
    for (int h = 0; h < 65536; h++) if (ignis_f32_bits(a[h]) != ignis_f32_bits(b[h])) bad++;
    report("f16_to_f32", bad == 0, "all 65536 f16 values, %d mismatching bit patterns", bad);

    /* f32 -> f16: specials, values around every f16 rounding boundary, random bit patterns */
    enum { N = 1 << 20 };
    static float xs[N]; static uint16_t hs[N], hv[N];
    int n = 0;
    float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65519.99f, 65520.0f, 65536.0f,
                        6.1035156e-05f, 6.0975552e-05f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f,
                        1e-10f, 1.0f, 1.0004883f, 1.0009766f, 1.00146484f, -3.0517578e-05f};
    for (unsigned i = 0; i < sizeof specials / sizeof *specials; i++) xs[n++] = specials[i];
    for (int h = 0; h < 0x7c00 && n < N / 2; h++) {   /* each f16 value, its midpoints and neighbours */
        float lo = ignis_scalar_f16_to_f32((uint16_t)h), hi = ignis_scalar_f16_to_f32((uint16_t)(h + 1));
        float mid = lo + (hi - lo) * 0.5f;
        xs[n++] = mid;
        xs[n++] = ignis_bits_f32(ignis_f32_bits(mid) + 1);
        xs[n++] = ignis_bits_f32(ignis_f32_bits(mid) - 1);
        xs[n++] = -mid;
    }
    while (n < N) xs[n++] = ignis_bits_f32(rnd32() ^ (rnd32() << 16));
    bad = 0;
    for (int i = 0; i < N; i++) if (ignis_scalar_f32_to_f16(xs[i]) != SIMD(f32_to_f16)(xs[i])) bad++;
    volatile int64_t n_xs = N;
    ignis_scalar_f32_to_f16_row(xs, hs, n_xs);
    SIMD(f32_to_f16_row)(xs, hv, n_xs);
    for (int i = 0; i < N; i++) if (hs[i] != hv[i]) bad++;
    /* the scalar definition vs the C compiler's own conversion where it has one */
#if defined(__FLT16_MAX__) && !defined(IGNIS_NO_FLOAT16_CHECK)
    int bad_c = 0;
    for (int i = 0; i < N; i++) {
        if (xs[i] != xs[i]) continue;  /* NaN payload handling is the hardware's business */
        _Float16 c = (_Float16)xs[i]; uint16_t cb; memcpy(&cb, &c, 2);
        if (cb != hs[i]) bad_c++;
    }
    report("f32_to_f16_vs_compiler", bad_c == 0, "%d values, %d differ from _Float16 casts", N, bad_c);
#endif
    report("f32_to_f16", bad == 0, "%d values (specials, rounding midpoints, random bits), %d mismatches", N, bad);
}

/* ---------------------------------------------------------------- quantization */

static void check_quantize(void) {
    enum { K = 32 * 24 };
    float x[K]; uint8_t a[K / 32 * 34], b[K / 32 * 34];
    int bad = 0, rows = 0;
    for (int r = 0; r < 3000; r++, rows++) {
        float scale = powf(10.0f, (float)rndi(-8, 8));
        for (int i = 0; i < K; i++) x[i] = rndn() * scale;
        if (r % 7 == 0) for (int i = 0; i < 32; i++) x[i] = 0.0f;               /* an all-zero block */
        if (r % 5 == 0)                                                         /* exact ties: d = 1 */
            for (int i = 32; i < 64; i++) x[i] = (float)rndi(-126, 125) + 0.5f * (rnd32() & 1 ? 1 : -1);
        if (r % 5 == 0) x[40] = 127.0f;
        if (r % 11 == 0) for (int i = 64; i < 96; i++) x[i] = 1e-39f * (float)rndi(-5, 5);  /* subnormal */
        int k = 32 * rndi(1, K / 32);
        ignis_scalar_quantize_row_q8_0(x, a, k);
        SIMD(quantize_row_q8_0)(x, b, k);
        if (memcmp(a, b, (size_t)k / 32 * 34)) bad++;
    }
    report("quantize_q8_0", bad == 0, "%d rows, %d with differing bytes", rows, bad);
}

/* random activation row of nb Q8_0 blocks (as the quantizer makes them) */
static void make_act(uint8_t *x, int nb, int small) {
    float v[32];
    for (int b = 0; b < nb; b++) {
        if (small) {
            put_f16(x + b * 34, 1.0f);
            for (int i = 0; i < 32; i++) ((int8_t *)(x + b * 34 + 2))[i] = (int8_t)rndi(-small, small);
        } else {
            float s = powf(2.0f, (float)rndi(-6, 6));
            for (int i = 0; i < 32; i++) v[i] = rndn() * s;
            ignis_scalar_quantize_row_q8_0(v, x + b * 34, 32);
        }
    }
}

/* 1 when any of the rm x rn outputs of a tile (column-major, stride 8) differs in bits from ref */
static int tile_differs(const float *out, float ref[8][8], int rm, int rn) {
    for (int i = 0; i < rm; i++)
        for (int j = 0; j < rn; j++)
            if (ignis_f32_bits(out[j * 8 + i]) != ignis_f32_bits(ref[i][j])) return 1;
    return 0;
}

static void random_bytes(uint8_t *p, size_t n) { for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd32(); }

typedef float (*dot_fn)(int64_t, const uint8_t *, const uint8_t *);

/* random weight rows of a quantized type: random bytes, then sane f16 scales */
static void make_weights(int type, uint8_t *w, int nblk) {
    int bytes = IGNIS_IS_KX(type) ? (int)ignis_kx_bytes(type) : type == 8 ? 34 : type == 6 ? 22 : type == 3 ? 20 : type == 12 ? 144 : 210;
    random_bytes(w, (size_t)nblk * bytes);
    for (int s = 0; s < nblk; s++) {
        uint8_t *b = w + (size_t)s * bytes;
        if (type == 8 || type == 6) put_f16(b, rndu() * 0.01f);
        if (type == 12) { put_f16(b, rndu() * 0.01f); put_f16(b + 2, rndu() * 0.01f); }
        if (type == 3) { put_f16(b, rndu() * 0.01f); put_f16(b + 2, (rndu() - 0.6f) * 0.1f); }
        if (type == 14) put_f16(b + 208, rndu() * 0.01f);
        if (IGNIS_IS_KX(type)) { put_f16(b + ignis_kx_d_off(type), rndu() * 0.01f); put_f16(b + ignis_kx_dmin_off(type), rndu() * 0.01f); }
    }
}

static void dequant_any(int type, const uint8_t *w, float *y, int k) {
    if (type == 8) ignis_dequant_row_q8_0(w, y, k);
    if (type == 6) ignis_dequant_row_q5_0(w, y, k);
    if (type == 3) ignis_dequant_row_q4_1(w, y, k);
    if (type == 12) ignis_dequant_row_q4_k(w, y, k);
    if (type == 14) ignis_dequant_row_q6_k(w, y, k);
    if (IGNIS_IS_KX(type)) ignis_dequant_row_kx(type, w, y, k);
}

/* Every quantized dot and every tile shape: SIMD bits == scalar bits. */
static void check_dots(const char *name, int type) {
    enum { MAXB = 48 };
    static uint8_t w[8][MAXB * 210], x[8][MAXB * 8 * 34];
    const uint8_t *wp[8], *xp[8];
    int per = (type == 8 || type == 6 || type == 3) ? 1 : 8;   /* activation blocks per weight block */
    int bad_dot = 0, bad_tile = 0, tiles = 0;
    char nm[64];
    for (int it = 0; it < 60; it++) {
        int nblk = rndi(1, type == 8 || type == 6 || type == 3 ? MAXB : 6);
        for (int r = 0; r < 8; r++) {
            make_weights(type, w[r], nblk);
            make_act(x[r], nblk * per, it % 4 == 0 ? 127 : 0);   /* some with unit scales */
            wp[r] = w[r];
            xp[r] = x[r];
        }
        float ref[8][8];
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++) ref[i][j] = ignis_scalar_vec_dot(type, nblk, w[i], x[j]);
        for (int i = 0; i < 8; i++) {
            float v = SIMD(vec_dot)(type, nblk, w[i], x[i]);
            if (ignis_f32_bits(v) != ignis_f32_bits(ref[i][i])) bad_dot++;
        }
        float out[64];
        for (int rm = 1; rm <= 8; rm++)
            for (int rn = 1; rn <= 8; rn++) {
                SIMD(tile)(type, nblk, wp, rm, xp, rn, out);
                tiles++;
                bad_tile += tile_differs(out, ref, rm, rn);
            }
    }
    snprintf(nm, sizeof nm, "vec_dot_%s", name);
    report(nm, bad_dot == 0, "480 dots, %d differ from the scalar bits", bad_dot);
    snprintf(nm, sizeof nm, "tile_%s", name);
    report(nm, bad_tile == 0, "%d tiles (all shapes up to 8x8), %d differ from the scalar bits", tiles, bad_tile);
}

static void make_weights32(int type, uint8_t *w, int nblk);     /* checks32.h */

/* nsb super-blocks' worth (256 nsb elements) of weights of any quantized type */
static void make_weights_k(int type, uint8_t *w, int nsb) {
    if (type == 2 || type == 7 || type == 20) make_weights32(type, w, 8 * nsb);
    else make_weights(type, w, IGNIS_IS_KX(type) || type == 12 || type == 14 ? nsb : 8 * nsb);
}

/* The decode token tables (the avx512 level's tiles of up to 8 tokens, simd/zt_decode.h):
 * zt_tokens written in two pieces (as two threads split them), zt_tile of rm rows and rn tokens
 * == the scalar dots; Q4_K / Q6_K / Q2_K / Q3_K over whole super-blocks, Q8_0 / Q5_0 / Q4_0 / IQ4_NL over any
 * number of 32-element blocks (a partial last super-block); the tables are rewritten over the
 * same memory. */
static void check_zt(void) {
    enum { MAXS = 6 };
    static uint8_t w[8][MAXS * 8 * 34], x[8][MAXS * 8 * 34];
    static _Alignas(64) uint8_t tab[8][MAXS * IGNIS_ZT_SB_BYTES];
    static const int types[8] = {12, 14, 8, 6, 2, 20, 10, 11};
    int bad = 0, tiles = 0;
    if (!ignis_zt_ok(12, 256)) {
        report("zt", 1, "this level has no decode token tables (it runs the plain tiles)");
        return;
    }
    for (int it = 0; it < 1600; it++) {
        const int wt = types[it % 8], kq = ignis_zt_super(wt), rm = rndi(1, 8), rn = rndi(1, 8);
        const int nblk = kq ? 8 * rndi(1, MAXS) : rndi(1, 8 * MAXS), nsb = (nblk + 7) / 8;
        const uint8_t *wp[8], *xt[8];
        for (int i = 0; i < 8; i++) {
            if (wt == 2 || wt == 20) make_weights32(wt, w[i], nblk);
            else make_weights(wt, w[i], kq ? nblk / 8 : nblk);
            wp[i] = w[i];
        }
        for (int j = 0; j < rn; j++) {
            make_act(x[j], nblk, it % 4 == 0 ? 127 : 0);
            const int cut = rndi(0, nsb);
            ignis_zt_tokens(cut, nsb, nblk, x[j], tab[j]);
            ignis_zt_tokens(0, cut, nblk, x[j], tab[j]);
            xt[j] = tab[j];
        }
        float out[64];
        ignis_zt_tile(wt, 32 * (int64_t)nblk, wp, rm, xt, rn, out);
        tiles++;
        for (int i = 0; i < rm; i++)
            for (int j = 0; j < rn; j++)
                if (ignis_f32_bits(out[j * 8 + i]) != ignis_f32_bits(ignis_scalar_vec_dot(wt, kq ? nblk / 8 : nblk, wp[i], x[j]))) {
                    bad++;
                    i = rm;
                    break;
                }
    }
    report("zt", bad == 0, "%d tiles on decode token tables (Q4_K, Q6_K, Q2_K, Q3_K, Q8_0, Q5_0, Q4_0, IQ4_NL; 1-8 rows, "
           "1-8 tokens), "
           "%d differ from the scalar bits", tiles, bad);
}

/* The prepared rows of every quantized type (the prefill of avx512, simd/kq_prep.h, and of avx2 /
 * avxvnni, simd/prep_x86.h): kq_prep of rm rows, kq_tokens of rn tokens, kq_prep_tile == the
 * scalar dots. Two buffers of rows meet each token table, and the tables are rebuilt over the
 * same memory (stale data must not leak). */
static void check_kq_prep(void) {
    enum { MAXS = 6 };
    enum { NT = 12 };
    static uint8_t w[16][MAXS * 8 * 34], x[8][MAXS * 8 * 34];
    static uint8_t buf[2][MAXS * IGNIS_KX_SB_BYTES], tab[MAXS * 8 * IGNIS_KP_TOK_BYTES];
    const int types[NT] = {12, 14, 13, 11, 10, 23, 8, 6, 2, 20, 3, 7};
    int bad = 0, tiles = 0;
    if (!ignis_kq_row_bytes(12, 256)) {
        report("kq_prep", 1, "this level prepares no rows (it runs the plain tiles)");
        return;
    }
    for (int t = 0; t < NT; t++)
        if (!ignis_kq_row_bytes(types[t], 256) || ignis_kq_row_bytes(types[t], 256 * MAXS) > (int64_t)sizeof buf[0]) {
            report("kq_prep", 0, "type %d is not prepared at a level that prepares rows", types[t]);
            return;
        }
    for (int it = 0; it < 3 * NT * NT; it++) {
        const int nsb = rndi(1, MAXS);     /* k = 256 nsb: nsb super-blocks or 8 nsb blocks of 32 */
        const int t0 = types[it % NT], t1 = types[(it / NT) % NT];
        const uint8_t *wp[2][8], *xp[8];
        int rm[2];
        for (int g = 0; g < 2; g++) {
            rm[g] = rndi(1, 8);
            for (int i = 0; i < 8; i++) {
                make_weights_k(g ? t1 : t0, w[8 * g + i], nsb);
                wp[g][i] = w[8 * g + i];
            }
            ignis_kq_prep(g ? t1 : t0, 256 * nsb, wp[g], rm[g], buf[g]);
        }
        for (int pass = 0; pass < 2; pass++) {
            const int rn = rndi(1, 8);
            for (int j = 0; j < 8; j++) {
                make_act(x[j], nsb * 8, (it + pass) % 4 == 0 ? 127 : 0);
                xp[j] = x[j];
            }
            ignis_kq_tokens(nsb * 8, xp, rn, tab);
            for (int g = 0; g < 2; g++) {
                float out[64];
                ignis_kq_prep_tile(g ? t1 : t0, 256 * nsb, buf[g], tab, out);
                tiles++;
                for (int i = 0; i < 8; i++)
                    for (int j = 0; j < rn; j++) {
                        /* padding repeats the last row / token */
                        const int tg = g ? t1 : t0, units = IGNIS_IS_KX(tg) || tg == 12 || tg == 14 ? nsb : 8 * nsb;
                        const float ref = ignis_scalar_vec_dot(tg, units, wp[g][i < rm[g] ? i : rm[g] - 1], x[j]);
                        if (ignis_f32_bits(out[j * 8 + i]) != ignis_f32_bits(ref)) { bad++; i = 8; break; }
                    }
            }
        }
    }
    report("kq_prep", bad == 0, "%d prepared tiles (K-quants, IQ4_XS, Q8_0, Q5_0, Q4_0, IQ4_NL, Q4_1, Q5_1; 1-8 rows, 1-8 tokens), %d differ from the scalar bits",
           tiles, bad);
}

/* The scalar definition vs dequantize-then-dot in double; with unit scales and small
 * activations every float step is exact and the result is the integer dot. */
static void check_dot_definition(void) {
    static uint8_t w[16 * 210], x[16 * 8 * 34];
    static float wf[4096], xf[4096];
    int bad = 0, bad_int = 0;
    for (int it = 0; it < 900; it++) {
        int type = (int[]){8, 6, 3, 12, 14, 13, 11, 10, 23}[it % 9];
        int per = (type == 8 || type == 6 || type == 3) ? 1 : 8;
        int bytes = IGNIS_IS_KX(type) ? (int)ignis_kx_bytes(type) : type == 8 ? 34 : type == 6 ? 22 : type == 3 ? 20 : type == 12 ? 144 : 210;
        int n = rndi(1, 4);
        make_weights(type, w, n);
        make_act(x, n * per, 0);
        int k = n * per * 32;
        float s = ignis_scalar_vec_dot(type, n, w, x);
        dequant_any(type, w, wf, k);
        ignis_dequant_row_q8_0(x, xf, k);
        double ref = 0, mag = 0;
        for (int i = 0; i < k; i++) { ref += (double)wf[i] * xf[i]; mag += fabs((double)wf[i] * xf[i]); }
        if (fabs(ref - s) > 1e-5 * mag + 1e-30) bad++;
        for (int b = 0; b < n; b++) {
            uint8_t *blk = w + (size_t)b * bytes;
            if (type == 8 || type == 6) put_f16(blk, 1.0f);
            if (type == 12) { put_f16(blk, 1.0f); put_f16(blk + 2, 1.0f); }
            if (type == 3) { put_f16(blk, 1.0f); put_f16(blk + 2, -8.0f); }
            if (type == 14) put_f16(blk + 208, 1.0f);
            if (IGNIS_IS_KX(type)) { put_f16(blk + ignis_kx_d_off(type), 1.0f); put_f16(blk + ignis_kx_dmin_off(type), 1.0f); }
        }
        make_act(x, n * per, 7);
        dequant_any(type, w, wf, k);
        ignis_dequant_row_q8_0(x, xf, k);
        double exact = 0;
        for (int i = 0; i < k; i++) exact += (double)wf[i] * xf[i];
        if ((double)ignis_scalar_vec_dot(type, n, w, x) != exact || (double)SIMD(vec_dot)(type, n, w, x) != exact) bad_int++;
    }
    report("quant_dot_definition", bad == 0, "900 scalar dots vs dequantize-then-dot, %d off", bad);
    report("quant_dot_int", bad_int == 0, "900 dots with unit scales, %d not the exact integer", bad_int);
}

#include "checks32.h"     /* Q4_0, Q5_1, IQ4_NL, F32/F16/BF16 weights */

/* Q8_0 weights x Q16 activations: SIMD tiles == scalar bits; accuracy vs the float dot. */
static void check_q16(void) {
    enum { MAXB = 40 };
    static uint8_t w[8][MAXB * 34], x[8][MAXB * 68];
    static float xf[8][MAXB * 32], wf[MAXB * 32];
    const uint8_t *wp[8], *xp[8];
    int bad_tile = 0, tiles = 0, bad_acc = 0;
    double worst = 0;
    for (int it = 0; it < 40; it++) {
        int nb = rndi(1, MAXB);
        for (int r = 0; r < 8; r++) {
            make_weights(8, w[r], nb);
            float s = powf(2.0f, (float)rndi(-8, 8));
            for (int i = 0; i < nb * 32; i++) xf[r][i] = rndn() * s;
            ignis_quantize_row_q16(xf[r], x[r], nb * 32);
            wp[r] = w[r];
            xp[r] = x[r];
        }
        float ref[8][8];
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++) ref[i][j] = ignis_scalar_vec_dot_q8_0_q16(nb, w[i], x[j]);
        float out[64];
        for (int rm = 1; rm <= 8; rm++)
            for (int rn = 1; rn <= 8; rn++) {
                SIMD(tile_q16)(nb, wp, rm, xp, rn, out);
                tiles++;
                bad_tile += tile_differs(out, ref, rm, rn);
            }
        /* accuracy: against the float dot of the dequantized weights and the unquantized x */
        ignis_dequant_row_q8_0(w[0], wf, nb * 32);
        double exact = 0, mag = 0;
        for (int i = 0; i < nb * 32; i++) { exact += (double)wf[i] * xf[0][i]; mag += fabs((double)wf[i] * xf[0][i]); }
        double e = fabs(exact - ref[0][0]) / (mag + 1e-30);
        if (e > worst) worst = e;
        if (e > 1e-4) bad_acc++;
    }
    report("tile_q8_0_q16", bad_tile == 0, "%d tiles, %d differ from the scalar bits", tiles, bad_tile);
    report("q16_accuracy", bad_acc == 0, "40 dots vs float, worst error %.2g of sum |terms|", worst);
}

/* ---------------------------------------------------------------- float kernels */

static void check_float(void) {
    enum { N = 300 };
    float a[N], b[N], y1[N], y2[N];
    uint16_t h[N];
    int bad_dot = 0, bad_dot16 = 0, bad_axpy = 0, bad_axpy16 = 0;
    double worst = 0;
    for (int it = 0; it < 2000; it++) {
        int n = rndi(1, N);
        double mag = 0, mag16 = 0;
        for (int i = 0; i < n; i++) {
            a[i] = rndn(); b[i] = rndn(); h[i] = ignis_scalar_f32_to_f16(rndn());
            y1[i] = y2[i] = rndn();
            mag += fabs((double)a[i] * b[i]);
            mag16 += fabs((double)a[i] * ignis_scalar_f16_to_f32(h[i]));
        }
        double e = fabs((double)ignis_scalar_dot_f32(a, b, n) - SIMD(dot_f32)(a, b, n));
        if (e > TOL * mag + 1e-30) bad_dot++;
        if (e / (TOL * mag + 1e-30) > worst) worst = e / (TOL * mag + 1e-30);
        e = fabs((double)ignis_scalar_dot_f32_f16(a, h, n) - SIMD(dot_f32_f16)(a, h, n));
        if (e > TOL * mag16 + 1e-30) bad_dot16++;
        float alpha = rndn();
        ignis_scalar_axpy_f32(alpha, a, y1, n);
        SIMD(axpy_f32)(alpha, a, y2, n);
        if (memcmp(y1, y2, (size_t)n * 4)) bad_axpy++;
        ignis_scalar_axpy_f16(alpha, h, y1, n);
        SIMD(axpy_f16)(alpha, h, y2, n);
        if (memcmp(y1, y2, (size_t)n * 4)) bad_axpy16++;
    }
    report("dot_f32", bad_dot == 0, "2000 dots, %d beyond tolerance, worst %.3f of the bound", bad_dot, worst);
    report("dot_f32_f16", bad_dot16 == 0, "2000 dots, %d beyond tolerance", bad_dot16);
    report("axpy_f32", bad_axpy == 0, "2000 rows, %d not bit-identical", bad_axpy);
    report("axpy_f16", bad_axpy16 == 0, "2000 rows, %d not bit-identical", bad_axpy16);
}

static void check_exp(void) {
    enum { N = 1 << 16 };
    static float x[N], e1[N], e2[N], s1[N], s2[N];
    int bad = 0, bad_silu = 0, bad_sum = 0;
    double max_rel = 0;
    for (int r = 0; r < 16; r++) {
        for (int i = 0; i < N; i++) x[i] = rndu() * (r < 8 ? 100.0f : 10.0f);
        x[0] = 0.0f; x[1] = -0.0f; x[2] = 88.3f; x[3] = -87.3f; x[4] = 1000.0f; x[5] = -1000.0f;
        int n = N - rndi(0, 7);
        for (int i = 0; i < n; i++) {
            e1[i] = ignis_scalar_expf(x[i]);
            if (x[i] > -87.0f && x[i] < 88.0f) {
                double rel = fabs(e1[i] - exp((double)x[i])) / exp((double)x[i]);
                if (rel > max_rel) max_rel = rel;
            }
        }
        memcpy(e2, x, sizeof x);
        float sum = SIMD(exp_sub_sum)(e2, 0.0f, n);
        for (int i = 0; i < n; i++)
            if (ignis_f32_bits(e1[i]) != ignis_f32_bits(e2[i])) bad++;
        /* softmax use: subtract the max so that the sum stays finite */
        float m = x[0];
        for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
        memcpy(e1, x, sizeof x);
        memcpy(e2, x, sizeof x);
        float ref = ignis_scalar_exp_sub_sum(e1, m, n);
        sum = SIMD(exp_sub_sum)(e2, m, n);
        if (fabs((double)sum - ref) > TOL * ref || memcmp(e1, e2, (size_t)n * 4)) bad_sum++;
        ignis_scalar_silu_row(x, s1, n);
        SIMD(silu_row)(x, s2, n);
        if (memcmp(s1, s2, (size_t)n * 4)) bad_silu++;
    }
    report("expf", bad == 0, "16 x 65536 values, %d not bit-identical", bad);
    report("expf_accuracy", max_rel < 3e-7, "max relative error vs libm double exp %.3g", max_rel);
    report("exp_sub_sum", bad_sum == 0, "16 sums, %d beyond tolerance", bad_sum);
    report("silu", bad_silu == 0, "16 rows of 65536, %d not bit-identical", bad_silu);
}

/* the attention helpers: G dots against one f16 row (the bits of G SIMD dots, within tolerance
 * of the scalar ones), a row divided by a scalar and the weighted sum of f16 rows (exact). */
static void check_attention(void) {
    enum { HD = 128, NS = 40, G = 7 };
    static float q[G * HD], o1[HD], o2[HD], sc[NS], x1[NS * 4], x2[NS * 4];
    static uint16_t v[NS * 2 * HD];
    float out[G * 3];
    int bad_heads = 0, bad_heads_tol = 0, bad_div = 0, bad_av = 0;
    static const int hds[] = {64, 128, 32, 48, 24, 136};
    for (int it = 0; it < 300; it++) {
        int hd = hds[it % 6] > HD ? HD : hds[it % 6], n = rndi(1, NS);
        for (int i = 0; i < G * HD; i++) q[i] = rndn();
        for (int i = 0; i < NS * 2 * HD; i++) v[i] = ignis_scalar_f32_to_f16(rndn());
        for (int i = 0; i < n; i++) sc[i] = rndu();
        /* two tokens (query stride hd) of G - 1 heads each: the bits of the single dots */
        SIMD(dot_f32_f16_heads)(q, 2, hd, G - 1, hd, v, out, G - 1, 1);
        for (int t = 0; t < 2; t++)
            for (int h = 0; h < G - 1; h++)
                if (ignis_f32_bits(out[t * (G - 1) + h]) != ignis_f32_bits(SIMD(dot_f32_f16)(q + t * hd + h * hd, v, hd)))
                    bad_heads++;
        SIMD(dot_f32_f16_heads)(q, 1, 0, G, hd, v, out, 0, 3);
        for (int h = 0; h < G; h++) {
            float d = SIMD(dot_f32_f16)(q + h * hd, v, hd);
            if (ignis_f32_bits(d) != ignis_f32_bits(out[h * 3])) bad_heads++;
            double mag = 0;
            for (int i = 0; i < hd; i++) mag += fabs((double)q[h * hd + i] * ignis_scalar_f16_to_f32(v[i]));
            if (fabs((double)ignis_scalar_dot_f32_f16(q + h * hd, v, hd) - out[h * 3]) > TOL * mag + 1e-30) bad_heads_tol++;
        }
        int m = rndi(1, NS * 4);
        for (int i = 0; i < m; i++) x1[i] = x2[i] = rndn() * 100.0f;
        float dv = rndu() * 10.0f + 0.1f;
        ignis_scalar_div_row(x1, dv, m);
        SIMD(div_row)(x2, dv, m);
        if (memcmp(x1, x2, (size_t)m * 4)) bad_div++;
        memset(o1, 0, sizeof o1);
        for (int s = 0; s < n; s++) ignis_scalar_axpy_f16(sc[s], v + s * 2 * hd, o1, hd);
        for (int i = 0; i < HD; i++) o2[i] = rndn();
        SIMD(av_head)(sc, v, 2 * hd, n, o2, hd);
        if (memcmp(o1, o2, (size_t)hd * 4)) bad_av++;
    }
    report("dot_f32_f16_heads", bad_heads == 0 && bad_heads_tol == 0,
           "300 x (7 + 2 x 6) dots, %d differ from the path's single dot, %d beyond tolerance", bad_heads, bad_heads_tol);
    report("div_row", bad_div == 0, "300 rows, %d not bit-identical", bad_div);
    report("av_head", bad_av == 0, "300 weighted sums, %d not bit-identical", bad_av);
}

/* the weighted sums of G heads over shared f16 rows (av_heads_acc: each v row read once for
 * all heads at levels that do so) == G scalar sums, each accumulating into what o held */
static void check_av_heads(void) {
    enum { HD = 256, NS = 40, GM = 14 };
    static float w[GM * NS], o1[GM * HD], o2[GM * HD];
    static uint16_t v[NS * 2 * HD];
    static const int hds[] = {64, 128, 256, 32, 48};
    int bad = 0;
    for (int it = 0; it < 300; it++) {
        const int hd = hds[it % 5], n = rndi(1, NS), G = rndi(1, GM);
        for (int i = 0; i < NS * 2 * HD; i++) v[i] = ignis_scalar_f32_to_f16(rndn());
        for (int i = 0; i < G * NS; i++) w[i] = rndu();
        for (int i = 0; i < G * hd; i++) o1[i] = o2[i] = rndn();
        for (int h = 0; h < G; h++)
            for (int s = 0; s < n; s++) ignis_scalar_axpy_f16(w[h * NS + s], v + s * 2 * HD, o1 + h * hd, hd);
        SIMD(av_heads_acc)(w, NS, v, 2 * HD, n, o2, hd, G);
        if (memcmp(o1, o2, (size_t)G * hd * 4)) bad++;
    }
    report("av_heads", bad == 0, "300 weighted sums of 1-14 heads, %d not bit-identical", bad);
    static float x[1000];
    int bad_max = 0;
    for (int it = 0; it < 300; it++) {
        const int n = rndi(1, 1000);
        for (int i = 0; i < n; i++) x[i] = rndn() * 10.0f;
        x[rndi(0, n - 1)] = 40.0f + rndu();      /* the largest anywhere, the tail included */
        float ref = x[0];
        for (int i = 1; i < n; i++) ref = x[i] > ref ? x[i] : ref;
        if (ignis_f32_bits(SIMD(max_row)(x, n)) != ignis_f32_bits(ref) ||
            ignis_f32_bits(ignis_scalar_max_row(x, n)) != ignis_f32_bits(ref)) bad_max++;
    }
    report("max_row", bad_max == 0, "300 rows, %d maxima wrong", bad_max);
    /* the scores of a KV block's rows for tokens x heads at once == the path's single dots */
    static float q[3 * GM * HD], sc[3 * GM * NS];
    int bad_rows = 0;
    for (int it = 0; it < 300; it++) {
        const int hd = hds[it % 5], R = rndi(1, NS), G = rndi(1, 8), nt = rndi(1, 3);
        for (int i = 0; i < NS * 2 * HD; i++) v[i] = ignis_scalar_f32_to_f16(rndn());
        for (int i = 0; i < nt * G * hd; i++) q[i] = rndn();
        /* out[t*ots + h*ostride + r]: ostride NS, ots G * NS */
        SIMD(dot_f32_f16_rows)(q, nt, G * hd, G, hd, v, 2 * HD, R, sc, G * NS, NS);
        for (int t = 0; t < nt; t++)
            for (int h = 0; h < G; h++)
                for (int r = 0; r < R; r++)
                    if (ignis_f32_bits(sc[t * G * NS + h * NS + r]) !=
                        ignis_f32_bits(SIMD(dot_f32_f16)(q + t * G * hd + h * hd, v + r * 2 * HD, hd))) bad_rows++;
    }
    report("dot_f32_f16_rows", bad_rows == 0, "300 KV blocks of 1-40 rows x 1-3 tokens x 1-8 heads, %d scores differ from the single dots", bad_rows);
}

/* usage: harness [LEVEL]: checks LEVEL (default: the best this CPU runs) against the scalar
 * definition; "harness --levels" lists the levels this build has and whether they run here. */
int main(int argc, char **argv) {
    int level = ignis_best_isa();
    if (argc > 1 && strcmp(argv[1], "--levels") == 0) {
        unsigned f = ignis_cpu_features();
        for (int i = 0; i < IGNIS_N_ISAS; i++)
            printf("%s %d\n", ignis_isas[i].name, (ignis_isas[i].needs & f) == ignis_isas[i].needs);
        return 0;
    }
    if (argc > 1) {
        for (level = 0; level < IGNIS_N_ISAS && strcmp(ignis_isas[level].name, argv[1]) != 0; level++) {}
    }
    if (ignis_use_isa(level) != 0) {
        printf("SKIP level %s: not in this build or not runnable on this CPU\n", argc > 1 ? argv[1] : "?");
        return 2;
    }
    printf("SIMD %s\n", ignis_isa_name());
    check_f16();
    check_quantize();
    check_dots("q8_0", 8);
    check_dots("q5_0", 6);
    check_dots("q4_1", 3);
    check_dots("q4_k", 12);
    check_dots("q6_k", 14);
    check_dots("q5_k", 13);
    check_dots("q3_k", 11);
    check_dots("q2_k", 10);
    check_dots("iq4_xs", 23);
    check_dot_definition();
    check_kq_prep();
    check_zt();
    check_all32();
    check_q16();
    check_float();
    check_exp();
    check_attention();
    check_av_heads();
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "OK", failures);
    return failures ? 1 : 0;
}
