# ignis/kernels/plan_run.pxi -- running a Plan: every run() argument checked (tokens, positions,
# KV caches, block tables, rows), the scratch buffers sized, then one nogil call.
#
# Included by ignis/_kernels.pyx after plan.pxi (the functions read a Plan's cdef state).


cdef int64_t _att_rows(Plan plan):
    """Score rows an attention work unit holds: its query tokens (ATT_QB, fewer in a plan of
    fewer tokens) times the query heads of a KV group."""
    return min(ATT_QB, plan.n_tokens) * plan._att_group


cdef int64_t _att_floats(Plan plan, int64_t n_ctx):
    """The attention scratch: each thread's score rows, or, for a plan of at most ATT_SPLIT_T
    tokens, every token's and head's score row shared by the threads if that is more."""
    cdef int64_t per_thread = (_att_rows(plan) * n_ctx + 15) // 16 * 16
    cdef int64_t shared = plan.n_tokens * plan._att_heads * n_ctx if plan.n_tokens <= ATT_SPLIT_T else 0
    return max(per_thread * plan.n_threads, shared)


cdef _ensure_scratch(Plan plan, n_ctx):
    """Grow the plan's workspace scratch to what this run needs (its arena was reserved when
    the plan was made)."""
    cdef Workspace ws = plan._ws
    try:
        if ws.qbuf is None or ws.qbuf.nbytes < plan._qbuf_bytes:
            ws.qbuf = _aligned_buffer(max(plan._qbuf_bytes, 64))
        if ws.q16buf is None or ws.q16buf.nbytes < plan._q16_bytes:
            ws.q16buf = _aligned_buffer(max(plan._q16_bytes, 64))
        if ws.fbuf is None or ws.fbuf.size < plan._fbuf_floats:
            ws.fbuf = _aligned_buffer(max(plan._fbuf_floats, 16) * 4, np.float32)
        if plan._kp_bytes and (ws.kpbuf is None or ws.kpbuf.nbytes < plan._kp_bytes * plan.n_threads):
            ws.kpbuf = _aligned_buffer(plan._kp_bytes * plan.n_threads)
        if plan._kp_tab_bytes and (ws.kptab is None or ws.kptab.nbytes < plan._kp_tab_bytes):
            ws.kptab = _aligned_buffer(plan._kp_tab_bytes)
        rf = plan._rope_floats()
        if ws.rope is None or ws.rope.size < rf:
            ws.rope = _aligned_buffer(max(rf, 16) * 4, np.float32)
        att_floats = _att_floats(plan, n_ctx)
        if ws.att is None or ws.att.size < att_floats:
            ws.att = _aligned_buffer(max(att_floats, 16) * 4, np.float32)
    except (MemoryError, ValueError, OverflowError):
        raise ModelError(f"plan.run: cannot allocate the scratch buffers (attention: "
                         f"{_att_rows(plan)} score rows x {n_ctx} positions x {plan.n_threads} threads)") from None


cdef _tables(Plan plan, seqs, tables, block_size, pos, int64_t pos_max, int64_t n_rows):
    """(seq rows int32 [T], tables int32 [n, w], block size) checked against a cache of
    n_rows physical rows: every table entry a block of the cache, every position (pos_max the
    largest) covered by its sequence's table, no two tokens writing one row. Without tables:
    one sequence whose single block is the whole cache (position p is row p)."""
    cdef int64_t T = plan.n_tokens
    if tables is None:
        if seqs is not None or block_size is not None:
            raise ModelError("plan.run: seqs and block_size come with tables")
        tab = np.zeros((1, 1), np.int32)
        bs = n_rows
        seq = np.zeros(T, np.int32)
    else:
        try:
            tab = np.asarray(tables)
        except Exception:
            raise ModelError(f"plan.run: tables must be an integer array, got {type(tables).__name__}") from None
        if tab.dtype.kind not in "iu" or tab.ndim != 2 or tab.shape[0] < 1 or tab.shape[1] < 1:
            raise ModelError(f"plan.run: tables must be a 2-D integer array [sequences, blocks], got "
                             f"{tab.dtype} {tab.shape}")
        bs = _as_int("plan.run: block_size", block_size)
        if bs < 1 or n_rows % bs:
            raise ModelError(f"plan.run: block_size {bs} does not divide the cache's {n_rows} rows")
        tab = _int32_below(tab, n_rows // bs, f"plan.run: a table entry is outside the cache's {n_rows // bs} blocks")
        if seqs is None:
            raise ModelError("plan.run: tables need seqs (each token's table row)")
        seq = _int32_array("seqs", seqs, T)
        lo, hi = _span[int32_t](seq)
        if lo < 0 or hi >= tab.shape[0]:
            raise ModelError(f"plan.run: a token's table row is outside [0, {tab.shape[0]})")
    limit = tab.shape[1] * bs
    if pos_max >= limit:
        raise ContextOverflowError(f"position {pos_max} does not fit the KV cache "
                                   f"of {limit} positions" + (" (its sequence's table)" if tables is not None else ""))
    if plan._writes_kv and T > 1:       # (one token cannot write a row twice)
        where = tab[seq, pos // bs].astype(np.int64) * bs + pos % bs
        if np.unique(where).shape[0] != T:
            raise ModelError("plan.run: two tokens of the step write the same cache row "
                             "(the same position of one sequence, or a shared block)")
    return seq, tab, bs


cdef _run(Plan plan, tokens, positions, kv, seqs, tables, block_size, rows, kv_local, tables_local):
    cdef Ctx c
    cdef int64_t T = plan.n_tokens
    memset(&c, 0, sizeof(Ctx))
    # every argument given is checked, used or not
    tok = _int32_array("tokens", tokens, T) if tokens is not None else None
    pos = _int32_array("positions", positions, T) if positions is not None else None
    pos_min, pos_max = _span[int32_t](pos) if pos is not None else (0, 0)
    kc = vc = kc1 = vc1 = None
    if kv is not None:
        kc, vc = _kv_arrays(kv)
    if kv_local is not None:
        kc1, vc1 = _kv_arrays(kv_local)
    elif tables_local is not None:
        raise ModelError("plan.run: tables_local comes with kv_local")
    if not plan._kv_layers1 and kv_local is not None:
        raise ModelError("plan.run: kv_local and tables_local are for plans with KV layers in pool 1")
    if plan._kv_layers1 and tables_local is None:
        raise ModelError("plan.run: a plan with KV layers in pool 1 needs tables_local (and seqs)")
    if plan._kv_layers1 and plan._kv_layers and tables is None:
        raise ModelError("plan.run: a plan with two KV caches needs tables for both")
    if plan._vocab >= 0:
        if tok is None:
            raise ModelError("plan.run: this plan embeds tokens; pass tokens")
        lo, hi = _span[int32_t](tok)
        if lo < 0 or hi >= plan._vocab:
            bad = lo if lo < 0 else hi
            raise ModelError(f"plan.run: token id {bad} out of range [0, {plan._vocab})")
        c.tokens = <const int32_t *><uintptr_t>_addr(tok)
    n_ctx = n_ctx1 = 0
    for pool, arrays, layers in ((0, (kc, vc), plan._kv_layers), (1, (kc1, vc1), plan._kv_layers1)):
        if not layers:
            continue
        if arrays[0] is None:
            raise ModelError("plan.run: this plan reads/writes the KV cache; pass kv" if pool == 0 else
                             "plan.run: this plan reads/writes the sliding-window KV cache; pass kv_local")
        L, rows_n, H, D = arrays[0].shape
        if L < layers or H != plan._kv_heads or D != plan._kv_hd:
            raise ModelError(f"plan.run: KV cache {'' if pool == 0 else '(kv_local) '}shape {arrays[0].shape} "
                             f"does not fit the plan ({layers} layers, {plan._kv_heads} kv heads x {plan._kv_hd})")
        c.pool[pool].k = <uint16_t *><uintptr_t>_addr(arrays[0])
        c.pool[pool].v = <uint16_t *><uintptr_t>_addr(arrays[1])
        c.pool[pool].n_ctx = rows_n
        c.kv_heads, c.kv_hd = H, D
        if pool == 0:
            n_ctx = rows_n
        else:
            n_ctx1 = rows_n
    if plan._needs_pos:
        if pos is None:
            raise ModelError("plan.run: this plan uses positions; pass positions")
        if pos_min < 0:
            raise ModelError(f"plan.run: negative position {pos_min}")
        c.pos = <const int32_t *><uintptr_t>_addr(pos)
    att_n = 0
    if plan._kv_layers or plan._kv_layers1:
        keep = []          # the checked copies the nogil run reads
        for pool, tb, rows_n, layers in ((0, tables, n_ctx, plan._kv_layers),
                                         (1, tables_local, n_ctx1, plan._kv_layers1)):
            if not layers:
                continue
            seq, tab, bs = _tables(plan, seqs, tb, block_size, pos, pos_max, rows_n)
            keep.append((seq, tab))
            c.seq_row = <const int32_t *><uintptr_t>_addr(seq)
            c.pool[pool].tables = <const int32_t *><uintptr_t>_addr(tab)
            c.pool[pool].tab_w, c.block_size = tab.shape[1], bs
            att_n = max(att_n, tab.shape[1] * bs)
        c.att_n = att_n
    elif seqs is not None or tables is not None or block_size is not None:
        raise ModelError("plan.run: seqs, tables and block_size are for plans that use the KV cache")
    take = None
    if plan._take_n >= 0:
        if rows is None:
            raise ModelError("plan.run: this plan takes rows; pass rows")
        take = _index_array("rows", rows, plan._take_n, plan._take_from)
        c.take = <const int32_t *><uintptr_t>_addr(take)
    elif rows is not None:
        raise ModelError("plan.run: rows is for plans with take_rows")
    _ensure_scratch(plan, att_n)
    cdef Workspace ws = plan._ws
    c.arena = <float *><uintptr_t>_addr(ws.arena)
    c.qbuf = <uint8_t *><uintptr_t>_addr(ws.qbuf)
    c.q16buf = <uint8_t *><uintptr_t>_addr(ws.q16buf)
    c.fbuf = <float *><uintptr_t>_addr(ws.fbuf)
    if plan._kp_bytes:
        c.kp_buf = <uint8_t *><uintptr_t>_addr(ws.kpbuf)
        c.kp_stride = plan._kp_bytes
    if plan._kp_tab_bytes:
        c.kp_tab = <uint8_t *><uintptr_t>_addr(ws.kptab)
        c.kp_tab_bytes = plan._kp_tab_bytes
    c.rope = <float *><uintptr_t>_addr(ws.rope)
    c.att = <float *><uintptr_t>_addr(ws.att)
    c.att_stride = (_att_rows(plan) * att_n + 15) // 16 * 16
    c.att_floats = ws.att.size
    c.T = T
    c.ins = plan.ins
    c.n_ins = plan.n_ins
    c.slots = &plan.slots[0]
    c.n_slots = plan.n_slots
    if plan._counters is None or plan._counters.shape[0] < 2 * plan.n_ins:
        plan._counters = np.zeros(max(2 * plan.n_ins, 2), dtype=np.int64)
    else:
        plan._counters[:] = 0
    c.counters = <long long *><uintptr_t>_addr(plan._counters)
    cdef int nt = plan.n_threads
    with nogil:
        ignis_parallel(run_thread, &c, &c.bar, nt)
