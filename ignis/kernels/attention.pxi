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


cdef void k_attention(Ctx *c, Instr *ins, long long *counter, int tid, int nt) noexcept nogil:
    """Work unit = (a block of ATT_QB consecutive tokens, kv head g): each K row is read once
    for the block's tokens of one sequence and the G query heads of the group (a blocked
    Q.K^T; each score is the same dot as unblocked), each V row once per token and group.
    Causal, per sequence: token t sees positions lo(t)..pos[t] of its own sequence, found block
    by block through its table (a block's rows are contiguous); lo(t) = 0, or with a sliding
    window (ins.window > 0) max(0, pos[t] - window + 1): positions before it are never read.
    A token's scores, softmax and weighted sum run over exactly its own positions in order,
    so its result does not depend on the other tokens of its run (chunking, batching).
    A few tokens with a long context split their positions across the threads instead
    (attention_split: the same scores, the same softmax and sums)."""
    if split_wanted(c, ins, nt):
        attention_split(c, ins, counter, tid, nt)
        return
    cdef int64_t G = ins.n_heads // ins.n_kv_heads, hd = ins.head_dim
    cdef int64_t wq = <int64_t>ins.n_heads * hd, wkv = c.kv_heads * hd
    cdef int64_t n_blocks = (ins.rows + ATT_QB - 1) // ATT_QB
    cdef int64_t units = n_blocks * ins.n_kv_heads, u, t, ta, tb, te, g, s, nmax, b, b0, m
    cdef int64_t lo, lo_run
    cdef int64_t bs = c.block_size, stride = c.att_n
    cdef float *S0 = c.att + tid * c.att_stride
    cdef KVPool *kp = &c.pool[ins.pool]
    cdef const uint16_t *K = kp.k + <int64_t>ins.layer * kp.n_ctx * wkv
    cdef const uint16_t *row
    cdef const int32_t *tab
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
                lo = att_lo(c, ins, t)
                lo_run = lo if lo_run < 0 else _min(lo_run, lo)
            b = lo_run // bs
            while b * bs < nmax:
                b0, m = b * bs, _min(bs, nmax - b * bs)
                s = _max(lo_run - b0, 0)
                # the block's rows s..m-1 for every token of the run (a score outside a token's
                # own range is never read)
                row = K + (<int64_t>tab[b] * bs + s) * wkv + g * hd
                prefetch_next_block(K, tab, b, nmax, bs, wkv, g * hd, hd)
                ignis_dot_f32_f16_rows(c.arena + ins.x + ta * wq + g * G * hd, tb - ta, wq, G, hd, row, wkv, m - s,
                                       S0 + b0 + s, G * stride, stride)
                b += 1
            for t in range(ta, tb):
                attend(c, ins, t, g, S0 + (t - ta) * G * stride, stride, 0, G)
            ta = tb


cdef inline void prefetch_next_block(const uint16_t *cache, const int32_t *tab, int64_t b, int64_t end, int64_t bs,
                                     int64_t wkv, int64_t col, int64_t hd) noexcept nogil:
    """Ask for the rows of block b + 1 below position `end` (hd values at column col of each
    wkv-wide cache row) while block b is used: a block is 16 strided rows, too short a run for
    the hardware prefetcher (measured: SmolLM2 attention at 2048 positions, 7.4 -> 4.4 ms a
    token)."""
    cdef int64_t p = (b + 1) * bs
    if p < end:
        ignis_prefetch_rows(cache + <int64_t>tab[b + 1] * bs * wkv + col, _min(bs, end - p), wkv * 2, hd * 2)


cdef inline int64_t att_lo(Ctx *c, Instr *ins, int64_t t) noexcept nogil:
    """The first position token t attends to (0, or the start of its sliding window)."""
    return _max(0, <int64_t>c.pos[t] - ins.window + 1) if ins.window > 0 else 0


cdef void attend(Ctx *c, Instr *ins, int64_t t, int64_t g, float *S, int64_t stride,
                 int64_t h0, int64_t h1) noexcept nogil:
    """Heads h0..h1-1 of token t's kv group g once their scores are in S (head h's row at
    S + h * stride, positions att_lo(t)..pos[t]): each head's scaled softmax, then its sum over
    the V rows in order, a block at a time (the same bits as one call), every V row read once
    for the heads. Each element's sum is the same whichever heads run together (av_heads_acc),
    and a Q8_0 block of the output lies in one head when the heads are split (split_heads)."""
    cdef int64_t G = ins.n_heads // ins.n_kv_heads, hd = ins.head_dim
    cdef int64_t wq = <int64_t>ins.n_heads * hd, wkv = c.kv_heads * hd
    cdef int64_t n = <int64_t>c.pos[t] + 1, lo = att_lo(c, ins, t), bs = c.block_size, h, b, b0, s0, m
    cdef float sqrt_hd = sqrtf(<float>hd)
    cdef KVPool *kp = &c.pool[ins.pool]
    cdef const uint16_t *V = kp.v + <int64_t>ins.layer * kp.n_ctx * wkv
    cdef const int32_t *tab = kp.tables + <int64_t>c.seq_row[t] * kp.tab_w
    cdef float *o = c.arena + ins.out + t * wq + (g * G + h0) * hd
    for h in range(h0, h1):
        ignis_div_row(S + h * stride + lo, sqrt_hd, n - lo)
        softmax_row(S + h * stride + lo, n - lo)
    memset(o, 0, (h1 - h0) * hd * sizeof(float))
    b = lo // bs
    while b * bs < n:
        b0 = b * bs
        s0 = _max(b0, lo)
        m = _min(b0 + bs, n) - s0
        prefetch_next_block(V, tab, b, n, bs, wkv, g * hd, hd)
        ignis_av_heads_acc(S + h0 * stride + s0, stride, V + (<int64_t>tab[b] * bs + s0 - b0) * wkv + g * hd,
                           wkv, m, o, hd, h1 - h0)
        b += 1
    if ins.quantize_out:    # these columns are whole Q8_0 blocks (G*hd % 32 == 0; split: hd % 32 == 0)
        ignis_quantize_row_q8_0(o, c.qbuf + t * ins.xq_row_bytes + ((g * G + h0) * hd // 32) * 34, (h1 - h0) * hd)


cdef bint split_wanted(Ctx *c, Instr *ins, int nt) noexcept nogil:
    """Whether the attention splits positions across threads: a few tokens (a decode step, a
    short verify), one of them past ATT_CHUNK positions, and the shared scores fit the scratch.
    Every thread decides alike (it reads only the plan and the run's positions)."""
    cdef int64_t t, longest = 0
    if nt < 2 or ins.rows > ATT_SPLIT_T or ins.rows * ins.n_heads * c.att_n > c.att_floats:
        return False
    for t in range(ins.rows):
        longest = _max(longest, <int64_t>c.pos[t] + 1 - att_lo(c, ins, t))
    return longest > ATT_CHUNK


cdef void attention_split(Ctx *c, Instr *ins, long long *counter, int tid, int nt) noexcept nogil:
    """Attention of a few tokens with long contexts, in two phases. First the scores: work unit
    = (token t, kv head g, ATT_CHUNK positions), written to a score row per token and head that
    every thread sees; the units are many and small, so the threads share them evenly whatever
    the number of kv heads (one per unit (token, group) would leave a thread idle with 3 groups
    on 2 threads, or 1). After a barrier, unit = (t, g): attend() as in k_attention, or (t, g,
    head) when those are fewer than the threads. Each score is the same dot as there (a
    position's score does not depend on the rows beside it), so the bits are k_attention's."""
    cdef int64_t G = ins.n_heads // ins.n_kv_heads, hd = ins.head_dim
    cdef int64_t wq = <int64_t>ins.n_heads * hd, wkv = c.kv_heads * hd
    cdef int64_t stride = c.att_n, bs = c.block_size, t, g, ch, u, n, p, p1, b, m, chunks = 0
    cdef KVPool *kp = &c.pool[ins.pool]
    cdef const uint16_t *K = kp.k + <int64_t>ins.layer * kp.n_ctx * wkv
    cdef const int32_t *tab
    cdef float *S
    for t in range(ins.rows):
        chunks = _max(chunks, (<int64_t>c.pos[t] + ATT_CHUNK) // ATT_CHUNK)
    cdef int64_t units = ins.rows * ins.n_kv_heads * chunks
    while True:
        u = ignis_next_chunk(&counter[0])
        if u >= units:
            break
        ch = u % chunks
        g = (u // chunks) % ins.n_kv_heads
        t = u // (chunks * ins.n_kv_heads)
        n = <int64_t>c.pos[t] + 1
        p = _max(ch * ATT_CHUNK, att_lo(c, ins, t))
        p1 = _min((ch + 1) * ATT_CHUNK, n)
        S = c.att + (t * ins.n_heads + g * G) * stride
        tab = kp.tables + <int64_t>c.seq_row[t] * kp.tab_w
        while p < p1:       # the chunk block by block (a block's rows are contiguous)
            b = p // bs
            m = _min((b + 1) * bs, p1) - p
            prefetch_next_block(K, tab, b, p1, bs, wkv, g * hd, hd)
            ignis_dot_f32_f16_rows(c.arena + ins.x + t * wq + g * G * hd, 1, wq, G, hd,
                                   K + (<int64_t>tab[b] * bs + p - b * bs) * wkv + g * hd, wkv, m,
                                   S + p, stride, stride)
            p += m
    ignis_bar_wait(&c.bar)
    # fewer (token, group) units than threads (one kv head, a decode step): a unit per head
    cdef bint split_heads = ins.rows * ins.n_kv_heads < nt and hd % 32 == 0
    cdef int64_t per = G if split_heads else 1, h
    units = ins.rows * ins.n_kv_heads * per
    while True:
        u = ignis_next_chunk(&counter[1])
        if u >= units:
            break
        h = u % per
        g = (u // per) % ins.n_kv_heads
        t = u // (per * ins.n_kv_heads)
        S = c.att + (t * ins.n_heads + g * G) * stride
        if split_heads:
            attend(c, ins, t, g, S, stride, h, h + 1)
        else:
            attend(c, ins, t, g, S, stride, 0, G)
