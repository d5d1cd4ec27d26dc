/* prefetch_x86.h -- the software prefetch of the x86 decode kernels (included by x86.h, once per
 * level, before them). */
/* Decode streams 8 weight rows at once, each read once; the hardware prefetchers do not run
 * far enough ahead of 8 streams to cover memory latency (measured: the first load of every
 * super-block stalled). The decode kernels of every x86 level prefetch each row's bytes
 * [off, off + n) ahead of use, IGNIS_ZD_AHEAD bytes past where they read. A hint: it changes no
 * result, and a prefetch past the end of a row cannot fault (past a stream's last row it reaches
 * the next stream's first, which is read next anyway). The lines go to L2 (T1), not L1.
 * Measured (Zen 4, two threads unless said, the 1.5B's presets, interleaved, tok/s medians of 3):
 * - avx512, against none: Q4_K_M +6 % (won 6 rounds of 7), Q6_K +12 %, SmolLM2 Q4_K_M +8 %;
 * - avx512, 1536 bytes against 512: Q6_K +17 %, Q4_K_M +12 %, Q5_K_M +9 %, IQ4_NL +8 %, Q3_K_M
 *   +3 %, Q2_K and Q4_0 +2 %, Q8_0 and the small models alike; one thread Q6_K +23 %, Q4_K_M
 *   +15 %. 2048 was no better. (With T0, 1024 had been 7-13 % slower than 512: L1 is too small
 *   to hold 16 streams' lines that early);
 * - avx2, against none: Q2_K +18 %, Q4_K_M, Q5_K_M, IQ4_XS +11 %, Q8_0 +10 %, Q4_1 +7 %, IQ4_NL
 *   and Q4_0 alike; Q6_K's kernel in decode_kernels.c from DRAM 13.7 -> 22.3 GB/s. That bench's
 *   one matrix had Q4_K and Q4_0 15 % slower with it: the model decides. */
#ifndef IGNIS_ZD_AHEAD
#  define IGNIS_ZD_AHEAD 1536
#endif
IGNIS_INLINE void IL(prefetch_rows)(const uint8_t *const *w, int rows, size_t off, size_t n) {
    if (IGNIS_ZD_AHEAD == 0) return;
    for (int i = 0; i < rows; i++)
        for (size_t b = 0; b < n; b += 64) _mm_prefetch((const char *)(w[i] + off + b), _MM_HINT_T1);
}
/* the same for the 32-element types' block b of `bytes` bytes: one line a row every 64 / bytes
 * blocks, so that no line is skipped */
IGNIS_INLINE void IL(prefetch_block)(const uint8_t *const *w, int rows, int64_t b, size_t bytes) {
    if (b % (int64_t)(64 / bytes) == 0) IL(prefetch_rows)(w, rows, (size_t)b * bytes + IGNIS_ZD_AHEAD, 1);
}
