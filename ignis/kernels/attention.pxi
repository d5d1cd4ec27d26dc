# ignis/kernels/attention.pxi -- the KV cache: stores (kv_write, the rope+store half of
# qkv_rope_kv) and causal GQA attention over a paged cache.
#
# Included by ignis/_kernels.pyx. Position p of token t's sequence lives in cache row
# tables[seq_row[t], p // block_size] * block_size + p % block_size of the instruction's
# cache (Ctx.pool[ins.pool]: its k, v and tables). run() checked before
# the nogil call: every table entry is a block of the cache, each token's table covers
# its positions, no two tokens write one row. Attention visits positions 0..pos[t] in
# order, block by block; its sums are the same bits as one pass over contiguous rows.

cdef inline int64_t kv_row(KVPool *kp, Ctx *c, int64_t t, int64_t p) noexcept nogil:
    """The physical cache row of position p of token t's sequence (run() checked that the
    table covers it and that its block is in the cache)."""
    cdef const int32_t *tab = kp.tables + <int64_t>c.seq_row[t] * kp.tab_w
    return <int64_t>tab[p // c.block_size] * c.block_size + p % c.block_size


cdef inline void kv_store(Ctx *c, Instr *ins, int64_t t, const float *k, const float *v) noexcept nogil:
    """Token t's k and v (f16) at its position of its sequence, in the instruction's cache."""
    cdef KVPool *kp = &c.pool[ins.pool]
    cdef int64_t w = c.kv_heads * c.kv_hd
    cdef int64_t at = (<int64_t>ins.layer * kp.n_ctx + kv_row(kp, c, t, c.pos[t])) * w
    ignis_f32_to_f16_row(k, kp.k + at, w)
    ignis_f32_to_f16_row(v, kp.v + at, w)


cdef void k_kv_write(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    cdef int64_t t, w = <int64_t>ins.n_kv_heads * ins.head_dim
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        kv_store(c, ins, t, c.arena + ins.x + t * w, c.arena + ins.x2 + t * w)


cdef inline void head_norm_row(float *x, int n_heads, int64_t hd, const float *g, float eps) noexcept nogil:
    """One token's heads RMS-normed in place: head_rmsnorm's arithmetic (k_head_rmsnorm)."""
    cdef int h
    cdef float r
    for h in range(n_heads):
        r = rms_inv_row(x + h * hd, hd, eps)
        ignis_scale_row(x + h * hd, r, g, x + h * hd, hd)


cdef void k_rope_kv(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    """The second half of qkv_rope_kv (and qkv_norm_rope_kv: head norms first): rope q in
    place, rope k in scratch, store k and v."""
    cdef int64_t t, half = ins.head_dim // 2
    cdef int64_t wq = <int64_t>ins.n_heads * ins.head_dim, wk = <int64_t>ins.n_kv_heads * ins.head_dim
    cdef const float *tab = c.rope + c.slots[ins.rope_slot].offset
    cdef float *q
    cdef float *kv
    for t in range(_lo(ins.rows, tid, nt), _lo(ins.rows, tid + 1, nt)):
        q = c.arena + ins.out + t * wq
        kv = c.fbuf + t * 2 * wk
        if ins.vec != NULL:     # qkv_norm_rope_kv: head_rmsnorm of q and k first, in place
            head_norm_row(q, ins.n_heads, ins.head_dim, ins.vec, ins.eps)
            head_norm_row(kv, ins.n_kv_heads, ins.head_dim, ins.vec2, ins.eps)
        rope_row(q, q, ins.n_heads, ins.head_dim, tab + t * half, tab + (c.T + t) * half, ins.rope_mode)
        rope_row(kv, kv, ins.n_kv_heads, ins.head_dim, tab + t * half, tab + (c.T + t) * half, ins.rope_mode)
        kv_store(c, ins, t, kv, kv + wk)


cdef inline void softmax_row(float *x, int64_t n) noexcept nogil:
    """x = exp(x - max) * (1 / sum)"""
    cdef int64_t i
    cdef float m = ignis_max_row(x, n), inv
    inv = (<float>1.0) / ignis_exp_sub_sum(x, m, n)
    for i in range(n):
        x[i] = x[i] * inv


cdef void k_attention(Ctx *c, Instr *ins, long long *counter, int tid) noexcept nogil:
    """Work unit = (a block of ATT_QB consecutive tokens, kv head g): each K row is read once
    for the block's tokens of one sequence and the G query heads of the group (a blocked
    Q.K^T; each score is the same dot as unblocked), each V row once per token and group.
    Causal, per sequence: token t sees positions lo(t)..pos[t] of its own sequence, found block
    by block through its table (a block's rows are contiguous); lo(t) = 0, or with a sliding
    window (ins.window > 0) max(0, pos[t] - window + 1): positions before it are never read.
    A token's scores, softmax and weighted sum run over exactly its own positions in order,
    so its result does not depend on the other tokens of its run (chunking, batching)."""
    cdef int64_t G = ins.n_heads // ins.n_kv_heads, hd = ins.head_dim
    cdef int64_t wq = <int64_t>ins.n_heads * hd, wkv = c.kv_heads * hd
    cdef int64_t n_blocks = (ins.rows + ATT_QB - 1) // ATT_QB
    cdef int64_t units = n_blocks * ins.n_kv_heads, u, t, ta, tb, te, g, h, s, n, nmax, b, b0, m
    cdef int64_t lo, lo_run, s0
    cdef int64_t bs = c.block_size, stride = c.att_n, window = ins.window
    cdef float *S0 = c.att + tid * c.att_stride
    cdef float *S
    cdef float sqrt_hd = sqrtf(<float>hd)
    cdef KVPool *kp = &c.pool[ins.pool]
    cdef const uint16_t *K = kp.k + <int64_t>ins.layer * kp.n_ctx * wkv
    cdef const uint16_t *V = kp.v + <int64_t>ins.layer * kp.n_ctx * wkv
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
            tab = kp.tables + <int64_t>c.seq_row[ta] * kp.tab_w
            nmax = 0
            lo_run = -1
            for t in range(ta, tb):
                nmax = _max(nmax, <int64_t>c.pos[t] + 1)
                lo = _max(0, <int64_t>c.pos[t] - window + 1) if window > 0 else 0
                lo_run = lo if lo_run < 0 else _min(lo_run, lo)
            b = lo_run // bs
            while b * bs < nmax:
                b0, m = b * bs, _min(bs, nmax - b * bs)
                s = _max(lo_run - b0, 0)
                # the block's rows s..m-1 for every token of the run (a score outside a token's
                # own range is never read)
                row = K + (<int64_t>tab[b] * bs + s) * wkv + g * hd
                ignis_dot_f32_f16_rows(c.arena + ins.x + ta * wq + g * G * hd, tb - ta, wq, G, hd, row, wkv, m - s,
                                       S0 + b0 + s, G * stride, stride)
                b += 1
            for t in range(ta, tb):
                S = S0 + (t - ta) * G * stride
                n = <int64_t>c.pos[t] + 1
                lo = _max(0, n - window) if window > 0 else 0
                o = c.arena + ins.out + t * wq + g * G * hd
                for h in range(G):
                    ignis_div_row(S + h * stride + lo, sqrt_hd, n - lo)
                    softmax_row(S + h * stride + lo, n - lo)
                # each head's sum over the positions in order, a block at a time (the same bits
                # as one call), every V row read once for the G heads
                memset(o, 0, G * hd * sizeof(float))
                b = lo // bs
                while b * bs < n:
                    b0 = b * bs
                    s0 = _max(b0, lo)
                    m = _min(b0 + bs, n) - s0
                    ignis_av_heads_acc(S + s0, stride, V + (<int64_t>tab[b] * bs + s0 - b0) * wkv + g * hd,
                                       wkv, m, o, hd, G)
                    b += 1
                if ins.quantize_out:    # this unit's columns are whole Q8_0 blocks (G*hd % 32 == 0)
                    ignis_quantize_row_q8_0(o, c.qbuf + t * ins.xq_row_bytes + (g * G * hd // 32) * 34, G * hd)
            ta = tb
