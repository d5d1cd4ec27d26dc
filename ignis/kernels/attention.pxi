# ignis/kernels/attention.pxi -- the KV cache: stores (kv_write, the rope+store half of
# qkv_rope_kv) and causal GQA attention over a paged cache.
#
# Included by ignis/_kernels.pyx. Position p of token t's sequence lives in cache row
# tables[seq_row[t], p // block_size] * block_size + p % block_size. run() checked before
# the nogil call: every table entry is a block of the cache, each token's table covers
# its positions, no two tokens write one row. Attention visits positions 0..pos[t] in
# order, block by block; its sums are the same bits as one pass over contiguous rows.

cdef inline int64_t kv_row(Ctx *c, int64_t t, int64_t p) noexcept nogil:
    """The physical cache row of position p of token t's sequence (run() checked that the
    table covers it and that its block is in the cache)."""
    cdef const int32_t *tab = c.tables + <int64_t>c.seq_row[t] * c.tab_w
    return <int64_t>tab[p // c.block_size] * c.block_size + p % c.block_size


cdef inline void kv_store(Ctx *c, int layer, int64_t t, const float *k, const float *v) noexcept nogil:
    """Token t's k and v (f16) at its position of its sequence."""
    cdef int64_t w = c.kv_heads * c.kv_hd
    cdef int64_t at = (<int64_t>layer * c.n_ctx + kv_row(c, t, c.pos[t])) * w
    ignis_f32_to_f16_row(k, c.kc + at, w)
    ignis_f32_to_f16_row(v, c.vc + at, w)


cdef void k_kv_write(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t, w = <int64_t>ins.n_kv_heads * ins.head_dim
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        kv_store(c, ins.layer, t, c.arena + ins.x + t * w, c.arena + ins.x2 + t * w)


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
        kv_store(c, ins.layer, t, kv, kv + wk)


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
    """Work unit = (a block of ATT_QB consecutive tokens, kv head g): each K row is read once
    for the block's tokens of one sequence and the G query heads of the group (a blocked
    Q.K^T; each score is the same dot as unblocked), each V row once per token and group.
    Causal, per sequence: token t sees positions 0..pos[t] of its own sequence, found block
    by block through its table (a block's rows are contiguous)."""
    cdef int64_t G = ins.n_heads // ins.n_kv_heads, hd = ins.head_dim
    cdef int64_t wq = <int64_t>ins.n_heads * hd, wkv = c.kv_heads * hd
    cdef int64_t n_blocks = (ins.rows + ATT_QB - 1) // ATT_QB
    cdef int64_t units = n_blocks * ins.n_kv_heads, u, t, ta, tb, te, g, h, s, n, nmax, b, b0, m
    cdef int64_t bs = c.block_size, stride = c.att_n
    cdef float *S0 = c.att + tid * c.att_stride
    cdef float *S
    cdef float sqrt_hd = sqrtf(<float>hd)
    cdef const uint16_t *K = c.kc + <int64_t>ins.layer * c.n_ctx * wkv
    cdef const uint16_t *V = c.vc + <int64_t>ins.layer * c.n_ctx * wkv
    cdef const uint16_t *row
    cdef const int32_t *tab
    cdef float *o
    while True:
        u = ignis_next_chunk(counter)
        if u >= units:
            break
        g = u % ins.n_kv_heads
        ta = (u // ins.n_kv_heads) * ATT_QB
        te = _min(ta + ATT_QB, ins.rows)
        while ta < te:
            # the run [ta, tb) of tokens of one sequence (one block table)
            tb = ta + 1
            while tb < te and c.seq_row[tb] == c.seq_row[ta]:
                tb += 1
            tab = c.tables + <int64_t>c.seq_row[ta] * c.tab_w
            nmax = 0
            for t in range(ta, tb):
                nmax = _max(nmax, <int64_t>c.pos[t] + 1)
            b = 0
            while b * bs < nmax:
                b0, m = b * bs, _min(bs, nmax - b * bs)
                for s in range(m):
                    # every token of the run (a score past a token's own position is never read)
                    row = K + (<int64_t>tab[b] * bs + s) * wkv + g * hd
                    ignis_dot_f32_f16_heads(c.arena + ins.x + ta * wq + g * G * hd, tb - ta, wq, G, hd, row,
                                            S0 + b0 + s, G * stride, stride)
                b += 1
            for t in range(ta, tb):
                S = S0 + (t - ta) * G * stride
                n = <int64_t>c.pos[t] + 1
                o = c.arena + ins.out + t * wq + g * G * hd
                for h in range(G):
                    ignis_div_row(S + h * stride, sqrt_hd, n)
                    softmax_row(S + h * stride, n)
                for h in range(G):
                    # one sum over the positions in order, a block at a time (the same bits as one call)
                    memset(o + h * hd, 0, hd * sizeof(float))
                    b = 0
                    while b * bs < n:
                        b0, m = b * bs, _min(bs, n - b * bs)
                        ignis_av_head_acc(S + h * stride + b0, V + <int64_t>tab[b] * bs * wkv + g * hd, wkv, m,
                                          o + h * hd, hd)
                        b += 1
                if ins.quantize_out:    # this unit's columns are whole Q8_0 blocks (G*hd % 32 == 0)
                    ignis_quantize_row_q8_0(o, c.qbuf + t * ins.xq_row_bytes + (g * G * hd // 32) * 34, G * hd)
            ta = tb
