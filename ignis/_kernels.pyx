# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""ignis kernels and the plan interpreter.

The arithmetic lives in `_neon.h` (SIMD with a scalar definition); this module
arranges it into op kernels (docs/ops.md) and runs whole plans in one `nogil`
call with OpenMP threads.

Plan
----
    plan = Plan(arena_bytes, n_threads, n_tokens, workspace=None)

One plan executes one forward step of exactly `n_tokens` tokens (T); build one
plan per chunk size. Plans that never run at the same time may share a
`Workspace()` (the arena and the kernels' scratch, grown to the largest plan's
needs; an engine's plans do); without one a plan has its own. Nothing in a
workspace outlives a run. Activations live in the plan's arena: every operand named
`x`, `out`, `res`, ... is a *byte offset* into it (multiple of 4; the region it
names must fit). Values are float32 row-major [rows, width]. `rows` is T, or
fewer for ops after `take_last`; ops that use positions (embed, rope, kv_write,
attention, qkv_rope_kv) always have rows = T.

Weights are never copied and stay referenced by the plan (an mmapped GGUF stays
mapped). `w` is a tensor's raw bytes as a C-contiguous numpy array: N rows of
`k` elements of GGUF type `wtype` (TensorType number): Q8_0 (8, the default),
Q5_0 (6), Q4_1 (3), Q4_K (12), Q6_K (14), Q2_K (10), Q3_K (11), Q5_K (13), IQ4_XS (23) as uint8/int8, F32 (0) as float32, F16 (1) as
float16/uint16. Every matmul-type op also takes `w` as a list of up to 3 arrays
(a row-concatenation without the copy, e.g. [Wq, Wk, Wv] or [Wgate, Wup]) with
`wtype` one type or a list of one type per part (the original Q4_K_M file mixes
Q5_0 and Q8_0 within q/k/v). Vectors (`b` bias, `g` norm gain) are float32
(copied only if they are not contiguous float32).

    add_embed(out, w, dim, wtype=8)                         out[T, dim] = dequant(w[tokens[t]])
    add_rms_inv(x, out, rows, dim, eps)                     out[rows, 1]
    add_scale_rows(x, r, out, g, rows, dim)                 out = (x * r) * g
    add_matmul(x, out, w, rows, k, n, wtype=8, act="q8_0")  out[rows, n] = x[rows, k] @ w.T
    add_add_bias(y, out, b, rows, n)                        out = y + b
    add_rope(x, out, n_heads, head_dim, theta)              NeoX rotation, rows = T
    add_kv_write(k, v, layer, n_kv_heads, head_dim, pool=0) cache[layer][pos[t]] = f16(k[t]), f16(v[t])
    add_attention(q, out, layer, n_heads, n_kv_heads, head_dim, window=0, pool=0)
                                                            window > 0: the last `window` positions
    add_add(a, b, out, n)  add_mul(a, b, out, n)  add_silu(x, out, n)  add_swiglu(g, u, out, n)
                                                            elementwise over n floats
    add_take_last(x, out, rows, dim)                        out[1, dim] = x[rows - 1]
    add_take_rows(x, out, rows, dim, n_out)                 out[i] = x[take[i]] (take: run's `rows`)
    add_rmsnorm(x, out, g, rows, dim, eps)                  = scale_rows(x, rms_inv(x), g)
    add_matmul_bias(x, out, w, b, rows, k, n, wtype=8)      = add_bias(matmul(x))
    add_matmul_add(x, res, out, w, rows, k, n, wtype=8)     = add(res, matmul(x))
    add_gate_up_swiglu(x, out, w, rows, k, n_ff, wtype=8)   w: [Wgate; Wup] (2*n_ff rows)
    add_qkv_rope_kv(x, q_out, w, b, layer, n_heads, n_kv_heads, head_dim, theta, k, wtype=8)
                                                            w: [Wq; Wk; Wv], b: [bq; bk; bv] or None
    add_gelu(x, out, n)  add_scale(x, out, n, factor)       elementwise over n floats
    add_head_rmsnorm(x, out, g, rows, n_heads, head_dim, eps) rmsnorm of each head, gain g [head_dim]
    add_rmsnorm_add(y, res, out, g, rows, dim, eps)         = add(res, rmsnorm(y, g))
    add_gate_up_geglu(x, out, w, rows, k, n_ff, wtype=8)    gelu instead of silu
    add_qkv_norm_rope_kv(x, q_out, w, gq, gk, layer, n_heads, n_kv_heads, head_dim, theta, eps, k, wtype=8)
                                                            qkv_rope_kv with q, k head-normed before rope
    run(tokens=None, positions=None, kv=None, seqs=None, tables=None, block_size=None, rows=None,
        kv_local=None, tables_local=None)                   execute every instruction

The rope ops and the qkv ops take `mode="neox"` (pairs i, i + hd/2) or "normal" (adjacent
pairs). The KV ops take `pool`: 0 (the default) addresses `kv` through `tables`, 1 addresses
`kv_local` through `tables_local` (a second cache, e.g. a model's sliding-window layers with a
cache that keeps only their window; same sequences, same `seqs` rows, same block size).

`act="q16"` (add_matmul, Q8_0/F32/F16 weights) quantizes the activations to
16-bit blocks instead of Q8_0: use it for the output projection, where the
activation rounding decides near-tied top-1 tokens (measured on the real model:
top-1 0.9885 -> 0.9923 on the Q8_0 file, 0.9846 -> 0.9917 on the original).

`kv` is any object with `.k` and `.v` writable float16 C-contiguous arrays of
shape [n_layers, n_rows, n_kv_heads, head_dim] (ignis.runtime.paged.PagedKVCache,
ignis.ir.interpret.KVCache, ignis.testing.KVCache), or a (k, v) tuple.
`tokens` and `positions` are int32 [T] (required when the plan embeds / uses
positions; tokens must be below the embedding's row count). A batch of many
sequences passes `tables` (int32 [n_seq, w]: each sequence's physical blocks of
`block_size` rows) and `seqs` (int32 [T]: token t's table row): position p of token
t's sequence is cache row tables[seqs[t], p // block_size] * block_size + p %
block_size. Without tables the cache is one sequence, row = position. Positions
must be covered by their table (ContextOverflowError otherwise), and no two tokens
of a plan that writes the cache may write one row. `rows` (int32 [n_out], each
below take_rows' row count) is required by, and only by, a plan with take_rows. `plan.arena` is a
writable uint8 view of the arena; `plan.f32(offset, shape)` a float32 view of a
region (read the logits from it). `plan.describe()` lists the lowered
instructions; `plan.n_instructions` counts them. One run at a time per plan.

Aliasing: an output may be exactly the same region as an input of an
elementwise op, rope, scale_rows, rmsnorm, attention (q), take_last, add_bias
and matmul_add (res); it must never partially overlap an input, and matmul-type
outputs must not overlap their `x`. Violations raise ModelError at add time, as
do bad offsets, sizes, dtypes, weight byte counts and types.

Every argument of Plan(), add_*, run and the standalone functions is checked in
Python integers before anything runs: a wrong Python type (str, float, None, a
list where an integer is expected), a value that does not fit (negative, above
the bounds below, too large for int64 or, for tokens/positions, for int32) or a
size that would overflow raise ModelError, never TypeError/OverflowError or an
out-of-bounds access. Bounds: arena <= 2^40 bytes, n_tokens <= 2^20, threads <=
max(256, 4 x cores), k/n/dim/n_ff <= 2^24, heads, head_dim and layers <= 2^16;
eps finite and >= 0, theta finite and > 0. A weight list for gate_up_swiglu
must split at n_ff, and every split inside the up half must mirror one in the
gate half (the kernel takes a gate tile's up rows from one part). A failed
add_* leaves the plan as it was; add_* while the plan runs is refused.

Lowering and execution
----------------------
Each add_* appends one or more internal instructions. A matmul against a
quantized weight needs x quantized to Q8_0 in scratch: the plan emits a
`quantize` instruction unless (a) the same x region was already quantized and
not written since (q/k/v and gate/up matmuls of an unfused plan share one
quantization, exactly like the fused ops), or (b) the previous instruction is
the rmsnorm or attention that produced x, which then quantizes its own rows
(one barrier less). `qkv_rope_kv` lowers to a matmul (bias added; q columns to
q_out, k/v columns to scratch) and a rope+kv_write step. `run` validates its
inputs, computes the step's rope cos/sin tables (angle pos*theta^(-2i/hd) in
double), then executes every instruction in one OpenMP parallel region without
the GIL, Python or allocation: each instruction splits its own work across the
threads (matmul: the weight rows in chunks taken dynamically, each chunk read
as 8 interleaved row streams and each 8-row weight tile used for all T tokens;
attention: (token, kv head) units, each K/V row read once for its query-head
group; row ops: rows; elementwise: elements) and a barrier (spin, then yield)
separates instructions.

Numerics (see _neon.h): quantized dots are defined exactly (integer halves per
block, then fused multiply-adds in block order), so every kernel level (scalar,
avx2, avxvnni, avx512, neon, dotprod, i8mm: see isa_levels()) gives the same
bits, and an output element does not depend on the tile it was
computed in, on T or on the thread count. A fused op calls the same inline
functions as the ops it replaces, in the same order, so a fused plan gives the
bits of its unfused original. Reductions with tolerance between scalar and SIMD:
rms_inv's sum of squares, attention's q.k and the softmax sum.
"""
import math
import numbers
import operator
import os

import numpy as np

from ignis.errors import ContextOverflowError, ISAError, ModelError

cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uintptr_t
from libc.string cimport memcpy, memmove, memset
from libc.math cimport sqrtf, pow, cos, sin, isfinite
from cpython.mem cimport PyMem_Realloc, PyMem_Free


cdef extern from "_neon.h" nogil:
    ctypedef struct ignis_isa:
        const char *name
        unsigned needs
    const ignis_isa ignis_isas[]
    int IGNIS_N_ISAS
    unsigned ignis_cpu_features()
    int ignis_best_isa()
    int ignis_use_isa(int i)
    const char *ignis_isa_name()
    unsigned IGNIS_F_AVX2, IGNIS_F_AVXVNNI, IGNIS_F_AVX512, IGNIS_F_AVX512BF16, IGNIS_F_AMX_CPUID
    unsigned IGNIS_F_AMX_OS, IGNIS_F_NEON, IGNIS_F_DOTPROD, IGNIS_F_I8MM
    float ignis_f16_to_f32(uint16_t h)
    uint16_t ignis_f32_to_f16(float f)
    void ignis_f16_to_f32_row(const uint16_t *x, float *y, int64_t n)
    void ignis_f32_to_f16_row(const float *x, uint16_t *y, int64_t n)
    void ignis_quantize_row_q8_0(const float *x, uint8_t *y, int64_t k)
    void ignis_tile(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                    const uint8_t *const *x, int rn, float *out)
    int IGNIS_KP_TOK_BYTES
    int64_t ignis_kq_row_bytes(int wtype, int64_t k)
    void ignis_kq_prep(int wtype, int64_t k, const uint8_t *const *w, int rm, uint8_t *buf)
    void ignis_kq_tokens(int64_t nblk, const uint8_t *const *x, int rn, uint8_t *tab)
    void ignis_kq_prep_tile(int wtype, int64_t k, const uint8_t *buf, const uint8_t *tab, float *out)
    int IGNIS_ZT_SB_BYTES
    int ignis_zt_ok(int wtype, int64_t k)
    int ignis_zt_super(int wtype)
    void ignis_zt_tokens(int64_t s0, int64_t s1, int64_t nblk, const uint8_t *x, uint8_t *tab)
    void ignis_zt_tile(int wtype, int64_t k, const uint8_t *const *w, int rm,
                       const uint8_t *const *xt, int rn, float *out)
    void ignis_quantize_row_q16(const float *x, uint8_t *y, int64_t k)
    void ignis_tile_q16(int64_t nb, const uint8_t *const *w, int rm,
                        const uint8_t *const *x, int rn, float *out)
    void ignis_dequant_row_q8_0(const uint8_t *w, float *y, int64_t k)
    void ignis_dequant_row_q5_0(const uint8_t *w, float *y, int64_t k)
    void ignis_dequant_row_q4_1(const uint8_t *w, float *y, int64_t k)
    void ignis_dequant_row_q4_k(const uint8_t *w, float *y, int64_t k)
    void ignis_dequant_row_q6_k(const uint8_t *w, float *y, int64_t k)
    void ignis_dequant_row_32x(int wtype, const uint8_t *w, float *y, int64_t k)
    void ignis_dequant_row_kx(int wtype, const uint8_t *w, float *y, int64_t k)
    float ignis_dot_f32(const float *a, const float *b, int64_t n)
    float ignis_dot_f32_f16(const float *a, const uint16_t *b, int64_t n)
    void ignis_dot_f32_f16_heads(const float *q, int64_t nt, int64_t qts, int64_t G, int64_t hd,
                                 const uint16_t *row, float *out, int64_t ots, int64_t ostride)
    void ignis_dot_f32_f16_rows(const float *q, int64_t nt, int64_t qts, int64_t G, int64_t hd,
                                const uint16_t *rows, int64_t rstride, int64_t R, float *out, int64_t ots,
                                int64_t ostride)
    void ignis_div_row(float *x, float d, int64_t n)
    void ignis_av_head(const float *w, const uint16_t *v, int64_t vstride, int64_t n, float *o, int64_t hd)
    void ignis_av_head_acc(const float *w, const uint16_t *v, int64_t vstride, int64_t n, float *o, int64_t hd)
    float ignis_max_row(const float *x, int64_t n)
    void ignis_av_heads_acc(const float *w, int64_t wstride, const uint16_t *v, int64_t vstride, int64_t n,
                            float *o, int64_t hd, int64_t G)
    void ignis_axpy_f32(float a, const float *x, float *y, int64_t n)
    void ignis_axpy_f16(float a, const uint16_t *x, float *y, int64_t n)
    void ignis_silu_row(const float *x, float *y, int64_t n)
    void ignis_gelu_row(const float *x, float *y, int64_t n)
    float ignis_exp_sub_sum(float *x, float m, int64_t n)
    void ignis_add_row(const float *a, const float *b, float *y, int64_t n)
    void ignis_mul_row(const float *a, const float *b, float *y, int64_t n)
    void ignis_scale_row(const float *x, float r, const float *g, float *y, int64_t n)
    void ignis_rope_head(const float *x, float *y, const float *c, const float *s, int64_t half)
    void ignis_rope_head_pairs(const float *x, float *y, const float *c, const float *s, int64_t half)


cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #endif
    #include <sched.h>
    #if defined(__x86_64__) || defined(__i386__)
    #  define IGNIS_CPU_RELAX() __builtin_ia32_pause()
    #elif defined(__aarch64__)
    #  define IGNIS_CPU_RELAX() __asm__ __volatile__("yield")
    #else
    #  define IGNIS_CPU_RELAX() ((void)0)
    #endif

    /* A generation barrier: spin briefly (on an idle machine the other threads arrive within
       microseconds), then yield the CPU between checks. (A futex sleep was measured worse on a
       busy machine: waking a sleeper costs ~100 us when another process has taken its core.) */
    typedef struct { int count; int gen; int n; } ignis_bar;

    static void ignis_bar_wait(ignis_bar *b) {
        int gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
        if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->n) {
            __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&b->gen, gen + 1, __ATOMIC_RELEASE);
            return;
        }
        for (int spins = 0; __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == gen; spins++) {
            if (spins < 2000) IGNIS_CPU_RELAX();
            else sched_yield();
        }
    }

    /* Ask for n rows of `bytes` bytes each, `stride` bytes apart, ahead of their use: a KV
       block's rows are a short strided run the hardware prefetcher has no time to learn. */
    static inline void ignis_prefetch_rows(const void *p, long long n, long long stride, long long bytes) {
        const char *c = (const char *)p;
        for (long long r = 0; r < n; r++)
            for (long long o = 0; o < bytes; o += 64) __builtin_prefetch(c + r * stride + o, 0, 3);
    }

    /* The next work chunk of an instruction (dynamic scheduling). */
    static inline long long ignis_next_chunk(long long *counter) {
        return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
    }

    /* OpenMP's thread budget (omp_get_max_threads), 0 in a build without OpenMP */
    static int ignis_omp_max_threads(void) {
    #ifdef _OPENMP
        return omp_get_max_threads();
    #else
        return 0;
    #endif
    }

    typedef void (*ignis_body_fn)(void *, int, int);
    /* Run body(ctx, thread id, thread count) in one parallel region of nt threads. No OpenMP
       barrier inside (libgomp's spin-waits behave badly on a busy machine); should the runtime
       give fewer threads than asked, the whole plan runs on one thread instead. */
    static void ignis_parallel(ignis_body_fn body, void *ctx, ignis_bar *bar, int nt) {
        bar->count = 0;
        bar->gen = 0;
        bar->n = nt > 1 ? nt : 1;
        if (nt <= 1) { body(ctx, 0, 1); return; }
        #ifdef _OPENMP
        int short_team = 0;
        #pragma omp parallel num_threads(nt)
        {
            if (omp_get_num_threads() == nt) body(ctx, omp_get_thread_num(), nt);
            else if (omp_get_thread_num() == 0) short_team = 1;
        }
        if (short_team) {
            bar->n = 1;
            body(ctx, 0, 1);
        }
        #else  /* built without OpenMP (Apple clang without libomp): one thread */
        bar->n = 1;
        body(ctx, 0, 1);
        #endif
    }
    """
    ctypedef struct ignis_bar:
        int count
        int gen
        int n
    ctypedef void (*ignis_body_fn)(void *, int, int) noexcept nogil
    void ignis_parallel(ignis_body_fn body, void *ctx, ignis_bar *bar, int nt) nogil
    void ignis_bar_wait(ignis_bar *b) nogil
    long long ignis_next_chunk(long long *counter) nogil
    void ignis_prefetch_rows(const void *p, long long n, long long stride, long long bytes) nogil
    int ignis_omp_max_threads()


# GGUF tensor type numbers this module handles
cdef enum:
    T_F32 = 0
    T_F16 = 1
    T_Q4_1 = 3
    T_Q5_0 = 6
    T_Q8_0 = 8
    T_Q4_K = 12
    T_Q6_K = 14
    T_Q4_0 = 2
    T_Q5_1 = 7
    T_IQ4_NL = 20
    T_BF16 = 30
    T_Q2_K = 10
    T_Q3_K = 11
    T_Q5_K = 13
    T_IQ4_XS = 23

_TYPE_NAMES = {T_F32: "F32", T_F16: "F16", T_Q4_1: "Q4_1", T_Q5_0: "Q5_0", T_Q8_0: "Q8_0", T_Q4_K: "Q4_K",
               T_Q6_K: "Q6_K", T_Q4_0: "Q4_0", T_Q5_1: "Q5_1", T_IQ4_NL: "IQ4_NL", T_BF16: "BF16"}
_BLOCK = {T_F32: (1, 4), T_F16: (1, 2), T_Q4_1: (32, 20), T_Q5_0: (32, 22), T_Q8_0: (32, 34),
          T_Q4_K: (256, 144), T_Q6_K: (256, 210), T_Q4_0: (32, 18), T_Q5_1: (32, 24), T_IQ4_NL: (32, 18),
          T_BF16: (1, 2)}
# weight types whose matmuls take the float activation row (no Q8_0 copy)
_FLOAT_WTYPES = (T_F32, T_F16, T_BF16)
_TYPE_NAMES.update({T_Q2_K: "Q2_K", T_Q3_K: "Q3_K", T_Q5_K: "Q5_K", T_IQ4_XS: "IQ4_XS"})
_BLOCK.update({T_Q2_K: (256, 84), T_Q3_K: (256, 110), T_Q5_K: (256, 176), T_IQ4_XS: (256, 136)})

# internal opcodes
cdef enum:
    OP_EMBED = 1
    OP_RMS_INV = 2
    OP_SCALE_ROWS = 3
    OP_QUANTIZE = 4
    OP_MATMUL = 5
    OP_ADD_BIAS = 6
    OP_ROPE = 7
    OP_KV_WRITE = 8
    OP_ATTENTION = 9
    OP_ADD = 10
    OP_SILU = 11
    OP_MUL = 12
    OP_TAKE_LAST = 13
    OP_RMSNORM = 14
    OP_SWIGLU = 15
    OP_ROPE_KV = 16
    OP_QUANTIZE16 = 17
    OP_TAKE_ROWS = 18
    OP_GELU = 19
    OP_SCALE = 20
    OP_HEAD_RMSNORM = 21
    OP_RMSNORM_ADD = 22

_OP_NAMES = {OP_EMBED: "embed", OP_RMS_INV: "rms_inv", OP_SCALE_ROWS: "scale_rows",
             OP_QUANTIZE: "quantize", OP_MATMUL: "matmul", OP_ADD_BIAS: "add_bias",
             OP_ROPE: "rope", OP_KV_WRITE: "kv_write", OP_ATTENTION: "attention", OP_ADD: "add",
             OP_SILU: "silu", OP_MUL: "mul", OP_TAKE_LAST: "take_last", OP_TAKE_ROWS: "take_rows", OP_RMSNORM: "rmsnorm",
             OP_SWIGLU: "swiglu", OP_ROPE_KV: "rope_kv", OP_QUANTIZE16: "quantize16",
             OP_GELU: "gelu", OP_SCALE: "scale", OP_HEAD_RMSNORM: "head_rmsnorm", OP_RMSNORM_ADD: "rmsnorm_add"}

# matmul epilogues: what happens to each dot product
cdef enum:
    EPI_STORE = 0      # out = dot
    EPI_BIAS = 1       # out = dot + b[n]
    EPI_ADD = 2        # out = res + dot
    EPI_SWIGLU = 3     # out = silu(dot(row n)) * dot(row n_ff + n)
    EPI_QKV = 4        # (dot [+ b]) -> q columns to out, k/v columns to scratch
    EPI_GEGLU = 5      # out = gelu(dot(row n)) * dot(row n_ff + n)

_EPI_NAMES = {EPI_STORE: "", EPI_BIAS: "+bias", EPI_ADD: "+res", EPI_SWIGLU: "swiglu", EPI_QKV: "qkv", EPI_GEGLU: "geglu"}

# rope layouts (docs/ops.md): pairs (i, i + hd/2) / adjacent pairs (2i, 2i + 1)
cdef enum:
    ROPE_NEOX = 0
    ROPE_NORMAL = 1

_ROPE_MODES = {"neox": ROPE_NEOX, "normal": ROPE_NORMAL}

cdef enum:
    TILE = 8            # matmul tiles: up to 8 weight rows x 8 activation rows (out[j*8 + i])
    ZT_MAX_ROWS = 10    # most tokens of a matmul on decode token tables (matmul.pxi zt_wanted:
                        # the 1.5B: 9 tokens 171 ms there, 209 on prepared rows; 11-12 alike)
    ZT32_MIN_ROWS = 2   # fewest tokens of a 32-element type's matmul on them (bench/zt_tiles.c:
                        # Q5_0 2 tokens 1.2x its plain tile; one token reads memory anyway)
    ATT_QB = 4          # attention: query tokens per work unit (each K row read once for them)
    ATT_SPLIT_T = 8     # attention of at most this many tokens may split their positions across
                        # threads (attention.pxi attention_split)
    ATT_CHUNK = 256     # ... in score work units of this many positions
    KP_BUDGET = 1536 * 1024     # prepared weight rows: bytes per thread (within its L2)
    CHUNK_MIN_BYTES = 262144    # a few tokens' matmul: weight bytes per chunk at least (matmul.pxi segment_chunks)


cdef struct Instr:
    int op
    int epi
    int rope_slot
    int64_t rows        # rows of the x operand (T, or 1 after take_last)
    int64_t k           # input width (dim)
    int64_t n           # output width (matmul N / n_ff; elementwise: element count)
    int64_t n_split     # EPI_QKV: q columns
    int n_heads
    int n_kv_heads
    int head_dim
    int layer
    int rope_mode       # ROPE_NEOX / ROPE_NORMAL
    int64_t window      # attention: the last `window` positions (0: all of them)
    int pool            # kv_write / attention / rope_kv: which KV cache (Ctx.pool) the layer is in
    float eps
    float factor        # scale: the constant factor
    int64_t x           # float offsets into the arena (-1: unused)
    int64_t x2
    int64_t out
    const float *vec    # bias or gain (rope_kv: q's head-norm gain, or NULL)
    const float *vec2   # rope_kv: k's head-norm gain
    int64_t xq_row_bytes
    int act16           # matmul: Q16 activations (from the q16 scratch) instead of Q8_0
    int quantize_out    # rmsnorm / attention: also write the output rows as Q8_0 to scratch
                        # (a following matmul's quantize step, without its barrier)
    int n_parts         # weight parts (a row-concatenation without the copy): part p holds
    const uint8_t *pw[3]        # rows [pstart[p], pstart[p+1]) of type ptype[p],
    int ptype[3]                # prb[p] bytes per row
    int64_t prb[3]
    int64_t pstart[4]


cdef struct RopeSlot:
    int head_dim
    double theta
    int64_t offset      # floats into the rope buffer: cos [T][hd/2] then sin [T][hd/2]


cdef struct KVPool:
    uint16_t *k
    uint16_t *v
    int64_t n_ctx           # physical rows of the cache, per layer
    const int32_t *tables   # [n_tables, tab_w] physical block ids
    int64_t tab_w


cdef struct Ctx:
    float *arena
    uint8_t *qbuf
    uint8_t *q16buf
    float *fbuf
    uint8_t *kp_buf         # prepared weight rows: kp_stride bytes per thread
    int64_t kp_stride
    uint8_t *kp_tab         # their token tables (one per 8 tokens of the matmul's x), or a
                            # few tokens' decode tables (zt_tab_bytes)
    int64_t kp_tab_bytes
    float *rope
    float *att
    int64_t att_stride
    int64_t att_floats      # the attention scratch's size (attention_split's shared scores fit?)
    const int32_t *tokens
    const int32_t *pos
    int64_t T
    KVPool pool[2]          # the KV caches: 0 full-attention layers, 1 sliding-window layers
    int64_t kv_heads
    int64_t kv_hd
    const int32_t *seq_row  # token t's row of the block tables
    int64_t block_size      # positions per block
    int64_t att_n           # positions a sequence may hold (tab_w * block_size): score row stride
    const int32_t *take     # take_rows: the batch rows to copy out
    Instr *ins
    int64_t n_ins
    RopeSlot *slots
    int64_t n_slots
    long long *counters     # per instruction two: its next dynamic work chunks (attention_split's
                            # second phase takes the second)
    ignis_bar bar


# ---------------------------------------------------------------------------
# The kernels, one file per job (each opens with the invariants it keeps)

include "kernels/elementwise.pxi"
include "kernels/matmul.pxi"
include "kernels/attention.pxi"
include "kernels/vm.pxi"
include "kernels/isa.pxi"
include "kernels/plan_args.pxi"
include "kernels/plan_ops.pxi"
include "kernels/plan.pxi"
include "kernels/plan_run.pxi"
include "kernels/standalone.pxi"
include "kernels/sampler_core.pxi"
include "kernels/sampling.pxi"


# The kernel level: the highest this CPU runs (CPUID plus the OS state checks), unless
# IGNIS_ISA names a lower one. An IGNIS_ISA this CPU cannot run (or a name this build lacks)
# does not fail the import, so that `ignis info` can say what is wrong; every Plan (the only
# way to run a kernel) raises the ISAError instead.
_isa_problem = None


def _choose_isa(want):
    global _isa_problem
    want = (want or "").strip().lower()
    _isa_problem = None
    if want in ("", "auto", "best"):
        ignis_use_isa(ignis_best_isa())
        return
    try:
        use_isa(want)
    except ISAError as e:
        _isa_problem = ISAError(f"IGNIS_ISA={want}: {e}")


def check_isa() -> None:
    """Raise the ISAError of an IGNIS_ISA this build or CPU cannot honour (else nothing)."""
    if _isa_problem is not None:
        raise _isa_problem


_choose_isa(os.environ.get("IGNIS_ISA"))
