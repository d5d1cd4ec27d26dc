# ignis/kernels/elementwise.pxi -- row and elementwise kernels: embedding, norms,
# activation quantization, bias, RoPE, add/mul/silu/swiglu, take_last/take_rows, rope tables.
#
# Included by ignis/_kernels.pyx (its types and SIMD entry points are in scope). Every
# kernel computes its share (thread tid of nt) of one instruction, nogil, without
# allocating; it may assume what Plan checked when the instruction was added (regions
# inside the arena, widths multiples of the block size, rows <= T) and must not check
# anything itself. Rows are split across threads by index, so a row's result does not
# depend on the thread count.

cdef inline int64_t _lo(int64_t n, int tid, int nt) noexcept nogil:
    return n * tid // nt


cdef inline int64_t _min(int64_t a, int64_t b) noexcept nogil:
    return a if a < b else b


cdef inline int64_t _max(int64_t a, int64_t b) noexcept nogil:
    return a if a > b else b


cdef inline void dequant_row(int wtype, const uint8_t *row, float *dst, int64_t k) noexcept nogil:
    if wtype == T_F32:
        memcpy(dst, row, k * 4)
    elif wtype == T_F16:
        ignis_f16_to_f32_row(<const uint16_t *>row, dst, k)
    elif wtype == T_Q8_0:
        ignis_dequant_row_q8_0(row, dst, k)
    elif wtype == T_Q5_0:
        ignis_dequant_row_q5_0(row, dst, k)
    elif wtype == T_Q4_1:
        ignis_dequant_row_q4_1(row, dst, k)
    elif wtype == T_Q4_K:
        ignis_dequant_row_q4_k(row, dst, k)
    elif wtype == T_Q6_K:
        ignis_dequant_row_q6_k(row, dst, k)
    elif wtype == T_Q5_K or wtype == T_Q3_K or wtype == T_Q2_K or wtype == T_IQ4_XS:
        ignis_dequant_row_kx(wtype, row, dst, k)
    else:   # Q4_0, Q5_1, IQ4_NL, BF16
        ignis_dequant_row_32x(wtype, row, dst, k)


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


cdef void k_head_rmsnorm(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    """rmsnorm of each head (head_dim values, gain vec[head_dim]) of rows x n_heads heads:
    the rows of rmsnorm over a [rows * n_heads, head_dim] view (a head is read whole before
    it is written, so out may be x)."""
    cdef int64_t u, hd = ins.head_dim, units = ins.rows * ins.n_heads
    cdef float r
    for u in range(_lo(units, tid, nt), _lo(units, tid + 1, nt)):
        r = rms_inv_row(c.arena + ins.x + u * hd, hd, ins.eps)
        ignis_scale_row(c.arena + ins.x + u * hd, r, ins.vec, c.arena + ins.out + u * hd, hd)


cdef void k_rmsnorm_add(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    """out = res + scale_rows(y, rms_inv(y), g), element by element the two ops' arithmetic
    ((y * r) * g, then res + that); out may be res."""
    cdef int64_t t, i
    cdef float r
    cdef const float *y
    cdef const float *res
    cdef float *o
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        y = c.arena + ins.x + t * ins.k
        res = c.arena + ins.x2 + t * ins.k
        o = c.arena + ins.out + t * ins.k
        r = rms_inv_row(y, ins.k, ins.eps)
        for i in range(ins.k):
            o[i] = res[i] + (y[i] * r) * ins.vec[i]


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


cdef void k_add_bias(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        ignis_add_row(c.arena + ins.x + t * ins.n, ins.vec, c.arena + ins.out + t * ins.n, ins.n)


cdef inline void rope_row(const float *x, float *y, int n_heads, int hd, const float *cs,
                          const float *sn, int mode) noexcept nogil:
    cdef int h
    for h in range(n_heads):
        if mode == ROPE_NORMAL:
            ignis_rope_head_pairs(x + h * hd, y + h * hd, cs, sn, hd // 2)
        else:
            ignis_rope_head(x + h * hd, y + h * hd, cs, sn, hd // 2)


cdef void k_rope(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t, half = ins.head_dim // 2
    cdef const float *tab = c.rope + c.slots[ins.rope_slot].offset
    cdef int64_t w = <int64_t>ins.n_heads * ins.head_dim
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        rope_row(c.arena + ins.x + t * w, c.arena + ins.out + t * w, ins.n_heads, ins.head_dim,
                 tab + t * half, tab + (c.T + t) * half, ins.rope_mode)


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
    elif ins.op == OP_GELU:
        ignis_gelu_row(a, y, i1 - i0)
    elif ins.op == OP_SCALE:
        for i in range(i1 - i0):
            y[i] = a[i] * ins.factor
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


cdef void k_take_rows(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    """out[i] = x[take[i]] for i < n (out never overlaps x)."""
    cdef int64_t i
    for i in range(_lo(ins.n, tid, nt), _lo(ins.n, tid + 1, nt)):
        memcpy(c.arena + ins.out + i * ins.k, c.arena + ins.x + <int64_t>c.take[i] * ins.k, ins.k * sizeof(float))


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
