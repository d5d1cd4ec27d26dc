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
 * be turned into fused multiply-adds behind our back (its explicit fmaf calls are
 * part of the definition).
 *
 * Agreement between paths (checked by tests/simd on x86-64 and under qemu-aarch64):
 *   exact (same bits)   f16<->f32 conversions (IEEE round-to-nearest-even, NaNs
 *                       quieted), Q8_0 quantization (bytes), every quantized dot
 *                       product and matmul tile (Q8_0, Q5_0, Q4_K, Q6_K weights
 *                       against Q8_0 activations), axpy, exp, silu and every
 *                       elementwise row function.
 *   within tolerance    the float reductions ignis_dot_f32 / _f32_f16 and the
 *                       softmax sum: the SIMD paths keep 8 (AVX2) or 4 (NEON)
 *                       partial sums and use FMA. For terms t_i,
 *                       |simd - scalar| <= 1e-5 * sum_i |t_i|  (+1e-30 absolute).
 *
 * The quantized dot products are defined so that SIMD can compute them exactly:
 * per 32-element activation block b (in order) the integer sums of the low half
 * (elements 0..15) and the high half (16..31) are formed exactly, then two float
 * chains advance with one fused multiply-add each,
 *     lo = fmaf((float)ilo_b, s_b, lo),  hi = fmaf((float)ihi_b, s_b, hi),
 * with s_b = d_w * d_x (Q4_K adds a second pair of steps for its mins), and the
 * result is lo + hi. Every product fits in int32 and every half sum in 24 bits, so
 * the integer parts are exact on every path; the float steps are the same IEEE
 * operations in the same order. Any tile shape gives the bits of the single dot.
 *
 * What each path implements with SIMD (the rest falls back to the scalar code,
 * which is the same arithmetic):
 *   AVX2   f16 rows, Q8_0 quantization, tiles for Q8_0/Q5_0/Q4_K/Q6_K weights x Q8_0
 *          activations (4 rows x 4/8 tokens for Q8_0 prefill, 8 rows x 1..4 tokens
 *          otherwise), Q8_0 x Q16 tiles, f32 dot/axpy (also against f16 rows),
 *          exp/silu, softmax exp-and-sum.
 *   NEON   the same except the Q16 tiles (scalar); uses the dot-product extension
 *          when compiled for it (-march=armv8.2-a+dotprod).
 *
 * Matmul tiles: ignis_tile(wtype, blocks per row, w[rm], rm, x[rn], rn, out) with
 * out[j*8 + i] = dot(weight row w[i], activation row x[j]), rm, rn <= 8.
 * Activations are Q8_0 rows (ignis_quantize_row_q8_0), or Q16 rows
 * (ignis_quantize_row_q16: f32 scale + 32 int16 per block) for ignis_tile_q16, whose
 * halves are the element sets {0..7, 16..23} and {8..15, 24..31}.
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
#define IGNIS_TILE 8             /* matmul tiles: up to 8 weight rows x 8 activation rows */

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

/* Integer halves of one 32-element block: lo = sum over elements 0..15 of w*x, hi = 16..31. */
static inline void ignis_halves_i8(const int8_t *w, const int8_t *x, int32_t *lo, int32_t *hi) {
    int32_t a = 0, b = 0;
    for (int i = 0; i < 16; i++) a += (int32_t)w[i] * (int32_t)x[i];
    for (int i = 16; i < 32; i++) b += (int32_t)w[i] * (int32_t)x[i];
    *lo = a;
    *hi = b;
}

/* Q8_0 weight row . Q8_0 activation row over nb blocks (see the header for the definition). */
static inline float ignis_scalar_vec_dot_q8_0(int64_t nb, const uint8_t *w, const uint8_t *x) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * IGNIS_Q8_0_BYTES, *xb = x + b * IGNIS_Q8_0_BYTES;
        float s = ignis_scalar_f16_to_f32(ignis_load_u16(wb)) * ignis_scalar_f16_to_f32(ignis_load_u16(xb));
        int32_t il, ih;
        ignis_halves_i8((const int8_t *)(wb + 2), (const int8_t *)(xb + 2), &il, &ih);
        lo = fmaf((float)il, s, lo);
        hi = fmaf((float)ih, s, hi);
    }
    return lo + hi;
}

/* Q5_0 block: quant j (0..31) in 0..31. */
static inline int ignis_q5_0_quant(const uint8_t *blk, int j) {
    uint32_t qh = ignis_load_u32(blk + 2);
    const uint8_t *qs = blk + 6;
    int nib = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
    return nib | (int)(((qh >> j) & 1u) << 4);
}

/* Q5_0 weight row . Q8_0 activation row: as Q8_0 with weights q - 16. */
static inline float ignis_scalar_vec_dot_q5_0(int64_t nb, const uint8_t *w, const uint8_t *x) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * IGNIS_Q5_0_BYTES, *xb = x + b * IGNIS_Q8_0_BYTES;
        float s = ignis_scalar_f16_to_f32(ignis_load_u16(wb)) * ignis_scalar_f16_to_f32(ignis_load_u16(xb));
        int8_t q[32];
        for (int j = 0; j < 32; j++) q[j] = (int8_t)(ignis_q5_0_quant(wb, j) - 16);
        int32_t il, ih;
        ignis_halves_i8(q, (const int8_t *)(xb + 2), &il, &ih);
        lo = fmaf((float)il, s, lo);
        hi = fmaf((float)ih, s, hi);
    }
    return lo + hi;
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
 * Sub-block j (activation block b): halves A = sc * sum q*x, B = m * sum x (exact ints);
 * lo = fmaf(A_lo, d*d_x, lo); lo = fmaf(-B_lo, dmin*d_x, lo); the same for hi. */
static inline float ignis_scalar_vec_dot_q4_k(int64_t nsb, const uint8_t *w, const uint8_t *x) {
    float lo = 0.0f, hi = 0.0f;
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
            int32_t a[2] = {0, 0}, c[2] = {0, 0};
            for (int l = 0; l < 32; l++) {
                a[l / 16] += ignis_q4_k_quant(wb, j * 32 + l) * (int32_t)xq[l];
                c[l / 16] += xq[l];
            }
            float sd = d * dx, sm = dmin * dx;
            lo = fmaf((float)(sc * a[0]), sd, lo);
            lo = fmaf(-(float)(m * c[0]), sm, lo);
            hi = fmaf((float)(sc * a[1]), sd, hi);
            hi = fmaf(-(float)(m * c[1]), sm, hi);
        }
    }
    return lo + hi;
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

/* Q6_K weight row . Q8_0 activation row. Activation block j covers the 16-element
 * sub-blocks 2j (low half) and 2j+1 (high half): lo_int = sc[2j] * sum q*x, hi_int = sc[2j+1] * ...;
 * s = d * d_x. */
static inline float ignis_scalar_vec_dot_q6_k(int64_t nsb, const uint8_t *w, const uint8_t *x) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *wb = w + s * IGNIS_Q6_K_BYTES;
        const int8_t *sc = (const int8_t *)(wb + 192);
        float d = ignis_scalar_f16_to_f32(ignis_load_u16(wb + 208));
        for (int j = 0; j < 8; j++) {
            const uint8_t *xb = x + (s * 8 + j) * IGNIS_Q8_0_BYTES;
            float dx = ignis_scalar_f16_to_f32(ignis_load_u16(xb));
            int8_t q[32];
            for (int l = 0; l < 32; l++) q[l] = (int8_t)ignis_q6_k_quant(wb, j * 32 + l);
            int32_t il, ih;
            ignis_halves_i8(q, (const int8_t *)(xb + 2), &il, &ih);
            float sd = d * dx;
            lo = fmaf((float)(sc[2 * j] * il), sd, lo);
            hi = fmaf((float)(sc[2 * j + 1] * ih), sd, hi);
        }
    }
    return lo + hi;
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

/* G dots against one f16 row: out[h * ostride] = dot_f32_f16(q + h * hd, row, hd). */
static inline void ignis_scalar_dot_f32_f16_heads(const float *q, int64_t G, int64_t hd, const uint16_t *row,
                                                  float *out, int64_t ostride) {
    for (int64_t h = 0; h < G; h++) out[h * ostride] = ignis_scalar_dot_f32_f16(q + h * hd, row, hd);
}

/* x[i] = x[i] / d (IEEE division: exact across paths). */
static inline void ignis_div_row_scalar(float *x, float d, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] / d;
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

/* Matmul micro-kernel: out[j*8 + i] = dot(weight row w[i], activation row x[j]) for
 * i < rm, j < rn (both <= 8). wtype: 8 Q8_0, 6 Q5_0, 12 Q4_K, 14 Q6_K; nblk = weight blocks
 * per row (K/32 or K/256). */
static inline float ignis_scalar_vec_dot(int wtype, int64_t nblk, const uint8_t *w, const uint8_t *x) {
    switch (wtype) {
    case 8: return ignis_scalar_vec_dot_q8_0(nblk, w, x);
    case 6: return ignis_scalar_vec_dot_q5_0(nblk, w, x);
    case 12: return ignis_scalar_vec_dot_q4_k(nblk, w, x);
    default: return ignis_scalar_vec_dot_q6_k(nblk, w, x);
    }
}

static inline void ignis_scalar_tile(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                                     const uint8_t *const *x, int rn, float *out) {
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++)
            out[j * IGNIS_TILE + i] = ignis_scalar_vec_dot(wtype, nblk, w[i], x[j]);
}

/* ---- high-precision activations: Q16 blocks (for matmuls whose accuracy matters most,
 * e.g. the output projection). A block of 32: f32 d = max|x| / 32767, then 32 int16
 * q = roundf(x * (1/d)) (NaN -> 0, clamped to +-32767) in element order (68 bytes).
 * One implementation for every path. */
#define IGNIS_Q16_BYTES 68

static inline void ignis_quantize_row_q16(const float *x, uint8_t *y, int64_t k) {
    for (int64_t b = 0; b < k / IGNIS_QK; b++) {
        const float *xb = x + b * IGNIS_QK;
        uint8_t *yb = y + b * IGNIS_Q16_BYTES;
        float amax = 0.0f;
        for (int i = 0; i < IGNIS_QK; i++) {
            float a = fabsf(xb[i]);
            if (a > amax) amax = a;
        }
        float d = amax / 32767.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        memcpy(yb, &d, 4);
        int16_t q[32];
        for (int i = 0; i < IGNIS_QK; i++) {
            float v = xb[i] * id;
            v = v != v ? 0.0f : v;
            v = v > 32767.0f ? 32767.0f : (v < -32767.0f ? -32767.0f : v);
            q[i] = (int16_t)roundf(v);
        }
        memcpy(yb + 4, q, 64);
    }
}

/* Q8_0 weight row . Q16 activation row: the Q8_0 definition with int16 activations, except
 * that the two integer halves are the element sets A = {0..7, 16..23} and B = {8..15, 24..31}
 * (what widening loads give AVX2 for free). The half sums fit int32; (float) of a half sum
 * rounds to nearest-even on every path. */
static inline float ignis_scalar_vec_dot_q8_0_q16(int64_t nb, const uint8_t *w, const uint8_t *x) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * IGNIS_Q8_0_BYTES, *xb = x + b * IGNIS_Q16_BYTES;
        const int8_t *wq = (const int8_t *)(wb + 2);
        float dx;
        int16_t xq[32];
        memcpy(&dx, xb, 4);
        memcpy(xq, xb + 4, 64);
        float s = ignis_scalar_f16_to_f32(ignis_load_u16(wb)) * dx;
        int32_t ia = 0, ib = 0;
        for (int e = 0; e < 32; e++) {
            if ((e >> 3) & 1) ib += (int32_t)wq[e] * xq[e];
            else ia += (int32_t)wq[e] * xq[e];
        }
        lo = fmaf((float)ia, s, lo);
        hi = fmaf((float)ib, s, hi);
    }
    return lo + hi;
}

static inline void ignis_scalar_tile_q16(int64_t nb, const uint8_t *const *w, int rm,
                                         const uint8_t *const *x, int rn, float *out) {
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = ignis_scalar_vec_dot_q8_0_q16(nb, w[i], x[j]);
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

/* 8 int32 partial sums of one block pair: lanes 0..3 cover elements 0..15, lanes 4..7
 * elements 16..31. The sign trick: |w| (unsigned) times x*sign(w) (signed) feeds maddubs
 * without overflow because activations never hold -128 (weights may). */
IGNIS_INLINE __m256i ignis_avx2_pair_i8(__m256i w, __m256i aw, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}

/* Four pairs' partials -> [lo0 lo1 lo2 lo3 | hi0 hi1 hi2 hi3] (exact int sums). Unpacks and
 * adds: vphaddd is 4x slower on Zen 3. */
IGNIS_INLINE __m256i ignis_avx2_reduce4(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    __m256i a = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
    __m256i b = _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
}

/* Four f16 values (from four pointers) as [v0 v1 v2 v3 | v0 v1 v2 v3]. */
IGNIS_INLINE __m256 ignis_avx2_f16x4_twice(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    __m128i h = _mm_cvtsi32_si128(ignis_load_u16(p0));
    h = _mm_insert_epi16(h, ignis_load_u16(p1), 1);
    h = _mm_insert_epi16(h, ignis_load_u16(p2), 2);
    h = _mm_insert_epi16(h, ignis_load_u16(p3), 3);
    __m128 v = _mm_cvtph_ps(h);
    return _mm256_set_m128(v, v);
}

/* acc lanes [lo0..lo3 | hi0..hi3] -> out[k * stride] = lo_k + hi_k */
IGNIS_INLINE void ignis_avx2_store4(__m256 acc, float *out, int stride) {
    float l[8];
    _mm256_storeu_ps(l, acc);
    for (int k = 0; k < 4; k++) out[k * stride] = l[k] + l[k + 4];
}

/* Q8_0, 4 weight rows x 4G activation rows (prefill): each row's block meets the 4-token
 * groups; one accumulator per (row, group) holds the 8 lo/hi chains. */
IGNIS_INLINE void ignis_avx2_q8_0_4xg(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                                      float *out, const int G) {
    __m256 acc[4][2];
    for (int i = 0; i < 4; i++)
        for (int g = 0; g < G; g++) acc[i][g] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * IGNIS_Q8_0_BYTES;
        __m256i xv[8];
        __m256 dx[2];
        for (int g = 0; g < G; g++) {
            for (int k = 0; k < 4; k++) xv[4 * g + k] = _mm256_loadu_si256((const __m256i *)(x[4 * g + k] + off + 2));
            dx[g] = ignis_avx2_f16x4_twice(x[4 * g] + off, x[4 * g + 1] + off, x[4 * g + 2] + off, x[4 * g + 3] + off);
        }
        for (int i = 0; i < 4; i++) {
            __m256i wv = _mm256_loadu_si256((const __m256i *)(w[i] + off + 2));
            __m256i aw = _mm256_sign_epi8(wv, wv);
            __m256 dw = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(w[i] + off)));
            for (int g = 0; g < G; g++) {
                __m256i h = ignis_avx2_reduce4(ignis_avx2_pair_i8(wv, aw, xv[4 * g]), ignis_avx2_pair_i8(wv, aw, xv[4 * g + 1]),
                                               ignis_avx2_pair_i8(wv, aw, xv[4 * g + 2]), ignis_avx2_pair_i8(wv, aw, xv[4 * g + 3]));
                acc[i][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw, dx[g]), acc[i][g]);
            }
        }
    }
    for (int i = 0; i < 4; i++)
        for (int g = 0; g < G; g++) ignis_avx2_store4(acc[i][g], out + 4 * g * IGNIS_TILE + i, IGNIS_TILE);
}

/* Q5_0 block quants as 32 unsigned bytes 0..31: nibble | bit << 4. */
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
    return _mm256_or_si256(nib, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
}

/* Q8_0 / Q5_0 (WT 8 / 6), 8 weight rows x RN activation rows (decode): rows in two groups of
 * four, each group's block meets each token; one accumulator per (token, group).
 * Q5_0 skips the sign trick: sum (q-16)*x = maddubs(q, x) - 16 * sum x, with the activation
 * sums computed once per token block. */
IGNIS_INLINE void ignis_avx2_q8_8xn(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                                    float *out, const int RN, const int WT) {
    const size_t wbytes = WT == 8 ? IGNIS_Q8_0_BYTES : IGNIS_Q5_0_BYTES;
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc[4][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t xo = (size_t)b * IGNIS_Q8_0_BYTES, wo = (size_t)b * wbytes;
        __m256i xv[4], xs16[4];
        __m256 dx[4];
        for (int j = 0; j < RN; j++) {
            xv[j] = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 2));
            dx[j] = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo)));
            if (WT == 6)
                xs16[j] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv[j]), _mm256_set1_epi16(16));
        }
        for (int g = 0; g < 2; g++) {
            const uint8_t *const *wg = w + 4 * g;
            __m256i wv[4], aw[4];
            for (int k = 0; k < 4; k++) {
                if (WT == 8) {
                    wv[k] = _mm256_loadu_si256((const __m256i *)(wg[k] + wo + 2));
                    aw[k] = _mm256_sign_epi8(wv[k], wv[k]);
                } else {
                    wv[k] = ignis_avx2_q5_0_quants(wg[k] + wo);
                }
            }
            __m256 dw = ignis_avx2_f16x4_twice(wg[0] + wo, wg[1] + wo, wg[2] + wo, wg[3] + wo);
            for (int j = 0; j < RN; j++) {
                __m256i p[4];
                for (int k = 0; k < 4; k++)
                    p[k] = WT == 8 ? ignis_avx2_pair_i8(wv[k], aw[k], xv[j])
                                   : _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wv[k], xv[j]), ones16), xs16[j]);
                __m256i h = ignis_avx2_reduce4(p[0], p[1], p[2], p[3]);
                acc[j][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw, dx[j]), acc[j][g]);
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < 2; g++) ignis_avx2_store4(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}

/* Q4_K, 8 weight rows x RN activation rows. Per sub-block: A = sc * q.x halves for four rows
 * at once (reduced like Q8_0), B = m * (sum x) halves as exact float products (both factors are
 * small integers), then fma(A, d*dx) and fnmadd(B, dmin*dx) per lane. */
IGNIS_INLINE void ignis_avx2_q4_k_8xn(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                                      float *out, const int RN) {
    const __m256i low = _mm256_set1_epi8(0x0f), ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256 acc[4][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * IGNIS_Q4_K_BYTES;
        /* per token and sub-block: [xs_lo x4 | xs_hi x4] as floats */
        __m256 xs[4][8];
        for (int j = 0; j < RN; j++)
            for (int sb = 0; sb < 8; sb++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x[j] + (size_t)(s * 8 + sb) * IGNIS_Q8_0_BYTES + 2));
                __m256i t = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, xv), ones16);
                xs[j][sb] = _mm256_cvtepi32_ps(ignis_avx2_reduce4(t, t, t, t));
            }
        for (int g = 0; g < 2; g++) {
            const uint8_t *const *wg = w + 4 * g;
            int16_t sc[8][4];
            float mf[8][8];
            for (int k = 0; k < 4; k++)
                for (int sb = 0; sb < 8; sb++) {
                    int a, m;
                    ignis_q4_k_scale_min(wg[k] + wo + 4, sb, &a, &m);
                    sc[sb][k] = (int16_t)a;
                    mf[sb][k] = mf[sb][k + 4] = (float)m;
                }
            __m256 d = ignis_avx2_f16x4_twice(wg[0] + wo, wg[1] + wo, wg[2] + wo, wg[3] + wo);
            __m256 dmin = ignis_avx2_f16x4_twice(wg[0] + wo + 2, wg[1] + wo + 2, wg[2] + wo + 2, wg[3] + wo + 2);
            for (int p = 0; p < 4; p++) {
                __m256i q[4][2];
                for (int k = 0; k < 4; k++) {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(wg[k] + wo + 16 + p * 32));
                    q[k][0] = _mm256_and_si256(v, low);
                    q[k][1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                }
                for (int h = 0; h < 2; h++) {
                    const int sb = 2 * p + h;
                    const size_t xo = (size_t)(s * 8 + sb) * IGNIS_Q8_0_BYTES;
                    __m256 m = _mm256_loadu_ps(mf[sb]);
                    for (int j = 0; j < RN; j++) {
                        __m256i xv = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 2));
                        __m256 dx = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo)));
                        __m256i pa[4];
                        for (int k = 0; k < 4; k++)
                            pa[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(q[k][h], xv), _mm256_set1_epi16(sc[sb][k]));
                        __m256i ha = ignis_avx2_reduce4(pa[0], pa[1], pa[2], pa[3]);
                        acc[j][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ha), _mm256_mul_ps(d, dx), acc[j][g]);
                        acc[j][g] = _mm256_fnmadd_ps(_mm256_mul_ps(m, xs[j][sb]), _mm256_mul_ps(dmin, dx), acc[j][g]);
                    }
                }
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < 2; g++) ignis_avx2_store4(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}

/* Q6_K, 8 weight rows x RN activation rows. q (0..63) . x - 32 * sum x per 16-element half,
 * times the half's int8 scale, for four rows at once. */
IGNIS_INLINE void ignis_avx2_q6_k_8xn(int64_t nsb, const uint8_t *const *w, const uint8_t *const *x,
                                      float *out, const int RN) {
    const __m256i low = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    __m256 acc[4][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const size_t wo = (size_t)s * IGNIS_Q6_K_BYTES;
        for (int g = 0; g < 2; g++) {
            const uint8_t *const *wg = w + 4 * g;
            __m256 d = ignis_avx2_f16x4_twice(wg[0] + wo + 208, wg[1] + wo + 208, wg[2] + wo + 208, wg[3] + wo + 208);
            for (int half = 0; half < 2; half++) {
                __m256i l0[4], l1[4], hv[4];
                for (int k = 0; k < 4; k++) {
                    l0[k] = _mm256_loadu_si256((const __m256i *)(wg[k] + wo + half * 64));
                    l1[k] = _mm256_loadu_si256((const __m256i *)(wg[k] + wo + half * 64 + 32));
                    hv[k] = _mm256_loadu_si256((const __m256i *)(wg[k] + wo + 128 + half * 32));
                }
                for (int kk = 0; kk < 4; kk++) {
                    const int jb = half * 4 + kk;                 /* activation block in the super-block */
                    const size_t xo = (size_t)(s * 8 + jb) * IGNIS_Q8_0_BYTES;
                    __m256i q[4], scv[4];
                    for (int k = 0; k < 4; k++) {
                        __m256i lo4 = (kk & 1) ? l1[k] : l0[k];
                        lo4 = (kk >> 1) ? _mm256_srli_epi16(lo4, 4) : lo4;
                        __m256i hi2 = _mm256_and_si256(_mm256_srli_epi16(hv[k], 2 * kk), three);
                        q[k] = _mm256_or_si256(_mm256_and_si256(lo4, low), _mm256_slli_epi16(hi2, 4));
                        const int8_t *sc = (const int8_t *)(wg[k] + wo + 192);
                        scv[k] = _mm256_set_m128i(_mm_set1_epi16(sc[2 * jb + 1]), _mm_set1_epi16(sc[2 * jb]));
                    }
                    for (int j = 0; j < RN; j++) {
                        __m256i xv = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 2));
                        __m256 dx = _mm256_set1_ps(_cvtsh_ss(ignis_load_u16(x[j] + xo)));
                        __m256i x32 = _mm256_maddubs_epi16(k32, xv);
                        __m256i p[4];
                        for (int k = 0; k < 4; k++)
                            p[k] = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(q[k], xv), x32), scv[k]);
                        __m256i h = ignis_avx2_reduce4(p[0], p[1], p[2], p[3]);
                        acc[j][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(d, dx), acc[j][g]);
                    }
                }
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < 2; g++) ignis_avx2_store4(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}

#define IGNIS_AVX2_KERNELS(RN) \
    static void ignis_avx2_q8_0_8x##RN(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_avx2_q8_8xn(n, w, x, o, RN, 8); } \
    static void ignis_avx2_q5_0_8x##RN(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_avx2_q8_8xn(n, w, x, o, RN, 6); } \
    static void ignis_avx2_q4_k_8x##RN(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_avx2_q4_k_8xn(n, w, x, o, RN); } \
    static void ignis_avx2_q6_k_8x##RN(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_avx2_q6_k_8xn(n, w, x, o, RN); }
IGNIS_AVX2_KERNELS(1) IGNIS_AVX2_KERNELS(2) IGNIS_AVX2_KERNELS(3) IGNIS_AVX2_KERNELS(4)
static void ignis_avx2_q8_0_4x4(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_avx2_q8_0_4xg(n, w, x, o, 1); }
static void ignis_avx2_q8_0_4x8(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_avx2_q8_0_4xg(n, w, x, o, 2); }

typedef void (*ignis_kernel_fn)(int64_t, const uint8_t *const *, const uint8_t *const *, float *);

/* The tile (see ignis_scalar_tile): pads rows/tokens by repeating the last pointer. Q8_0 with
 * at least 4 tokens takes the 4-row x 4/8-token kernel, everything else 8 rows x up to 4 tokens. */
static inline void ignis_avx2_tile(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                                   const uint8_t *const *x, int rn, float *out) {
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
    if (wtype == 8 && rn >= 4) {
        ignis_kernel_fn k = rn > 4 ? ignis_avx2_q8_0_4x8 : ignis_avx2_q8_0_4x4;
        k(nblk, wp, xp, tmp);
        if (rm > 4) k(nblk, wp + 4, xp, tmp + 4);
    } else {
        static const ignis_kernel_fn ks[4][4] = {
            {ignis_avx2_q8_0_8x1, ignis_avx2_q8_0_8x2, ignis_avx2_q8_0_8x3, ignis_avx2_q8_0_8x4},
            {ignis_avx2_q5_0_8x1, ignis_avx2_q5_0_8x2, ignis_avx2_q5_0_8x3, ignis_avx2_q5_0_8x4},
            {ignis_avx2_q4_k_8x1, ignis_avx2_q4_k_8x2, ignis_avx2_q4_k_8x3, ignis_avx2_q4_k_8x4},
            {ignis_avx2_q6_k_8x1, ignis_avx2_q6_k_8x2, ignis_avx2_q6_k_8x3, ignis_avx2_q6_k_8x4}};
        int t = wtype == 8 ? 0 : wtype == 6 ? 1 : wtype == 12 ? 2 : 3;
        for (int j0 = 0; j0 < rn; j0 += 4) {
            int n = rn - j0 < 4 ? rn - j0 : 4;
            ks[t][n - 1](nblk, wp, xp + j0, tmp + j0 * IGNIS_TILE);
        }
    }
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}

static inline float ignis_avx2_vec_dot(int wtype, int64_t nblk, const uint8_t *w, const uint8_t *x) {
    float out[IGNIS_TILE * IGNIS_TILE];
    ignis_avx2_tile(wtype, nblk, &w, 1, &x, 1, out);
    return out[0];
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

/* The same bits as G calls of ignis_avx2_dot_f32_f16 (the row converted once: cvtph is exact). */
static inline void ignis_avx2_dot_f32_f16_heads(const float *q, int64_t G, int64_t hd, const uint16_t *row,
                                                float *out, int64_t ostride) {
    if (hd % 16 != 0 || hd > 256) {
        for (int64_t h = 0; h < G; h++) out[h * ostride] = ignis_avx2_dot_f32_f16(q + h * hd, row, hd);
        return;
    }
    __m256 kv[32];
    for (int64_t i = 0; i < hd / 8; i++) kv[i] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 8 * i)));
    for (int64_t h = 0; h < G; h++) {
        const float *a = q + h * hd;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        for (int64_t i = 0; i < hd / 8; i += 2) {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8 * i), kv[i], acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8 * i + 8), kv[i + 1], acc1);
        }
        out[h * ostride] = ignis_avx2_hsum(_mm256_add_ps(acc0, acc1));
    }
}

static inline void ignis_avx2_div_row(float *x, float d, int64_t n) {
    __m256 vd = _mm256_set1_ps(d);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), vd));
    for (; i < n; i++) x[i] = x[i] / d;
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

/* o[0..hd) = sum over s < n (in order) of w[s] * f16 row v + s*vstride: the same bits as
 * zeroing o then n calls of ignis_avx2_axpy_f16, with o held in registers. */
/* o += sum_s w[s] * v[s * vstride ..] (o holds the sum so far: a paged cache is summed a
   block at a time, and the sums of consecutive calls are those of one call over all rows) */
static inline void ignis_avx2_av_head_acc(const float *w, const uint16_t *v, int64_t vstride, int64_t n,
                                          float *o, int64_t hd) {
    if (hd % 8 != 0 || hd > 128) {
        for (int64_t s = 0; s < n; s++) ignis_avx2_axpy_f16(w[s], v + s * vstride, o, hd);
        return;
    }
    __m256 acc[16];
    const int64_t c8 = hd / 8;
    for (int64_t c = 0; c < c8; c++) acc[c] = _mm256_loadu_ps(o + 8 * c);
    for (int64_t s = 0; s < n; s++) {
        const __m256 a = _mm256_set1_ps(w[s]);
        const uint16_t *r = v + s * vstride;
        for (int64_t c = 0; c < c8; c++)
            acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(a, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 8 * c)))));
    }
    for (int64_t c = 0; c < c8; c++) _mm256_storeu_ps(o + 8 * c, acc[c]);
}

static inline void ignis_avx2_av_head(const float *w, const uint16_t *v, int64_t vstride, int64_t n,
                                      float *o, int64_t hd) {
    memset(o, 0, (size_t)hd * sizeof(float));
    ignis_avx2_av_head_acc(w, v, vstride, n, o, hd);
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


/* Q8_0 weights x Q16 activations, 8 rows x RN tokens: weights widened to int16 by the load,
 * two vpmaddwd per pair give the A (lanes 0..3) and B (lanes 4..7) half sums directly. */
IGNIS_INLINE void ignis_avx2_q16_8xn(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                                     float *out, const int RN) {
    __m256 acc[4][2];
    for (int j = 0; j < RN; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * IGNIS_Q8_0_BYTES, xo = (size_t)b * IGNIS_Q16_BYTES;
        __m256i xa[4], xb[4];
        __m256 dx[4];
        for (int j = 0; j < RN; j++) {
            float d;
            memcpy(&d, x[j] + xo, 4);
            dx[j] = _mm256_set1_ps(d);
            xa[j] = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 4));
            xb[j] = _mm256_loadu_si256((const __m256i *)(x[j] + xo + 36));
        }
        for (int g = 0; g < 2; g++) {
            const uint8_t *const *wg = w + 4 * g;
            __m256i wa[4], wb[4];
            for (int k = 0; k < 4; k++) {
                wa[k] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wg[k] + wo + 2)));
                wb[k] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wg[k] + wo + 18)));
            }
            __m256 dw = ignis_avx2_f16x4_twice(wg[0] + wo, wg[1] + wo, wg[2] + wo, wg[3] + wo);
            for (int j = 0; j < RN; j++) {
                __m256i p[4];
                for (int k = 0; k < 4; k++)
                    p[k] = _mm256_add_epi32(_mm256_madd_epi16(wa[k], xa[j]), _mm256_madd_epi16(wb[k], xb[j]));
                __m256i h = ignis_avx2_reduce4(p[0], p[1], p[2], p[3]);
                acc[j][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw, dx[j]), acc[j][g]);
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int g = 0; g < 2; g++) ignis_avx2_store4(acc[j][g], out + j * IGNIS_TILE + 4 * g, 1);
}
static void ignis_avx2_q16_8x1(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_avx2_q16_8xn(n, w, x, o, 1); }
static void ignis_avx2_q16_8x2(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_avx2_q16_8xn(n, w, x, o, 2); }
static void ignis_avx2_q16_8x3(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_avx2_q16_8xn(n, w, x, o, 3); }
static void ignis_avx2_q16_8x4(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_avx2_q16_8xn(n, w, x, o, 4); }

static inline void ignis_avx2_tile_q16(int64_t nb, const uint8_t *const *w, int rm,
                                       const uint8_t *const *x, int rn, float *out) {
    static const ignis_kernel_fn ks[4] = {ignis_avx2_q16_8x1, ignis_avx2_q16_8x2, ignis_avx2_q16_8x3, ignis_avx2_q16_8x4};
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
    for (int j0 = 0; j0 < rn; j0 += 4) {
        int n = rn - j0 < 4 ? rn - j0 : 4;
        ks[n - 1](nb, wp, xp + j0, tmp + j0 * IGNIS_TILE);
    }
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
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

/* 4 int32 partial sums of 16 byte pairs (exact). */
IGNIS_INLINE int32x4_t ignis_neon_isum16(int8x16_t w, int8x16_t x) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(vdupq_n_s32(0), w, x);
#else
    int16x8_t p = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    p = vmlal_s8(p, vget_high_s8(w), vget_high_s8(x));
    return vpaddlq_s16(p);
#endif
}

/* Four pairs' partials -> [sum p0, sum p1, sum p2, sum p3] (exact). */
IGNIS_INLINE int32x4_t ignis_neon_reduce4(int32x4_t p0, int32x4_t p1, int32x4_t p2, int32x4_t p3) {
    return vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3));
}

IGNIS_INLINE float32x4_t ignis_neon_f16x4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    uint16x4_t h = vdup_n_u16(ignis_load_u16(p0));
    h = vset_lane_u16(ignis_load_u16(p1), h, 1);
    h = vset_lane_u16(ignis_load_u16(p2), h, 2);
    h = vset_lane_u16(ignis_load_u16(p3), h, 3);
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
}

/* Q8_0, 4 weight rows x RN activation rows; lanes are the 4 rows; lo and hi chains apart. */
IGNIS_INLINE void ignis_neon_q8_0_4xn(int64_t nb, const uint8_t *const *w, const uint8_t *const *x,
                                      float *out, const int RN) {
    float32x4_t lo[8], hi[8];
    for (int j = 0; j < RN; j++) lo[j] = hi[j] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * IGNIS_Q8_0_BYTES;
        int8x16_t w0[4], w1[4];
        for (int k = 0; k < 4; k++) {
            w0[k] = vld1q_s8((const int8_t *)(w[k] + off + 2));
            w1[k] = vld1q_s8((const int8_t *)(w[k] + off + 18));
        }
        float32x4_t dw = ignis_neon_f16x4(w[0] + off, w[1] + off, w[2] + off, w[3] + off);
        for (int j = 0; j < RN; j++) {
            int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + off + 2));
            int8x16_t x1 = vld1q_s8((const int8_t *)(x[j] + off + 18));
            float32x4_t s = vmulq_n_f32(dw, ignis_neon_f16_to_f32(ignis_load_u16(x[j] + off)));
            int32x4_t l = ignis_neon_reduce4(ignis_neon_isum16(w0[0], x0), ignis_neon_isum16(w0[1], x0),
                                             ignis_neon_isum16(w0[2], x0), ignis_neon_isum16(w0[3], x0));
            int32x4_t h = ignis_neon_reduce4(ignis_neon_isum16(w1[0], x1), ignis_neon_isum16(w1[1], x1),
                                             ignis_neon_isum16(w1[2], x1), ignis_neon_isum16(w1[3], x1));
            lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(l), s);
            hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(h), s);
        }
    }
    for (int j = 0; j < RN; j++) {
        float32x4_t r = vaddq_f32(lo[j], hi[j]);
        vst1q_f32(out + j * IGNIS_TILE, r);
    }
}

static void ignis_neon_q8_0_4x1(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_neon_q8_0_4xn(n, w, x, o, 1); }
static void ignis_neon_q8_0_4x2(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_neon_q8_0_4xn(n, w, x, o, 2); }
static void ignis_neon_q8_0_4x4(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_neon_q8_0_4xn(n, w, x, o, 4); }
static void ignis_neon_q8_0_4x8(int64_t n, const uint8_t *const *w, const uint8_t *const *x, float *o) { ignis_neon_q8_0_4xn(n, w, x, o, 8); }

typedef void (*ignis_kernel_fn)(int64_t, const uint8_t *const *, const uint8_t *const *, float *);

/* Q5_0 block -> signed quants q-16 for elements 0..15 (lo) and 16..31 (hi). */
IGNIS_INLINE void ignis_neon_q5_0_quants(const uint8_t *blk, int8x16_t *lo, int8x16_t *hi) {
    static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t qs = vld1q_u8(blk + 6), bit = vld1q_u8(bits), sixteen = vdupq_n_u8(0x10);
    uint8x16_t b01 = vcombine_u8(vdup_n_u8(blk[2]), vdup_n_u8(blk[3]));
    uint8x16_t b23 = vcombine_u8(vdup_n_u8(blk[4]), vdup_n_u8(blk[5]));
    uint8x16_t ql = vorrq_u8(vandq_u8(qs, vdupq_n_u8(0x0f)), vandq_u8(vtstq_u8(b01, bit), sixteen));
    uint8x16_t qh = vorrq_u8(vshrq_n_u8(qs, 4), vandq_u8(vtstq_u8(b23, bit), sixteen));
    *lo = vsubq_s8(vreinterpretq_s8_u8(ql), vdupq_n_s8(16));
    *hi = vsubq_s8(vreinterpretq_s8_u8(qh), vdupq_n_s8(16));
}

/* Q6_K super-block, activation block j -> signed quants q-32 for its two 16-element halves. */
IGNIS_INLINE void ignis_neon_q6_k_quants(const uint8_t *blk, int j, int8x16_t *lo, int8x16_t *hi) {
    const int half = j / 4, k = j % 4;
    const uint8_t *ql = blk + half * 64 + (k % 2) * 32, *qh = blk + 128 + half * 32;
    uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 16);
    if (k / 2) { l0 = vshrq_n_u8(l0, 4); l1 = vshrq_n_u8(l1, 4); }
    else { l0 = vandq_u8(l0, vdupq_n_u8(0x0f)); l1 = vandq_u8(l1, vdupq_n_u8(0x0f)); }
    const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * k));
    uint8x16_t h0 = vandq_u8(vshlq_u8(vld1q_u8(qh), shift), vdupq_n_u8(3));
    uint8x16_t h1 = vandq_u8(vshlq_u8(vld1q_u8(qh + 16), shift), vdupq_n_u8(3));
    *lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l0, vshlq_n_u8(h0, 4))), vdupq_n_s8(32));
    *hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l1, vshlq_n_u8(h1, 4))), vdupq_n_s8(32));
}

/* Q5_0 / Q4_K / Q6_K weights, 4 rows x RN activation rows (lanes are the rows), the
 * definition's lo/hi chains per token. */
static void ignis_neon_kq_4xn(int wtype, int64_t nblk, const uint8_t *const *w, const uint8_t *const *x,
                              float *out, int RN) {
    float32x4_t lo[8], hi[8];
    for (int j = 0; j < RN; j++) lo[j] = hi[j] = vdupq_n_f32(0.0f);
    int8x16_t wl[4], wh[4];
    if (wtype == 6) {
        for (int64_t b = 0; b < nblk; b++) {
            const size_t wo = (size_t)b * IGNIS_Q5_0_BYTES, xo = (size_t)b * IGNIS_Q8_0_BYTES;
            for (int k = 0; k < 4; k++) ignis_neon_q5_0_quants(w[k] + wo, &wl[k], &wh[k]);
            float32x4_t dw = ignis_neon_f16x4(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
            for (int j = 0; j < RN; j++) {
                int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + xo + 2)), x1 = vld1q_s8((const int8_t *)(x[j] + xo + 18));
                float32x4_t sd = vmulq_n_f32(dw, ignis_neon_f16_to_f32(ignis_load_u16(x[j] + xo)));
                int32x4_t l = ignis_neon_reduce4(ignis_neon_isum16(wl[0], x0), ignis_neon_isum16(wl[1], x0),
                                                 ignis_neon_isum16(wl[2], x0), ignis_neon_isum16(wl[3], x0));
                int32x4_t h = ignis_neon_reduce4(ignis_neon_isum16(wh[0], x1), ignis_neon_isum16(wh[1], x1),
                                                 ignis_neon_isum16(wh[2], x1), ignis_neon_isum16(wh[3], x1));
                lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(l), sd);
                hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(h), sd);
            }
        }
    } else if (wtype == 14) {
        for (int64_t s = 0; s < nblk; s++) {
            const size_t wo = (size_t)s * IGNIS_Q6_K_BYTES;
            float32x4_t d = ignis_neon_f16x4(w[0] + wo + 208, w[1] + wo + 208, w[2] + wo + 208, w[3] + wo + 208);
            for (int jb = 0; jb < 8; jb++) {
                int32_t scl[4], sch[4];
                for (int k = 0; k < 4; k++) {
                    ignis_neon_q6_k_quants(w[k] + wo, jb, &wl[k], &wh[k]);
                    scl[k] = ((const int8_t *)(w[k] + wo + 192))[2 * jb];
                    sch[k] = ((const int8_t *)(w[k] + wo + 192))[2 * jb + 1];
                }
                int32x4_t sl = vld1q_s32(scl), sh = vld1q_s32(sch);
                const size_t xo = (size_t)(s * 8 + jb) * IGNIS_Q8_0_BYTES;
                for (int j = 0; j < RN; j++) {
                    int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + xo + 2)), x1 = vld1q_s8((const int8_t *)(x[j] + xo + 18));
                    float32x4_t sd = vmulq_n_f32(d, ignis_neon_f16_to_f32(ignis_load_u16(x[j] + xo)));
                    int32x4_t l = ignis_neon_reduce4(ignis_neon_isum16(wl[0], x0), ignis_neon_isum16(wl[1], x0),
                                                     ignis_neon_isum16(wl[2], x0), ignis_neon_isum16(wl[3], x0));
                    int32x4_t h = ignis_neon_reduce4(ignis_neon_isum16(wh[0], x1), ignis_neon_isum16(wh[1], x1),
                                                     ignis_neon_isum16(wh[2], x1), ignis_neon_isum16(wh[3], x1));
                    lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(vmulq_s32(l, sl)), sd);
                    hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(vmulq_s32(h, sh)), sd);
                }
            }
        }
    } else {    /* Q4_K */
        for (int64_t s = 0; s < nblk; s++) {
            const size_t wo = (size_t)s * IGNIS_Q4_K_BYTES;
            float32x4_t d = ignis_neon_f16x4(w[0] + wo, w[1] + wo, w[2] + wo, w[3] + wo);
            float32x4_t dmin = ignis_neon_f16x4(w[0] + wo + 2, w[1] + wo + 2, w[2] + wo + 2, w[3] + wo + 2);
            int32_t sc[8][4];
            float mf[8][4];
            for (int k = 0; k < 4; k++)
                for (int sb = 0; sb < 8; sb++) {
                    int a, m;
                    ignis_q4_k_scale_min(w[k] + wo + 4, sb, &a, &m);
                    sc[sb][k] = a;
                    mf[sb][k] = (float)m;
                }
            for (int sb = 0; sb < 8; sb++) {
                for (int k = 0; k < 4; k++) {
                    const uint8_t *qs = w[k] + wo + 16 + (sb / 2) * 32;
                    uint8x16_t v0 = vld1q_u8(qs), v1 = vld1q_u8(qs + 16);
                    if (sb & 1) { v0 = vshrq_n_u8(v0, 4); v1 = vshrq_n_u8(v1, 4); }
                    else { v0 = vandq_u8(v0, vdupq_n_u8(0x0f)); v1 = vandq_u8(v1, vdupq_n_u8(0x0f)); }
                    wl[k] = vreinterpretq_s8_u8(v0);
                    wh[k] = vreinterpretq_s8_u8(v1);
                }
                int32x4_t scv = vld1q_s32(sc[sb]);
                float32x4_t mv = vld1q_f32(mf[sb]);
                const size_t xo = (size_t)(s * 8 + sb) * IGNIS_Q8_0_BYTES;
                for (int j = 0; j < RN; j++) {
                    int8x16_t x0 = vld1q_s8((const int8_t *)(x[j] + xo + 2)), x1 = vld1q_s8((const int8_t *)(x[j] + xo + 18));
                    float dx = ignis_neon_f16_to_f32(ignis_load_u16(x[j] + xo));
                    float32x4_t sd = vmulq_n_f32(d, dx), sm = vmulq_n_f32(dmin, dx);
                    int32x4_t l = ignis_neon_reduce4(ignis_neon_isum16(wl[0], x0), ignis_neon_isum16(wl[1], x0),
                                                     ignis_neon_isum16(wl[2], x0), ignis_neon_isum16(wl[3], x0));
                    int32x4_t h = ignis_neon_reduce4(ignis_neon_isum16(wh[0], x1), ignis_neon_isum16(wh[1], x1),
                                                     ignis_neon_isum16(wh[2], x1), ignis_neon_isum16(wh[3], x1));
                    float32x4_t bl = vmulq_n_f32(mv, (float)vaddlvq_s8(x0));
                    float32x4_t bh = vmulq_n_f32(mv, (float)vaddlvq_s8(x1));
                    lo[j] = vfmaq_f32(lo[j], vcvtq_f32_s32(vmulq_s32(l, scv)), sd);
                    lo[j] = vfmsq_f32(lo[j], bl, sm);
                    hi[j] = vfmaq_f32(hi[j], vcvtq_f32_s32(vmulq_s32(h, scv)), sd);
                    hi[j] = vfmsq_f32(hi[j], bh, sm);
                }
            }
        }
    }
    for (int j = 0; j < RN; j++) vst1q_f32(out + j * IGNIS_TILE, vaddq_f32(lo[j], hi[j]));
}

/* The tile (see ignis_scalar_tile): pads rows/tokens by repeating the last pointer. */
static inline void ignis_neon_tile(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                                   const uint8_t *const *x, int rn, float *out) {
    const uint8_t *wp[8], *xp[8];
    for (int i = 0; i < 8; i++) wp[i] = w[i < rm ? i : rm - 1];
    for (int j = 0; j < 8; j++) xp[j] = x[j < rn ? j : rn - 1];
    float tmp[IGNIS_TILE * IGNIS_TILE];
    if (wtype == 8) {
        ignis_kernel_fn k = rn > 4 ? ignis_neon_q8_0_4x8 : rn > 2 ? ignis_neon_q8_0_4x4 : rn > 1 ? ignis_neon_q8_0_4x2 : ignis_neon_q8_0_4x1;
        for (int i0 = 0; i0 < rm; i0 += 4) k(nblk, wp + i0, xp, tmp + i0);
    } else {
        for (int i0 = 0; i0 < rm; i0 += 4) ignis_neon_kq_4xn(wtype, nblk, wp + i0, xp, tmp + i0, rn);
    }
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rm; i++) out[j * IGNIS_TILE + i] = tmp[j * IGNIS_TILE + i];
}

static inline float ignis_neon_vec_dot(int wtype, int64_t nblk, const uint8_t *w, const uint8_t *x) {
    float out[IGNIS_TILE * IGNIS_TILE];
    ignis_neon_tile(wtype, nblk, &w, 1, &x, 1, out);
    return out[0];
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

static inline void ignis_neon_tile_q16(int64_t nb, const uint8_t *const *w, int rm,
                                       const uint8_t *const *x, int rn, float *out) {
    ignis_scalar_tile_q16(nb, w, rm, x, rn, out);
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
/* quantized dots and tiles (wtype 8 Q8_0, 6 Q5_0, 12 Q4_K, 14 Q6_K): identical bits on every path */
static inline float ignis_vec_dot(int wtype, int64_t nblk, const uint8_t *w, const uint8_t *x) { return IGNIS_PICK(vec_dot)(wtype, nblk, w, x); }
static inline void ignis_tile(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                              const uint8_t *const *x, int rn, float *out) {
    IGNIS_PICK(tile)(wtype, nblk, w, rm, x, rn, out);
}
/* Q8_0 weights x Q16 activations (AVX2; NEON and scalar builds use the scalar definition) */
static inline void ignis_tile_q16(int64_t nb, const uint8_t *const *w, int rm,
                                  const uint8_t *const *x, int rn, float *out) {
    IGNIS_PICK(tile_q16)(nb, w, rm, x, rn, out);
}
static inline float ignis_dot_f32(const float *a, const float *b, int64_t n) { return IGNIS_PICK(dot_f32)(a, b, n); }
static inline float ignis_dot_f32_f16(const float *a, const uint16_t *b, int64_t n) { return IGNIS_PICK(dot_f32_f16)(a, b, n); }
static inline void ignis_dot_f32_f16_heads(const float *q, int64_t G, int64_t hd, const uint16_t *row, float *out, int64_t ostride) {
#if defined(IGNIS_AVX2)
    ignis_avx2_dot_f32_f16_heads(q, G, hd, row, out, ostride);
#else
    for (int64_t h = 0; h < G; h++) out[h * ostride] = ignis_dot_f32_f16(q + h * hd, row, hd);
#endif
}
static inline void ignis_div_row(float *x, float d, int64_t n) {
#if defined(IGNIS_AVX2)
    ignis_avx2_div_row(x, d, n);
#else
    ignis_div_row_scalar(x, d, n);
#endif
}
static inline void ignis_axpy_f32(float a, const float *x, float *y, int64_t n) { IGNIS_PICK(axpy_f32)(a, x, y, n); }
static inline void ignis_axpy_f16(float a, const uint16_t *x, float *y, int64_t n) { IGNIS_PICK(axpy_f16)(a, x, y, n); }
static inline void ignis_silu_row(const float *x, float *y, int64_t n) { IGNIS_PICK(silu_row)(x, y, n); }
/* o += sum_s w[s] * v[s * vstride ..], accumulating into what o holds */
static inline void ignis_av_head_acc(const float *w, const uint16_t *v, int64_t vstride, int64_t n, float *o, int64_t hd) {
#if defined(IGNIS_AVX2)
    ignis_avx2_av_head_acc(w, v, vstride, n, o, hd);
#else
    for (int64_t s = 0; s < n; s++) ignis_axpy_f16(w[s], v + s * vstride, o, hd);
#endif
}
static inline void ignis_av_head(const float *w, const uint16_t *v, int64_t vstride, int64_t n, float *o, int64_t hd) {
    memset(o, 0, (size_t)hd * sizeof(float));
    ignis_av_head_acc(w, v, vstride, n, o, hd);
}

static inline float ignis_exp_sub_sum(float *x, float m, int64_t n) { return IGNIS_PICK(exp_sub_sum)(x, m, n); }

/* which path computes the Q5_0/Q4_K/Q6_K tiles */
#define IGNIS_KQUANT_SIMD IGNIS_SIMD_NAME

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
