/* _neon.h -- the SIMD layer of ignis.
 *
 * Plain C, static inline, no global state. Three implementations chosen at
 * compile time:
 *
 *   aarch64 (__ARM_NEON)                         NEON intrinsics    IGNIS_SIMD_NAME "neon"
 *   x86-64 with __AVX2__ && __FMA__ && __F16C__  AVX2/FMA/F16C      IGNIS_SIMD_NAME "avx2"
 *   anything else (or -DIGNIS_FORCE_SCALAR)      portable C         IGNIS_SIMD_NAME "scalar"
 *
 * The scalar functions (ignis_scalar_*) are always compiled: they *define* the
 * semantics, and tests compare the SIMD path (ignis_avx2_* / ignis_neon_*)
 * against them in one binary. The dispatching names (ignis_*) pick the SIMD
 * version when one exists.
 *
 * Compile with -ffp-contract=off (setup.py does): the scalar reference must not
 * be turned into fused multiply-adds behind our back.
 *
 * Agreement between paths (checked by tests/simd on x86-64 and under qemu-aarch64):
 *   exact (same bits)   f16<->f32 conversions (IEEE round-to-nearest-even, NaNs
 *                       quieted), Q8_0 quantization (bytes), the int32 part of
 *                       every quantized block dot, axpy, exp, silu, and every
 *                       elementwise row function.
 *   within tolerance    reductions whose float additions are reordered: the SIMD
 *                       paths keep 8 (AVX2) or 4 (NEON) partial sums and use FMA.
 *                       For a dot of terms t_i (quantized: t_b = d_w*d_x*isum_b)
 *                       |simd - scalar| <= 1e-5 * sum_i |t_i|  (+1e-30 absolute).
 *                       Softmax sums: the same bound.
 *
 * Block formats (little-endian), all weight rows against Q8_0 activation rows:
 *   Q8_0  34 B / 32:  f16 d, int8 q[32]                        x = d*q
 *   Q5_0  22 B / 32:  f16 d, u32 qh, u8 qs[16]                  x = d*(q-16), q = nibble | bit<<4
 *         (low nibbles are elements 0..15, high nibbles 16..31, bit j of qh is element j's 5th bit)
 *   Q4_K 144 B / 256: f16 d, f16 dmin, u8 scales[12], u8 qs[128] x = d*sc*q - dmin*m per 32-sub-block
 *   Q6_K 210 B / 256: u8 ql[128], u8 qh[64], int8 sc[16], f16 d  x = d*sc*(q-32) per 16-sub-block
 */
#ifndef IGNIS_NEON_H
#define IGNIS_NEON_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <math.h>

#if defined(__ARM_NEON) && !defined(IGNIS_FORCE_SCALAR)
#  include <arm_neon.h>
#  define IGNIS_NEON 1
#  define IGNIS_SIMD_NAME "neon"
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && !defined(IGNIS_FORCE_SCALAR)
#  include <immintrin.h>
#  define IGNIS_AVX2 1
#  define IGNIS_SIMD_NAME "avx2"
#else
#  define IGNIS_SIMD_NAME "scalar"
#endif

#if defined(__GNUC__)
#  define IGNIS_INLINE static inline __attribute__((always_inline))
#else
#  define IGNIS_INLINE static inline
#endif

#define IGNIS_QK 32              /* elements of a Q8_0 / Q5_0 block */
#define IGNIS_QK_K 256           /* elements of a K-quant super-block */
#define IGNIS_Q8_0_BYTES 34
#define IGNIS_Q5_0_BYTES 22
#define IGNIS_Q4_K_BYTES 144
#define IGNIS_Q6_K_BYTES 210
#define IGNIS_TILE 4             /* the matmul micro-kernel computes up to 4 rows x 4 tokens */

static const char ignis_simd_name[] = IGNIS_SIMD_NAME;

/* ======================================================================== */
/* small helpers                                                            */

static inline uint16_t ignis_load_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t ignis_load_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint32_t ignis_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float ignis_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ======================================================================== */
/* scalar reference: the semantics                                          */

/* f16 bits -> f32, exact; NaNs come out quiet with their payload. */
static inline float ignis_scalar_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in f32 */
        float v = (float)mant * 5.9604644775390625e-8f;
        return ignis_bits_f32(ignis_f32_bits(v) | sign);
    }
    if (exp == 31)
        return ignis_bits_f32(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0u));
    return ignis_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* f32 -> f16 bits, IEEE round-to-nearest-even; overflow -> inf; NaNs quieted, payload truncated. */
static inline uint16_t ignis_scalar_f32_to_f16(float f) {
    uint32_t x = ignis_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {                          /* inf or NaN */
        if (ax == 0x7f800000u) return sign | 0x7c00u;
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    }
    if (ax >= 0x477ff000u) return sign | 0x7c00u;     /* >= 65520 rounds to inf */
    if (ax >= 0x38800000u) {                          /* normal f16 range (>= 2^-14) */
        uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u); /* round to nearest, ties to even */
        return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
    }
    uint32_t e = ax >> 23;                            /* f16 subnormal (or zero) */
    if (e < 102) return sign;                         /* below 2^-25: rounds to zero */
    uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;                         /* 14..24 */
    uint32_t m = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (m & 1u))) m++;
    return (uint16_t)(sign | m);
}

static inline void ignis_scalar_f16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = ignis_scalar_f16_to_f32(x[i]);
}

static inline void ignis_scalar_f32_to_f16_row(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = ignis_scalar_f32_to_f16(x[i]);
}

/* One Q8_0 block: d = max|x| / 127 (stored as f16), q = roundf(x * (1/d)) (ties away from zero).
 * id = 0 when d == 0. Inputs must be finite. When max|x| is so tiny (< 3.7e-37) that 1/d
 * overflows, x * id is inf or NaN (0 * inf): NaN counts as 0 and the product is clamped to
 * [-127, 127] first, so every path gives the same bytes (and never -128). */
static inline void ignis_scalar_quantize_block_q8_0(const float *x, uint8_t *y) {
    float amax = 0.0f;
    for (int i = 0; i < IGNIS_QK; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t dh = ignis_scalar_f32_to_f16(d);
    memcpy(y, &dh, 2);
    int8_t *q = (int8_t *)(y + 2);
    for (int i = 0; i < IGNIS_QK; i++) {
        float v = x[i] * id;
        v = v != v ? 0.0f : v;
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        q[i] = (int8_t)roundf(v);
    }
}

/* k must be a multiple of 32: k/32 blocks of 34 bytes. */
static inline void ignis_scalar_quantize_row_q8_0(const float *x, uint8_t *y, int64_t k) {
    for (int64_t b = 0; b < k / IGNIS_QK; b++)
        ignis_scalar_quantize_block_q8_0(x + b * IGNIS_QK, y + b * IGNIS_Q8_0_BYTES);
}

/* The int32 part of one Q8_0 block dot: exact. */
static inline int32_t ignis_scalar_isum_q8_0(const uint8_t *w, const uint8_t *x) {
    const int8_t *a = (const int8_t *)(w + 2), *b = (const int8_t *)(x + 2);
    int32_t s = 0;
    for (int i = 0; i < IGNIS_QK; i++) s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

/* Q8_0 row . Q8_0 row over nb blocks: sum += (d_w * d_x) * (float)isum, block by block. */
static inline float ignis_scalar_vec_dot_q8_0(int64_t nb, const uint8_t *w, const uint8_t *x) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * IGNIS_Q8_0_BYTES, *xb = x + b * IGNIS_Q8_0_BYTES;
        float scale = ignis_scalar_f16_to_f32(ignis_load_u16(wb)) * ignis_scalar_f16_to_f32(ignis_load_u16(xb));
        sum += scale * (float)ignis_scalar_isum_q8_0(wb, xb);
    }
    return sum;
}

/* Q5_0 block: quant j (0..31) in 0..31. */
static inline int ignis_q5_0_quant(const uint8_t *blk, int j) {
    uint32_t qh = ignis_load_u32(blk + 2);
    const uint8_t *qs = blk + 6;
    int nib = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
    return nib | (int)(((qh >> j) & 1u) << 4);
}

static inline int32_t ignis_scalar_isum_q5_0(const uint8_t *w, const uint8_t *x) {
    const int8_t *b = (const int8_t *)(x + 2);
    int32_t s = 0;
    for (int j = 0; j < IGNIS_QK; j++) s += (int32_t)(ignis_q5_0_quant(w, j) - 16) * (int32_t)b[j];
    return s;
}

/* Q5_0 weight row . Q8_0 activation row: same accumulation as Q8_0. */
static inline float ignis_scalar_vec_dot_q5_0(int64_t nb, const uint8_t *w, const uint8_t *x) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * IGNIS_Q5_0_BYTES, *xb = x + b * IGNIS_Q8_0_BYTES;
        float scale = ignis_scalar_f16_to_f32(ignis_load_u16(wb)) * ignis_scalar_f16_to_f32(ignis_load_u16(xb));
        sum += scale * (float)ignis_scalar_isum_q5_0(wb, xb);
    }
    return sum;
}

/* Q4_K: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes. */
static inline void ignis_q4_k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K quant of element e (0..255): nibble (j%2) of qs[(j/2)*32 + l], j = e/32, l = e%32. */
static inline int ignis_q4_k_quant(const uint8_t *blk, int e) {
    const uint8_t *qs = blk + 16;
    int j = e / 32, l = e % 32;
    uint8_t byte = qs[(j / 2) * 32 + l];
    return (j & 1) ? (byte >> 4) : (byte & 0x0f);
}

/* Q4_K weight row . Q8_0 activation row; nsb super-blocks (8 activation blocks each).
 * Per sub-block j: sum += (d*d_x)*(float)(sc*isum) - (dmin*d_x)*(float)(m*xsum),
 * isum = sum q*x_q, xsum = sum x_q (both exact ints). */
static inline float ignis_scalar_vec_dot_q4_k(int64_t nsb, const uint8_t *w, const uint8_t *x) {
    float sum = 0.0f;
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *wb = w + s * IGNIS_Q4_K_BYTES;
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        float dmin = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 2));
        for (int j = 0; j < 8; j++) {
            const uint8_t *xb = x + (s * 8 + j) * IGNIS_Q8_0_BYTES;
            const int8_t *xq = (const int8_t *)(xb + 2);
            float dx = ignis_scalar_f16_to_f32(ignis_load_u16(xb));
            int sc, m;
            ignis_q4_k_scale_min(wb + 4, j, &sc, &m);
            int32_t isum = 0, xsum = 0;
            for (int l = 0; l < 32; l++) {
                isum += ignis_q4_k_quant(wb, j * 32 + l) * (int32_t)xq[l];
                xsum += xq[l];
            }
            sum += (d * dx) * (float)(sc * isum) - (dmin * dx) * (float)(m * xsum);
        }
    }
    return sum;
}

/* Q6_K quant of element e (0..255), in -32..31:
 * e = half*128 + k*32 + l: low 4 bits are nibble k/2 of ql[half*64 + (k%2)*32 + l],
 * high 2 bits are bits 2k..2k+1 of qh[half*32 + l]. Its scale is sc[e/16]. */
static inline int ignis_q6_k_quant(const uint8_t *blk, int e) {
    const uint8_t *ql = blk, *qh = blk + 128;
    int half = e / 128, k = (e % 128) / 32, l = e % 32;
    uint8_t lo = ql[half * 64 + (k % 2) * 32 + l];
    int low4 = (k / 2) ? (lo >> 4) : (lo & 0x0f);
    int high2 = (qh[half * 32 + l] >> (2 * k)) & 3;
    return (low4 | (high2 << 4)) - 32;
}

/* Q6_K weight row . Q8_0 activation row. Per activation block j (two 16-sub-blocks a, a+1):
 * isum = sc[a]*sum(q*x, first 16) + sc[a+1]*sum(q*x, last 16) (exact int);
 * sum += (d*d_x) * (float)isum. */
static inline float ignis_scalar_vec_dot_q6_k(int64_t nsb, const uint8_t *w, const uint8_t *x) {
    float sum = 0.0f;
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *wb = w + s * IGNIS_Q6_K_BYTES;
        const int8_t *sc = (const int8_t *)(wb + 192);
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 208));
        for (int j = 0; j < 8; j++) {
            const uint8_t *xb = x + (s * 8 + j) * IGNIS_Q8_0_BYTES;
            const int8_t *xq = (const int8_t *)(xb + 2);
            float dx = ignis_scalar_f16_to_f32(ignis_load_u16(xb));
            int32_t s0 = 0, s1 = 0;
            for (int l = 0; l < 16; l++) s0 += ignis_q6_k_quant(wb, j * 32 + l) * (int32_t)xq[l];
            for (int l = 16; l < 32; l++) s1 += ignis_q6_k_quant(wb, j * 32 + l) * (int32_t)xq[l];
            int32_t isum = (int32_t)sc[2 * j] * s0 + (int32_t)sc[2 * j + 1] * s1;
            sum += (d * dx) * (float)isum;
        }
    }
    return sum;
}

/* Row dequantizers (embedding lookups). Bit-exact with ignis.gguf.quant.dequantize. */
static inline void ignis_dequant_row_q8_0(const uint8_t *w, float *y, int64_t k) {
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const uint8_t *wb = w + b * IGNIS_Q8_0_BYTES;
        const int8_t *q = (const int8_t *)(wb + 2);
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        for (int i = 0; i < IGNIS_QK; i++) y[b * IGNIS_QK + i] = (float)q[i] * d;
    }
}

static inline void ignis_dequant_row_q5_0(const uint8_t *w, float *y, int64_t k) {
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const uint8_t *wb = w + b * IGNIS_Q5_0_BYTES;
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        for (int j = 0; j < IGNIS_QK; j++) y[b * IGNIS_QK + j] = (float)(ignis_q5_0_quant(wb, j) - 16) * d;
    }
}

static inline void ignis_dequant_row_q4_k(const uint8_t *w, float *y, int64_t k) {
    for (int64_t s = 0; s < k / IGNIS_QK_K; s++) {
        const uint8_t *wb = w + s * IGNIS_Q4_K_BYTES;
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb));
        float dmin = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 2));
        for (int j = 0; j < 8; j++) {
            int sc, m;
            ignis_q4_k_scale_min(wb + 4, j, &sc, &m);
            float ds = d * (float)sc, dm = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                y[s * IGNIS_QK_K + j * 32 + l] = (float)ignis_q4_k_quant(wb, j * 32 + l) * ds - dm;
        }
    }
}

static inline void ignis_dequant_row_q6_k(const uint8_t *w, float *y, int64_t k) {
    for (int64_t s = 0; s < k / IGNIS_QK_K; s++) {
        const uint8_t *wb = w + s * IGNIS_Q6_K_BYTES;
        const int8_t *sc = (const int8_t *)(wb + 192);
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 208));
        for (int e = 0; e < IGNIS_QK_K; e++)
            y[s * IGNIS_QK_K + e] = (float)ignis_q6_k_quant(wb, e) * (d * (float)sc[e / 16]);
    }
}

/* f32 dot, sequential. */
static inline float ignis_scalar_dot_f32(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* f32 . f16 dot, sequential (the f16 values converted exactly). */
static inline float ignis_scalar_dot_f32_f16(const float *a, const uint16_t *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * ignis_scalar_f16_to_f32(b[i]);
    return s;
}

/* y += a * x, elementwise (a multiply then an add: exact across paths). */
static inline void ignis_scalar_axpy_f32(float a, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = y[i] + a * x[i];
}

static inline void ignis_scalar_axpy_f16(float a, const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = y[i] + a * ignis_scalar_f16_to_f32(x[i]);
}

/* exp(x) for float: Cody-Waite range reduction and a degree-6 polynomial, about 1 ulp.
 * Only + - * and floor, no FMA, so the SIMD paths compute the very same bits.
 * x is clamped to [-87.3, 88.3]: the result stays a normal float. */
#define IGNIS_EXP_HI 88.3f
#define IGNIS_EXP_LO -87.3f
#define IGNIS_LOG2E 1.44269504088896341f
#define IGNIS_LN2_HI 0.693359375f
#define IGNIS_LN2_LO -2.12194440e-4f
#define IGNIS_EXP_P0 1.9875691500e-4f
#define IGNIS_EXP_P1 1.3981999507e-3f
#define IGNIS_EXP_P2 8.3334519073e-3f
#define IGNIS_EXP_P3 4.1665795894e-2f
#define IGNIS_EXP_P4 1.6666665459e-1f
#define IGNIS_EXP_P5 5.0000001201e-1f

static inline float ignis_scalar_expf(float x) {
    x = x > IGNIS_EXP_HI ? IGNIS_EXP_HI : x;
    x = x < IGNIS_EXP_LO ? IGNIS_EXP_LO : x;
    float n = floorf(x * IGNIS_LOG2E + 0.5f);
    float r = x - n * IGNIS_LN2_HI;
    r = r - n * IGNIS_LN2_LO;
    float r2 = r * r;
    float p = IGNIS_EXP_P0;
    p = p * r + IGNIS_EXP_P1;
    p = p * r + IGNIS_EXP_P2;
    p = p * r + IGNIS_EXP_P3;
    p = p * r + IGNIS_EXP_P4;
    p = p * r + IGNIS_EXP_P5;
    float y = p * r2 + r;
    y = y + 1.0f;
    return y * ignis_bits_f32((uint32_t)((int32_t)n + 127) << 23);
}

/* y = x / (1 + exp(-x)) */
static inline void ignis_scalar_silu_row(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + ignis_scalar_expf(-x[i]));
}

/* x[i] = exp(x[i] - m); returns the sum (sequential). */
static inline float ignis_scalar_exp_sub_sum(float *x, float m, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        x[i] = ignis_scalar_expf(x[i] - m);
        s += x[i];
    }
    return s;
}

/* Q8_0 micro-kernel reference: out[j*4 + i] = vec_dot(W row i, X row j), i < rm, j < rn. */
static inline void ignis_scalar_tile_q8_0(int64_t nb, const uint8_t *w, size_t ws, int rm,
                                          const uint8_t *x, size_t xs, int rn, float *out) {
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++)
            out[j * IGNIS_TILE + i] = ignis_scalar_vec_dot_q8_0(nb, w + i * ws, x + j * xs);
}

/* ======================================================================== */
/* AVX2 / FMA / F16C                                                        */
#ifdef IGNIS_AVX2

static inline float ignis_avx2_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
static inline uint16_t ignis_avx2_f32_to_f16(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

static inline void ignis_avx2_f16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = _cvtsh_ss(x[i]);
}

static inline void ignis_avx2_f32_to_f16_row(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = ignis_avx2_f32_to_f16(x[i]);
}

/* horizontal sum in a fixed order: (lo4 + hi4) -> 2 -> 1 */
IGNIS_INLINE float ignis_avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* NaN -> 0, clamp to [-127, 127], then roundf (ties away from zero), as int32 lanes. */
IGNIS_INLINE __m256i ignis_avx2_round_away(__m256 v) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    __m256 a = _mm256_andnot_ps(sign_mask, v);
    __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_sub_ps(a, t);
    t = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), _mm256_set1_ps(1.0f)));
    t = _mm256_or_ps(t, _mm256_and_ps(sign_mask, v));
    return _mm256_cvttps_epi32(t);
}

static inline void ignis_avx2_quantize_row_q8_0(const float *x, uint8_t *y, int64_t k) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const float *xb = x + b * IGNIS_QK;
        uint8_t *yb = y + b * IGNIS_Q8_0_BYTES;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign_mask, v0), _mm256_andnot_ps(sign_mask, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign_mask, v2), _mm256_andnot_ps(sign_mask, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = ignis_avx2_f32_to_f16(d);
        memcpy(yb, &dh, 2);
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = ignis_avx2_round_away(_mm256_mul_ps(v0, vid));
        __m256i i1 = ignis_avx2_round_away(_mm256_mul_ps(v1, vid));
        __m256i i2 = ignis_avx2_round_away(_mm256_mul_ps(v2, vid));
        __m256i i3 = ignis_avx2_round_away(_mm256_mul_ps(v3, vid));
        /* packs work within 128-bit lanes: fix the order with a dword permute */
        __m256i p01 = _mm256_packs_epi32(i0, i1);
        __m256i p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(yb + 2), p);
    }
}

/* 8 int32 partial sums of one Q8_0 block pair, as floats (each partial sum is exact in f32).
 * The sign trick: |w| (unsigned) times x*sign(w) (signed) feeds maddubs without overflow
 * because activations never hold -128. */
IGNIS_INLINE __m256 ignis_avx2_block_q8_0(__m256i w, __m256i aw, __m256i x) {
    __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* The micro-kernel: out[j*4 + i] = W row i . X row j for i < RM, j < RN (compile-time sizes).
 * Each (i, j) pair keeps its own 8-lane accumulator: acc = fma(partials, d_w*d_x, acc), so
 * every tile shape gives the same bits as ignis_avx2_vec_dot_q8_0 (the 1x1 tile). */
IGNIS_INLINE void ignis_avx2_tile_q8_0_rc(int64_t nb, const uint8_t *w, size_t ws,
                                          const uint8_t *x, size_t xs, float *out,
                                          const int RM, const int RN) {
    __m256 acc[IGNIS_TILE][IGNIS_TILE];
#pragma GCC unroll 4
    for (int i = 0; i < RM; i++)
#pragma GCC unroll 4
        for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * IGNIS_Q8_0_BYTES;
        float dx[IGNIS_TILE];
        __m256i xv[IGNIS_TILE];
#pragma GCC unroll 4
        for (int j = 0; j < RN; j++) {
            dx[j] = _cvtsh_ss(ignis_load_u16(x + j * xs + off));
            xv[j] = _mm256_loadu_si256((const __m256i *)(x + j * xs + off + 2));
        }
#pragma GCC unroll 4
        for (int i = 0; i < RM; i++) {
            float dw = _cvtsh_ss(ignis_load_u16(w + i * ws + off));
            __m256i wv = _mm256_loadu_si256((const __m256i *)(w + i * ws + off + 2));
            __m256i aw = _mm256_sign_epi8(wv, wv);
#pragma GCC unroll 4
            for (int j = 0; j < RN; j++)
                acc[i][j] = _mm256_fmadd_ps(ignis_avx2_block_q8_0(wv, aw, xv[j]), _mm256_set1_ps(dw * dx[j]), acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < RM; i++)
#pragma GCC unroll 4
        for (int j = 0; j < RN; j++) out[j * IGNIS_TILE + i] = ignis_avx2_hsum(acc[i][j]);
}

static inline float ignis_avx2_vec_dot_q8_0(int64_t nb, const uint8_t *w, const uint8_t *x) {
    float out[IGNIS_TILE * IGNIS_TILE];
    ignis_avx2_tile_q8_0_rc(nb, w, 0, x, 0, out, 1, 1);
    return out[0];
}

#define IGNIS_AVX2_TILE_FN(R, C) \
    static void ignis_avx2_tile_q8_0_##R##x##C(int64_t nb, const uint8_t *w, size_t ws, \
                                                const uint8_t *x, size_t xs, float *out) { \
        ignis_avx2_tile_q8_0_rc(nb, w, ws, x, xs, out, R, C); }
IGNIS_AVX2_TILE_FN(1, 1) IGNIS_AVX2_TILE_FN(1, 2) IGNIS_AVX2_TILE_FN(1, 3) IGNIS_AVX2_TILE_FN(1, 4)
IGNIS_AVX2_TILE_FN(2, 1) IGNIS_AVX2_TILE_FN(2, 2) IGNIS_AVX2_TILE_FN(2, 3) IGNIS_AVX2_TILE_FN(2, 4)
IGNIS_AVX2_TILE_FN(3, 1) IGNIS_AVX2_TILE_FN(3, 2) IGNIS_AVX2_TILE_FN(3, 3) IGNIS_AVX2_TILE_FN(3, 4)
IGNIS_AVX2_TILE_FN(4, 1) IGNIS_AVX2_TILE_FN(4, 2) IGNIS_AVX2_TILE_FN(4, 3) IGNIS_AVX2_TILE_FN(4, 4)

typedef void (*ignis_tile_fn)(int64_t, const uint8_t *, size_t, const uint8_t *, size_t, float *);
static const ignis_tile_fn ignis_avx2_tiles[IGNIS_TILE][IGNIS_TILE] = {
    {ignis_avx2_tile_q8_0_1x1, ignis_avx2_tile_q8_0_1x2, ignis_avx2_tile_q8_0_1x3, ignis_avx2_tile_q8_0_1x4},
    {ignis_avx2_tile_q8_0_2x1, ignis_avx2_tile_q8_0_2x2, ignis_avx2_tile_q8_0_2x3, ignis_avx2_tile_q8_0_2x4},
    {ignis_avx2_tile_q8_0_3x1, ignis_avx2_tile_q8_0_3x2, ignis_avx2_tile_q8_0_3x3, ignis_avx2_tile_q8_0_3x4},
    {ignis_avx2_tile_q8_0_4x1, ignis_avx2_tile_q8_0_4x2, ignis_avx2_tile_q8_0_4x3, ignis_avx2_tile_q8_0_4x4},
};

static inline void ignis_avx2_tile_q8_0(int64_t nb, const uint8_t *w, size_t ws, int rm,
                                        const uint8_t *x, size_t xs, int rn, float *out) {
    ignis_avx2_tiles[rm - 1][rn - 1](nb, w, ws, x, xs, out);
}

/* Q5_0: expand 32 nibbles + 32 high bits into 32 signed bytes q-16. */
IGNIS_INLINE __m256i ignis_avx2_q5_0_quants(const uint8_t *blk) {
    __m128i qs = _mm_loadu_si128((const __m128i *)(blk + 6));
    __m256i nib = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), _mm_set1_epi8(0x0f)),
                                   _mm_and_si128(qs, _mm_set1_epi8(0x0f)));
    /* byte i of the result takes byte i/8 of qh, then tests bit i%8 */
    __m256i qh = _mm256_set1_epi32((int)ignis_load_u32(blk + 2));
    __m256i bytes = _mm256_shuffle_epi8(qh, _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    __m256i q = _mm256_or_si256(nib, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(16));
}

static inline float ignis_avx2_vec_dot_q5_0(int64_t nb, const uint8_t *w, const uint8_t *x) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * IGNIS_Q5_0_BYTES, *xb = x + b * IGNIS_Q8_0_BYTES;
        __m256i wv = ignis_avx2_q5_0_quants(wb);
        __m256i xv = _mm256_loadu_si256((const __m256i *)(xb + 2));
        float scale = _cvtsh_ss(ignis_load_u16(wb)) * _cvtsh_ss(ignis_load_u16(xb));
        acc = _mm256_fmadd_ps(ignis_avx2_block_q8_0(wv, _mm256_sign_epi8(wv, wv), xv), _mm256_set1_ps(scale), acc);
    }
    return ignis_avx2_hsum(acc);
}

static inline float ignis_avx2_vec_dot_q4_k(int64_t nsb, const uint8_t *w, const uint8_t *x) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i low = _mm256_set1_epi8(0x0f), ones8 = _mm256_set1_epi8(1);
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *wb = w + s * IGNIS_Q4_K_BYTES;
        float d = _cvtsh_ss(ignis_load_u16(wb)), dmin = _cvtsh_ss(ignis_load_u16(wb + 2));
        for (int p = 0; p < 4; p++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(wb + 16 + p * 32));
            __m256i q[2] = {_mm256_and_si256(qv, low), _mm256_and_si256(_mm256_srli_epi16(qv, 4), low)};
            for (int h = 0; h < 2; h++) {
                int j = 2 * p + h, sc, m;
                ignis_q4_k_scale_min(wb + 4, j, &sc, &m);
                const uint8_t *xb = x + (s * 8 + j) * IGNIS_Q8_0_BYTES;
                float dx = _cvtsh_ss(ignis_load_u16(xb));
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xb + 2));
                __m256i qx = _mm256_madd_epi16(_mm256_maddubs_epi16(q[h], xv), _mm256_set1_epi16((short)sc));
                __m256i xs = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, xv), _mm256_set1_epi16((short)m));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(qx), _mm256_set1_ps(d * dx), acc);
                acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(xs), _mm256_set1_ps(dmin * dx), acc);
            }
        }
    }
    return ignis_avx2_hsum(acc);
}

static inline float ignis_avx2_vec_dot_q6_k(int64_t nsb, const uint8_t *w, const uint8_t *x) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i low = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *wb = w + s * IGNIS_Q6_K_BYTES;
        const int8_t *sc = (const int8_t *)(wb + 192);
        float d = _cvtsh_ss(ignis_load_u16(wb + 208));
        for (int half = 0; half < 2; half++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(wb + half * 64));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(wb + half * 64 + 32));
            __m256i hv = _mm256_loadu_si256((const __m256i *)(wb + 128 + half * 32));
            __m256i lo4[4] = {_mm256_and_si256(l0, low), _mm256_and_si256(l1, low),
                              _mm256_and_si256(_mm256_srli_epi16(l0, 4), low),
                              _mm256_and_si256(_mm256_srli_epi16(l1, 4), low)};
            for (int k = 0; k < 4; k++) {
                int j = half * 4 + k;
                __m256i hi2 = _mm256_and_si256(_mm256_srli_epi16(hv, 2 * k), three);
                __m256i q = _mm256_or_si256(lo4[k], _mm256_slli_epi16(hi2, 4));   /* 0..63 */
                const uint8_t *xb = x + (s * 8 + j) * IGNIS_Q8_0_BYTES;
                float dx = _cvtsh_ss(ignis_load_u16(xb));
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xb + 2));
                __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q, xv), _mm256_maddubs_epi16(k32, xv));
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * j + 1]), _mm_set1_epi16(sc[2 * j]));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p16, scv)), _mm256_set1_ps(d * dx), acc);
            }
        }
    }
    return ignis_avx2_hsum(acc);
}

/* f32 dot: two 8-lane FMA accumulators over 16-element steps, one 8-step, fixed hsum, scalar tail. */
static inline float ignis_avx2_dot_f32(const float *a, const float *b, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float s = ignis_avx2_hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline float ignis_avx2_dot_f32_f16(const float *a, const uint16_t *b, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8))), acc1);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
    float s = ignis_avx2_hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * _cvtsh_ss(b[i]);
    return s;
}

static inline void ignis_avx2_axpy_f32(float a, const float *x, float *y, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] = y[i] + a * x[i];
}

static inline void ignis_avx2_axpy_f16(float a, const uint16_t *x, float *y, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, xv)));
    }
    for (; i < n; i++) y[i] = y[i] + a * _cvtsh_ss(x[i]);
}

IGNIS_INLINE __m256 ignis_avx2_expf(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(IGNIS_EXP_HI));
    x = _mm256_max_ps(x, _mm256_set1_ps(IGNIS_EXP_LO));
    __m256 n = _mm256_floor_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(IGNIS_LOG2E)), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(IGNIS_LN2_HI)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(IGNIS_LN2_LO)));
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(IGNIS_EXP_P0);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(IGNIS_EXP_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(IGNIS_EXP_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(IGNIS_EXP_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(IGNIS_EXP_P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(IGNIS_EXP_P5));
    __m256 y = _mm256_add_ps(_mm256_mul_ps(p, r2), r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

static inline void ignis_avx2_silu_row(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = ignis_avx2_expf(_mm256_xor_ps(v, neg));
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) y[i] = x[i] / (1.0f + ignis_scalar_expf(-x[i]));
}

static inline float ignis_avx2_exp_sub_sum(float *x, float m, int64_t n) {
    __m256 acc = _mm256_setzero_ps(), vm = _mm256_set1_ps(m);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = ignis_avx2_expf(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float s = ignis_avx2_hsum(acc);
    for (; i < n; i++) {
        x[i] = ignis_scalar_expf(x[i] - m);
        s += x[i];
    }
    return s;
}

#endif /* IGNIS_AVX2 */

/* ======================================================================== */
/* NEON (aarch64)                                                           */
#ifdef IGNIS_NEON

static inline float ignis_neon_f16_to_f32(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

static inline uint16_t ignis_neon_f32_to_f16(float f) {
    return vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(f))), 0);
}

static inline void ignis_neon_f16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))));
    for (; i < n; i++) y[i] = ignis_neon_f16_to_f32(x[i]);
}

static inline void ignis_neon_f32_to_f16_row(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = ignis_neon_f32_to_f16(x[i]);
}

static inline void ignis_neon_quantize_row_q8_0(const float *x, uint8_t *y, int64_t k) {
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const float *xb = x + b * IGNIS_QK;
        uint8_t *yb = y + b * IGNIS_Q8_0_BYTES;
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int i = 0; i < 8; i++) {
            v[i] = vld1q_f32(xb + 4 * i);
            m = vmaxq_f32(m, vabsq_f32(v[i]));
        }
        float amax = vmaxvq_f32(m);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = ignis_neon_f32_to_f16(d);
        memcpy(yb, &dh, 2);
        int16x8_t h[4];
        const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
        for (int i = 0; i < 4; i++) {
            /* clamp (NaN passes through and converts to 0); vcvta: ties away from zero == roundf */
            int32x4_t a = vcvtaq_s32_f32(vminq_f32(vmaxq_f32(vmulq_n_f32(v[2 * i], id), lo), hi));
            int32x4_t c = vcvtaq_s32_f32(vminq_f32(vmaxq_f32(vmulq_n_f32(v[2 * i + 1], id), lo), hi));
            h[i] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(c));
        }
        vst1q_s8((int8_t *)(yb + 2), vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
        vst1q_s8((int8_t *)(yb + 18), vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
    }
}

/* 4 int32 partial sums of one 32-byte block pair (exact). */
IGNIS_INLINE int32x4_t ignis_neon_isum32(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1);
#else
    int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
    p0 = vmlal_s8(p0, vget_high_s8(w0), vget_high_s8(x0));
    int16x8_t p1 = vmull_s8(vget_low_s8(w1), vget_low_s8(x1));
    p1 = vmlal_s8(p1, vget_high_s8(w1), vget_high_s8(x1));
    return vpadalq_s16(vpaddlq_s16(p0), p1);
#endif
}

IGNIS_INLINE void ignis_neon_tile_q8_0_rc(int64_t nb, const uint8_t *w, size_t ws,
                                          const uint8_t *x, size_t xs, float *out,
                                          const int RM, const int RN) {
    float32x4_t acc[IGNIS_TILE][IGNIS_TILE];
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) acc[i][j] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * IGNIS_Q8_0_BYTES;
        float dx[IGNIS_TILE];
        int8x16_t x0[IGNIS_TILE], x1[IGNIS_TILE];
        for (int j = 0; j < RN; j++) {
            dx[j] = ignis_neon_f16_to_f32(ignis_load_u16(x + j * xs + off));
            x0[j] = vld1q_s8((const int8_t *)(x + j * xs + off + 2));
            x1[j] = vld1q_s8((const int8_t *)(x + j * xs + off + 18));
        }
        for (int i = 0; i < RM; i++) {
            float dw = ignis_neon_f16_to_f32(ignis_load_u16(w + i * ws + off));
            int8x16_t w0 = vld1q_s8((const int8_t *)(w + i * ws + off + 2));
            int8x16_t w1 = vld1q_s8((const int8_t *)(w + i * ws + off + 18));
            for (int j = 0; j < RN; j++)
                acc[i][j] = vfmaq_f32(acc[i][j], vcvtq_f32_s32(ignis_neon_isum32(w0, w1, x0[j], x1[j])),
                                      vdupq_n_f32(dw * dx[j]));
        }
    }
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) out[j * IGNIS_TILE + i] = vaddvq_f32(acc[i][j]);
}

static inline float ignis_neon_vec_dot_q8_0(int64_t nb, const uint8_t *w, const uint8_t *x) {
    float out[IGNIS_TILE * IGNIS_TILE];
    ignis_neon_tile_q8_0_rc(nb, w, 0, x, 0, out, 1, 1);
    return out[0];
}

#define IGNIS_NEON_TILE_FN(R, C) \
    static void ignis_neon_tile_q8_0_##R##x##C(int64_t nb, const uint8_t *w, size_t ws, \
                                                const uint8_t *x, size_t xs, float *out) { \
        ignis_neon_tile_q8_0_rc(nb, w, ws, x, xs, out, R, C); }
IGNIS_NEON_TILE_FN(1, 1) IGNIS_NEON_TILE_FN(1, 2) IGNIS_NEON_TILE_FN(1, 3) IGNIS_NEON_TILE_FN(1, 4)
IGNIS_NEON_TILE_FN(2, 1) IGNIS_NEON_TILE_FN(2, 2) IGNIS_NEON_TILE_FN(2, 3) IGNIS_NEON_TILE_FN(2, 4)
IGNIS_NEON_TILE_FN(3, 1) IGNIS_NEON_TILE_FN(3, 2) IGNIS_NEON_TILE_FN(3, 3) IGNIS_NEON_TILE_FN(3, 4)
IGNIS_NEON_TILE_FN(4, 1) IGNIS_NEON_TILE_FN(4, 2) IGNIS_NEON_TILE_FN(4, 3) IGNIS_NEON_TILE_FN(4, 4)

typedef void (*ignis_tile_fn)(int64_t, const uint8_t *, size_t, const uint8_t *, size_t, float *);
static const ignis_tile_fn ignis_neon_tiles[IGNIS_TILE][IGNIS_TILE] = {
    {ignis_neon_tile_q8_0_1x1, ignis_neon_tile_q8_0_1x2, ignis_neon_tile_q8_0_1x3, ignis_neon_tile_q8_0_1x4},
    {ignis_neon_tile_q8_0_2x1, ignis_neon_tile_q8_0_2x2, ignis_neon_tile_q8_0_2x3, ignis_neon_tile_q8_0_2x4},
    {ignis_neon_tile_q8_0_3x1, ignis_neon_tile_q8_0_3x2, ignis_neon_tile_q8_0_3x3, ignis_neon_tile_q8_0_3x4},
    {ignis_neon_tile_q8_0_4x1, ignis_neon_tile_q8_0_4x2, ignis_neon_tile_q8_0_4x3, ignis_neon_tile_q8_0_4x4},
};

static inline void ignis_neon_tile_q8_0(int64_t nb, const uint8_t *w, size_t ws, int rm,
                                        const uint8_t *x, size_t xs, int rn, float *out) {
    ignis_neon_tiles[rm - 1][rn - 1](nb, w, ws, x, xs, out);
}

static inline float ignis_neon_dot_f32(const float *a, const float *b, int64_t n) {
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline float ignis_neon_dot_f32_f16(const float *a, const uint16_t *b, int64_t n) {
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(b + i));
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vcvt_f32_f16(vget_low_f16(h)));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vcvt_high_f32_f16(h));
    }
    for (; i + 4 <= n; i += 4)
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(b + i))));
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) s += a[i] * ignis_neon_f16_to_f32(b[i]);
    return s;
}

static inline void ignis_neon_axpy_f32(float a, const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_n_f32(vld1q_f32(x + i), a)));
    for (; i < n; i++) y[i] = y[i] + a * x[i];
}

static inline void ignis_neon_axpy_f16(float a, const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t xv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i)));
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_n_f32(xv, a)));
    }
    for (; i < n; i++) y[i] = y[i] + a * ignis_neon_f16_to_f32(x[i]);
}

IGNIS_INLINE float32x4_t ignis_neon_expf(float32x4_t x) {
    x = vminq_f32(x, vdupq_n_f32(IGNIS_EXP_HI));
    x = vmaxq_f32(x, vdupq_n_f32(IGNIS_EXP_LO));
    float32x4_t n = vrndmq_f32(vaddq_f32(vmulq_n_f32(x, IGNIS_LOG2E), vdupq_n_f32(0.5f)));
    float32x4_t r = vsubq_f32(x, vmulq_n_f32(n, IGNIS_LN2_HI));
    r = vsubq_f32(r, vmulq_n_f32(n, IGNIS_LN2_LO));
    float32x4_t r2 = vmulq_f32(r, r);
    float32x4_t p = vdupq_n_f32(IGNIS_EXP_P0);
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(IGNIS_EXP_P1));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(IGNIS_EXP_P2));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(IGNIS_EXP_P3));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(IGNIS_EXP_P4));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(IGNIS_EXP_P5));
    float32x4_t y = vaddq_f32(vmulq_f32(p, r2), r);
    y = vaddq_f32(y, vdupq_n_f32(1.0f));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

static inline void ignis_neon_silu_row(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float32x4_t e = ignis_neon_expf(vnegq_f32(v));
        vst1q_f32(y + i, vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), e)));
    }
    for (; i < n; i++) y[i] = x[i] / (1.0f + ignis_scalar_expf(-x[i]));
}

static inline float ignis_neon_exp_sub_sum(float *x, float m, int64_t n) {
    float32x4_t acc = vdupq_n_f32(0.0f), vm = vdupq_n_f32(m);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = ignis_neon_expf(vsubq_f32(vld1q_f32(x + i), vm));
        vst1q_f32(x + i, e);
        acc = vaddq_f32(acc, e);
    }
    float s = vaddvq_f32(acc);
    for (; i < n; i++) {
        x[i] = ignis_scalar_expf(x[i] - m);
        s += x[i];
    }
    return s;
}

#endif /* IGNIS_NEON */

/* ======================================================================== */
/* dispatch: the names the kernels use                                      */

#if defined(IGNIS_AVX2)
#  define IGNIS_PICK(name) ignis_avx2_##name
#elif defined(IGNIS_NEON)
#  define IGNIS_PICK(name) ignis_neon_##name
#else
#  define IGNIS_PICK(name) ignis_scalar_##name
#endif

static inline float ignis_f16_to_f32(uint16_t h) { return IGNIS_PICK(f16_to_f32)(h); }
static inline uint16_t ignis_f32_to_f16(float f) { return IGNIS_PICK(f32_to_f16)(f); }
static inline void ignis_f16_to_f32_row(const uint16_t *x, float *y, int64_t n) { IGNIS_PICK(f16_to_f32_row)(x, y, n); }
static inline void ignis_f32_to_f16_row(const float *x, uint16_t *y, int64_t n) { IGNIS_PICK(f32_to_f16_row)(x, y, n); }
static inline void ignis_quantize_row_q8_0(const float *x, uint8_t *y, int64_t k) { IGNIS_PICK(quantize_row_q8_0)(x, y, k); }
static inline float ignis_vec_dot_q8_0(int64_t nb, const uint8_t *w, const uint8_t *x) { return IGNIS_PICK(vec_dot_q8_0)(nb, w, x); }
static inline void ignis_tile_q8_0(int64_t nb, const uint8_t *w, size_t ws, int rm,
                                   const uint8_t *x, size_t xs, int rn, float *out) {
    IGNIS_PICK(tile_q8_0)(nb, w, ws, rm, x, xs, rn, out);
}
static inline float ignis_dot_f32(const float *a, const float *b, int64_t n) { return IGNIS_PICK(dot_f32)(a, b, n); }
static inline float ignis_dot_f32_f16(const float *a, const uint16_t *b, int64_t n) { return IGNIS_PICK(dot_f32_f16)(a, b, n); }
static inline void ignis_axpy_f32(float a, const float *x, float *y, int64_t n) { IGNIS_PICK(axpy_f32)(a, x, y, n); }
static inline void ignis_axpy_f16(float a, const uint16_t *x, float *y, int64_t n) { IGNIS_PICK(axpy_f16)(a, x, y, n); }
static inline void ignis_silu_row(const float *x, float *y, int64_t n) { IGNIS_PICK(silu_row)(x, y, n); }
static inline float ignis_exp_sub_sum(float *x, float m, int64_t n) { return IGNIS_PICK(exp_sub_sum)(x, m, n); }

/* K-quant and Q5_0 dots: AVX2 and scalar (NEON builds use the scalar definition). */
#if defined(IGNIS_AVX2)
#  define IGNIS_PICK_KQ(name) ignis_avx2_##name
#  define IGNIS_KQUANT_SIMD "avx2"
#else
#  define IGNIS_PICK_KQ(name) ignis_scalar_##name
#  define IGNIS_KQUANT_SIMD "scalar"
#endif
static inline float ignis_vec_dot_q5_0(int64_t nb, const uint8_t *w, const uint8_t *x) { return IGNIS_PICK_KQ(vec_dot_q5_0)(nb, w, x); }
static inline float ignis_vec_dot_q4_k(int64_t nsb, const uint8_t *w, const uint8_t *x) { return IGNIS_PICK_KQ(vec_dot_q4_k)(nsb, w, x); }
static inline float ignis_vec_dot_q6_k(int64_t nsb, const uint8_t *w, const uint8_t *x) { return IGNIS_PICK_KQ(vec_dot_q6_k)(nsb, w, x); }

/* elementwise row functions: plain C (the compiler vectorises them; exact on every path) */
static inline void ignis_add_row(const float *a, const float *b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
static inline void ignis_mul_row(const float *a, const float *b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}
/* y = (x * r) * g */
static inline void ignis_scale_row(const float *x, float r, const float *g, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * r) * g[i];
}
/* NeoX rotation of one head (hd = 2*half): (x0, x1) -> (x0 c - x1 s, x0 s + x1 c) */
static inline void ignis_rope_head(const float *x, float *y, const float *c, const float *s, int64_t half) {
    for (int64_t i = 0; i < half; i++) {
        float x0 = x[i], x1 = x[i + half];
        y[i] = x0 * c[i] - x1 * s[i];
        y[i + half] = x0 * s[i] + x1 * c[i];
    }
}

#endif /* IGNIS_NEON_H */
