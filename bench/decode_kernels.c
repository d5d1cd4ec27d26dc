/* decode_kernels.c -- the decode (one-token) matvec kernels of ignis against the memory roofline.
 *
 * Build and run (bench/decode_kernels.py does both):
 *   cc -O3 -ffp-contract=off -fopenmp -Iignis bench/decode_kernels.c -o /tmp/dk -lm
 *   /tmp/dk [LEVEL] [MB] [THREADS] [TYPES...]      e.g. /tmp/dk avx512 768 2 q4_k q6_k
 *
 * First a read probe: THREADS threads each sum its half of an MB-megabyte buffer (far larger than
 * the caches) with 256-bit loads; the best of several passes is the read bandwidth. Then, per
 * weight type, an MB-megabyte matrix of random blocks (f16 scales kept finite) is multiplied by
 * one Q8_0 activation row the way the runtime does it (ignis/kernels/matmul.pxi: row chunks
 * taken by the threads, 8 interleaved row streams per chunk, one 8-row tile at a time), and the
 * weight bytes per second are compared with the probe. The best of several passes is taken:
 * the machine may be shared, and a pass that lost its core is slower, never faster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <sys/mman.h>
#include "_neon.h"

typedef struct { const char *name; int wtype; int elems; int bytes; } wtype_info;

static const wtype_info TYPES[] = {
    {"q4_0", 2, 32, 18},   {"q4_1", 3, 32, 20},    {"q5_0", 6, 32, 22},   {"q5_1", 7, 32, 24},
    {"q8_0", 8, 32, 34},   {"q2_k", 10, 256, 84},  {"q3_k", 11, 256, 110}, {"q4_k", 12, 256, 144},
    {"q5_k", 13, 256, 176}, {"q6_k", 14, 256, 210}, {"iq4_nl", 20, 32, 18}, {"iq4_xs", 23, 256, 136},
};
#define NTYPES ((int)(sizeof TYPES / sizeof TYPES[0]))

static double now(void) { return omp_get_wtime(); }

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t rnd64(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static void fill_random(uint8_t *p, size_t n) {
    for (size_t i = 0; i + 8 <= n; i += 8) { uint64_t v = rnd64(); memcpy(p + i, &v, 8); }
}

/* the f16 fields of every block set to a small finite value (random bits could be NaN/inf) */
static void fix_scales(const wtype_info *t, uint8_t *w, size_t nblocks) {
    for (size_t b = 0; b < nblocks; b++) {
        uint8_t *blk = w + b * t->bytes;
        uint16_t h = ignis_scalar_f32_to_f16(0.01f + 0.001f * (float)(b % 7));
        int o1 = -1, o2 = -1;
        switch (t->wtype) {
        case 2: case 6: case 8: case 20: o1 = 0; break;
        case 3: case 7: case 12: case 13: case 23: o1 = 0; o2 = 2; break;
        case 10: o1 = 80; o2 = 82; break;
        case 11: o1 = 108; break;
        case 14: o1 = 208; break;
        }
        if (t->wtype == 23) o2 = -1;   /* IQ4_XS: bytes 2..3 are scale bits */
        if (o1 >= 0) memcpy(blk + o1, &h, 2);
        if (o2 >= 0) memcpy(blk + o2, &h, 2);
    }
}

/* rows [r0, r1) as matmul_rows does: 8 interleaved streams, then the leftover rows */
static const uint8_t *zt_table;   /* the token's decode table where the runtime reads one */

static void one_tile(const wtype_info *t, int64_t nblk, const uint8_t *const *wp, int rm, const uint8_t *x, float *out) {
    const uint8_t *xp[1] = {x};
    if (zt_table) ignis_zt_tile(t->wtype, nblk * t->elems, wp, rm, &zt_table, 1, out);
    else ignis_tile(t->wtype, nblk, wp, rm, xp, 1, out);
}

static void rows_pass(const wtype_info *t, const uint8_t *w, size_t row_bytes, int64_t nblk,
                      const uint8_t *x, float *y, int64_t r0, int64_t r1) {
    const int64_t Q = (r1 - r0) / 8;
    const uint8_t *wp[8];
    float out[64];
    for (int64_t i = 0; i < Q; i++) {
        for (int k = 0; k < 8; k++) wp[k] = w + (size_t)(r0 + i + k * Q) * row_bytes;
        one_tile(t, nblk, wp, 8, x, out);
        for (int k = 0; k < 8; k++) y[r0 + i + k * Q] = out[k];
    }
    for (int64_t n = r0 + 8 * Q; n < r1; n += 8) {
        int rm = r1 - n < 8 ? (int)(r1 - n) : 8;
        for (int k = 0; k < rm; k++) wp[k] = w + (size_t)(n + k) * row_bytes;
        one_tile(t, nblk, wp, rm, x, out);
        for (int k = 0; k < rm; k++) y[n + k] = out[k];
    }
}

__attribute__((target("avx2"))) static double probe(const uint8_t *buf, size_t n, int threads, int passes) {
    double best = 0;
    volatile double sink = 0;
    for (int p = 0; p < passes; p++) {
        double t0 = now();
        double tot = 0;
#pragma omp parallel num_threads(threads) reduction(+ : tot)
        {
            const int id = omp_get_thread_num(), nt = omp_get_num_threads();
            const size_t lo = n / nt * id / 64 * 64, hi = id == nt - 1 ? n : n / nt * (id + 1) / 64 * 64;
            __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
            for (size_t i = lo; i + 128 <= hi; i += 128) {
                a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(buf + i)));
                a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(buf + i + 32)));
                a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(buf + i + 64)));
                a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(buf + i + 96)));
            }
            a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
            tot += (double)_mm256_extract_epi64(a0, 0);
        }
        double dt = now() - t0;
        sink += tot;
        if (n / dt > best) best = n / dt;
    }
    return best;
}

int main(int argc, char **argv) {
    const char *level = argc > 1 ? argv[1] : NULL;
    size_t mb = argc > 2 ? (size_t)atol(argv[2]) : 768;
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    int passes = getenv("DK_PASSES") ? atoi(getenv("DK_PASSES")) : 5;
    if (level) {
        int found = -1;
        for (int i = 0; i < IGNIS_N_ISAS; i++) if (!strcmp(ignis_isas[i].name, level)) found = i;
        if (found < 0 || ignis_use_isa(found) != 0) { fprintf(stderr, "level %s not available\n", level); return 2; }
    } else {
        ignis_use_isa(ignis_best_isa());
    }
    const size_t n = mb << 20;
    uint8_t *buf = aligned_alloc(1 << 21, n);
    if (getenv("DK_HUGE")) madvise(buf, n, MADV_HUGEPAGE);
    fill_random(buf, n);
    const double bw = probe(buf, n, threads, passes);
    printf("level %s, %d threads, %zu MB: read probe %.1f GB/s\n", ignis_cur->name, threads, mb, bw / 1e9);
    const int64_t K = getenv("DK_K") ? atol(getenv("DK_K")) : 1536;
    for (int ti = 0; ti < NTYPES; ti++) {
        const wtype_info *t = &TYPES[ti];
        int want = argc <= 4;
        for (int a = 4; a < argc; a++) if (!strcmp(argv[a], t->name)) want = 1;
        if (!want) continue;
        const int64_t nblk = K / t->elems;
        const size_t row_bytes = (size_t)nblk * t->bytes;
        const int64_t rows = (int64_t)(n / row_bytes);
        fix_scales(t, buf, (size_t)rows * nblk);
        uint8_t *x = aligned_alloc(64, (size_t)(K / 32) * IGNIS_Q8_0_BYTES + 64);
        float *xf = malloc(sizeof(float) * K), *y = malloc(sizeof(float) * rows);
        for (int64_t i = 0; i < K; i++) xf[i] = (float)((int)(rnd64() % 2001) - 1000) / 1000.0f;
        ignis_quantize_row_q8_0(xf, x, K);
        /* one token: the runtime reads the K-quants that have decode token tables (Q4_K, Q6_K,
           Q2_K, Q3_K) from one (ZT32_MIN_ROWS keeps the 32-element types on their own kernels at
           one token); DK_PLAIN=1 times the plain tiles instead */
        uint8_t *tab = NULL;
        zt_table = NULL;
        if (ignis_zt_ok(t->wtype, K) && (t->elems == 256 || getenv("DK_ZT32")) && !getenv("DK_PLAIN")) {
            tab = aligned_alloc(64, (size_t)((K + 255) / 256) * IGNIS_ZT_SB_BYTES);
            ignis_zt_tokens(0, (K + 255) / 256, K / 32, x, tab);
            zt_table = tab;
        }
        double best = 0;
        for (int p = 0; p < passes; p++) {
            double t0 = now();
            /* the runtime's chunking: about 16 chunks per thread, at least 64 rows each */
            const int64_t nch = (rows + 63) / 64 < 16 * threads ? (rows + 63) / 64 : 16 * threads;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
            for (int64_t c = 0; c < nch; c++)
                rows_pass(t, buf, row_bytes, nblk, x, y, rows * c / nch, rows * (c + 1) / nch);
            double dt = now() - t0;
            double gbs = (double)rows * row_bytes / dt;
            if (gbs > best) best = gbs;
        }
        printf("%-7s %6.1f GB/s  %5.1f %% of the probe  (%lld rows x %lld)\n", t->name, best / 1e9,
               100.0 * best / bw, (long long)rows, (long long)K);
        free(x); free(xf); free(y); free(tab);
    }
    free(buf);
    return 0;
}
