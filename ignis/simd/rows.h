/* rows.h -- the elementwise row functions of one level (included by x86.h and arm.h, and
 * once for the scalar level): plain C that the compiler vectorises for the level's target.
 * Every element is one IEEE operation sequence, so every level gives the same bits. */

static inline void IL(add_row)(const float *a, const float *b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
static inline void IL(mul_row)(const float *a, const float *b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}
/* the largest of x[0..n) (n >= 1): 8 running maxima over the lanes of 8-element steps (x > m
 * takes x), the tail into the first, then combined in order; plain C, the same bits at every
 * level (a chain of one maximum per element would cost a compare's latency per element) */
static inline float IL(max_row)(const float *x, int64_t n) {
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = x[0];
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    float r = m[0];
    for (int j = 1; j < 8; j++) r = m[j] > r ? m[j] : r;
    return r;
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

/* o[h*hd ..] += sum_s w[h*wstride + s] * v[s*vstride ..] for the G heads that share the rows v:
 * each head as IL(av_head_acc) computes it (a level may instead read each v row once for
 * all heads: IGNIS_AV_HEADS_OWN; every element's sum runs over s in order, the same bits) */
#ifndef IGNIS_AV_HEADS_OWN
static inline void IL(av_heads_acc)(const float *w, int64_t wstride, const uint16_t *v, int64_t vstride,
                                    int64_t n, float *o, int64_t hd, int64_t G) {
    for (int64_t h = 0; h < G; h++) IL(av_head_acc)(w + h * wstride, v, vstride, n, o + h * hd, hd);
}
#endif

/* out[t*ots + h*ostride + r] = IL(dot_f32_f16)(q + t*qts + h*hd, rows + r*rstride, hd) for the R
 * f16 rows of one KV block (t < nt, h < G): each row as IL(dot_f32_f16_heads) computes it (a
 * level may take the rows together instead: IGNIS_DOT_ROWS_OWN, the same bits) */
#ifndef IGNIS_DOT_ROWS_OWN
static inline void IL(dot_f32_f16_rows)(const float *q, int64_t nt, int64_t qts, int64_t G, int64_t hd,
                                        const uint16_t *rows, int64_t rstride, int64_t R, float *out,
                                        int64_t ots, int64_t ostride) {
    for (int64_t r = 0; r < R; r++) IL(dot_f32_f16_heads)(q, nt, qts, G, hd, rows + r * rstride, out + r, ots, ostride);
}
#endif
