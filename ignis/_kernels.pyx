# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""ignis kernels and the plan interpreter.

The arithmetic lives in `_neon.h` (SIMD with a scalar definition); this module
arranges it into op kernels (docs/ops.md) and runs whole plans in one `nogil`
call with OpenMP threads.

Plan
----
    plan = Plan(arena_bytes, n_threads, n_tokens)

One plan executes one forward step of exactly `n_tokens` tokens (T); build one
plan per chunk size. Activations live in the plan's arena: every operand named
`x`, `out`, `res`, ... is a *byte offset* into it (multiple of 4; the region it
names must fit). Values are float32 row-major [rows, width]. `rows` is T, or
fewer for ops after `take_last`; ops that use positions (embed, rope, kv_write,
attention, qkv_rope_kv) always have rows = T.

Weights are never copied and stay referenced by the plan (an mmapped GGUF stays
mapped). `w` is a tensor's raw bytes as a C-contiguous numpy array: N rows of
`k` elements of GGUF type `wtype` (TensorType number): Q8_0 (8, the default),
Q5_0 (6), Q4_K (12), Q6_K (14) as uint8/int8, F32 (0) as float32, F16 (1) as
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
    add_kv_write(k, v, layer, n_kv_heads, head_dim)         cache[layer][pos[t]] = f16(k[t]), f16(v[t])
    add_attention(q, out, layer, n_heads, n_kv_heads, head_dim)
    add_add(a, b, out, n)  add_mul(a, b, out, n)  add_silu(x, out, n)  add_swiglu(g, u, out, n)
                                                            elementwise over n floats
    add_take_last(x, out, rows, dim)                        out[1, dim] = x[rows - 1]
    add_rmsnorm(x, out, g, rows, dim, eps)                  = scale_rows(x, rms_inv(x), g)
    add_matmul_bias(x, out, w, b, rows, k, n, wtype=8)      = add_bias(matmul(x))
    add_matmul_add(x, res, out, w, rows, k, n, wtype=8)     = add(res, matmul(x))
    add_gate_up_swiglu(x, out, w, rows, k, n_ff, wtype=8)   w: [Wgate; Wup] (2*n_ff rows)
    add_qkv_rope_kv(x, q_out, w, b, layer, n_heads, n_kv_heads, head_dim, theta, k, wtype=8)
                                                            w: [Wq; Wk; Wv], b: [bq; bk; bv] or None
    run(tokens=None, positions=None, kv=None)               execute every instruction

`act="q16"` (add_matmul, Q8_0/F32/F16 weights) quantizes the activations to
16-bit blocks instead of Q8_0: use it for the output projection, where the
activation rounding decides near-tied top-1 tokens (measured on the real model:
top-1 0.9885 -> 0.9923 on the Q8_0 file, 0.9846 -> 0.9917 on the original).

`kv` is any object with `.k` and `.v` writable float16 C-contiguous arrays of
shape [n_layers, n_ctx, n_kv_heads, head_dim] (`KVCache` below, or
ignis.ir.interpret.KVCache), or a (k, v) tuple. `tokens` and `positions` are
int32 [T] (required when the plan embeds / uses positions; tokens must be below
the embedding's row count, positions in [0, n_ctx) -- ContextOverflowError
otherwise; positions within a step should be distinct). `plan.arena` is a
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
block, then fused multiply-adds in block order), so scalar, AVX2 and NEON give
the same bits, and an output element does not depend on the tile it was
computed in, on T or on the thread count. A fused op calls the same inline
functions as the ops it replaces, in the same order, so a fused plan gives the
bits of its unfused original. Reductions with tolerance between SIMD paths:
rms_inv's sum of squares, attention's q.k and the softmax sum.
"""
import math
import numbers
import operator
import os

import numpy as np

from ignis.errors import ContextOverflowError, ModelError

cimport cython
from libc.stdint cimport uint8_t, uint16_t, int32_t, int64_t, uintptr_t
from libc.string cimport memcpy, memmove, memset
from libc.math cimport sqrtf, pow, cos, sin
from cpython.mem cimport PyMem_Realloc, PyMem_Free


cdef extern from "_neon.h" nogil:
    const char *IGNIS_SIMD_NAME
    const char *IGNIS_KQUANT_SIMD
    float ignis_f16_to_f32(uint16_t h)
    uint16_t ignis_f32_to_f16(float f)
    void ignis_f16_to_f32_row(const uint16_t *x, float *y, int64_t n)
    void ignis_f32_to_f16_row(const float *x, uint16_t *y, int64_t n)
    void ignis_quantize_row_q8_0(const float *x, uint8_t *y, int64_t k)
    void ignis_tile(int wtype, int64_t nblk, const uint8_t *const *w, int rm,
                    const uint8_t *const *x, int rn, float *out)
    void ignis_quantize_row_q16(const float *x, uint8_t *y, int64_t k)
    void ignis_tile_q16(int64_t nb, const uint8_t *const *w, int rm,
                        const uint8_t *const *x, int rn, float *out)
    void ignis_dequant_row_q8_0(const uint8_t *w, float *y, int64_t k)
    void ignis_dequant_row_q5_0(const uint8_t *w, float *y, int64_t k)
    void ignis_dequant_row_q4_k(const uint8_t *w, float *y, int64_t k)
    void ignis_dequant_row_q6_k(const uint8_t *w, float *y, int64_t k)
    float ignis_dot_f32(const float *a, const float *b, int64_t n)
    float ignis_dot_f32_f16(const float *a, const uint16_t *b, int64_t n)
    void ignis_dot_f32_f16_heads(const float *q, int64_t G, int64_t hd, const uint16_t *row, float *out, int64_t ostride)
    void ignis_div_row(float *x, float d, int64_t n)
    void ignis_av_head(const float *w, const uint16_t *v, int64_t vstride, int64_t n, float *o, int64_t hd)
    void ignis_axpy_f32(float a, const float *x, float *y, int64_t n)
    void ignis_axpy_f16(float a, const uint16_t *x, float *y, int64_t n)
    void ignis_silu_row(const float *x, float *y, int64_t n)
    float ignis_exp_sub_sum(float *x, float m, int64_t n)
    void ignis_add_row(const float *a, const float *b, float *y, int64_t n)
    void ignis_mul_row(const float *a, const float *b, float *y, int64_t n)
    void ignis_scale_row(const float *x, float r, const float *g, float *y, int64_t n)
    void ignis_rope_head(const float *x, float *y, const float *c, const float *s, int64_t half)


cdef extern from *:
    """
    #include <omp.h>
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

    /* The next work chunk of an instruction (dynamic scheduling). */
    static inline long long ignis_next_chunk(long long *counter) {
        return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
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


# GGUF tensor type numbers this module handles
cdef enum:
    T_F32 = 0
    T_F16 = 1
    T_Q5_0 = 6
    T_Q8_0 = 8
    T_Q4_K = 12
    T_Q6_K = 14

_TYPE_NAMES = {T_F32: "F32", T_F16: "F16", T_Q5_0: "Q5_0", T_Q8_0: "Q8_0", T_Q4_K: "Q4_K", T_Q6_K: "Q6_K"}
_BLOCK = {T_F32: (1, 4), T_F16: (1, 2), T_Q5_0: (32, 22), T_Q8_0: (32, 34), T_Q4_K: (256, 144),
          T_Q6_K: (256, 210)}

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

_OP_NAMES = {OP_EMBED: "embed", OP_RMS_INV: "rms_inv", OP_SCALE_ROWS: "scale_rows",
             OP_QUANTIZE: "quantize", OP_MATMUL: "matmul", OP_ADD_BIAS: "add_bias",
             OP_ROPE: "rope", OP_KV_WRITE: "kv_write", OP_ATTENTION: "attention", OP_ADD: "add",
             OP_SILU: "silu", OP_MUL: "mul", OP_TAKE_LAST: "take_last", OP_RMSNORM: "rmsnorm",
             OP_SWIGLU: "swiglu", OP_ROPE_KV: "rope_kv", OP_QUANTIZE16: "quantize16"}

# matmul epilogues: what happens to each dot product
cdef enum:
    EPI_STORE = 0      # out = dot
    EPI_BIAS = 1       # out = dot + b[n]
    EPI_ADD = 2        # out = res + dot
    EPI_SWIGLU = 3     # out = silu(dot(row n)) * dot(row n_ff + n)
    EPI_QKV = 4        # (dot [+ b]) -> q columns to out, k/v columns to scratch

_EPI_NAMES = {EPI_STORE: "", EPI_BIAS: "+bias", EPI_ADD: "+res", EPI_SWIGLU: "swiglu", EPI_QKV: "qkv"}

cdef enum:
    TILE = 8            # matmul tiles: up to 8 weight rows x 8 activation rows (out[j*8 + i])


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
    float eps
    int64_t x           # float offsets into the arena (-1: unused)
    int64_t x2
    int64_t out
    const float *vec    # bias or gain
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


cdef struct Ctx:
    float *arena
    uint8_t *qbuf
    uint8_t *q16buf
    float *fbuf
    float *rope
    float *att
    int64_t att_stride
    const int32_t *tokens
    const int32_t *pos
    int64_t T
    uint16_t *kc
    uint16_t *vc
    int64_t n_ctx
    int64_t kv_heads
    int64_t kv_hd
    Instr *ins
    int64_t n_ins
    RopeSlot *slots
    int64_t n_slots
    long long *counters     # per instruction: next dynamic work chunk
    ignis_bar bar


# ---------------------------------------------------------------------------
# kernels: each computes its share (thread tid of nt) of one instruction

cdef inline int64_t _lo(int64_t n, int tid, int nt) noexcept nogil:
    return n * tid // nt


cdef inline int64_t _min(int64_t a, int64_t b) noexcept nogil:
    return a if a < b else b


cdef inline void dequant_row(int wtype, const uint8_t *row, float *dst, int64_t k) noexcept nogil:
    if wtype == T_F32:
        memcpy(dst, row, k * 4)
    elif wtype == T_F16:
        ignis_f16_to_f32_row(<const uint16_t *>row, dst, k)
    elif wtype == T_Q8_0:
        ignis_dequant_row_q8_0(row, dst, k)
    elif wtype == T_Q5_0:
        ignis_dequant_row_q5_0(row, dst, k)
    elif wtype == T_Q4_K:
        ignis_dequant_row_q4_k(row, dst, k)
    elif wtype == T_Q6_K:
        ignis_dequant_row_q6_k(row, dst, k)


cdef void k_embed(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        dequant_row(ins.ptype[0], ins.pw[0] + <int64_t>c.tokens[t] * ins.prb[0],
                    c.arena + ins.out + t * ins.k, ins.k)


cdef inline float rms_inv_row(const float *x, int64_t d, float eps) noexcept nogil:
    """1 / sqrt(sum x^2 / d + eps)"""
    cdef float ss = ignis_dot_f32(x, x, d)
    return (<float>1.0) / sqrtf(ss / <float>d + eps)


cdef void k_rms_inv(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        c.arena[ins.out + t] = rms_inv_row(c.arena + ins.x + t * ins.k, ins.k, ins.eps)


cdef void k_scale_rows(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        ignis_scale_row(c.arena + ins.x + t * ins.k, c.arena[ins.x2 + t], ins.vec,
                        c.arena + ins.out + t * ins.k, ins.k)


cdef void k_rmsnorm(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t
    cdef float r
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        r = rms_inv_row(c.arena + ins.x + t * ins.k, ins.k, ins.eps)
        ignis_scale_row(c.arena + ins.x + t * ins.k, r, ins.vec, c.arena + ins.out + t * ins.k, ins.k)
        if ins.quantize_out:
            ignis_quantize_row_q8_0(c.arena + ins.out + t * ins.k, c.qbuf + t * ins.xq_row_bytes, ins.k)


cdef void k_quantize(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    # blocks of all rows are contiguous in x and in the Q8_0 scratch: split by blocks
    cdef int64_t nblocks = ins.rows * (ins.k // 32)
    cdef int64_t b0 = _lo(nblocks, tid, nt), b1 = _lo(nblocks, tid + 1, nt)
    if b1 > b0:
        ignis_quantize_row_q8_0(c.arena + ins.x + b0 * 32, c.qbuf + b0 * 34, (b1 - b0) * 32)


cdef void k_quantize16(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t nblocks = ins.rows * (ins.k // 32)
    cdef int64_t b0 = _lo(nblocks, tid, nt), b1 = _lo(nblocks, tid + 1, nt)
    if b1 > b0:
        ignis_quantize_row_q16(c.arena + ins.x + b0 * 32, c.q16buf + b0 * 68, (b1 - b0) * 32)


cdef inline void matmul_tile(Ctx *c, Instr *ins, int64_t n0, int64_t rs, int rm, int64_t t0, int rn,
                             float *r) noexcept nogil:
    """r[j*8 + i] = W row (n0 + i*rs) . x row (t0 + j) for i < rm, j < rn (rows of one part)."""
    cdef int i, j, p = 0
    cdef const uint8_t *wp[TILE]
    cdef const uint8_t *xp[TILE]
    cdef const float *xf
    cdef int64_t k = ins.k
    while n0 >= ins.pstart[p + 1]:
        p += 1
    cdef int wtype = ins.ptype[p]
    for i in range(rm):
        wp[i] = ins.pw[p] + (n0 + i * rs - ins.pstart[p]) * ins.prb[p]
    if wtype == T_F32 or wtype == T_F16:
        for j in range(rn):
            xf = c.arena + ins.x + (t0 + j) * k
            for i in range(rm):
                if wtype == T_F32:
                    r[j * TILE + i] = ignis_dot_f32(xf, <const float *>wp[i], k)
                else:
                    r[j * TILE + i] = ignis_dot_f32_f16(xf, <const uint16_t *>wp[i], k)
        return
    if ins.act16:
        for j in range(rn):
            xp[j] = c.q16buf + (t0 + j) * (k // 32) * 68
        ignis_tile_q16(k // 32, wp, rm, xp, rn, r)
        return
    for j in range(rn):
        xp[j] = c.qbuf + (t0 + j) * ins.xq_row_bytes
    ignis_tile(wtype, k // 256 if wtype == T_Q4_K or wtype == T_Q6_K else k // 32, wp, rm, xp, rn, r)


cdef inline int64_t segment_chunks(int64_t rows, int nt) noexcept nogil:
    """Chunks of a run of weight rows: 16 per thread (so that a thread slowed by another
    process leaves a short tail), but at least 64 rows each (8 streams of 8 rows)."""
    return _min((rows + 63) // 64, 16 * nt) if nt > 1 else 1


cdef void k_matmul(Ctx *c, Instr *ins, long long *counter, int nt) noexcept nogil:
    """The output rows [0, n) cut at weight-part boundaries into segments, each segment into
    chunks (segment_chunks) that the threads take dynamically."""
    cdef int64_t N = ins.n, total = 0, lo, hi, nch, ci
    cdef int p
    for p in range(ins.n_parts):
        lo = ins.pstart[p]
        hi = _min(ins.pstart[p + 1], N)
        if hi > lo:
            total += segment_chunks(hi - lo, nt)
    cdef long long chunk
    while True:
        chunk = ignis_next_chunk(counter)
        if chunk >= total:
            break
        ci = chunk
        for p in range(ins.n_parts):
            lo = ins.pstart[p]
            hi = _min(ins.pstart[p + 1], N)
            if hi <= lo:
                continue
            nch = segment_chunks(hi - lo, nt)
            if ci < nch:
                matmul_rows(c, ins, lo + (hi - lo) * ci // nch, lo + (hi - lo) * (ci + 1) // nch)
                break
            ci -= nch


cdef void matmul_rows(Ctx *c, Instr *ins, int64_t r0, int64_t r1) noexcept nogil:
    """Rows [r0, r1) as 8 interleaved streams: tile i takes rows r0 + i + j*Q (j < 8), so the
    memory system sees 8 sequential streams (one stream gets well under half the bandwidth
    on Zen 3). The leftover rows go in plain tiles."""
    cdef int64_t Q = (r1 - r0) // TILE, i, n
    cdef int rm
    for i in range(Q):
        matmul_block(c, ins, r0 + i, Q, TILE)
    n = r0 + TILE * Q
    while n < r1:
        rm = <int>_min(TILE, r1 - n)
        matmul_block(c, ins, n, 1, rm)
        n += rm


cdef void matmul_block(Ctx *c, Instr *ins, int64_t n0, int64_t rs, int rm) noexcept nogil:
    """Weight rows n0 + i*rs (i < rm) against every row of x, 8 at a time, then the epilogue."""
    cdef int64_t N = ins.n, T = ins.rows
    cdef int64_t t0, t, n, nk
    cdef int rn, i, j
    cdef float r[TILE * TILE]
    cdef float r2[TILE * TILE]
    cdef float g[TILE]
    cdef float s[TILE]
    cdef float *out = c.arena + ins.out
    cdef const float *res = c.arena + ins.x2
    t0 = 0
    while t0 < T:
        rn = <int>_min(TILE, T - t0)
        matmul_tile(c, ins, n0, rs, rm, t0, rn, r)
        if ins.epi == EPI_STORE:
            for j in range(rn):
                for i in range(rm):
                    out[(t0 + j) * N + n0 + i * rs] = r[j * TILE + i]
        elif ins.epi == EPI_BIAS:
            for j in range(rn):
                for i in range(rm):
                    n = n0 + i * rs
                    out[(t0 + j) * N + n] = r[j * TILE + i] + ins.vec[n]
        elif ins.epi == EPI_ADD:
            for j in range(rn):
                for i in range(rm):
                    n = (t0 + j) * N + n0 + i * rs
                    out[n] = res[n] + r[j * TILE + i]
        elif ins.epi == EPI_SWIGLU:
            matmul_tile(c, ins, N + n0, rs, rm, t0, rn, r2)
            for j in range(rn):
                ignis_silu_row(&r[j * TILE], s, rm)
                ignis_mul_row(s, &r2[j * TILE], g, rm)
                for i in range(rm):
                    out[(t0 + j) * N + n0 + i * rs] = g[i]
        else:  # EPI_QKV: q columns -> out [T, n_split], k/v columns -> fbuf [T, N - n_split]
            nk = N - ins.n_split
            for j in range(rn):
                t = t0 + j
                for i in range(rm):
                    n = n0 + i * rs
                    if ins.vec != NULL:
                        r[j * TILE + i] = r[j * TILE + i] + ins.vec[n]
                    if n < ins.n_split:
                        out[t * ins.n_split + n] = r[j * TILE + i]
                    else:
                        c.fbuf[t * nk + n - ins.n_split] = r[j * TILE + i]
        t0 += TILE


cdef void k_add_bias(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        ignis_add_row(c.arena + ins.x + t * ins.n, ins.vec, c.arena + ins.out + t * ins.n, ins.n)


cdef inline void rope_row(const float *x, float *y, int n_heads, int hd, const float *cs,
                          const float *sn) noexcept nogil:
    cdef int h
    for h in range(n_heads):
        ignis_rope_head(x + h * hd, y + h * hd, cs, sn, hd // 2)


cdef void k_rope(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t, half = ins.head_dim // 2
    cdef const float *tab = c.rope + c.slots[ins.rope_slot].offset
    cdef int64_t w = <int64_t>ins.n_heads * ins.head_dim
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        rope_row(c.arena + ins.x + t * w, c.arena + ins.out + t * w, ins.n_heads, ins.head_dim,
                 tab + t * half, tab + (c.T + t) * half)


cdef inline void kv_store(Ctx *c, int layer, int64_t p, const float *k, const float *v) noexcept nogil:
    cdef int64_t w = c.kv_heads * c.kv_hd
    cdef int64_t at = (<int64_t>layer * c.n_ctx + p) * w
    ignis_f32_to_f16_row(k, c.kc + at, w)
    ignis_f32_to_f16_row(v, c.vc + at, w)


cdef void k_kv_write(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t, w = <int64_t>ins.n_kv_heads * ins.head_dim
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        kv_store(c, ins.layer, c.pos[t], c.arena + ins.x + t * w, c.arena + ins.x2 + t * w)


cdef void k_rope_kv(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    """The second half of qkv_rope_kv: rope q in place, rope k in scratch, store k and v."""
    cdef int64_t t, half = ins.head_dim // 2
    cdef int64_t wq = <int64_t>ins.n_heads * ins.head_dim, wk = <int64_t>ins.n_kv_heads * ins.head_dim
    cdef const float *tab = c.rope + c.slots[ins.rope_slot].offset
    cdef float *q
    cdef float *kv
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        q = c.arena + ins.out + t * wq
        kv = c.fbuf + t * 2 * wk
        rope_row(q, q, ins.n_heads, ins.head_dim, tab + t * half, tab + (c.T + t) * half)
        rope_row(kv, kv, ins.n_kv_heads, ins.head_dim, tab + t * half, tab + (c.T + t) * half)
        kv_store(c, ins.layer, c.pos[t], kv, kv + wk)


cdef inline void softmax_row(float *x, int64_t n) noexcept nogil:
    """x = exp(x - max) * (1 / sum)"""
    cdef int64_t i
    cdef float m = x[0], inv
    for i in range(1, n):
        if x[i] > m:
            m = x[i]
    inv = (<float>1.0) / ignis_exp_sub_sum(x, m, n)
    for i in range(n):
        x[i] = x[i] * inv


cdef void k_attention(Ctx *c, Instr *ins, long long *counter, int tid) noexcept nogil:
    """Work unit = (token t, kv head g): each K/V row is read once for the G query heads
    of the group. Causal: token t sees cache positions 0..pos[t]."""
    cdef int64_t G = ins.n_heads // ins.n_kv_heads, hd = ins.head_dim
    cdef int64_t wq = <int64_t>ins.n_heads * hd, wkv = c.kv_heads * hd
    cdef int64_t units = ins.rows * ins.n_kv_heads, u, t, g, h, s, n
    cdef float *S = c.att + tid * c.att_stride
    cdef float sqrt_hd = sqrtf(<float>hd)
    cdef const uint16_t *K = c.kc + <int64_t>ins.layer * c.n_ctx * wkv
    cdef const uint16_t *V = c.vc + <int64_t>ins.layer * c.n_ctx * wkv
    cdef const uint16_t *row
    cdef const float *q
    cdef float *o
    while True:
        u = ignis_next_chunk(counter)
        if u >= units:
            break
        t = u // ins.n_kv_heads
        g = u % ins.n_kv_heads
        n = <int64_t>c.pos[t] + 1
        q = c.arena + ins.x + t * wq + g * G * hd
        o = c.arena + ins.out + t * wq + g * G * hd
        for s in range(n):
            ignis_dot_f32_f16_heads(q, G, hd, K + s * wkv + g * hd, S + s, c.n_ctx)
        for h in range(G):
            ignis_div_row(S + h * c.n_ctx, sqrt_hd, n)
            softmax_row(S + h * c.n_ctx, n)
        for h in range(G):
            ignis_av_head(S + h * c.n_ctx, V + g * hd, wkv, n, o + h * hd, hd)
        if ins.quantize_out:    # this unit's columns are whole Q8_0 blocks (G*hd % 32 == 0)
            ignis_quantize_row_q8_0(o, c.qbuf + t * ins.xq_row_bytes + (g * G * hd // 32) * 34, G * hd)


cdef void k_elementwise(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t i0 = _lo(ins.n, tid, nt), i1 = _lo(ins.n, tid + 1, nt)
    cdef float *a = c.arena + ins.x + i0
    cdef float *b = c.arena + ins.x2 + i0
    cdef float *y = c.arena + ins.out + i0
    cdef float tmp[256]
    cdef int64_t i, m
    if i1 <= i0:
        return
    if ins.op == OP_ADD:
        ignis_add_row(a, b, y, i1 - i0)
    elif ins.op == OP_MUL:
        ignis_mul_row(a, b, y, i1 - i0)
    elif ins.op == OP_SILU:
        ignis_silu_row(a, y, i1 - i0)
    else:  # OP_SWIGLU: mul(silu(g), u) through a small buffer (out may alias g or u)
        i = 0
        while i < i1 - i0:
            m = _min(256, i1 - i0 - i)
            ignis_silu_row(a + i, tmp, m)
            ignis_mul_row(tmp, b + i, y + i, m)
            i += m


cdef void k_take_last(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    if tid == 0:
        memmove(c.arena + ins.out, c.arena + ins.x + (ins.rows - 1) * ins.k, ins.k * sizeof(float))


cdef void fill_rope_tables(Ctx *c, int tid, int nt) noexcept nogil:
    """cos/sin [T][hd/2] per slot: angle = pos * theta^(-2i/hd) in double, rounded to float."""
    cdef int64_t sl, t, i, half
    cdef double f, a
    cdef float *tab
    for sl in range(c.n_slots):
        half = c.slots[sl].head_dim // 2
        tab = c.rope + c.slots[sl].offset
        for t in range(_lo(c.T, tid, nt), _lo(c.T, tid + 1, nt)):
            for i in range(half):
                f = pow(c.slots[sl].theta, -2.0 * <double>i / <double>c.slots[sl].head_dim)
                a = <double>c.pos[t] * f
                tab[t * half + i] = <float>cos(a)
                tab[(c.T + t) * half + i] = <float>sin(a)


cdef void exec_instr(Ctx *c, int64_t i, int tid, int nt) noexcept nogil:
    cdef Instr *ins = &c.ins[i]
    cdef int op = ins.op
    if op == OP_MATMUL:
        k_matmul(c, ins, &c.counters[i], nt)
    elif op == OP_QUANTIZE:
        k_quantize(c, ins, tid, nt)
    elif op == OP_QUANTIZE16:
        k_quantize16(c, ins, tid, nt)
    elif op == OP_ADD or op == OP_MUL or op == OP_SILU or op == OP_SWIGLU:
        k_elementwise(c, ins, tid, nt)
    elif op == OP_RMSNORM:
        k_rmsnorm(c, ins, tid, nt)
    elif op == OP_ATTENTION:
        k_attention(c, ins, &c.counters[i], tid)
    elif op == OP_ROPE_KV:
        k_rope_kv(c, ins, tid, nt)
    elif op == OP_ROPE:
        k_rope(c, ins, tid, nt)
    elif op == OP_KV_WRITE:
        k_kv_write(c, ins, tid, nt)
    elif op == OP_ADD_BIAS:
        k_add_bias(c, ins, tid, nt)
    elif op == OP_RMS_INV:
        k_rms_inv(c, ins, tid, nt)
    elif op == OP_SCALE_ROWS:
        k_scale_rows(c, ins, tid, nt)
    elif op == OP_EMBED:
        k_embed(c, ins, tid, nt)
    elif op == OP_TAKE_LAST:
        k_take_last(c, ins, tid, nt)


cdef void run_thread(void *p, int tid, int nt) noexcept nogil:
    cdef Ctx *c = <Ctx *>p
    cdef int64_t i
    if c.n_slots:
        fill_rope_tables(c, tid, nt)
        ignis_bar_wait(&c.bar)
    for i in range(c.n_ins):
        exec_instr(c, i, tid, nt)
        ignis_bar_wait(&c.bar)


# ---------------------------------------------------------------------------
# Python side
#
# Every public entry point converts and checks all of its arguments here, in Python
# integers (no int64 wrap-around), before anything reaches an instruction or a nogil call:
# a wrong type or an out-of-range value is a ModelError, never a TypeError, an
# OverflowError or an out-of-bounds access.

_MAX_ARENA = 1 << 40          # arena bytes
_MAX_TOKENS = 1 << 20         # tokens per plan step
_MAX_THREADS = max(256, 4 * (os.cpu_count() or 1))
_MAX_WIDTH = 1 << 24          # k, n, dim, n_ff, KV cache positions
_MAX_HEADS = 1 << 16          # n_heads, n_kv_heads, head_dim, layers
_F32_MAX = 3.4028234663852886e38
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _short(v) -> str:
    """A one-line, bounded repr of a (possibly hostile) argument for an error message."""
    try:
        r = repr(v)
    except Exception:
        r = f"<{type(v).__name__}>"
    r = " ".join(r.split())
    return r if len(r) <= 48 else r[:45] + "..."


def _as_int(what, v) -> int:
    """An integer argument (int, numpy integer, anything with __index__ except bool) as a
    Python int; anything else is a ModelError."""
    if isinstance(v, (bool, np.bool_)):
        raise ModelError(f"{what} must be an integer, got bool {v!r}")
    try:
        return operator.index(v)
    except Exception:
        raise ModelError(f"{what} must be an integer, got {type(v).__name__} {_short(v)}") from None


def _int_in(what, v, lo, hi) -> int:
    i = _as_int(what, v)
    if not lo <= i <= hi:
        raise ModelError(f"{what} must be in [{lo}, {hi}], got {i}")
    return i


def _dim(name, key, v, hi=_MAX_WIDTH) -> int:
    """A positive dimension of at most hi."""
    i = _as_int(f"{name}: {key}", v)
    if i < 1:
        raise ModelError(f"{name}: {key} must be positive, got {i}")
    if i > hi:
        raise ModelError(f"{name}: {key} must be at most {hi}, got {i}")
    return i


def _as_real(what, v) -> float:
    """A finite real number (int, float, numpy scalar; not bool, str, None, arrays)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise ModelError(f"{what} must be a number, got {type(v).__name__} {_short(v)}")
    try:
        f = float(v)
    except Exception:
        raise ModelError(f"{what} must be a finite number, got {_short(v)}") from None
    if not math.isfinite(f):
        raise ModelError(f"{what} must be finite, got {f}")
    return f


def _eps(name, v) -> float:
    f = _as_real(f"{name}: eps", v)
    if f < 0 or f > _F32_MAX:
        raise ModelError(f"{name}: eps must be a non-negative float32, got {f}")
    return f


def _theta(name, v) -> float:
    f = _as_real(f"{name}: theta", v)
    if f <= 0:
        raise ModelError(f"{name}: theta must be positive, got {f}")
    return f


def _wtype(what, t) -> int:
    t = _as_int(what, t)
    if t not in _BLOCK:
        raise ModelError(f"weight type {t} is not supported by the kernels "
                         f"(supported: {', '.join(_TYPE_NAMES.values())})")
    return t


def _numeric(name, x):
    """x as a numpy array of real numbers (not strings, objects, bools or complex)."""
    try:
        a = np.asarray(x)
    except Exception:
        raise ModelError(f"{name}: expected an array of numbers, got {type(x).__name__}") from None
    if a.dtype.kind not in "fiu":
        raise ModelError(f"{name}: expected an array of numbers, got dtype {a.dtype}")
    return a


def simd_name() -> str:
    """The SIMD path this build uses: "avx2", "neon" or "scalar"."""
    return IGNIS_SIMD_NAME.decode()


def kquant_simd_name() -> str:
    """The path of the Q5_0/Q4_K/Q6_K matmul tiles (the same as simd_name() in every build)."""
    return IGNIS_KQUANT_SIMD.decode()


cdef inline uintptr_t _addr(arr):
    return <uintptr_t>arr.__array_interface__["data"][0]


def _aligned_buffer(Py_ssize_t nbytes, dtype=np.uint8):
    """A zeroed numpy buffer of nbytes whose data is 64-byte aligned."""
    raw = np.zeros(nbytes + 64, dtype=np.uint8)
    shift = (-_addr(raw)) % 64
    return raw[shift:shift + nbytes].view(dtype)


def row_nbytes(wtype, k) -> int:
    """Bytes of one row of k elements of a supported weight type."""
    wtype = _wtype("weight type", wtype)
    k = _as_int("row length", k)
    elems, nbytes = _BLOCK[wtype]
    if k <= 0 or k % elems:
        raise ModelError(f"row length {k} is not a positive multiple of the "
                         f"{_TYPE_NAMES[wtype]} block size {elems}")
    return k // elems * nbytes


@cython.final
cdef class Plan:
    """A flat instruction list over one activation arena, run in one nogil call.
    See the module docstring for the API and its contracts."""
    cdef Instr *ins
    cdef int64_t n_ins
    cdef int64_t cap
    cdef RopeSlot slots[16]
    cdef int64_t n_slots
    cdef readonly int64_t arena_bytes
    cdef readonly int n_threads
    cdef readonly int64_t n_tokens
    cdef readonly object arena
    cdef object _refs
    cdef object _text
    cdef object _qbuf
    cdef object _fbuf
    cdef object _rope
    cdef object _att
    cdef object _counters
    cdef int64_t _qbuf_bytes
    cdef int64_t _fbuf_floats
    cdef int64_t _att_group
    cdef object _qcache        # (x offset, rows, k) of the x whose Q8_0 copy is in scratch
    cdef object _q16cache      # the same for the Q16 scratch
    cdef object _q16buf
    cdef int64_t _q16_bytes
    cdef int64_t _vocab        # smallest embed vocabulary (tokens must be below), -1: no embed
    cdef bint _needs_pos
    cdef bint _running
    cdef bint _building        # an add_* call is between its checks and its commit
    cdef int _kv_layers        # 1 + the largest layer used, 0: no kv
    cdef int _kv_heads
    cdef int _kv_hd

    def __cinit__(self):
        self.ins = NULL
        self.n_ins = 0
        self.cap = 0
        self._running = False
        self._building = False

    def __dealloc__(self):
        PyMem_Free(self.ins)

    def __init__(self, arena_bytes, n_threads, n_tokens):
        if self.arena is not None or self._running or self._building:
            raise ModelError("plan: a Plan is initialised once (build a new Plan instead)")
        arena_bytes = _as_int("plan arena size", arena_bytes)
        n_threads = _as_int("plan thread count", n_threads)
        n_tokens = _as_int("plan token count", n_tokens)
        if arena_bytes <= 0:
            raise ModelError(f"plan arena size must be positive, got {arena_bytes}")
        if arena_bytes > _MAX_ARENA:
            raise ModelError(f"plan arena size {arena_bytes} is more than {_MAX_ARENA} bytes")
        if n_threads < 1:
            raise ModelError(f"plan thread count must be at least 1, got {n_threads}")
        if n_threads > _MAX_THREADS:
            raise ModelError(f"plan thread count {n_threads} is more than {_MAX_THREADS}")
        if n_tokens < 1:
            raise ModelError(f"plan token count must be at least 1, got {n_tokens}")
        if n_tokens > _MAX_TOKENS:
            raise ModelError(f"plan token count {n_tokens} is more than {_MAX_TOKENS}")
        try:
            arena = _aligned_buffer(arena_bytes)
        except (MemoryError, ValueError, OverflowError):
            raise ModelError(f"plan: cannot allocate an arena of {arena_bytes} bytes") from None
        self.arena_bytes = arena_bytes
        self.n_threads = n_threads
        self.n_tokens = n_tokens
        self._refs = []
        self._text = []
        self._qbuf = self._fbuf = self._rope = self._att = self._counters = None
        self._qbuf_bytes = 0
        self._fbuf_floats = 0
        self._att_group = 0
        self._qcache = None
        self._q16cache = None
        self._q16buf = None
        self._q16_bytes = 0
        self._vocab = -1
        self._needs_pos = False
        self._kv_layers = 0
        self._kv_heads = 0
        self._kv_hd = 0
        self.n_slots = 0
        self.arena = arena

    # -- inspection ---------------------------------------------------------

    @property
    def n_instructions(self) -> int:
        return self.n_ins

    def describe(self) -> list:
        """One line per lowered instruction."""
        return list(self._text) if self._text is not None else []

    def f32(self, offset, shape):
        """A float32 view of the arena region starting at byte `offset`."""
        if self.arena is None:
            raise ModelError("view: the plan is not initialised")
        offset = _as_int("view offset", offset)
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        dims = tuple(_dim("view", "shape entry", s, self.arena_bytes) for s in dims)
        n = 1
        for s in dims:
            n *= s
        self._region("view", offset, n * 4)
        return self.arena[offset:offset + n * 4].view(np.float32).reshape(dims)

    @property
    def scratch_bytes(self) -> int:
        """Scratch the plan owns besides the arena (attention scratch depends on n_ctx; not counted)."""
        return self._qbuf_bytes + self._q16_bytes + self._fbuf_floats * 4 + self._rope_floats() * 4

    # -- validation helpers (Python ints throughout) ------------------------

    cdef int64_t _rope_floats(self):
        cdef int64_t total = 0, i
        for i in range(self.n_slots):
            total += self.n_tokens * self.slots[i].head_dim
        return total

    cdef int _enter(self, str name) except -1:
        """Start an add_*: the plan is initialised, not running and not being extended
        (an argument's __index__ or __array__ may run Python code, another thread may call run)."""
        if self.arena is None:
            raise ModelError(f"{name}: the plan is not initialised")
        if self._running:
            raise ModelError(f"{name}: cannot extend a plan while it runs")
        if self._building:
            raise ModelError(f"{name}: another add_* call on this plan is in progress")
        self._building = True
        return 0

    def _region(self, name, offset, nbytes):
        if offset < 0 or offset % 4:
            raise ModelError(f"{name}: arena offset {offset} must be a non-negative multiple of 4")
        if nbytes <= 0 or offset + nbytes > self.arena_bytes:
            raise ModelError(f"{name}: region [{offset}, {offset + nbytes}) does not fit the "
                             f"{self.arena_bytes}-byte arena")
        return offset // 4

    def _io(self, name, ins_list, outs, may_alias=()):
        """Check regions: ins/outs are (offset, nbytes); an output may equal (same offset and
        size) an input listed in may_alias, otherwise it must not overlap any input."""
        for oi, (o, on) in enumerate(outs):
            for ii, (i, inn) in enumerate(ins_list):
                if o < i + inn and i < o + on:
                    if ii in may_alias and o == i and on == inn:
                        continue
                    raise ModelError(f"{name}: output region [{o}, {o + on}) overlaps input region "
                                     f"[{i}, {i + inn})")

    cdef _wrote(self, offset, nbytes):
        if self._qcache is not None:
            x, rows, k = self._qcache
            if offset < x + rows * k * 4 and x < offset + nbytes:
                self._qcache = None
        if self._q16cache is not None:
            x, rows, k = self._q16cache
            if offset < x + rows * k * 4 and x < offset + nbytes:
                self._q16cache = None

    def _weight(self, name, w, wtype, n, k):
        """Validate a weight given as one array or a list of up to 3 row-blocks (parts, e.g.
        [Wq, Wk, Wv]) with one type or one type per part; keep references. Returns a list of
        (address, type, row bytes, rows) whose rows add up to n."""
        arrays = list(w) if isinstance(w, (list, tuple)) else [w]
        types = list(wtype) if isinstance(wtype, (list, tuple)) else [wtype] * len(arrays)
        if not 1 <= len(arrays) <= 3 or len(types) != len(arrays):
            raise ModelError(f"{name}: weight must be an array or a list of 1 to 3 arrays with one "
                             f"type each, got {len(arrays)} arrays and {len(types)} types")
        parts = []
        bases = []
        for a, t in zip(arrays, types):
            t = _wtype(f"{name}: weight type", t)
            rb = row_nbytes(t, k)
            if t not in (T_F32, T_F16) and k % 32:
                raise ModelError(f"{name}: k={k} must be a multiple of 32 (Q8_0 activations)")
            if not isinstance(a, np.ndarray):
                raise ModelError(f"{name}: weight must be a numpy array, got {type(a).__name__}")
            a = np.asarray(a)      # an ndarray subclass: its buffer as numpy sees it, not its claims
            if a.ndim == 0:
                raise ModelError(f"{name}: weight must be an array of rows, got a 0-d array")
            if not a.flags.c_contiguous:
                raise ModelError(f"{name}: weight array must be C-contiguous (weights are never copied)")
            if t == T_F32:
                dtype_ok = a.dtype == np.float32
            elif t == T_F16:
                dtype_ok = a.dtype == np.float16 or a.dtype == np.uint16
            else:
                dtype_ok = a.dtype == np.uint8 or a.dtype == np.int8
            if not dtype_ok:
                raise ModelError(f"{name}: a {_TYPE_NAMES[t]} weight cannot be a {a.dtype} array")
            if a.nbytes == 0 or a.nbytes % rb:
                raise ModelError(f"{name}: {_TYPE_NAMES[t]} weight of {a.nbytes} bytes is not a whole "
                                 f"number of rows of {k} ({rb} bytes each)")
            parts.append((_addr(a), t, rb, a.nbytes // rb))
            bases.append(a)
        total = sum(part[3] for part in parts)
        if total != n:
            desc = " + ".join(f"{part[3]}" for part in parts)
            raise ModelError(f"{name}: weight has {desc} rows of {k}, expected {n} rows")
        self._refs.extend(bases)
        return parts

    cdef _set_parts(self, Instr *p, list parts):
        cdef int i
        p.n_parts = len(parts)
        p.pstart[0] = 0
        for i in range(len(parts)):
            addr, t, rb, rows = parts[i]
            p.pw[i] = <const uint8_t *><uintptr_t>addr
            p.ptype[i] = t
            p.prb[i] = rb
            p.pstart[i + 1] = p.pstart[i] + rows
        for i in range(len(parts), 3):
            p.pstart[i + 1] = p.pstart[i]

    @staticmethod
    def _type_label(parts):
        names = [_TYPE_NAMES[part[1]] for part in parts]
        return names[0] if len(set(names)) == 1 else "+".join(names)

    def _vector(self, name, v, n):
        if v is None:
            raise ModelError(f"{name}: vector is missing")
        a = _numeric(name, v)
        arr = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
        if arr.shape[0] != n:
            raise ModelError(f"{name}: vector has {arr.shape[0]} values, expected {n}")
        self._refs.append(arr)
        return arr

    def _rows(self, name, rows):
        rows = _as_int(f"{name}: rows", rows)
        if rows < 1 or rows > self.n_tokens:
            raise ModelError(f"{name}: rows must be in [1, {self.n_tokens}], got {rows}")
        return rows

    cdef Instr *_push(self, int op, str text) except NULL:
        cdef Instr *grown
        if self._running:
            raise ModelError("plan: cannot extend a plan while it runs")
        if self.n_ins == self.cap:
            newcap = max(16, self.cap * 2)
            grown = <Instr *>PyMem_Realloc(self.ins, newcap * sizeof(Instr))
            if grown == NULL:
                raise MemoryError()
            self.ins = grown
            self.cap = newcap
        cdef Instr *p = &self.ins[self.n_ins]
        memset(p, 0, sizeof(Instr))
        p.op = op
        p.x = -1
        p.x2 = -1
        p.out = -1
        p.rope_slot = -1
        self.n_ins += 1
        self._text.append(text)
        return p

    def _rope_check(self, name, head_dim, theta):
        """A rope setting can get a slot (an existing one or one of the 16)."""
        cdef int64_t i
        for i in range(self.n_slots):
            if self.slots[i].head_dim == head_dim and self.slots[i].theta == theta:
                return
        if self.n_slots == 16:
            raise ModelError(f"{name}: too many distinct (head_dim, theta) rope settings in one plan (max 16)")

    cdef int _rope_slot(self, int head_dim, double theta) except -1:
        cdef int64_t i
        for i in range(self.n_slots):
            if self.slots[i].head_dim == head_dim and self.slots[i].theta == theta:
                return <int>i
        if self.n_slots == 16:
            raise ModelError("plan: too many distinct (head_dim, theta) rope settings (max 16)")
        self.slots[self.n_slots].head_dim = head_dim
        self.slots[self.n_slots].theta = theta
        self.slots[self.n_slots].offset = self._rope_floats()
        self.n_slots += 1
        self._needs_pos = True
        return <int>(self.n_slots - 1)

    def _layer(self, name, layer):
        layer = _as_int(f"{name}: layer", layer)
        if layer < 0:
            raise ModelError(f"{name}: layer must be non-negative, got {layer}")
        if layer >= _MAX_HEADS:
            raise ModelError(f"{name}: layer must be below {_MAX_HEADS}, got {layer}")
        return layer

    def _kv_check(self, name, n_kv_heads, head_dim):
        if self._kv_heads and (self._kv_heads != n_kv_heads or self._kv_hd != head_dim):
            raise ModelError(f"{name}: KV geometry {n_kv_heads}x{head_dim} differs from the plan's "
                             f"{self._kv_heads}x{self._kv_hd}")

    cdef _kv_commit(self, layer, n_kv_heads, head_dim):
        self._kv_heads, self._kv_hd = n_kv_heads, head_dim
        self._kv_layers = max(self._kv_layers, layer + 1)
        self._needs_pos = True

    def _head_dims(self, name, n_heads, head_dim, n_kv_heads=1):
        n_heads = _dim(name, "n_heads", n_heads, _MAX_HEADS)
        head_dim = _dim(name, "head_dim", head_dim, _MAX_HEADS)
        n_kv_heads = _dim(name, "n_kv_heads", n_kv_heads, _MAX_HEADS)
        if head_dim % 2:
            raise ModelError(f"{name}: head_dim must be even, got {head_dim}")
        if n_heads % n_kv_heads:
            raise ModelError(f"{name}: n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
        return n_heads, head_dim, n_kv_heads

    cdef _quantize_input(self, int64_t x, int64_t rows, int64_t k, list parts):
        """Emit a quantize instruction for x unless its Q8_0 copy is already in scratch (or no
        part of the weight is quantized)."""
        cdef Instr *p
        if all(part[1] in (T_F32, T_F16) for part in parts):
            return
        if self._qcache == (x, rows, k):
            return
        self._qbuf_bytes = max(self._qbuf_bytes, rows * (k // 32) * 34)
        self._qcache = (x, rows, k)
        if self.n_ins:      # the producer of x is the previous instruction: let it quantize
            p = &self.ins[self.n_ins - 1]
            whole = p.out == x // 4 and p.rows == rows
            if whole and p.op == OP_RMSNORM and p.k == k or \
                    whole and p.op == OP_ATTENTION and <int64_t>p.n_heads * p.head_dim == k \
                    and (p.n_heads // p.n_kv_heads) * p.head_dim % 32 == 0:
                p.quantize_out = 1
                p.xq_row_bytes = (k // 32) * 34
                self._text[len(self._text) - 1] += " (+ quantize to Q8_0 scratch)"
                return
        p = self._push(OP_QUANTIZE, f"quantize x@{x} [{rows},{k}] -> Q8_0 scratch")
        p.x = x // 4
        p.rows = rows
        p.k = k

    cdef _quantize16_input(self, int64_t x, int64_t rows, int64_t k):
        cdef Instr *p
        if self._q16cache == (x, rows, k):
            return
        p = self._push(OP_QUANTIZE16, f"quantize x@{x} [{rows},{k}] -> Q16 scratch")
        p.x = x // 4
        p.rows = rows
        p.k = k
        self._q16_bytes = max(self._q16_bytes, rows * (k // 32) * 68)
        self._q16cache = (x, rows, k)

    cdef _matmul_core(self, int64_t x, int64_t out, list parts, int64_t rows, int64_t k,
                      int64_t n_out, int epi, object vec, int64_t res, int64_t n_split, str text,
                      bint act16=False):
        if act16:
            self._quantize16_input(x, rows, k)
        else:
            self._quantize_input(x, rows, k, parts)
        cdef Instr *p = self._push(OP_MATMUL, text)
        p.act16 = act16
        p.epi = epi
        p.rows = rows
        p.k = k
        p.n = n_out
        p.n_split = n_split
        p.x = x // 4
        p.x2 = res // 4 if res >= 0 else -1
        p.out = out // 4
        self._set_parts(p, parts)
        p.xq_row_bytes = (k // 32) * 34
        if vec is not None:
            p.vec = <const float *><uintptr_t>_addr(vec)
        else:
            p.vec = NULL

    def _matmul_args(self, name, x, out, rows, k, n, key="n"):
        """The common arguments of the matmul family, converted and bounded."""
        x = _as_int(f"{name}: x offset", x)
        out = _as_int(f"{name}: out offset", out)
        rows = self._rows(name, rows)
        k = _dim(name, "k", k)
        n = _dim(name, key, n)
        return x, out, rows, k, n

    # -- primitive ops ------------------------------------------------------

    def add_embed(self, out, w, dim, wtype=T_Q8_0):
        """out[T, dim] = row tokens[t] of w (dequantized)."""
        cdef Instr *p
        self._enter("embed")
        try:
            out = _as_int("embed: out offset", out)
            dim = _dim("embed", "dim", dim)
            wtype = _wtype("embed: weight type", wtype)
            rb = row_nbytes(wtype, dim)
            if not isinstance(w, np.ndarray) or w.nbytes % rb or w.nbytes == 0:
                raise ModelError(f"embed: weight must be a numpy array of whole {_TYPE_NAMES[wtype]} rows "
                                 f"of {dim} ({rb} bytes each)")
            vocab = np.asarray(w).nbytes // rb
            nb = self.n_tokens * dim * 4
            o = self._region("embed out", out, nb)
            parts = self._weight("embed", w, wtype, vocab, dim)
            self._wrote(out, nb)
            p = self._push(OP_EMBED, f"embed {_TYPE_NAMES[wtype]} [{vocab},{dim}] -> @{out}")
            p.rows = self.n_tokens
            p.k = dim
            p.out = o
            self._set_parts(p, parts)
            self._vocab = vocab if self._vocab < 0 else min(self._vocab, vocab)
        finally:
            self._building = False

    def add_rms_inv(self, x, out, rows, dim, eps):
        """out[rows, 1] = 1 / sqrt(sum x^2 / dim + eps)"""
        cdef Instr *p
        self._enter("rms_inv")
        try:
            x = _as_int("rms_inv: x offset", x)
            out = _as_int("rms_inv: out offset", out)
            rows = self._rows("rms_inv", rows)
            dim = _dim("rms_inv", "dim", dim)
            eps = _eps("rms_inv", eps)
            xi = self._region("rms_inv x", x, rows * dim * 4)
            oi = self._region("rms_inv out", out, rows * 4)
            self._io("rms_inv", [(x, rows * dim * 4)], [(out, rows * 4)])
            self._wrote(out, rows * 4)
            p = self._push(OP_RMS_INV, f"rms_inv @{x} [{rows},{dim}] eps={float(np.float32(eps))} -> @{out}")
            p.rows, p.k, p.eps, p.x, p.out = rows, dim, eps, xi, oi
        finally:
            self._building = False

    def add_scale_rows(self, x, r, out, g, rows, dim):
        """out = (x * r[t]) * g"""
        cdef Instr *p
        self._enter("scale_rows")
        try:
            x = _as_int("scale_rows: x offset", x)
            r = _as_int("scale_rows: r offset", r)
            out = _as_int("scale_rows: out offset", out)
            rows = self._rows("scale_rows", rows)
            dim = _dim("scale_rows", "dim", dim)
            gv = self._vector("scale_rows g", g, dim)
            xi = self._region("scale_rows x", x, rows * dim * 4)
            ri = self._region("scale_rows r", r, rows * 4)
            oi = self._region("scale_rows out", out, rows * dim * 4)
            self._io("scale_rows", [(x, rows * dim * 4), (r, rows * 4)], [(out, rows * dim * 4)], (0,))
            self._wrote(out, rows * dim * 4)
            p = self._push(OP_SCALE_ROWS, f"scale_rows @{x} * @{r} * g [{rows},{dim}] -> @{out}")
            p.rows, p.k, p.x, p.x2, p.out = rows, dim, xi, ri, oi
            p.vec = <const float *><uintptr_t>_addr(gv)
        finally:
            self._building = False

    def add_matmul(self, x, out, w, rows, k, n, wtype=T_Q8_0, act="q8_0"):
        """out[rows, n] = x[rows, k] @ w.T. act="q16" quantizes x to 16-bit blocks instead of
        Q8_0 (Q8_0, F32 and F16 weights): about 256x less activation rounding, for the matmul
        whose accuracy matters most (the output projection: top-1 agreement)."""
        self._enter("matmul")
        try:
            x, out, rows, k, n = self._matmul_args("matmul", x, out, rows, k, n)
            if not (isinstance(act, str) and act in ("q8_0", "q16")):
                raise ModelError(f"matmul: act must be 'q8_0' or 'q16', got {_short(act)}")
            self._region("matmul x", x, rows * k * 4)
            self._region("matmul out", out, rows * n * 4)
            parts = self._weight("matmul", w, wtype, n, k)
            act16 = act == "q16" and any(part[1] not in (T_F32, T_F16) for part in parts)
            if act16 and any(part[1] not in (T_F32, T_F16, T_Q8_0) for part in parts):
                raise ModelError(f"matmul: act='q16' needs Q8_0 (or F32/F16) weights, got "
                                 f"{self._type_label(parts)}")
            self._io("matmul", [(x, rows * k * 4)], [(out, rows * n * 4)])
            self._wrote(out, rows * n * 4)
            self._matmul_core(x, out, parts, rows, k, n, EPI_STORE, None, -1, n,
                              f"matmul @{x} [{rows},{k}] x {self._type_label(parts)} [{n},{k}]"
                              f"{' (q16 activations)' if act16 else ''} -> @{out}", act16)
        finally:
            self._building = False

    def add_add_bias(self, y, out, b, rows, n):
        """out = y + b"""
        cdef Instr *p
        self._enter("add_bias")
        try:
            y = _as_int("add_bias: y offset", y)
            out = _as_int("add_bias: out offset", out)
            rows = self._rows("add_bias", rows)
            n = _dim("add_bias", "n", n)
            bv = self._vector("add_bias b", b, n)
            yi = self._region("add_bias y", y, rows * n * 4)
            oi = self._region("add_bias out", out, rows * n * 4)
            self._io("add_bias", [(y, rows * n * 4)], [(out, rows * n * 4)], (0,))
            self._wrote(out, rows * n * 4)
            p = self._push(OP_ADD_BIAS, f"add_bias @{y} [{rows},{n}] -> @{out}")
            p.rows, p.n, p.x, p.out = rows, n, yi, oi
            p.vec = <const float *><uintptr_t>_addr(bv)
        finally:
            self._building = False

    def add_rope(self, x, out, n_heads, head_dim, theta):
        """NeoX rotation of each head of x [T, n_heads*head_dim] at the step's positions."""
        cdef Instr *p
        self._enter("rope")
        try:
            x = _as_int("rope: x offset", x)
            out = _as_int("rope: out offset", out)
            n_heads, head_dim, _ = self._head_dims("rope", n_heads, head_dim)
            theta = _theta("rope", theta)
            nb = self.n_tokens * n_heads * head_dim * 4
            xi = self._region("rope x", x, nb)
            oi = self._region("rope out", out, nb)
            self._io("rope", [(x, nb)], [(out, nb)], (0,))
            self._rope_check("rope", head_dim, theta)
            self._wrote(out, nb)
            slot = self._rope_slot(head_dim, theta)
            p = self._push(OP_ROPE, f"rope @{x} [{self.n_tokens},{n_heads}x{head_dim}] "
                                    f"theta={theta} -> @{out}")
            p.rows, p.n_heads, p.head_dim, p.x, p.out, p.rope_slot = self.n_tokens, n_heads, head_dim, xi, oi, slot
        finally:
            self._building = False

    def add_kv_write(self, k, v, layer, n_kv_heads, head_dim):
        """cache.k/v[layer][pos[t]] = f16(k[t]), f16(v[t])"""
        cdef Instr *p
        self._enter("kv_write")
        try:
            k = _as_int("kv_write: k offset", k)
            v = _as_int("kv_write: v offset", v)
            n_kv_heads, head_dim, _ = self._head_dims("kv_write", n_kv_heads, head_dim)
            layer = self._layer("kv_write", layer)
            self._kv_check("kv_write", n_kv_heads, head_dim)
            nb = self.n_tokens * n_kv_heads * head_dim * 4
            ki = self._region("kv_write k", k, nb)
            vi = self._region("kv_write v", v, nb)
            self._kv_commit(layer, n_kv_heads, head_dim)
            p = self._push(OP_KV_WRITE, f"kv_write @{k} @{v} -> cache[{layer}]")
            p.rows, p.n_kv_heads, p.head_dim, p.layer, p.x, p.x2 = self.n_tokens, n_kv_heads, head_dim, layer, ki, vi
        finally:
            self._building = False

    def add_attention(self, q, out, layer, n_heads, n_kv_heads, head_dim):
        """Causal GQA attention of q [T, n_heads*head_dim] over cache[layer] positions 0..pos[t]."""
        cdef Instr *p
        self._enter("attention")
        try:
            q = _as_int("attention: q offset", q)
            out = _as_int("attention: out offset", out)
            n_heads, head_dim, n_kv_heads = self._head_dims("attention", n_heads, head_dim, n_kv_heads)
            layer = self._layer("attention", layer)
            self._kv_check("attention", n_kv_heads, head_dim)
            nb = self.n_tokens * n_heads * head_dim * 4
            qi = self._region("attention q", q, nb)
            oi = self._region("attention out", out, nb)
            self._io("attention", [(q, nb)], [(out, nb)], (0,))
            self._kv_commit(layer, n_kv_heads, head_dim)
            self._wrote(out, nb)
            self._att_group = max(self._att_group, n_heads // n_kv_heads)
            p = self._push(OP_ATTENTION, f"attention @{q} cache[{layer}] "
                                         f"{n_heads}/{n_kv_heads} heads x {head_dim} -> @{out}")
            p.rows, p.n_heads, p.n_kv_heads, p.head_dim, p.layer = self.n_tokens, n_heads, n_kv_heads, head_dim, layer
            p.x, p.out = qi, oi
        finally:
            self._building = False

    cdef _elementwise(self, int op, str name, a, b, out, n):
        """b is unused by silu (the only unary op): every other op requires it."""
        cdef Instr *p
        cdef bint binary = op != OP_SILU
        self._enter(name)
        try:
            a = _as_int(f"{name}: {'a' if binary else 'x'} offset", a)
            if binary:
                b = _as_int(f"{name}: b offset", b)
            out = _as_int(f"{name}: out offset", out)
            n = _dim(name, "n", n, max(1, self.arena_bytes // 4))
            ai = self._region(f"{name} a", a, n * 4)
            bi = self._region(f"{name} b", b, n * 4) if binary else -1
            oi = self._region(f"{name} out", out, n * 4)
            ins = [(a, n * 4)] + ([(b, n * 4)] if binary else [])
            self._io(name, ins, [(out, n * 4)], (0, 1))
            self._wrote(out, n * 4)
            srcs = f"@{a}" + (f", @{b}" if binary else "")
            p = self._push(op, f"{name} {srcs} [{n}] -> @{out}")
            p.n, p.x, p.x2, p.out = n, ai, bi, oi
        finally:
            self._building = False

    def add_add(self, a, b, out, n):
        """out = a + b over n floats"""
        self._elementwise(OP_ADD, "add", a, b, out, n)

    def add_mul(self, a, b, out, n):
        """out = a * b over n floats"""
        self._elementwise(OP_MUL, "mul", a, b, out, n)

    def add_silu(self, x, out, n):
        """out = x / (1 + exp(-x)) over n floats"""
        self._elementwise(OP_SILU, "silu", x, None, out, n)

    def add_take_last(self, x, out, rows, dim):
        """out[1, dim] = x[rows - 1]"""
        cdef Instr *p
        self._enter("take_last")
        try:
            x = _as_int("take_last: x offset", x)
            out = _as_int("take_last: out offset", out)
            rows = self._rows("take_last", rows)
            dim = _dim("take_last", "dim", dim)
            xi = self._region("take_last x", x, rows * dim * 4)
            oi = self._region("take_last out", out, dim * 4)
            if out != x:
                self._io("take_last", [(x, rows * dim * 4)], [(out, dim * 4)])
            self._wrote(out, dim * 4)
            p = self._push(OP_TAKE_LAST, f"take_last @{x} [{rows},{dim}] -> @{out}")
            p.rows, p.k, p.x, p.out = rows, dim, xi, oi
        finally:
            self._building = False

    # -- fused ops ----------------------------------------------------------

    def add_rmsnorm(self, x, out, g, rows, dim, eps):
        """out = scale_rows(x, rms_inv(x), g)"""
        cdef Instr *p
        self._enter("rmsnorm")
        try:
            x = _as_int("rmsnorm: x offset", x)
            out = _as_int("rmsnorm: out offset", out)
            rows = self._rows("rmsnorm", rows)
            dim = _dim("rmsnorm", "dim", dim)
            eps = _eps("rmsnorm", eps)
            gv = self._vector("rmsnorm g", g, dim)
            xi = self._region("rmsnorm x", x, rows * dim * 4)
            oi = self._region("rmsnorm out", out, rows * dim * 4)
            self._io("rmsnorm", [(x, rows * dim * 4)], [(out, rows * dim * 4)], (0,))
            self._wrote(out, rows * dim * 4)
            p = self._push(OP_RMSNORM, f"rmsnorm @{x} [{rows},{dim}] eps={float(np.float32(eps))} -> @{out}")
            p.rows, p.k, p.eps, p.x, p.out = rows, dim, eps, xi, oi
            p.vec = <const float *><uintptr_t>_addr(gv)
        finally:
            self._building = False

    def add_swiglu(self, g, u, out, n):
        """out = silu(g) * u over n floats"""
        self._elementwise(OP_SWIGLU, "swiglu", g, u, out, n)

    def add_matmul_bias(self, x, out, w, b, rows, k, n, wtype=T_Q8_0):
        """out = x @ w.T + b"""
        self._enter("matmul_bias")
        try:
            x, out, rows, k, n = self._matmul_args("matmul_bias", x, out, rows, k, n)
            bv = self._vector("matmul_bias b", b, n)
            self._region("matmul_bias x", x, rows * k * 4)
            self._region("matmul_bias out", out, rows * n * 4)
            parts = self._weight("matmul_bias", w, wtype, n, k)
            self._io("matmul_bias", [(x, rows * k * 4)], [(out, rows * n * 4)])
            self._wrote(out, rows * n * 4)
            self._matmul_core(x, out, parts, rows, k, n, EPI_BIAS, bv, -1, n,
                              f"matmul_bias @{x} [{rows},{k}] x {self._type_label(parts)} [{n},{k}] + b -> @{out}")
        finally:
            self._building = False

    def add_matmul_add(self, x, res, out, w, rows, k, n, wtype=T_Q8_0):
        """out = res + x @ w.T (out may be res itself)"""
        self._enter("matmul_add")
        try:
            x, out, rows, k, n = self._matmul_args("matmul_add", x, out, rows, k, n)
            res = _as_int("matmul_add: res offset", res)
            self._region("matmul_add x", x, rows * k * 4)
            self._region("matmul_add res", res, rows * n * 4)
            self._region("matmul_add out", out, rows * n * 4)
            parts = self._weight("matmul_add", w, wtype, n, k)
            self._io("matmul_add", [(x, rows * k * 4), (res, rows * n * 4)], [(out, rows * n * 4)], (1,))
            self._wrote(out, rows * n * 4)
            self._matmul_core(x, out, parts, rows, k, n, EPI_ADD, None, res, n,
                              f"matmul_add @{res} + @{x} [{rows},{k}] x {self._type_label(parts)} [{n},{k}] -> @{out}")
        finally:
            self._building = False

    def add_gate_up_swiglu(self, x, out, w, rows, k, n_ff, wtype=T_Q8_0):
        """out[rows, n_ff] = silu(x @ Wgate.T) * (x @ Wup.T); w = [Wgate; Wup] as one array of
        2*n_ff rows or the list [Wgate, Wup]"""
        self._enter("gate_up_swiglu")
        try:
            x, out, rows, k, n_ff = self._matmul_args("gate_up_swiglu", x, out, rows, k, n_ff, "n_ff")
            self._region("gate_up_swiglu x", x, rows * k * 4)
            self._region("gate_up_swiglu out", out, rows * n_ff * 4)
            parts = self._weight("gate_up_swiglu", w, wtype, 2 * n_ff, k)
            # The kernel computes gate rows [lo, hi) of one part and the up rows n_ff + [lo, hi)
            # together, reading the up rows from the part that holds row n_ff + lo: so the parts
            # must split at n_ff, and every boundary inside the up half must mirror one in the
            # gate half (e.g. [n_ff, a, n_ff - a] would read part 1 past its end).
            bounds = [0]
            for part in parts:
                bounds.append(bounds[len(bounds) - 1] + part[3])
            if len(parts) > 1 and (n_ff not in bounds or
                                   any(n_ff < b < 2 * n_ff and b - n_ff not in bounds for b in bounds)):
                raise ModelError(f"gate_up_swiglu: the weight parts ({' + '.join(str(pp[3]) for pp in parts)} "
                                 f"rows) must split at row {n_ff} (gate | up), with every split of the up "
                                 f"half also a split of the gate half")
            self._io("gate_up_swiglu", [(x, rows * k * 4)], [(out, rows * n_ff * 4)])
            self._wrote(out, rows * n_ff * 4)
            self._matmul_core(x, out, parts, rows, k, n_ff, EPI_SWIGLU, None, -1, n_ff,
                              f"gate_up_swiglu @{x} [{rows},{k}] x {self._type_label(parts)} [2x{n_ff},{k}] -> @{out}")
        finally:
            self._building = False

    def add_qkv_rope_kv(self, x, q_out, w, b, layer, n_heads, n_kv_heads, head_dim, theta, k,
                        wtype=T_Q8_0):
        """q_out[T, n_heads*head_dim] = rope(x @ Wq.T + bq); k = rope(x @ Wk.T + bk), v = x @ Wv.T + bv
        stored to cache[layer] at the step's positions. w = [Wq; Wk; Wv] as one array or the list
        [Wq, Wk, Wv] (types may differ per part); b = [bq; bk; bv] or None."""
        cdef Instr *p
        self._enter("qkv_rope_kv")
        try:
            x = _as_int("qkv_rope_kv: x offset", x)
            q_out = _as_int("qkv_rope_kv: q_out offset", q_out)
            n_heads, head_dim, n_kv_heads = self._head_dims("qkv_rope_kv", n_heads, head_dim, n_kv_heads)
            layer = self._layer("qkv_rope_kv", layer)
            theta = _theta("qkv_rope_kv", theta)
            k = _dim("qkv_rope_kv", "k", k)
            T = self.n_tokens
            nq, nkv = n_heads * head_dim, n_kv_heads * head_dim
            n = nq + 2 * nkv
            if n > _MAX_WIDTH:
                raise ModelError(f"qkv_rope_kv: {n} output rows, at most {_MAX_WIDTH}")
            bv = self._vector("qkv_rope_kv b", b, n) if b is not None else None
            self._region("qkv_rope_kv x", x, T * k * 4)
            qi = self._region("qkv_rope_kv q_out", q_out, T * nq * 4)
            parts = self._weight("qkv_rope_kv", w, wtype, n, k)
            self._kv_check("qkv_rope_kv", n_kv_heads, head_dim)
            self._io("qkv_rope_kv", [(x, T * k * 4)], [(q_out, T * nq * 4)])
            self._rope_check("qkv_rope_kv", head_dim, theta)
            self._kv_commit(layer, n_kv_heads, head_dim)
            self._wrote(q_out, T * nq * 4)
            slot = self._rope_slot(head_dim, theta)
            self._matmul_core(x, q_out, parts, T, k, n, EPI_QKV, bv, -1, nq,
                              f"qkv matmul @{x} [{T},{k}] x {self._type_label(parts)} [{n},{k}]"
                              f"{' + b' if bv is not None else ''} -> q @{q_out}, k/v scratch")
            self._fbuf_floats = max(self._fbuf_floats, T * 2 * nkv)
            p = self._push(OP_ROPE_KV, f"rope q @{q_out}, rope k, kv_write -> cache[{layer}] "
                                       f"theta={theta}")
            p.rows, p.n_heads, p.n_kv_heads, p.head_dim, p.layer = T, n_heads, n_kv_heads, head_dim, layer
            p.out, p.rope_slot = qi, slot
        finally:
            self._building = False

    # -- execution ----------------------------------------------------------

    cdef _ensure_scratch(self, n_ctx):
        try:
            if self._qbuf is None or self._qbuf.nbytes < self._qbuf_bytes:
                self._qbuf = _aligned_buffer(max(self._qbuf_bytes, 64))
            if self._q16buf is None or self._q16buf.nbytes < self._q16_bytes:
                self._q16buf = _aligned_buffer(max(self._q16_bytes, 64))
            if self._fbuf is None or self._fbuf.size < self._fbuf_floats:
                self._fbuf = _aligned_buffer(max(self._fbuf_floats, 16) * 4, np.float32)
            rf = self._rope_floats()
            if self._rope is None or self._rope.size < rf:
                self._rope = _aligned_buffer(max(rf, 16) * 4, np.float32)
            need = self._att_group * n_ctx
            need = (need + 15) // 16 * 16
            if self._att is None or self._att.size < need * self.n_threads:
                self._att = _aligned_buffer(max(need * self.n_threads, 16) * 4, np.float32)
        except (MemoryError, ValueError, OverflowError):
            raise ModelError(f"plan.run: cannot allocate the scratch buffers (attention: "
                             f"{self._att_group} x {n_ctx} positions x {self.n_threads} threads)") from None

    def _int32_input(self, what, v):
        """tokens / positions: a 1-D integer array of T values that fit int32 (checked before
        the cast, which would wrap them). Always a private copy: the run reads it without the
        GIL, after the checks, so the caller's array must not be what it reads."""
        try:
            a = np.asarray(v)
        except Exception:
            raise ModelError(f"plan.run: {what} must be an integer array, got {type(v).__name__}") from None
        if a.dtype.kind not in "iu":
            raise ModelError(f"plan.run: {what} must be integers, got dtype {a.dtype}")
        if a.ndim != 1:
            raise ModelError(f"plan.run: {what} must be a 1-D array, got shape {a.shape}")
        if a.shape[0] != self.n_tokens:
            raise ModelError(f"plan.run: {a.shape[0]} {what} for a plan of {self.n_tokens} tokens")
        lo, hi = int(a.min()), int(a.max())
        if lo < _INT32_MIN or hi > _INT32_MAX:
            raise ModelError(f"plan.run: {what} value {lo if lo < _INT32_MIN else hi} does not fit int32")
        return np.array(a, dtype=np.int32, order="C", copy=True)

    def run(self, tokens=None, positions=None, kv=None):
        """Execute the plan for one step of n_tokens tokens (see the module docstring)."""
        if self.arena is None:
            raise ModelError("plan.run: the plan is not initialised")
        if self._running:
            raise ModelError("plan.run: this plan is already running (one run at a time per plan)")
        if self._building:
            raise ModelError("plan.run: an add_* call on this plan is in progress")
        self._running = True
        try:
            self._run(tokens, positions, kv)
        finally:
            self._running = False

    cdef _run(self, tokens, positions, kv):
        cdef Ctx c
        cdef int64_t T = self.n_tokens
        memset(&c, 0, sizeof(Ctx))
        # every argument given is checked, used or not
        tok = self._int32_input("tokens", tokens) if tokens is not None else None
        pos = self._int32_input("positions", positions) if positions is not None else None
        kc = vc = None
        if kv is not None:
            kc, vc = _kv_arrays(kv)
        if self._vocab >= 0:
            if tok is None:
                raise ModelError("plan.run: this plan embeds tokens; pass tokens")
            lo, hi = int(tok.min()), int(tok.max())
            if lo < 0 or hi >= self._vocab:
                bad = lo if lo < 0 else hi
                raise ModelError(f"plan.run: token id {bad} out of range [0, {self._vocab})")
            c.tokens = <const int32_t *><uintptr_t>_addr(tok)
        n_ctx = 0
        if self._kv_layers:
            if kc is None:
                raise ModelError("plan.run: this plan reads/writes the KV cache; pass kv")
            L, n_ctx, H, D = kc.shape
            if L < self._kv_layers or H != self._kv_heads or D != self._kv_hd:
                raise ModelError(f"plan.run: KV cache shape {kc.shape} does not fit the plan "
                                 f"({self._kv_layers} layers, {self._kv_heads} kv heads x {self._kv_hd})")
            c.kc = <uint16_t *><uintptr_t>_addr(kc)
            c.vc = <uint16_t *><uintptr_t>_addr(vc)
            c.n_ctx, c.kv_heads, c.kv_hd = n_ctx, H, D
        if self._needs_pos:
            if pos is None:
                raise ModelError("plan.run: this plan uses positions; pass positions")
            if int(pos.min()) < 0:
                raise ModelError(f"plan.run: negative position {int(pos.min())}")
            if self._kv_layers and int(pos.max()) >= n_ctx:
                raise ContextOverflowError(f"position {int(pos.max())} does not fit the KV cache "
                                           f"of {n_ctx} positions")
            c.pos = <const int32_t *><uintptr_t>_addr(pos)
        self._ensure_scratch(n_ctx)
        c.arena = <float *><uintptr_t>_addr(self.arena)
        c.qbuf = <uint8_t *><uintptr_t>_addr(self._qbuf)
        c.q16buf = <uint8_t *><uintptr_t>_addr(self._q16buf)
        c.fbuf = <float *><uintptr_t>_addr(self._fbuf)
        c.rope = <float *><uintptr_t>_addr(self._rope)
        c.att = <float *><uintptr_t>_addr(self._att)
        c.att_stride = (self._att_group * n_ctx + 15) // 16 * 16
        c.T = T
        c.ins = self.ins
        c.n_ins = self.n_ins
        c.slots = &self.slots[0]
        c.n_slots = self.n_slots
        if self._counters is None or self._counters.shape[0] < self.n_ins:
            self._counters = np.zeros(max(self.n_ins, 1), dtype=np.int64)
        else:
            self._counters[:] = 0
        c.counters = <long long *><uintptr_t>_addr(self._counters)
        cdef int nt = self.n_threads
        with nogil:
            ignis_parallel(run_thread, &c, &c.bar, nt)


def _kv_arrays(kv):
    """(k, v) of a KVCache-like object or a (k, v) tuple: writable C-contiguous float16
    [n_layers, n_ctx, n_kv_heads, head_dim] arrays of one shape."""
    if isinstance(kv, tuple):
        if len(kv) != 2:
            raise ModelError(f"plan.run: kv must be a KVCache or a (k, v) tuple, got a tuple of {len(kv)}")
        kc, vc = kv
    else:
        try:
            kc, vc = kv.k, kv.v
        except Exception:
            raise ModelError(f"plan.run: kv must be a KVCache (an object with .k and .v) or a (k, v) "
                             f"tuple, got {type(kv).__name__}") from None
    out = []
    for name, a in (("k", kc), ("v", vc)):
        if isinstance(a, np.ndarray):
            a = np.asarray(a)
        if not isinstance(a, np.ndarray) or a.dtype != np.float16 or a.ndim != 4 \
                or not a.flags.c_contiguous or not a.flags.writeable:
            raise ModelError(f"plan.run: KV cache {name} must be a writable C-contiguous "
                             f"float16 array [n_layers, n_ctx, n_kv_heads, head_dim]")
        out.append(a)
    kc, vc = out
    if kc.shape != vc.shape:
        raise ModelError(f"plan.run: KV cache k {kc.shape} and v {vc.shape} differ")
    return kc, vc


class KVCache:
    """float16 K and V caches [n_layers, n_ctx, n_kv_heads, head_dim] (zeros)."""

    def __init__(self, n_layers, n_ctx, n_kv_heads, head_dim):
        dims = []
        for name, v, hi in (("n_layers", n_layers, _MAX_HEADS), ("n_ctx", n_ctx, _MAX_WIDTH),
                            ("n_kv_heads", n_kv_heads, _MAX_HEADS), ("head_dim", head_dim, _MAX_HEADS)):
            v = _as_int(f"KVCache: {name}", v)
            if v < 1:
                raise ModelError(f"KVCache: {name} must be positive, got {v}")
            if v > hi:
                raise ModelError(f"KVCache: {name} must be at most {hi}, got {v}")
            dims.append(v)
        n_layers, n_ctx, n_kv_heads, head_dim = dims
        shape = (n_layers, n_ctx, n_kv_heads, head_dim)
        try:
            self.k = np.zeros(shape, np.float16)
            self.v = np.zeros(shape, np.float16)
        except (MemoryError, ValueError):
            raise ModelError(f"KVCache: cannot allocate 2 x {n_layers * n_ctx * n_kv_heads * head_dim * 2} "
                             f"bytes for {shape}") from None
        self.n_ctx = n_ctx


# ---------------------------------------------------------------------------
# standalone kernels (tests, tools): each validates, then runs a one-op plan

def _f32(name, x, ndim):
    a = np.ascontiguousarray(_numeric(name, x), dtype=np.float32)
    if a.ndim != ndim:
        raise ModelError(f"{name}: expected a {ndim}-D array, got shape {a.shape}")
    if a.size == 0:
        raise ModelError(f"{name}: empty array")
    return a


def quantize_q8_0(x):
    """float32 [T, K] (K a multiple of 32) -> Q8_0 bytes uint8 [T, K/32*34]."""
    a = _f32("quantize_q8_0", x, 2)
    cdef int64_t T = a.shape[0], K = a.shape[1], t
    if K % 32:
        raise ModelError(f"quantize_q8_0: row length {K} is not a multiple of 32")
    out = np.empty((T, K // 32 * 34), dtype=np.uint8)
    cdef const float[:, ::1] xv = a
    cdef uint8_t[:, ::1] ov = out
    with nogil:
        for t in range(T):
            ignis_quantize_row_q8_0(&xv[t, 0], &ov[t, 0], K)
    return out


def _n_rows(w, wtype, k):
    rb = row_nbytes(wtype, k)
    if not isinstance(w, np.ndarray) or w.nbytes % rb:
        raise ModelError(f"weight must be a numpy array of whole {_TYPE_NAMES[_wtype('weight type', wtype)]} "
                         f"rows of {k} elements")
    return w.nbytes // rb


def matmul(x, w, wtype=T_Q8_0, threads=1, act="q8_0"):
    """x [T, K] @ W.T for W of N rows of K elements of wtype -> float32 [T, N]."""
    a = _f32("matmul x", x, 2)
    T, K = a.shape
    N = _n_rows(w, wtype, K)
    plan = Plan(a.nbytes + T * N * 4, threads, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_matmul(0, a.nbytes, w, T, K, N, wtype, act)
    plan.run()
    return plan.f32(a.nbytes, (T, N)).copy()


def matmul_bias(x, w, b, wtype=T_Q8_0, threads=1):
    a = _f32("matmul_bias x", x, 2)
    T, K = a.shape
    N = _n_rows(w, wtype, K)
    plan = Plan(a.nbytes + T * N * 4, threads, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_matmul_bias(0, a.nbytes, w, b, T, K, N, wtype)
    plan.run()
    return plan.f32(a.nbytes, (T, N)).copy()


def rms_inv(x, eps):
    a = _f32("rms_inv x", x, 2)
    T, D = a.shape
    plan = Plan(a.nbytes + T * 4, 1, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_rms_inv(0, a.nbytes, T, D, eps)
    plan.run()
    return plan.f32(a.nbytes, (T, 1)).copy()


def scale_rows(x, r, g):
    a = _f32("scale_rows x", x, 2)
    T, D = a.shape
    rr = _f32("scale_rows r", r, 2)
    if rr.shape != (T, 1):
        raise ModelError(f"scale_rows: r must be [{T}, 1], got {rr.shape}")
    plan = Plan(2 * a.nbytes + T * 4, 1, T)
    plan.f32(0, a.shape)[...] = a
    plan.f32(a.nbytes, (T, 1))[...] = rr
    plan.add_scale_rows(0, a.nbytes, a.nbytes + T * 4, g, T, D)
    plan.run()
    return plan.f32(a.nbytes + T * 4, (T, D)).copy()


def rmsnorm(x, g, eps, threads=1):
    a = _f32("rmsnorm x", x, 2)
    T, D = a.shape
    plan = Plan(2 * a.nbytes, threads, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_rmsnorm(0, a.nbytes, g, T, D, eps)
    plan.run()
    return plan.f32(a.nbytes, (T, D)).copy()


def rope(x, positions, n_heads, head_dim, theta):
    a = _f32("rope x", x, 2)
    T = a.shape[0]
    n_heads = _dim("rope", "n_heads", n_heads, _MAX_HEADS)
    head_dim = _dim("rope", "head_dim", head_dim, _MAX_HEADS)
    if a.shape[1] != n_heads * head_dim:
        raise ModelError(f"rope: x has {a.shape[1]} columns, expected {n_heads}x{head_dim}")
    plan = Plan(2 * a.nbytes, 1, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_rope(0, a.nbytes, n_heads, head_dim, theta)
    plan.run(positions=positions)
    return plan.f32(a.nbytes, a.shape).copy()


def _unary_or_binary(kind, arrays, threads):
    arrs = [np.ascontiguousarray(_numeric(kind, x), dtype=np.float32) for x in arrays]
    shape = arrs[0].shape
    for a in arrs:
        if a.shape != shape or a.size == 0:
            raise ModelError(f"{kind}: operands must be non-empty and of one shape, got "
                             f"{[x.shape for x in arrs]}")
    n = arrs[0].size
    plan = Plan((len(arrs) + 1) * n * 4, threads, 1)
    for i, a in enumerate(arrs):
        plan.f32(i * n * 4, (n,))[...] = a.reshape(-1)
    out = len(arrs) * n * 4
    if kind == "silu":
        plan.add_silu(0, out, n)
    else:
        getattr(plan, "add_" + kind)(0, n * 4, out, n)
    plan.run()
    return plan.f32(out, shape).copy()


def add(a, b, threads=1):
    return _unary_or_binary("add", (a, b), threads)


def mul(a, b, threads=1):
    return _unary_or_binary("mul", (a, b), threads)


def silu(x, threads=1):
    return _unary_or_binary("silu", (x,), threads)


def swiglu(g, u, threads=1):
    return _unary_or_binary("swiglu", (g, u), threads)


def add_bias(y, b):
    a = _f32("add_bias y", y, 2)
    T, N = a.shape
    plan = Plan(2 * a.nbytes, 1, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_add_bias(0, a.nbytes, b, T, N)
    plan.run()
    return plan.f32(a.nbytes, a.shape).copy()


def take_last(x):
    a = _f32("take_last x", x, 2)
    T, D = a.shape
    plan = Plan(a.nbytes + D * 4, 1, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_take_last(0, a.nbytes, T, D)
    plan.run()
    return plan.f32(a.nbytes, (1, D)).copy()


def embed(tokens, w, dim, wtype=T_Q8_0):
    tok = np.asarray(tokens)
    if tok.dtype.kind not in "iu":
        raise ModelError(f"embed: tokens must be integers, got dtype {tok.dtype}")
    tok = tok.reshape(-1)
    if tok.size == 0:
        raise ModelError("embed: no tokens")
    dim = _dim("embed", "dim", dim)
    T = tok.shape[0]
    plan = Plan(T * dim * 4, 1, T)
    plan.add_embed(0, w, dim, wtype)
    plan.run(tokens=tok)
    return plan.f32(0, (T, dim)).copy()


def softmax(x):
    """Row-wise softmax of float32 [T, N] (the attention kernel's softmax)."""
    a = _f32("softmax x", x, 2).copy()
    cdef float[:, ::1] v = a
    cdef int64_t t, T = a.shape[0], N = a.shape[1]
    with nogil:
        for t in range(T):
            softmax_row(&v[t, 0], N)
    return a


def kv_write(k, v, positions, kv, layer, n_kv_heads, head_dim):
    """Store k, v [T, n_kv_heads*head_dim] at cache[layer][positions] (kv updated in place)."""
    ka = _f32("kv_write k", k, 2)
    va = _f32("kv_write v", v, 2)
    T = ka.shape[0]
    n_kv_heads = _dim("kv_write", "n_kv_heads", n_kv_heads, _MAX_HEADS)
    head_dim = _dim("kv_write", "head_dim", head_dim, _MAX_HEADS)
    if ka.shape != (T, n_kv_heads * head_dim) or va.shape != ka.shape:
        raise ModelError(f"kv_write: k {ka.shape} / v {va.shape}, expected [{T}, {n_kv_heads * head_dim}]")
    plan = Plan(2 * ka.nbytes, 1, T)
    plan.f32(0, ka.shape)[...] = ka
    plan.f32(ka.nbytes, va.shape)[...] = va
    plan.add_kv_write(0, ka.nbytes, layer, n_kv_heads, head_dim)
    plan.run(positions=positions, kv=kv)


def attention(q, positions, kv, layer, n_heads, n_kv_heads, head_dim, threads=1):
    """Causal GQA attention of q [T, n_heads*head_dim] over kv[layer] positions 0..pos[t]."""
    a = _f32("attention q", q, 2)
    T = a.shape[0]
    n_heads = _dim("attention", "n_heads", n_heads, _MAX_HEADS)
    head_dim = _dim("attention", "head_dim", head_dim, _MAX_HEADS)
    if a.shape[1] != n_heads * head_dim:
        raise ModelError(f"attention: q has {a.shape[1]} columns, expected {n_heads}x{head_dim}")
    plan = Plan(2 * a.nbytes, threads, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_attention(0, a.nbytes, layer, n_heads, n_kv_heads, head_dim)
    plan.run(positions=positions, kv=kv)
    return plan.f32(a.nbytes, a.shape).copy()
