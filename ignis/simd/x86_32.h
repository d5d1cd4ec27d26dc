/* x86_32.h -- the AVX2 / AVX-VNNI / AVX-512 kernels of the types simd/defs32.h defines (included
 * by x86.h once per x86-64 level). Same arithmetic as the definition. */

static inline void IL(tile_32x)(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                                const uint8_t *const *x, int rn, float *out) {
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = ignis_scalar_vec_dot_32x(wtype, nblk, w[i], x[j]);
}
