/* _neon.h -- the SIMD layer of ignis.
 *
 * Plain C, static inline. One build holds every kernel level of its architecture, each
 * compiled inside its own target region (no -m/-march flags needed), and one level is
 * chosen at run time (ignis_use_isa; the Python module picks the best this CPU runs, or
 * IGNIS_ISA's choice):
 *
 *   level    where              int8 dot product                 template
 *   scalar   everywhere         portable C (the definition)      this file
 *   avx2     x86-64             vpmaddubsw + vpmaddwd            simd/x86.h
 *   avxvnni  x86-64             VEX vpdpbusd (256-bit)           simd/x86.h
 *   avx512   x86-64             EVEX vpdpbusd; 512-bit prefill   simd/x86.h + simd/avx512.h
 *   neon     aarch64            vmull/vmlal + pairwise adds      simd/arm.h
 *   dotprod  aarch64            sdot                             simd/arm.h
 *   i8mm     aarch64            smmla (prefill), sdot            simd/arm.h
 *
 * A level runs only when CPUID/HWCAP report it *and* the OS saves its register state
 * (XCR0 via xgetbv for YMM and ZMM/opmask state; AMX is never used, whatever CPUID says).
 * IGNIS_FORCE_SCALAR (IGNIS_ISA=scalar at build time) compiles the scalar level only.
 *
 * The scalar functions (ignis_scalar_*) *define* the semantics, and tests compare every
 * level (ignis_<level>_*) against them in one binary (tests/simd/harness.c LEVEL). The
 * dispatching names (ignis_*) call through the table of the level in use (ignis_cur).
 *
 * Compile with -ffp-contract=off (setup.py does): the scalar reference must not
 * be turned into fused multiply-adds behind our back (its explicit fmaf calls are
 * part of the definition).
 *
 * Agreement between levels (checked by tests/simd on x86-64 and under qemu-aarch64):
 *   exact (same bits)   f16<->f32 conversions (IEEE round-to-nearest-even, NaNs
 *                       quieted), Q8_0 quantization (bytes), every quantized dot
 *                       product and matmul tile (Q8_0, Q5_0, Q4_1, Q4_K, Q6_K, Q4_0,
 *                       Q5_1, IQ4_NL, Q5_K, Q3_K, Q2_K, IQ4_XS weights against Q8_0
 *                       activations), the matmul tiles of F32/F16/BF16 weights against
 *                       float activations (16 fma chains in a fixed order:
 *                       simd/defs32.h), axpy, exp, silu and every
 *                       elementwise row function.
 *   within tolerance    the float reductions ignis_dot_f32 / _f32_f16 and the
 *                       softmax sum: the SIMD levels keep 8 (x86-64) or 4 (aarch64)
 *                       partial sums and use FMA. For terms t_i,
 *                       |simd - scalar| <= 1e-5 * sum_i |t_i|  (+1e-30 absolute).
 *                       The SIMD levels of one architecture share this float code,
 *                       so avx2/avxvnni/avx512 (and neon/dotprod/i8mm) agree bit for
 *                       bit everywhere: they differ only in how the exact integer
 *                       sums are formed.
 *
 * The quantized dot products are defined so that SIMD can compute them exactly:
 * per 32-element activation block b (in order) the integer sums of the low half
 * (elements 0..15) and the high half (16..31) are formed exactly, then two float
 * chains advance with one fused multiply-add each,
 *     lo = fmaf((float)ilo_b, s_b, lo),  hi = fmaf((float)ihi_b, s_b, hi),
 * with s_b = d_w * d_x (Q4_1 and Q4_K add a second pair of steps for their mins), and the
 * result is lo + hi. Q5_K and IQ4_XS (one scale per 32-element block of a 256-element
 * super-block) follow the block rule of simd/kquants.h instead:
 * exact integer sums over the whole block, even and odd blocks in their own chains
 * (one fma for the scaled sum, one for the min), d and dmin applied once per
 * super-block. Every product fits in int32 and every half sum in 24 bits, so
 * the integer parts are exact on every path; the float steps are the same IEEE
 * operations in the same order. Any tile shape gives the bits of the single dot.
 *
 * What each level implements with SIMD (the rest falls back to the scalar code,
 * which is the same arithmetic):
 *   x86-64  f16 rows, Q8_0 quantization, tiles for Q8_0/Q5_0/Q4_1/Q4_K/Q6_K weights x Q8_0
 *           activations (4 rows x 4/8 tokens for Q8_0 prefill, 8 rows x 1..4 tokens
 *           otherwise; avx512: 8 rows x 4/8 tokens for every type, on a per-block
 *           transposition of the weights so that one vpdpbusd serves 8 rows x 2 halves,
 *           and Q5_0/Q4_1/Q4_K/Q6_K decode with two rows per 512-bit register; for the prefill
 *           of every quantized type the rows can be unpacked once and the tokens' tables made once, then
 *           run against each other: ignis_kq_prep / _kq_tokens / _kq_prep_tile, simd/kq_prep.h;
 *           avx2 / avxvnni do the same in 256 bits, simd/prep_x86.h),
 *           Q8_0 x Q16 tiles, f32 dot/axpy (also against f16 rows), exp/silu, softmax
 *           exp-and-sum, and the elementwise rows compiled for the level.
 *   aarch64 the same except the Q16 tiles (scalar); dotprod uses sdot, i8mm smmla for
 *           the tiles of two or more tokens.
 *   Q4_0/Q5_1/IQ4_NL and F32/F16/BF16 weights: SIMD tiles on every level (simd/x86_32.h:
 *   8 rows x 1..4 tokens, avx512 z8/zn as Q5_0/Q4_1; simd/arm_32.h: 4 rows x 1..8 tokens,
 *   i8mm with sdot, no smmla tile for them).
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
 *   Q4_1  20 B / 32:  f16 d, f16 m, u8 qs[16]                   x = d*q + m, q = nibble (0..15)
 *         (low nibbles are elements 0..15, high nibbles 16..31). Its dot adds a min step per
 *         half: with s = d*d_x, sm = m*d_x, the exact half sums ilo/ihi of q*x and clo/chi of x,
 *         lo = fmaf(ilo, s, lo); lo = fmaf(clo, sm, lo); the same for hi with ihi, chi.
 *   Q4_K 144 B / 256: f16 d, f16 dmin, u8 scales[12], u8 qs[128] x = d*sc*q - dmin*m per 32-sub-block
 *   Q6_K 210 B / 256: u8 ql[128], u8 qh[64], int8 sc[16], f16 d  x = d*sc*(q-32) per 16-sub-block
 *   Q4_0, Q5_1, IQ4_NL (32-element blocks) and F32/F16/BF16 weights: simd/defs32.h defines them
 *   (the float weights meet the float activation row itself, not a Q8_0 copy: element i in
 *   fma chain i mod 16, then a fixed tree); simd/x86_32.h and simd/arm_32.h hold their levels.
 *   Q5_K 176 B, Q3_K 110 B, Q2_K 84 B, IQ4_XS 136 B / 256: see simd/kquants.h (their definitions:
 *         Q3_K, Q2_K by the half rule (scaled exact half sums, fmas in order, Q2_K with min steps),
 *         Q5_K, IQ4_XS by the block rule; tiles
 *         in simd/kquants_x86.h (256-bit tiles at every x86 level; avx512: decode on 512 bits, prefill in
 *         the 8-row x 8-token pair tile of simd/kx_pairs.h) and
 *         simd/kquants_arm.h (4 rows a register at neon/dotprod/i8mm; i8mm: smmla for 2+ tokens of the block rule types, sdot for Q3_K / Q2_K))
 */
#ifndef IGNIS_NEON_H
#define IGNIS_NEON_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <math.h>

/* The families of levels this build compiles: every level of the target architecture,
 * each in its own target region (no -m flags needed), unless IGNIS_FORCE_SCALAR. */
#if !defined(IGNIS_FORCE_SCALAR) && (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#  include <immintrin.h>
#  include <cpuid.h>
#  define IGNIS_X86 1
#elif !defined(IGNIS_FORCE_SCALAR) && defined(__aarch64__) && defined(__ARM_NEON) && defined(__GNUC__)
#  include <arm_neon.h>
#  define IGNIS_ARM 1
#  if defined(__linux__)
#    include <sys/auxv.h>
#  elif defined(__APPLE__)
#    include <sys/sysctl.h>
#  endif
#endif

#if defined(__GNUC__)
#  define IGNIS_INLINE static inline __attribute__((always_inline))
#else
#  define IGNIS_INLINE static inline
#endif

#define IGNIS_QK 32              /* elements of a Q8_0 / Q5_0 / Q4_1 block */
#define IGNIS_QK_K 256           /* elements of a K-quant super-block */
#define IGNIS_Q8_0_BYTES 34
#define IGNIS_Q5_0_BYTES 22
#define IGNIS_Q4_1_BYTES 20
#define IGNIS_Q4_K_BYTES 144
#define IGNIS_Q6_K_BYTES 210
#define IGNIS_TILE 8             /* matmul tiles: up to 8 weight rows x 8 activation rows */
#define IGNIS_KP_SB_BYTES 5248   /* prepared Q4_K / Q6_K rows (simd/kq_prep.h): bytes per super-block */
#define IGNIS_KX_SB_BYTES 6272   /* prepared Q5_K / Q3_K / Q2_K / IQ4_XS rows: bytes per super-block */
#define IGNIS_ZP_BLOCK_BYTES 640 /* prepared rows of 32-element block types: bytes per block */
#define IGNIS_KP_TOK_BYTES 768   /* their token tables: bytes per activation block of 8 tokens */
#define IGNIS_KP_Y 736           /* the block rule's (float)(sum x) * d_x in a token table (simd/kq_prep.h) */
#define IGNIS_ZT_SB_BYTES 3200   /* decode token tables (simd/zt_decode.h): bytes per super-block and token */
#define IGNIS_KP_CORR(shift) (416 + 64 * ((shift) == 7 ? 4 : (shift) - 2))   /* -(sum x << shift), shift 2..5, 7 */

/* the types whose token-table tiles count super-blocks of 256 (Q4_K, Q6_K, Q2_K, Q3_K) */
static inline int ignis_zt_super(int wtype) { return wtype == 12 || wtype == 14 || wtype == 10 || wtype == 11; }

/* The offset 1 << shift that the pair tiles (simd/kq_pairs.h, kx_pairs.h, kq_prep.h) add to a
 * type's quants to make them unsigned for vpdpbusd; 0: the quants are unsigned already. */
static inline int ignis_quant_offset_shift(int wtype) {
    switch (wtype) {
    case 11: return 2;                      /* Q3_K: q + 4 */
    case 2: return 3;                       /* Q4_0: its nibble */
    case 6: return 4;                       /* Q5_0: its 5-bit value */
    case 14: return 5;                      /* Q6_K: q + 32 */
    case 8: case 20: case 23: return 7;     /* Q8_0, IQ4_NL, IQ4_XS: q + 128 */
    default: return 0;
    }
}

typedef void (*ignis_kernel_fn)(int64_t, const uint8_t *const *, const uint8_t *const *, float *);

#define IGNIS_STR_(x) #x
#define IGNIS_STR(x) IGNIS_STR_(x)
#define IGNIS_CAT_(a, b) a##b
#define IGNIS_CAT(a, b) IGNIS_CAT_(a, b)
/* a region of functions compiled for one target (GCC and clang spell it differently) */
#if defined(__clang__)
#  define IGNIS_TARGET_BEGIN(t) _Pragma(IGNIS_STR(clang attribute push(__attribute__((target(t))), apply_to = function)))
#  define IGNIS_TARGET_END _Pragma("clang attribute pop")
#else
#  define IGNIS_TARGET_BEGIN(t) _Pragma("GCC push_options") _Pragma(IGNIS_STR(GCC target(t)))
#  define IGNIS_TARGET_END _Pragma("GCC pop_options")
#endif

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

/* Q8_0, Q5_0, Q4_1, Q4_K and Q6_K: their definitions and row dequantizers */
#include "simd/defs.h"
/* Q4_0, Q5_1, IQ4_NL and float weights (F32, F16, BF16): their definitions */
#include "simd/defs32.h"
#include "simd/kquants.h"   /* Q5_K, Q3_K, Q2_K, IQ4_XS: definitions and row dequantizers */

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

/* nt x G dots against one f16 row (G heads of nt tokens):
 * out[t * ots + h * ostride] = dot_f32_f16(q + t * qts + h * hd, row, hd). */
static inline void ignis_scalar_dot_f32_f16_heads(const float *q, int64_t nt, int64_t qts, int64_t G, int64_t hd,
                                                  const uint16_t *row, float *out, int64_t ots, int64_t ostride) {
    for (int64_t t = 0; t < nt; t++)
        for (int64_t h = 0; h < G; h++)
            out[t * ots + h * ostride] = ignis_scalar_dot_f32_f16(q + t * qts + h * hd, row, hd);
}

/* x[i] = x[i] / d (IEEE division: exact across paths). */
static inline void ignis_scalar_div_row(float *x, float d, int64_t n) {
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

/* "normal" (GPT-J / llama.cpp LLaMA) rotation of one head: adjacent pairs (2i, 2i + 1) turn by
 * angle i, (x0, x1) -> (x0 c - x1 s, x0 s + x1 c). One definition for every level (rope is a
 * sliver of a step's time): plain C, the operations of the NeoX form in the same order. */
static inline void ignis_rope_head_pairs(const float *x, float *y, const float *c, const float *s, int64_t half) {
    for (int64_t i = 0; i < half; i++) {
        float x0 = x[2 * i], x1 = x[2 * i + 1];
        y[2 * i] = x0 * c[i] - x1 * s[i];
        y[2 * i + 1] = x0 * s[i] + x1 * c[i];
    }
}

/* y = x / (1 + exp(-x)) */
static inline void ignis_scalar_silu_row(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + ignis_scalar_expf(-x[i]));
}

/* GELU, tanh approximation: x/2 (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3).
 * One definition for every level (plain C on the scalar exp): the unfused gelu op and the fused
 * gate_up_geglu epilogue both call it, so they give the same bits. */
static inline void ignis_gelu_row(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float u = 0.7978845608028654f * (v + 0.044715f * (v * v * v));
        y[i] = v / (1.0f + ignis_scalar_expf(-2.0f * u));
    }
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
 * i < rm, j < rn (both <= 8). wtype: 8 Q8_0, 6 Q5_0, 3 Q4_1, 12 Q4_K, 14 Q6_K; nblk = weight blocks
 * per row (K/32 or K/256). */
static inline float ignis_scalar_vec_dot(int wtype, int64_t nblk, const uint8_t *w, const uint8_t *x) {
    if (ignis_is_32x(wtype)) return ignis_scalar_vec_dot_32x(wtype, nblk, w, x);
    switch (wtype) {
    case 8: return ignis_scalar_vec_dot_q8_0(nblk, w, x);
    case 6: return ignis_scalar_vec_dot_q5_0(nblk, w, x);
    case 3: return ignis_scalar_vec_dot_q4_1(nblk, w, x);
    case 12: return ignis_scalar_vec_dot_q4_k(nblk, w, x);
    case 13: case 23: return ignis_scalar_vec_dot_block_rule(wtype, nblk, w, x);
    case 10: case 11: return ignis_scalar_vec_dot_kx(wtype, nblk, w, x);
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
static inline void ignis_scalar_av_head_acc(const float *w, const uint16_t *v, int64_t vstride, int64_t n,
                                            float *o, int64_t hd) {
    for (int64_t s = 0; s < n; s++) ignis_scalar_axpy_f16(w[s], v + s * vstride, o, hd);
}
#define IL(name) ignis_scalar_##name
#include "simd/rows.h"
#undef IL

/* ======================================================================== */
/* the levels: one template per architecture, compiled once per level       */

#define IL(name) IGNIS_CAT(IGNIS_LEVEL_PREFIX, name)

#if defined(IGNIS_X86)
/* AVX2 + FMA + F16C: int8 dots as vpmaddubsw + vpmaddwd */
IGNIS_TARGET_BEGIN("avx2,fma,f16c")
#  define IGNIS_LEVEL_PREFIX ignis_avx2_
#  define IGNIS_X86_VNNI 0
#  include "simd/x86.h"
#  undef IGNIS_X86_VNNI
#  undef IGNIS_LEVEL_PREFIX
IGNIS_TARGET_END

/* AVX-VNNI (VEX-encoded vpdpbusd on 256-bit registers: Alder Lake and later, Sapphire Rapids) */
IGNIS_TARGET_BEGIN("avx2,fma,f16c,avxvnni")
#  define IGNIS_LEVEL_PREFIX ignis_avxvnni_
#  define IGNIS_X86_VNNI 1
#  define IGNIS_DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#  include "simd/x86.h"
#  undef IGNIS_DPBUSD
#  undef IGNIS_X86_VNNI
#  undef IGNIS_LEVEL_PREFIX
IGNIS_TARGET_END

/* AVX-512 F+BW+VL+VNNI: the 256-bit kernels with EVEX vpdpbusd, plus 512-bit prefill tiles */
IGNIS_TARGET_BEGIN("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#  define IGNIS_LEVEL_PREFIX ignis_avx512_
#  define IGNIS_X86_VNNI 1
#  define IGNIS_X86_512 1
#  define IGNIS_DPBUSD(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#  include "simd/x86.h"
#  undef IGNIS_DPBUSD
#  undef IGNIS_X86_512
#  undef IGNIS_X86_VNNI
#  undef IGNIS_LEVEL_PREFIX
IGNIS_TARGET_END
#endif /* IGNIS_X86 */

#if defined(IGNIS_ARM)
/* GCC's arm_neon.h declares sdot/smmla for arch=armv8.2-a+...: a region must ask the same */
#  if defined(__clang__)
#    define IGNIS_ARM_DOTPROD_TARGET "dotprod"
#    define IGNIS_ARM_I8MM_TARGET "dotprod,i8mm"
#  else
#    define IGNIS_ARM_DOTPROD_TARGET "arch=armv8.2-a+dotprod"
#    define IGNIS_ARM_I8MM_TARGET "arch=armv8.2-a+dotprod+i8mm"
#  endif
/* NEON (baseline on aarch64): int8 dots as vmull/vmlal + pairwise adds */
#  define IGNIS_LEVEL_PREFIX ignis_neon_
#  define IGNIS_ARM_DOTPROD 0
#  define IGNIS_ARM_I8MM 0
#  include "simd/arm.h"
#  undef IGNIS_ARM_I8MM
#  undef IGNIS_ARM_DOTPROD
#  undef IGNIS_LEVEL_PREFIX

/* NEON + dot product (sdot: ARMv8.2-A option, every ARMv8.4-A core) */
IGNIS_TARGET_BEGIN(IGNIS_ARM_DOTPROD_TARGET)
#  define IGNIS_LEVEL_PREFIX ignis_dotprod_
#  define IGNIS_ARM_DOTPROD 1
#  define IGNIS_ARM_I8MM 0
#  include "simd/arm.h"
#  undef IGNIS_ARM_I8MM
#  undef IGNIS_ARM_DOTPROD
#  undef IGNIS_LEVEL_PREFIX
IGNIS_TARGET_END

/* NEON + dot product + int8 matrix multiply (smmla: ARMv8.6-A) */
IGNIS_TARGET_BEGIN(IGNIS_ARM_I8MM_TARGET)
#  define IGNIS_LEVEL_PREFIX ignis_i8mm_
#  define IGNIS_ARM_DOTPROD 1
#  define IGNIS_ARM_I8MM 1
#  include "simd/arm.h"
#  undef IGNIS_ARM_I8MM
#  undef IGNIS_ARM_DOTPROD
#  undef IGNIS_LEVEL_PREFIX
IGNIS_TARGET_END
#endif /* IGNIS_ARM */

#undef IL

/* ======================================================================== */
/* what this CPU can run: CPUID/HWCAP plus the OS state checks               */

/* feature bits reported by ignis_cpu_features() */
#define IGNIS_F_AVX2      (1u << 0)   /* AVX+AVX2+FMA+F16C and the OS saves YMM state */
#define IGNIS_F_AVXVNNI   (1u << 1)
#define IGNIS_F_AVX512    (1u << 2)   /* F+BW+VL+DQ+VNNI and the OS saves opmask/ZMM state */
#define IGNIS_F_AVX512BF16 (1u << 3)
#define IGNIS_F_AMX_CPUID (1u << 4)   /* AMX tiles advertised by CPUID (ignis never executes AMX) */
#define IGNIS_F_AMX_OS    (1u << 5)   /* ... and XCR0 has the tile state enabled */
#define IGNIS_F_NEON      (1u << 8)
#define IGNIS_F_DOTPROD   (1u << 9)
#define IGNIS_F_I8MM      (1u << 10)

#if defined(IGNIS_X86)
static inline uint64_t ignis_xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static inline unsigned ignis_cpu_features(void) {
    unsigned f = 0;
#if defined(IGNIS_X86)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    /* XCR0 is readable only when the OS set CR4.OSXSAVE; it says which register state the OS
       saves on a context switch: a feature whose state is not saved must not be used */
    const uint64_t xcr0 = osxsave ? ignis_xgetbv0() : 0;
    const int ymm_os = (xcr0 & 0x6) == 0x6, zmm_os = (xcr0 & 0xe6) == 0xe6, amx_os = (xcr0 & 0x60000) == 0x60000;
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (__get_cpuid_max(0, 0) >= 7) {
        __cpuid_count(7, 0, a, b7, c7, d7);
        unsigned bb, cc, dd;
        __cpuid_count(7, 1, a71, bb, cc, dd);
    }
    const int avx2 = (b7 >> 5) & 1;
    if (avx && avx2 && fma && f16c && ymm_os) {
        f |= IGNIS_F_AVX2;
        if ((a71 >> 4) & 1) f |= IGNIS_F_AVXVNNI;
        const int f512 = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
        const int vnni = (c7 >> 11) & 1;
        if (f512 && dq && bw && vl && vnni && zmm_os) {
            f |= IGNIS_F_AVX512;
            if ((a71 >> 5) & 1) f |= IGNIS_F_AVX512BF16;
        }
    }
    if ((d7 >> 24) & 1) {
        f |= IGNIS_F_AMX_CPUID;
        if (amx_os) f |= IGNIS_F_AMX_OS;
    }
#elif defined(IGNIS_ARM)
    f |= IGNIS_F_NEON;
#  if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (hw & (1UL << 20)) f |= IGNIS_F_DOTPROD;     /* HWCAP_ASIMDDP */
    if (hw2 & (1UL << 13)) f |= IGNIS_F_I8MM;       /* HWCAP2_I8MM */
#  elif defined(__APPLE__)
    int v = 0;
    size_t n = sizeof v;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &n, NULL, 0) == 0 && v) f |= IGNIS_F_DOTPROD;
    v = 0; n = sizeof v;
    if (sysctlbyname("hw.optional.arm.FEAT_I8MM", &v, &n, NULL, 0) == 0 && v) f |= IGNIS_F_I8MM;
#  endif
#endif
    return f;
}

/* ======================================================================== */
/* dispatch: one table per level; ignis_use_isa picks the one the kernels call */

typedef struct {
    const char *name;
    unsigned needs;   /* IGNIS_F_* bits the CPU must have */
    void (*f16_to_f32_row)(const uint16_t *, float *, int64_t);
    void (*f32_to_f16_row)(const float *, uint16_t *, int64_t);
    void (*quantize_row_q8_0)(const float *, uint8_t *, int64_t);
    float (*vec_dot)(int, int64_t, const uint8_t *, const uint8_t *);
    void (*tile)(int, int64_t, const uint8_t *const *, int, const uint8_t *const *, int, float *);
    void (*tile_q16)(int64_t, const uint8_t *const *, int, const uint8_t *const *, int, float *);
    float (*dot_f32)(const float *, const float *, int64_t);
    float (*dot_f32_f16)(const float *, const uint16_t *, int64_t);
    void (*dot_f32_f16_heads)(const float *, int64_t, int64_t, int64_t, int64_t, const uint16_t *, float *, int64_t, int64_t);
    void (*dot_f32_f16_rows)(const float *, int64_t, int64_t, int64_t, int64_t, const uint16_t *, int64_t, int64_t, float *,
                             int64_t, int64_t);
    void (*div_row)(float *, float, int64_t);
    void (*axpy_f32)(float, const float *, float *, int64_t);
    void (*axpy_f16)(float, const uint16_t *, float *, int64_t);
    void (*silu_row)(const float *, float *, int64_t);
    void (*av_head_acc)(const float *, const uint16_t *, int64_t, int64_t, float *, int64_t);
    void (*av_heads_acc)(const float *, int64_t, const uint16_t *, int64_t, int64_t, float *, int64_t, int64_t);
    float (*exp_sub_sum)(float *, float, int64_t);
    void (*add_row)(const float *, const float *, float *, int64_t);
    void (*mul_row)(const float *, const float *, float *, int64_t);
    float (*max_row)(const float *, int64_t);
    void (*scale_row)(const float *, float, const float *, float *, int64_t);
    void (*rope_head)(const float *, float *, const float *, const float *, int64_t);
    /* prepared weight rows for many token tiles (NULL: the level has none) */
    int64_t (*kq_row_bytes)(int, int64_t);
    void (*kq_prep)(int, int64_t, const uint8_t *const *, int, uint8_t *);
    void (*kq_tokens)(int64_t, const uint8_t *const *, int, uint8_t *);
    void (*kq_prep_tile)(int, int64_t, const uint8_t *, const uint8_t *, float *);
    /* Q4_K / Q6_K rows against a few tokens' tables (NULL: the level has none) */
    void (*zt_tokens)(int64_t, int64_t, int64_t, const uint8_t *, uint8_t *);
    void (*zt_tile)(int, int64_t, const uint8_t *const *, int, const uint8_t *const *, int, float *);
} ignis_isa;

#define IGNIS_ISA_TABLE(p, needs, kq, zt_tokens, zt_tile) { #p, needs, \
    ignis_##p##_f16_to_f32_row, ignis_##p##_f32_to_f16_row, ignis_##p##_quantize_row_q8_0, \
    ignis_##p##_vec_dot, ignis_##p##_tile, ignis_##p##_tile_q16, ignis_##p##_dot_f32, ignis_##p##_dot_f32_f16, \
    ignis_##p##_dot_f32_f16_heads, ignis_##p##_dot_f32_f16_rows, ignis_##p##_div_row, ignis_##p##_axpy_f32, ignis_##p##_axpy_f16, \
    ignis_##p##_silu_row, ignis_##p##_av_head_acc, ignis_##p##_av_heads_acc, ignis_##p##_exp_sub_sum, \
    ignis_##p##_add_row, ignis_##p##_mul_row, ignis_##p##_max_row, ignis_##p##_scale_row, ignis_##p##_rope_head, kq, zt_tokens, zt_tile }
/* a level's prepared rows (its kq_row_bytes, kq_prep, kq_tokens, kq_prep_tile), or none */
#define IGNIS_KQ(p) ignis_##p##_kq_row_bytes, ignis_##p##_kq_prep, ignis_##p##_kq_tokens, ignis_##p##_kq_prep_tile
#define IGNIS_NO_KQ NULL, NULL, NULL, NULL

/* every level this build has, lowest first */
static const ignis_isa ignis_isas[] = {
    IGNIS_ISA_TABLE(scalar, 0, IGNIS_NO_KQ, NULL, NULL),
#if defined(IGNIS_X86)
    IGNIS_ISA_TABLE(avx2, IGNIS_F_AVX2, IGNIS_KQ(avx2), NULL, NULL),
    IGNIS_ISA_TABLE(avxvnni, IGNIS_F_AVX2 | IGNIS_F_AVXVNNI, IGNIS_KQ(avxvnni), NULL, NULL),
    IGNIS_ISA_TABLE(avx512, IGNIS_F_AVX2 | IGNIS_F_AVX512, IGNIS_KQ(avx512), ignis_avx512_zt_tokens, ignis_avx512_zt_tile),
#elif defined(IGNIS_ARM)
    IGNIS_ISA_TABLE(neon, IGNIS_F_NEON, IGNIS_NO_KQ, NULL, NULL),
    IGNIS_ISA_TABLE(dotprod, IGNIS_F_NEON | IGNIS_F_DOTPROD, IGNIS_NO_KQ, NULL, NULL),
    IGNIS_ISA_TABLE(i8mm, IGNIS_F_NEON | IGNIS_F_DOTPROD | IGNIS_F_I8MM, IGNIS_NO_KQ, NULL, NULL),
#endif
};
#define IGNIS_N_ISAS ((int)(sizeof ignis_isas / sizeof ignis_isas[0]))

/* the level in use (scalar until ignis_use_isa says otherwise) */
static const ignis_isa *ignis_cur = &ignis_isas[0];

/* index of the highest level this CPU runs */
static inline int ignis_best_isa(void) {
    unsigned f = ignis_cpu_features();
    int best = 0;
    for (int i = 0; i < IGNIS_N_ISAS; i++)
        if ((ignis_isas[i].needs & f) == ignis_isas[i].needs) best = i;
    return best;
}

/* 0 and the level switched when this build has it and the CPU runs it; -1 unknown, -2 not runnable */
static inline int ignis_use_isa(int i) {
    if (i < 0 || i >= IGNIS_N_ISAS) return -1;
    if ((ignis_isas[i].needs & ignis_cpu_features()) != ignis_isas[i].needs) return -2;
    ignis_cur = &ignis_isas[i];
    return 0;
}

/* the names the kernels use */
static inline float ignis_f16_to_f32(uint16_t h) { return ignis_scalar_f16_to_f32(h); }
static inline uint16_t ignis_f32_to_f16(float f) { return ignis_scalar_f32_to_f16(f); }
static inline void ignis_f16_to_f32_row(const uint16_t *x, float *y, int64_t n) { ignis_cur->f16_to_f32_row(x, y, n); }
static inline void ignis_f32_to_f16_row(const float *x, uint16_t *y, int64_t n) { ignis_cur->f32_to_f16_row(x, y, n); }
static inline void ignis_quantize_row_q8_0(const float *x, uint8_t *y, int64_t k) { ignis_cur->quantize_row_q8_0(x, y, k); }
/* quantized dots and tiles (wtype 8 Q8_0, 6 Q5_0, 3 Q4_1, 12 Q4_K, 14 Q6_K): identical bits on every level */
static inline float ignis_vec_dot(int wtype, int64_t nblk, const uint8_t *w, const uint8_t *x) { return ignis_cur->vec_dot(wtype, nblk, w, x); }
static inline void ignis_tile(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                              const uint8_t *const *x, int rn, float *out) {
    ignis_cur->tile(wtype, nblk, w, rm, x, rn, out);
}
/* Q8_0 weights x Q16 activations */
static inline void ignis_tile_q16(int64_t nb, const uint8_t *const *w, int rm,
                                  const uint8_t *const *x, int rn, float *out) {
    ignis_cur->tile_q16(nb, w, rm, x, rn, out);
}
/* prepared rows (x86: simd/kq_prep.h at avx512, simd/prep_x86.h at avx2 / avxvnni; every
 * quantized type). ignis_kq_row_bytes(wtype, k): the bytes of a group of 8 prepared rows of
 * width k, 0 when this level does not prepare wtype. Then
 * kq_prep(wtype, k, w[rm], rm, buf of that), kq_tokens(k / 32, x[rn], rn, tab of k / 32 *
 * IGNIS_KP_TOK_BYTES) and kq_prep_tile(wtype, k, buf, tab, out) give out[j*8 + i] (i, j < 8)
 * with the bits of ignis_tile for the rows and tokens (the last of each repeated up to 8). */
static inline int64_t ignis_kq_row_bytes(int wtype, int64_t k) {
    return ignis_cur->kq_row_bytes == NULL ? 0 : ignis_cur->kq_row_bytes(wtype, k);
}
static inline void ignis_kq_prep(int wtype, int64_t k, const uint8_t *const *w, int rm, uint8_t *buf) {
    ignis_cur->kq_prep(wtype, k, w, rm, buf);
}
static inline void ignis_kq_tokens(int64_t nblk, const uint8_t *const *x, int rn, uint8_t *tab) {
    ignis_cur->kq_tokens(nblk, x, rn, tab);
}
static inline void ignis_kq_prep_tile(int wtype, int64_t k, const uint8_t *buf, const uint8_t *tab, float *out) {
    ignis_cur->kq_prep_tile(wtype, k, buf, tab, out);
}
/* decode token tables (avx512 only; simd/zt_decode.h): ignis_zt_ok(wtype, k) whether this
 * level runs rows of wtype and width k on them (Q4_K, Q6_K, Q2_K, Q3_K: k a multiple of 256; Q8_0, Q5_0,
 * Q4_0, IQ4_NL: of 32). zt_tokens(s0, s1, k / 32, x, tab) writes super-blocks [s0, s1) of the
 * table of the token at x (a Q8_0 row of k / 32 blocks; IGNIS_ZT_SB_BYTES per super-block, the
 * last one partial when 256 does not divide k; 64-aligned), zt_tile(wtype, k, w[rm], rm,
 * tab[rn], rn <= 8, out) gives the bits of ignis_tile on those tokens' Q8_0 rows. */
static inline int ignis_zt_ok(int wtype, int64_t k) {
    if (ignis_cur->zt_tile == NULL) return 0;
    if (ignis_zt_super(wtype)) return k % 256 == 0;
    return (wtype == 8 || wtype == 6 || wtype == 2 || wtype == 20) && k % 32 == 0;
}
static inline void ignis_zt_tokens(int64_t s0, int64_t s1, int64_t nblk, const uint8_t *x, uint8_t *tab) {
    ignis_cur->zt_tokens(s0, s1, nblk, x, tab);
}
static inline void ignis_zt_tile(int wtype, int64_t k, const uint8_t *const *w, int rm,
                                 const uint8_t *const *xt, int rn, float *out) {
    ignis_cur->zt_tile(wtype, k, w, rm, xt, rn, out);
}
static inline float ignis_dot_f32(const float *a, const float *b, int64_t n) { return ignis_cur->dot_f32(a, b, n); }
static inline float ignis_dot_f32_f16(const float *a, const uint16_t *b, int64_t n) { return ignis_cur->dot_f32_f16(a, b, n); }
static inline void ignis_dot_f32_f16_heads(const float *q, int64_t nt, int64_t qts, int64_t G, int64_t hd,
                                           const uint16_t *row, float *out, int64_t ots, int64_t ostride) {
    ignis_cur->dot_f32_f16_heads(q, nt, qts, G, hd, row, out, ots, ostride);
}
/* the same for the R rows of a KV block (row r at rows + r*rstride): out[t*ots + h*ostride + r] */
static inline void ignis_dot_f32_f16_rows(const float *q, int64_t nt, int64_t qts, int64_t G, int64_t hd,
                                          const uint16_t *rows, int64_t rstride, int64_t R, float *out,
                                          int64_t ots, int64_t ostride) {
    ignis_cur->dot_f32_f16_rows(q, nt, qts, G, hd, rows, rstride, R, out, ots, ostride);
}
static inline void ignis_div_row(float *x, float d, int64_t n) { ignis_cur->div_row(x, d, n); }
static inline void ignis_axpy_f32(float a, const float *x, float *y, int64_t n) { ignis_cur->axpy_f32(a, x, y, n); }
static inline void ignis_axpy_f16(float a, const uint16_t *x, float *y, int64_t n) { ignis_cur->axpy_f16(a, x, y, n); }
static inline void ignis_silu_row(const float *x, float *y, int64_t n) { ignis_cur->silu_row(x, y, n); }
/* o += sum_s w[s] * v[s * vstride ..], accumulating into what o holds */
static inline void ignis_av_head_acc(const float *w, const uint16_t *v, int64_t vstride, int64_t n, float *o, int64_t hd) {
    ignis_cur->av_head_acc(w, v, vstride, n, o, hd);
}
/* the same for G heads: o[h*hd ..] += sum_s w[h*wstride + s] * v[s * vstride ..], h < G */
static inline void ignis_av_heads_acc(const float *w, int64_t wstride, const uint16_t *v, int64_t vstride, int64_t n,
                                      float *o, int64_t hd, int64_t G) {
    ignis_cur->av_heads_acc(w, wstride, v, vstride, n, o, hd, G);
}
static inline void ignis_av_head(const float *w, const uint16_t *v, int64_t vstride, int64_t n, float *o, int64_t hd) {
    memset(o, 0, (size_t)hd * sizeof(float));
    ignis_av_head_acc(w, v, vstride, n, o, hd);
}
static inline float ignis_exp_sub_sum(float *x, float m, int64_t n) { return ignis_cur->exp_sub_sum(x, m, n); }
static inline void ignis_add_row(const float *a, const float *b, float *y, int64_t n) { ignis_cur->add_row(a, b, y, n); }
static inline void ignis_mul_row(const float *a, const float *b, float *y, int64_t n) { ignis_cur->mul_row(a, b, y, n); }
static inline float ignis_max_row(const float *x, int64_t n) { return ignis_cur->max_row(x, n); }
static inline void ignis_scale_row(const float *x, float r, const float *g, float *y, int64_t n) { ignis_cur->scale_row(x, r, g, y, n); }
static inline void ignis_rope_head(const float *x, float *y, const float *c, const float *s, int64_t half) { ignis_cur->rope_head(x, y, c, s, half); }
static inline const char *ignis_isa_name(void) { return ignis_cur->name; }

#endif /* IGNIS_NEON_H */
