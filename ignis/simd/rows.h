/* rows.h -- the elementwise row functions of one level (included by x86.h and arm.h, and
 * once for the scalar level): plain C that the compiler vectorises for the level's target.
 * Every element is one IEEE operation sequence, so every level gives the same bits. */

static inline void IL(add_row)(const float *a, const float *b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
static inline void IL(mul_row)(const float *a, const float *b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}
/* y = (x * r) * g */
static inline void IL(scale_row)(const float *x, float r, const float *g, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * r) * g[i];
}
/* NeoX rotation of one head (hd = 2*half): (x0, x1) -> (x0 c - x1 s, x0 s + x1 c) */
static inline void IL(rope_head)(const float *x, float *y, const float *c, const float *s, int64_t half) {
    for (int64_t i = 0; i < half; i++) {
        float x0 = x[i], x1 = x[i + half];
        y[i] = x0 * c[i] - x1 * s[i];
        y[i + half] = x0 * s[i] + x1 * c[i];
    }
}
