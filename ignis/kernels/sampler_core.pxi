# ignis/kernels/sampler_core.pxi -- the sampler's row kernel in C (docs/sampling.md defines it).
#
# Included by ignis/_kernels.pyx before kernels/sampling.pxi (which validates the arguments
# and calls it without the GIL). Invariants:
# - A row's result depends only on that row's inputs (logits, filters, uniform): never on the
#   other rows, the thread that ran it or the kernel level (the float exp gives the same bits
#   on every level; every sum below is in double, in a fixed order).
# - Rank order is (adjusted logit descending, id ascending): every filter keeps a prefix of it,
#   so a candidate set is a boundary, and nothing is ever fully sorted. The draw and top-p's
#   cut find the element where a cumulative mass crosses a target by a radix selection on the
#   logit's bits (three levels of buckets), sorting at most a handful of elements.
# - Candidate views keep ids ascending, so position order is id order (the tie order).
# - Nothing here allocates or raises: the caller checks shapes and ids, hands every row its
#   own output slots and every thread its own scratch, and turns a row's status into an error.

from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #include <float.h>
    #include <math.h>
    #include <stdlib.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif

    /* a request's n-th uniform: SplitMix64's (n+1)-th output for state `seed`, top 53 bits */
    static inline uint64_t ignis_splitmix64_at(uint64_t seed, uint64_t n) {
        uint64_t z = seed + (n + 1u) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    static inline double ignis_uniform_at(uint64_t seed, uint64_t n) {
        return (double)(ignis_splitmix64_at(seed, n) >> 11) * (1.0 / 9007199254740992.0);
    }

    /* ascending key <=> ascending float (-0 counts as +0, so equal logits share a key) */
    static inline uint32_t ignis_rank_key(float z) {
        uint32_t b = ignis_f32_bits(z + 0.0f);
        return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    }

    /* a view of candidates: position p holds id (ids ? ids[p] : p), logit z[p], weight w[p] */
    #define IGNIS_ID(ids, p) ((ids) ? (ids)[p] : (int32_t)(p))

    /* sum of w[0..n) in double: four partial sums s_j over p = j mod 4, then (s0 + s1) + (s2 + s3) */
    static double ignis_dsum(const float *w, int64_t n) {
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        int64_t p = 0;
    #if defined(__SSE2__)
        __m128d a01 = _mm_setzero_pd(), a23 = _mm_setzero_pd();
        for (; p + 4 <= n; p += 4) {
            __m128 v = _mm_loadu_ps(w + p);
            a01 = _mm_add_pd(a01, _mm_cvtps_pd(v));
            a23 = _mm_add_pd(a23, _mm_cvtps_pd(_mm_movehl_ps(v, v)));
        }
        double t[4];
        _mm_storeu_pd(t, a01);
        _mm_storeu_pd(t + 2, a23);
        s0 = t[0]; s1 = t[1]; s2 = t[2]; s3 = t[3];
    #else
        for (; p + 4 <= n; p += 4) {
            s0 += w[p]; s1 += w[p + 1]; s2 += w[p + 2]; s3 += w[p + 3];
        }
    #endif
        for (; p < n; p++) s0 += w[p];
        return (s0 + s1) + (s2 + s3);
    }

    /* the largest of x[0..n) (n >= 1); 1 in *bad when one is NaN or infinite (max is exact:
       any grouping gives the same value) */
    static float ignis_row_max(const float *x, int64_t n, int *bad) {
        int64_t i = 0;
        float m = x[0];
        uint32_t worst = 0;
    #if defined(__SSE2__)
        if (n >= 8) {
            __m128 m0 = _mm_loadu_ps(x), m1 = _mm_loadu_ps(x + 4);
            __m128i e = _mm_set1_epi32(0x7f800000), b0 = _mm_setzero_si128();
            for (; i + 8 <= n; i += 8) {
                __m128 v0 = _mm_loadu_ps(x + i), v1 = _mm_loadu_ps(x + i + 4);
                m0 = _mm_max_ps(m0, v0);
                m1 = _mm_max_ps(m1, v1);
                b0 = _mm_or_si128(b0, _mm_cmpeq_epi32(_mm_and_si128(_mm_castps_si128(v0), e), e));
                b0 = _mm_or_si128(b0, _mm_cmpeq_epi32(_mm_and_si128(_mm_castps_si128(v1), e), e));
            }
            float t[4];
            _mm_storeu_ps(t, _mm_max_ps(m0, m1));
            m = t[0];
            for (int l = 1; l < 4; l++) m = t[l] > m ? t[l] : m;
            worst = (uint32_t)_mm_movemask_epi8(b0);
        }
    #endif
        for (; i < n; i++) {
            worst |= (ignis_f32_bits(x[i]) & 0x7f800000u) == 0x7f800000u;
            m = x[i] > m ? x[i] : m;
        }
        *bad = worst != 0;
        return m;
    }

    /* w[p] = exp(fl32(fl32(z[p] - zmax) * inv_t)): the weights at temperature 1 / inv_t */
    static void ignis_weights(const float *z, int64_t n, float zmax, double inv_t, float *w) {
        if (inv_t == 1.0) {
            memcpy(w, z, (size_t)n * sizeof(float));
            ignis_exp_sub_sum(w, zmax, n);
            return;
        }
        for (int64_t p = 0; p < n; p++) w[p] = (float)((double)(z[p] - zmax) * inv_t);
        ignis_exp_sub_sum(w, 0.0f, n);
    }

    /* g[0..m) sorted by rank (key descending, then position ascending): insertion sort */
    static void ignis_rank_sort(const float *z, int32_t *g, int64_t m) {
        for (int64_t i = 1; i < m; i++) {
            int32_t p = g[i];
            uint32_t k = ignis_rank_key(z[p]);
            int64_t j = i;
            while (j > 0) {
                uint32_t kq = ignis_rank_key(z[g[j - 1]]);
                if (kq > k || (kq == k && g[j - 1] < p)) break;
                g[j] = g[j - 1];
                j--;
            }
            g[j] = p;
        }
    }

    static inline int ignis_crosses(double acc, double target, int strict) {
        return strict ? acc > target : acc >= target;
    }

    /* The bucket (of nb) where the running mass, from `*before` down the buckets, first
       crosses target; *before becomes the mass of the buckets above it. None crossing (a
       rounding shortfall): the lowest bucket with mass. */
    static int ignis_bucket_walk(const double *mass, int nb, double *before, double target, int strict) {
        double acc = *before, at_low = *before;
        int low = -1;
        for (int b = nb - 1; b >= 0; b--) {
            if (mass[b] <= 0.0) continue;
            if (ignis_crosses(acc + mass[b], target, strict)) { *before = acc; return b; }
            at_low = acc;
            low = b;
            acc += mass[b];
        }
        *before = at_low;
        return low;
    }

    #define IGNIS_RS_SMALL 24      /* a bucket this small is sorted instead of split again */

    /* The radix selection: the position of the first candidate, in rank order, at which the
       cumulative weight reaches target (>= target, or > target when strict); the last one when
       rounding leaves the total short of it. n >= 1, every w[p] > 0. g: n int32; hist: 6144 doubles. */
    static int64_t ignis_radix_select(const float *z, const float *w, int64_t n, double target, int strict,
                                      int32_t *g, double *hist) {
        double before = 0.0;
        int64_t m = 0, p;
        /* level 1: the key's top 10 bits; four histograms break the chains of same-bucket adds */
        memset(hist, 0, 4096 * sizeof(double));
        for (p = 0; p + 4 <= n; p += 4) {
            hist[(ignis_rank_key(z[p]) >> 22)] += w[p];
            hist[1024 + (ignis_rank_key(z[p + 1]) >> 22)] += w[p + 1];
            hist[2048 + (ignis_rank_key(z[p + 2]) >> 22)] += w[p + 2];
            hist[3072 + (ignis_rank_key(z[p + 3]) >> 22)] += w[p + 3];
        }
        for (; p < n; p++) hist[(ignis_rank_key(z[p]) >> 22)] += w[p];
        double *mass = hist + 4096;
        for (int b = 0; b < 1024; b++) mass[b] = ((hist[b] + hist[1024 + b]) + hist[2048 + b]) + hist[3072 + b];
        uint32_t want = (uint32_t)ignis_bucket_walk(mass, 1024, &before, target, strict);
        for (p = 0; p < n; p++)
            if ((ignis_rank_key(z[p]) >> 22) == want) g[m++] = (int32_t)p;
        /* levels 2 and 3: the next 11 bits, then the last 11, over the gathered positions */
        for (int shift = 11; shift >= 0 && m > IGNIS_RS_SMALL; shift -= 11) {
            memset(hist, 0, 4096 * sizeof(double));
            int64_t i = 0;
            for (; i + 2 <= m; i += 2) {
                hist[(ignis_rank_key(z[g[i]]) >> shift) & 2047u] += w[g[i]];
                hist[2048 + ((ignis_rank_key(z[g[i + 1]]) >> shift) & 2047u)] += w[g[i + 1]];
            }
            for (; i < m; i++) hist[(ignis_rank_key(z[g[i]]) >> shift) & 2047u] += w[g[i]];
            for (int b = 0; b < 2048; b++) mass[b] = hist[b] + hist[2048 + b];
            uint32_t sub = (uint32_t)ignis_bucket_walk(mass, 2048, &before, target, strict);
            int64_t k = 0;
            for (i = 0; i < m; i++)
                if (((ignis_rank_key(z[g[i]]) >> shift) & 2047u) == sub) g[k++] = g[i];
            m = k;
        }
        /* the rest share a key (or are few): in rank order, accumulate to the crossing */
        ignis_rank_sort(z, g, m);
        double acc = before;
        for (int64_t i = 0; i < m; i++) {
            acc += w[g[i]];
            if (ignis_crosses(acc, target, strict)) return g[i];
        }
        return g[m - 1];
    }

    static int ignis_cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return (x > y) - (x < y);
    }
    /* sort m positions into rank order: packed (inverted key, position) ascending */
    static void ignis_rank_sort_packed(const float *z, int32_t *g, int64_t m, uint64_t *tmp) {
        for (int64_t i = 0; i < m; i++) tmp[i] = ((uint64_t)~ignis_rank_key(z[g[i]]) << 32) | (uint32_t)g[i];
        qsort(tmp, (size_t)m, sizeof(uint64_t), ignis_cmp_u64);
        for (int64_t i = 0; i < m; i++) g[i] = (int32_t)(tmp[i] & 0xffffffffu);
    }

    /* Candidates up to this many are sorted outright; above it, the head (the candidates
       within IGNIS_HEAD_NATS of the best, at the temperature) is sorted when it has at most
       this many, and the radix selection runs only when the crossing lies below the head.
       A variable so the tests can send small rows down every path. */
    static int64_t ignis_sort_max = 2048;
    #define IGNIS_HEAD_NATS 9.0

    /* ignis_radix_select's answer (same definition), by whichever path is cheapest.
       zmax: the best logit; inv_t: 1 / the temperature the weights are at; tmp: n uint64 */
    static int64_t ignis_rank_select(const float *z, const float *w, int64_t n, float zmax, double inv_t,
                                     double target, int strict, int32_t *g, double *hist, uint64_t *tmp) {
        int64_t m = 0;
        if (n <= ignis_sort_max) {
            for (int64_t p = 0; p < n; p++) g[p] = (int32_t)p;
            m = n;
        } else {
            /* the head: z >= zmax - IGNIS_HEAD_NATS * temperature, a prefix of rank order */
            float zthr = (float)((double)zmax - IGNIS_HEAD_NATS / inv_t);
            int64_t p = 0;
    #if defined(__SSE2__)
            __m128 vt = _mm_set1_ps(zthr);
            for (; p + 4 <= n && m <= ignis_sort_max; p += 4) {
                int bits = _mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(z + p), vt));
                while (bits) {
                    g[m++] = (int32_t)(p + __builtin_ctz((unsigned)bits));
                    bits &= bits - 1;
                }
            }
    #endif
            for (; p < n && m <= ignis_sort_max; p++)
                if (z[p] >= zthr) g[m++] = (int32_t)p;
            if (m > ignis_sort_max) m = 0;             /* too many: straight to the radix selection */
        }
        if (m > 0) {
            ignis_rank_sort_packed(z, g, m, tmp);
            double acc = 0.0;
            for (int64_t i = 0; i < m; i++) {
                acc += w[g[i]];
                if (ignis_crosses(acc, target, strict)) return g[i];
            }
            if (m == n) return g[m - 1];
        }
        return ignis_radix_select(z, w, n, target, strict, g, hist);
    }

    /* min-heap on rank of k positions: the root is the worst kept */
    static inline int ignis_heap_worse(const float *hv, const int32_t *hp, int64_t a, int64_t b) {
        return hv[a] < hv[b] || (hv[a] == hv[b] && hp[a] > hp[b]);
    }
    static void ignis_heap_down(float *hv, int32_t *hp, int64_t k, int64_t i) {
        for (;;) {
            int64_t c = 2 * i + 1, m;
            if (c >= k) return;
            m = c;
            if (c + 1 < k && ignis_heap_worse(hv, hp, c + 1, c)) m = c + 1;
            if (!ignis_heap_worse(hv, hp, m, i)) return;
            float tv = hv[i]; int32_t tp = hp[i];
            hv[i] = hv[m]; hp[i] = hp[m];
            hv[m] = tv; hp[m] = tp;
            i = m;
        }
    }
    static int ignis_cmp_i32(const void *a, const void *b) {
        int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
        return (x > y) - (x < y);
    }
    /* the positions of the k best of z[0..n) in rank order's set, ascending (1 <= k <= n) */
    static void ignis_top_positions(const float *z, int64_t n, int64_t k, float *hv, int32_t *hp) {
        for (int64_t i = 0; i < k; i++) { hv[i] = z[i]; hp[i] = (int32_t)i; }
        for (int64_t j = k / 2; j > 0; j--) ignis_heap_down(hv, hp, k, j - 1);
        int64_t i = k;
    #if defined(__SSE2__)
        for (; i + 4 <= n; i += 4) {             /* four at a time past the worst kept */
            if (!_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(z + i), _mm_set1_ps(hv[0])))) continue;
            for (int64_t j = i; j < i + 4; j++)
                if (z[j] > hv[0]) {
                    hv[0] = z[j]; hp[0] = (int32_t)j;
                    ignis_heap_down(hv, hp, k, 0);
                }
        }
    #endif
        for (; i < n; i++) {
            if (z[i] > hv[0]) {                  /* a later equal logit has a larger id: never in */
                hv[0] = z[i]; hp[0] = (int32_t)i;
                ignis_heap_down(hv, hp, k, 0);
            }
        }
        qsort(hp, (size_t)k, sizeof(int32_t), ignis_cmp_i32);
    }

    /* the float logit a bias and the penalties make of x (count: x's id in the window) */
    typedef struct {
        double repeat_penalty, presence_penalty, frequency_penalty;
    } ignis_penalties;
    static float ignis_adjusted(float x, double bias, int64_t count, const ignis_penalties *pen) {
        double v = (double)x + bias;
        if (count > 0) {
            if (pen->repeat_penalty != 1.0) v = v > 0.0 ? v / pen->repeat_penalty : v * pen->repeat_penalty;
            v -= (double)count * pen->frequency_penalty + pen->presence_penalty;
        }
        if (v != v) return -FLT_MAX;           /* inf - inf: the lowest logit */
        if (v > FLT_MAX) return FLT_MAX;
        if (v < -FLT_MAX) return -FLT_MAX;
        return (float)v;
    }

    /* One row's inputs and outputs (the caller fills and checks it). */
    typedef struct {
        const float *x;              /* the raw logits, V of them */
        int64_t V;
        const uint32_t *mask;        /* NULL, or >= (V + 31) / 32 words: id i allowed iff bit i%32 of word i/32 */
        const int32_t *bias_ids;     /* ascending, distinct, < V */
        const double *bias_vals;
        int64_t n_bias;
        const int32_t *window;       /* the penalty window's tokens (< V); n_window 0: no penalties */
        int64_t n_window;
        ignis_penalties pen;
        double temperature, top_p, min_p;
        int64_t top_k;
        double u;                    /* the uniform in [0, 1) */
        int64_t n_top;               /* -1: no log-probs; else the top n_top (<= V) into top_ids/top_lps */
        int32_t *top_ids;
        double *top_lps;
        int32_t *survivors;          /* NULL, or V slots: the final candidates (any order) */
        int32_t token;               /* out */
        double token_lp;             /* out (n_top >= 0) */
        int64_t n_survivors;         /* out (survivors != NULL) */
        int status;                  /* out: 0 ok, 1 logits not finite, 2 the mask allows nothing */
    } ignis_srow;

    /* per-thread scratch: V floats in zbuf, cz, cw, hv; V int32 in cid, g, hp (and g holds the
       penalty window); V uint64 in tmp; 6144 doubles in hist */
    typedef struct {
        float *zbuf, *cz, *cw, *hv;
        int32_t *cid, *g, *hp;
        uint64_t *tmp;
        double *hist;
    } ignis_sscratch;

    /* write the adjusted logits of the window's and the bias's ids into z (a copy of x) */
    static void ignis_apply_adjustments(const ignis_srow *r, float *z, int32_t *tmp) {
        int64_t nw = r->n_window, nb = r->n_bias, i = 0, j = 0;
        memcpy(tmp, r->window, (size_t)nw * sizeof(int32_t));
        qsort(tmp, (size_t)nw, sizeof(int32_t), ignis_cmp_i32);
        while (i < nw || j < nb) {
            int32_t id = (i < nw && (j >= nb || tmp[i] < r->bias_ids[j])) ? tmp[i] : r->bias_ids[j];
            int64_t count = 0;
            double bias = 0.0;
            while (i < nw && tmp[i] == id) { count++; i++; }
            if (j < nb && r->bias_ids[j] == id) bias = r->bias_vals[j++];
            z[id] = ignis_adjusted(r->x[id], bias, count, &r->pen);
        }
    }

    /* the log-softmax of the raw row: the token's log-probability and the n_top best */
    static void ignis_row_logprobs(ignis_srow *r, float xmax, ignis_sscratch *s) {
        int64_t V = r->V, k = r->n_top;
        memcpy(s->cw, r->x, (size_t)V * sizeof(float));
        ignis_exp_sub_sum(s->cw, xmax, V);
        double lse = (double)xmax + log(ignis_dsum(s->cw, V));
        r->token_lp = (double)r->x[r->token] - lse;
        if (k <= 0) return;
        ignis_top_positions(r->x, V, k, s->hv, s->hp);
        ignis_rank_sort_packed(r->x, s->hp, k, s->tmp);
        for (int64_t i = 0; i < k; i++) {
            r->top_ids[i] = s->hp[i];
            r->top_lps[i] = (double)r->x[s->hp[i]] - lse;
        }
    }

    /* candidate q of the view survives top-p's cut (rank <= the boundary kb, ib) and min-p's
       (fl32(z - zmax) >= dmin): appended at m (m <= q, so compacting in place is safe) */
    static inline int64_t ignis_keep_survivor(const ignis_srow *r, ignis_sscratch *s, const int32_t *ids,
                                              const float *cz, int64_t q, int64_t m, int cut_p, uint32_t kb,
                                              int32_t ib, float zmax, double dmin) {
        uint32_t kq = ignis_rank_key(cz[q]);
        int32_t id = IGNIS_ID(ids, q);
        (void)r;
        if (cut_p && !(kq > kb || (kq == kb && id <= ib))) return m;
        if (!((double)(cz[q] - zmax) >= dmin)) return m;
        s->cid[m] = id;
        s->cz[m] = cz[q];
        s->cw[m] = s->cw[q];                    /* (the weights at temperature 1, when cut_p) */
        return m + 1;
    }

    static void ignis_sample_row(ignis_srow *r, ignis_sscratch *s) {
        const int64_t V = r->V;
        const float *x = r->x;
        /* the raw row: finite, and its max (the log-softmax's shift) */
        int bad;
        float xmax = ignis_row_max(x, V, &bad);
        if (bad) { r->status = 1; return; }

        /* the adjusted logits: x itself, or a copy with the bias and penalties written in */
        const float *zp = x;
        if (r->n_bias > 0 || r->n_window > 0) {
            memcpy(s->zbuf, x, (size_t)V * sizeof(float));
            ignis_apply_adjustments(r, s->zbuf, s->g);
            zp = s->zbuf;
        }
        /* the candidates: every id, or the allowed ones (ascending) */
        int64_t n = V;
        const int32_t *ids = NULL;
        const float *cz = zp;
        if (r->mask) {
            n = 0;
            for (int64_t wi = 0; wi < (V + 31) / 32; wi++) {
                uint32_t bits = r->mask[wi];
                while (bits) {
                    int64_t id = 32 * wi + __builtin_ctz(bits);
                    bits &= bits - 1;
                    if (id >= V) break;
                    s->cid[n] = (int32_t)id;
                    s->cz[n] = zp[id];
                    n++;
                }
            }
            if (n == 0) { r->status = 2; return; }
            ids = s->cid;
            cz = s->cz;
        }
        float zmax = cz[0];
        if (zp == x && !ids) zmax = xmax;
        else zmax = ignis_row_max(cz, n, &bad);

        int64_t pick = 0;
        if (r->temperature <= 0.0) {                       /* greedy: the first best */
    #if defined(__SSE2__)
            while (pick + 4 <= n && !_mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(cz + pick), _mm_set1_ps(zmax))))
                pick += 4;
    #endif
            while (cz[pick] != zmax) pick++;
            r->token = IGNIS_ID(ids, pick);
            if (r->survivors) { r->survivors[0] = r->token; r->n_survivors = 1; }
            if (r->n_top >= 0) ignis_row_logprobs(r, xmax, s);
            return;
        }
        /* top-k: the k best, ids ascending */
        if (r->top_k > 0 && r->top_k < n) {
            int64_t k = r->top_k;
            ignis_top_positions(cz, n, k, s->hv, s->hp);
            for (int64_t j = 0; j < k; j++) {              /* positions ascend: in place is safe */
                int32_t q = s->hp[j];
                s->cid[j] = IGNIS_ID(ids, q);
                s->cz[j] = cz[q];
            }
            n = k;
            ids = s->cid;
            cz = s->cz;
        }
        /* top-p (weights at temperature 1) and min-p: both keep a prefix of rank order */
        int cut_p = r->top_p < 1.0, cut_min = r->min_p > 0.0;
        uint32_t kb = 0;
        int32_t ib = 0;
        int64_t pb = 0;
        if (cut_p) {
            ignis_weights(cz, n, zmax, 1.0, s->cw);
            double total = ignis_dsum(s->cw, n);
            pb = ignis_rank_select(cz, s->cw, n, zmax, 1.0, r->top_p * total, 0, s->g, s->hist, s->tmp);
            kb = ignis_rank_key(cz[pb]);
            ib = IGNIS_ID(ids, pb);
        }
        if (cut_p || cut_min) {
            double dmin = cut_min ? log(r->min_p) : -INFINITY;
            /* a float below every survivor (min-p's bound less a margin far above rounding) */
            float zlo = cut_p ? cz[pb] : -FLT_MAX;
            if (cut_min && (double)zmax + dmin - 1.0 > (double)zlo) zlo = (float)((double)zmax + dmin - 1.0);
            int64_t m = 0, p = 0;
    #if defined(__SSE2__)
            for (; p + 4 <= n; p += 4) {
                int bits = _mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(cz + p), _mm_set1_ps(zlo)));
                while (bits) {
                    int64_t q = p + __builtin_ctz((unsigned)bits);
                    bits &= bits - 1;
                    m = ignis_keep_survivor(r, s, ids, cz, q, m, cut_p, kb, ib, zmax, dmin);
                }
            }
    #endif
            for (; p < n; p++)
                if (cz[p] >= zlo) m = ignis_keep_survivor(r, s, ids, cz, p, m, cut_p, kb, ib, zmax, dmin);
            n = m;
            ids = s->cid;
            cz = s->cz;
        }
        /* the draw: inverse CDF of the weights at the temperature, in rank order */
        double inv_t = 1.0 / r->temperature;
        if (inv_t > DBL_MAX) inv_t = DBL_MAX;              /* a subnormal temperature: 0 * inf is NaN */
        if (!(cut_p && inv_t == 1.0)) ignis_weights(cz, n, zmax, inv_t, s->cw);
        double total = ignis_dsum(s->cw, n);
        pick = ignis_rank_select(cz, s->cw, n, zmax, inv_t, r->u * total, 1, s->g, s->hist, s->tmp);
        r->token = IGNIS_ID(ids, pick);
        if (r->survivors) {
            for (int64_t p = 0; p < n; p++) r->survivors[p] = IGNIS_ID(ids, p);
            r->n_survivors = n;
        }
        if (r->n_top >= 0) ignis_row_logprobs(r, xmax, s);
    }

    /* every row, on nt threads, rows handed out one at a time */
    typedef struct {
        ignis_srow *rows;
        int64_t n_rows;
        ignis_sscratch *scratch;    /* one per thread */
        long long next;
    } ignis_sample_job;

    static void ignis_sample_body(void *ctx, int tid, int nt) {
        ignis_sample_job *job = (ignis_sample_job *)ctx;
        (void)nt;
        for (;;) {
            long long b = ignis_next_chunk(&job->next);
            if (b >= job->n_rows) return;
            ignis_sample_row(&job->rows[b], &job->scratch[tid]);
        }
    }
    """
    ctypedef struct ignis_penalties:
        double repeat_penalty
        double presence_penalty
        double frequency_penalty
    ctypedef struct ignis_srow:
        const float *x
        int64_t V
        const uint32_t *mask
        const int32_t *bias_ids
        const double *bias_vals
        int64_t n_bias
        const int32_t *window
        int64_t n_window
        ignis_penalties pen
        double temperature
        double top_p
        double min_p
        int64_t top_k
        double u
        int64_t n_top
        int32_t *top_ids
        double *top_lps
        int32_t *survivors
        int32_t token
        double token_lp
        int64_t n_survivors
        int status
    ctypedef struct ignis_sscratch:
        float *zbuf
        float *cz
        float *cw
        float *hv
        int32_t *cid
        int32_t *g
        int32_t *hp
        uint64_t *tmp
        double *hist
    ctypedef struct ignis_sample_job:
        ignis_srow *rows
        int64_t n_rows
        ignis_sscratch *scratch
        long long next
    void ignis_sample_body(void *ctx, int tid, int nt) noexcept nogil
    int64_t ignis_sort_max
    double ignis_uniform_at(uint64_t seed, uint64_t n) nogil
