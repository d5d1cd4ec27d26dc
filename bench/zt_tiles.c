/* zt_tiles.c -- the avx512 level's tiles of up to 8 tokens on decode token tables
 * (simd/zt_decode.h: a speculative verify step, a small decode batch) against the plain tiles,
 * one thread, per weight type and token count, in GMAC/s; the outputs are compared bit for bit.
 *
 * Build and run:
 *   cc -O3 -ffp-contract=off -fopenmp -Iignis bench/zt_tiles.c -o /tmp/ztt -lm
 *   /tmp/ztt [K] [GROUPS]       e.g. /tmp/ztt 896 64  (GROUPS row groups of 8, from memory)
 * The best of 7 passes is reported (the machine may be shared). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "_neon.h"
static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t rnd64(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static void put_f16(uint8_t *p, float v) { uint16_t h = ignis_scalar_f32_to_f16(v); memcpy(p, &h, 2); }
int main(int argc, char **argv) {
    const int64_t K = argc > 1 ? atoll(argv[1]) : 1536; const int G = argc > 2 ? atoi(argv[2]) : 64;
    int lv = -1; for (int i = 0; i < IGNIS_N_ISAS; i++) if (!strcmp(ignis_isas[i].name, "avx512")) lv = i;
    ignis_use_isa(lv);
    const int64_t nsb = K / 256, nb = K / 32;
    uint8_t *x = aligned_alloc(64, 8 * nb * 34 + 64);
    for (int64_t b = 0; b < 8 * nb; b++) { put_f16(x + b * 34, 0.01f * (float)(1 + b % 5)); for (int i = 0; i < 32; i++) { int8_t v = (int8_t)rnd64(); if (v == -128) v = -127; x[b*34+2+i] = (uint8_t)v; } }
    uint8_t *tab = aligned_alloc(64, 8 * ((nb + 7) / 8) * IGNIS_ZT_SB_BYTES);
    const uint8_t *xp[8], *tp[8];
    for (int t = 0; t < 8; t++) { xp[t] = x + t * nb * 34; tp[t] = tab + t * ((nb + 7) / 8) * IGNIS_ZT_SB_BYTES; ignis_zt_tokens(0, (nb + 7) / 8, nb, xp[t], (uint8_t *)tp[t]); }
    int types[4] = {12, 14, 8, 6}, bytes[4] = {144, 210, 34, 22}, dat[4] = {0, 208, 0, 0}; const char *nm[4] = {"q4_k", "q6_k", "q8_0", "q5_0"};
    for (int ti = 0; ti < 4; ti++) {
        const int64_t units = ti < 2 ? nsb : nb; size_t rb = units * bytes[ti];
        uint8_t *w = aligned_alloc(64, rb * 8 * G + 64);
        for (size_t i = 0; i < rb * 8 * G; i += 8) { uint64_t v = rnd64(); memcpy(w + i, &v, 8); }
        for (int64_t r = 0; r < 8 * G; r++) for (int64_t s = 0; s < units; s++) { uint8_t *blk = w + r * rb + s * bytes[ti]; put_f16(blk + dat[ti], 0.01f); if (ti == 0) put_f16(blk + 2, 0.002f); }
        int bad = 0;
        for (int rn = 1; rn <= 8; rn++) {
            double bo = 1e30, bn = 1e30;
            float o1[64], o2[64];
            for (int pass = 0; pass < 7; pass++) {
                double t0 = omp_get_wtime();
                for (int g = 0; g < G; g++) { const uint8_t *wp[8]; for (int i = 0; i < 8; i++) wp[i] = w + (g * 8 + i) * rb; ignis_tile(types[ti], units, wp, 8, xp, rn, o1); }
                double t1 = omp_get_wtime();
                for (int g = 0; g < G; g++) { const uint8_t *wp[8]; for (int i = 0; i < 8; i++) wp[i] = w + (g * 8 + i) * rb; ignis_zt_tile(types[ti], K, wp, 8, tp, rn, o2); }
                double t2 = omp_get_wtime();
                if (t1 - t0 < bo) bo = t1 - t0; if (t2 - t1 < bn) bn = t2 - t1;
            }
            for (int g = 0; g < G; g++) for (int rm = 1; rm <= 8; rm++) { const uint8_t *wp[8]; for (int i = 0; i < rm; i++) wp[i] = w + (g * 8 + i) * rb;
                memset(o1, 0, sizeof o1); memset(o2, 0, sizeof o2);
                ignis_tile(types[ti], units, wp, rm, xp, rn, o1); ignis_zt_tile(types[ti], K, wp, rm, tp, rn, o2);
                for (int j = 0; j < rn; j++) if (memcmp(o1 + j * 8, o2 + j * 8, rm * 4)) bad++; }
            double macs = 8.0 * G * rn * K;
            printf("%s rn %d: tile %6.1f GMAC/s  zt %6.1f GMAC/s  (%.2fx)\n", nm[ti], rn, macs / bo * 1e-9, macs / bn * 1e-9, bo / bn);
        }
        printf("%s: %d tiles differ\n", nm[ti], bad);
    }
}
