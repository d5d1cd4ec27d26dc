/* kq_tile.c -- the quantized prefill tiles, one thread: 8 weight rows against T tokens the way
 * matmul_block runs them (one tile per 8 tokens), with and without the prepared rows of the
 * level (simd/kq_prep.h at avx512, simd/prep_x86.h at avx2 / avxvnni), in GMAC/s and ns per
 * activation block per tile. The two paths' outputs are compared bit for bit. "unpack alone"
 * times kq_prep by itself (the weight side).
 *
 * Build and run:
 *   cc -O3 -ffp-contract=off -fopenmp -Iignis bench/kq_tile.c -o /tmp/kqt -lm
 *   /tmp/kqt [LEVEL] [K] [T] [GROUPS] [BATCH]      e.g. /tmp/kqt avx512 1536 512 64 8
 * GROUPS row groups of 8 (different rows: the weights come from memory as in a real matmul),
 * prepared BATCH groups at a time (one token table serves a batch).
 * The best of several passes is reported (the machine may be shared). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "_neon.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t rnd64(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static void put_f16(uint8_t *p, float v) { uint16_t h = ignis_scalar_f32_to_f16(v); memcpy(p, &h, 2); }

int main(int argc, char **argv) {
    const char *lvl = argc > 1 ? argv[1] : "avx512";
    const int64_t K = argc > 2 ? atoll(argv[2]) : 1536, T = argc > 3 ? atoll(argv[3]) : 512;
    const int G = argc > 4 ? atoi(argv[4]) : 64;
    int level = -1;
    for (int i = 0; i < IGNIS_N_ISAS; i++) if (!strcmp(ignis_isas[i].name, lvl)) level = i;
    if (level < 0 || ignis_use_isa(level) != 0) { printf("level %s not runnable\n", lvl); return 2; }
    const int64_t nsb = K / 256, nb = K / 32;
    uint8_t *x = aligned_alloc(64, (size_t)(T * nb * 34 + 64));
    for (int64_t b = 0; b < T * nb; b++) {
        put_f16(x + b * 34, 0.01f * (float)(1 + b % 5));
        for (int i = 0; i < 32; i++) x[b * 34 + 2 + i] = (uint8_t)rnd64();
    }
    const int BATCH = argc > 5 ? atoi(argv[5]) : 8;
    uint8_t *buf = aligned_alloc(64, (size_t)BATCH * nsb * IGNIS_KX_SB_BYTES);
    uint8_t *tab = aligned_alloc(64, (size_t)nb * IGNIS_KP_TOK_BYTES);
    float *o1 = malloc(sizeof(float) * 64 * (size_t)((T + 7) / 8) * G), *o2 = malloc(sizeof(float) * 64 * (size_t)((T + 7) / 8) * G);
    enum { NT = 12 };
    const int types[NT] = {12, 14, 13, 11, 10, 23, 8, 6, 2, 20, 3, 7};
    const char *names[NT] = {"q4_k", "q6_k", "q5_k", "q3_k", "q2_k", "iq4_xs", "q8_0", "q5_0", "q4_0", "iq4_nl", "q4_1", "q5_1"};
    const int bytes[NT] = {144, 210, 176, 110, 84, 136, 34, 22, 18, 18, 20, 24};
    const int d_at[NT] = {0, 208, 0, 108, 80, 0, 0, 0, 0, 0, 0, 0}, dmin_at[NT] = {2, -1, 2, -1, 82, -1, -1, -1, -1, -1, 2, 2};
    printf("level %s, k %lld, T %lld, %d row groups of 8 (prepared %d at a time), one thread\n", lvl, (long long)K,
           (long long)T, G, BATCH);
    for (int ti = 0; ti < NT; ti++) {
        const int wt = types[ti];
        const int64_t units = ti < 6 ? nsb : nb;      /* the type's blocks per row */
        const size_t rb = (size_t)units * bytes[ti];
        const size_t sbb = (size_t)ignis_kq_row_bytes(wt, K);
        uint8_t *w = aligned_alloc(64, rb * 8 * G + 64);
        for (size_t i = 0; i < rb * 8 * G; i += 8) { uint64_t v = rnd64(); memcpy(w + i, &v, 8); }
        for (int64_t r = 0; r < 8 * G; r++)
            for (int64_t s = 0; s < units; s++) {
                uint8_t *blk = w + r * rb + s * bytes[ti];
                put_f16(blk + d_at[ti], 0.01f);
                if (dmin_at[ti] >= 0) put_f16(blk + dmin_at[ti], 0.002f);
            }
        double best_old = 1e30, best_new = 1e30, best_prep = 1e30;
        for (int pass = 0; pass < 5; pass++) {
            double t0 = omp_get_wtime();
            for (int g = 0; g < G; g++) {
                const uint8_t *wp[8];
                for (int i = 0; i < 8; i++) wp[i] = w + (size_t)(g * 8 + i) * rb;
                for (int64_t t = 0; t < T; t += 8) {
                    const uint8_t *xp[8];
                    int rn = T - t < 8 ? (int)(T - t) : 8;
                    for (int j = 0; j < rn; j++) xp[j] = x + (size_t)(t + j) * nb * 34;
                    ignis_tile(wt, units, wp, 8, xp, rn, o1 + ((size_t)g * ((T + 7) / 8) + t / 8) * 64);
                }
            }
            double t1 = omp_get_wtime();
            if (sbb) {
                /* as the runtime: BATCH groups prepared, then per 8 tokens one token table for them */
                for (int g0 = 0; g0 < G; g0 += BATCH) {
                    const int ng = G - g0 < BATCH ? G - g0 : BATCH;
                    for (int g = g0; g < g0 + ng; g++) {
                        const uint8_t *wp[8];
                        for (int i = 0; i < 8; i++) wp[i] = w + (size_t)(g * 8 + i) * rb;
                        ignis_kq_prep(wt, K, wp, 8, buf + (size_t)(g - g0) * sbb);
                    }
                    for (int64_t t = 0; t < T; t += 8) {
                        const uint8_t *xp[8];
                        int rn = T - t < 8 ? (int)(T - t) : 8;
                        for (int j = 0; j < rn; j++) xp[j] = x + (size_t)(t + j) * nb * 34;
                        ignis_kq_tokens(nb, xp, rn, tab);
                        for (int g = g0; g < g0 + ng; g++)
                            ignis_kq_prep_tile(wt, K, buf + (size_t)(g - g0) * sbb, tab,
                                               o2 + ((size_t)g * ((T + 7) / 8) + t / 8) * 64);
                    }
                }
            }
            double t2 = omp_get_wtime();
            if (sbb)
                for (int g = 0; g < G; g++) {
                    const uint8_t *wp[8];
                    for (int i = 0; i < 8; i++) wp[i] = w + (size_t)(g * 8 + i) * rb;
                    ignis_kq_prep(wt, K, wp, 8, buf);
                }
            double t3 = omp_get_wtime();
            if (t1 - t0 < best_old) best_old = t1 - t0;
            if (t2 - t1 < best_new) best_new = t2 - t1;
            if (t3 - t2 < best_prep) best_prep = t3 - t2;
        }
        const double macs = 8.0 * G * (double)T * (double)K, tiles = (double)G * (double)((T + 7) / 8) * (double)nb;
        printf("%-6s tile per 8 tokens: %6.2f GMAC/s  %6.2f ns/block-tile\n", names[ti],
               macs / best_old * 1e-9, best_old / tiles * 1e9);
        if (sbb) {
            int bad = 0;
            for (int g = 0; g < G; g++)
                for (int64_t t = 0; t < T; t += 8) {
                    int rn = T - t < 8 ? (int)(T - t) : 8;
                    size_t o = ((size_t)g * ((T + 7) / 8) + t / 8) * 64;
                    if (memcmp(o1 + o, o2 + o, (size_t)rn * 8 * sizeof(float))) bad++;
                }
            printf("      prepared rows:      %6.2f GMAC/s  %6.2f ns/block-tile  (unpack alone %.2f ns per block of 8 rows)  %s\n",
                   macs / best_new * 1e-9, best_new / tiles * 1e9, best_prep / (G * (double)nb) * 1e9,
                   bad ? "BITS DIFFER" : "same bits");
        }
        free(w);
    }
    return 0;
}
