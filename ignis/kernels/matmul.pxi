# ignis/kernels/matmul.pxi -- the matmul tiles and their epilogues (store, bias, residual,
# SwiGLU or GeGLU of the gate/up halves, the q | k,v split of qkv).
#
# Included by ignis/_kernels.pyx. Invariants it relies on (checked by Plan at add time):
# a weight given as parts covers rows [pstart[p], pstart[p+1]) of part p, a gate/up
# weight's part boundaries mirror across n_ff (so an up tile lies in one part), k is a
# multiple of the weight's block size, x's quantized copy is in scratch. An output element
# is one tile's dot product plus its epilogue: its bits do not depend on the tile it was
# computed in, on T or on the thread count (the chunks threads take are whole rows).
#
# Quantized rows at a level that prepares them (avx512: simd/kq_prep.h; avx2 / avxvnni: simd/prep_x86.h) and more than 8
# tokens: first the threads write the token tables of every 8 tokens (plan scratch), then
# the rows of up to 8 tiles are unpacked once into the thread's scratch and run against each
# table in turn (the same bits: the same tile operations as the plain tile).
#
# F16 / BF16 weights and more than 8 tokens, at every level: a batch of row groups widened to
# f32 once into the thread's scratch, then the F32 tile against every 8 tokens (wf_prepared_rows;
# the float types share one definition, so the bits are the same).
#
# A few tokens (decode, a speculative verify step, a small decode batch: zt_wanted) at a level
# with decode token tables (avx512; simd/zt_decode.h): the threads first write every token's
# table (what the decode kernels would otherwise rebuild for every 8 weight rows), then the
# Q4_K / Q6_K / Q2_K / Q3_K tiles read them, and from ZT32_MIN_ROWS tokens the Q8_0 / Q5_0 / Q4_0 / IQ4_NL
# tiles too; such a matmul takes no prepared rows.

cdef inline int tile_rows(Instr *ins, int64_t n0, int64_t rs, int rm, const uint8_t **wp) noexcept nogil:
    """wp[i] = W row n0 + i*rs (i < rm, rows of one part); returns the part's weight type."""
    cdef int i, p = 0
    while n0 >= ins.pstart[p + 1]:
        p += 1
    for i in range(rm):
        wp[i] = ins.pw[p] + (n0 + i * rs - ins.pstart[p]) * ins.prb[p]
    return ins.ptype[p]


cdef inline void matmul_tile(Ctx *c, Instr *ins, int64_t n0, int64_t rs, int rm, int64_t t0, int rn,
                             float *r, bint zt) noexcept nogil:
    """r[j*8 + i] = W row (n0 + i*rs) . x row (t0 + j) for i < rm, j < rn (rows of one part);
    zt: the decode token tables are written (zt_fill_tables)."""
    cdef int j
    cdef const uint8_t *wp[TILE]
    cdef const uint8_t *xp[TILE]
    cdef int64_t k = ins.k
    cdef int wtype = tile_rows(ins, n0, rs, rm, wp)
    if zt and zt_type_ok(wtype, k, ins.rows):
        for j in range(rn):
            xp[j] = c.kp_tab + (t0 + j) * zt_sbs(k) * IGNIS_ZT_SB_BYTES
        ignis_zt_tile(wtype, k, wp, rm, xp, rn, r)
        return
    if wtype == T_F32 or wtype == T_F16 or wtype == T_BF16:     # the float rows, k elements
        for j in range(rn):
            xp[j] = <const uint8_t *>(c.arena + ins.x + (t0 + j) * k)
        ignis_tile(wtype, k, wp, rm, xp, rn, r)
        return
    if ins.act16:
        for j in range(rn):
            xp[j] = c.q16buf + (t0 + j) * (k // 32) * 68
        ignis_tile_q16(k // 32, wp, rm, xp, rn, r)
        return
    for j in range(rn):
        xp[j] = c.qbuf + (t0 + j) * ins.xq_row_bytes
    ignis_tile(wtype, k // 256 if (T_Q2_K <= wtype <= T_Q6_K or wtype == T_IQ4_XS) else k // 32, wp, rm, xp, rn, r)


cdef inline int64_t segment_chunks(int64_t rows, int nt, int64_t row_bytes) noexcept nogil:
    """Chunks of a run of weight rows: 16 per thread (so that a thread slowed by another
    process leaves a short tail), but at least 64 rows each (8 streams of 8 rows), and a
    multiple of the threads while each keeps 8 rows (SmolLM2's 576 rows in 9 chunks left one
    thread a chunk behind the other at every such matmul). row_bytes > 0 (a matmul of a few
    tokens, bound by memory): at least CHUNK_MIN_BYTES of weights each, as long as every
    thread gets one. SmolLM2's decode chunks were 20 KB, 8 streams of 2.5 KB that ended before
    the prefetchers got going: its IQ4_NL matmuls ran at 10 GB/s of the machine's 30."""
    cdef int64_t n
    if nt <= 1:
        return 1
    n = _min((rows + 63) // 64, 16 * nt)
    if row_bytes > 0:
        n = _min(n, _max(nt, rows * row_bytes // CHUNK_MIN_BYTES))
    return _max(_min((n + nt - 1) // nt * nt, rows // TILE), n)


cdef inline int64_t chunk_row_bytes(Instr *ins, int p) noexcept nogil:
    """The weight bytes a chunk reads per output row of part p for segment_chunks (gate/up: both
    halves); 0 for a matmul of more tokens than a tile (bound by compute: the default chunks)."""
    if ins.rows > TILE:
        return 0
    return ins.prb[p] * (2 if ins.epi == EPI_SWIGLU or ins.epi == EPI_GEGLU else 1)


cdef inline int64_t chunk_start(int64_t lo, int64_t hi, int64_t nch, int64_t ci) noexcept nogil:
    """Where chunk ci of the nch chunks of rows [lo, hi) starts: a whole number of 8-row tiles
    from lo (no chunk ends in a tile of a few rows), hi for ci = nch."""
    return hi if ci >= nch else lo + (hi - lo) * ci // nch // TILE * TILE


cdef void k_matmul(Ctx *c, Instr *ins, long long *counter, int tid, int nt) noexcept nogil:
    """The output rows [0, n) cut at weight-part boundaries into segments, each segment into
    chunks (segment_chunks) that the threads take dynamically."""
    cdef int64_t N = ins.n, total = 0, lo, hi, nch, ci
    cdef int p
    for p in range(ins.n_parts):
        lo = ins.pstart[p]
        hi = _min(ins.pstart[p + 1], N)
        if hi > lo:
            total += segment_chunks(hi - lo, nt, chunk_row_bytes(ins, p))
    cdef long long chunk
    cdef bint zt = zt_tables_ready(c, ins)
    cdef bint tables = not zt and kp_tables_ready(c, ins)
    if tables:      # every thread takes this branch (the test reads only the plan and the level)
        kp_fill_tables(c, ins, tid, nt)
        ignis_bar_wait(&c.bar)
    elif zt:
        zt_fill_tables(c, ins, tid, nt)
        ignis_bar_wait(&c.bar)
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
            nch = segment_chunks(hi - lo, nt, chunk_row_bytes(ins, p))
            if ci < nch:
                matmul_rows(c, ins, chunk_start(lo, hi, nch, ci), chunk_start(lo, hi, nch, ci + 1), tid, tables, zt)
                break
            ci -= nch


cdef void matmul_rows(Ctx *c, Instr *ins, int64_t r0, int64_t r1, int tid, bint tables, bint zt) noexcept nogil:
    """Rows [r0, r1) as 8 interleaved streams: tile i takes rows r0 + i + j*Q (j < 8), so the
    memory system sees 8 sequential streams (one stream gets well under half the bandwidth
    on Zen 3). The leftover rows go in plain tiles. With the token tables written: prepared
    rows where they can be."""
    cdef int64_t Q = (r1 - r0) // TILE, i, n
    cdef int rm
    if tables and kp_prepared_rows(c, ins, r0, r1, tid):
        return
    if wf_prepared_rows(c, ins, r0, r1, tid):
        return
    for i in range(Q):
        matmul_block(c, ins, r0 + i, Q, TILE, zt)
    n = r0 + TILE * Q
    while n < r1:
        rm = <int>_min(TILE, r1 - n)
        matmul_block(c, ins, n, 1, rm, zt)
        n += rm


cdef void matmul_block(Ctx *c, Instr *ins, int64_t n0, int64_t rs, int rm, bint zt) noexcept nogil:
    """Weight rows n0 + i*rs (i < rm) against every row of x, 8 at a time, then the epilogue."""
    cdef int64_t T = ins.rows, t0 = 0
    cdef int rn
    cdef float r[TILE * TILE]
    cdef float r2[TILE * TILE]
    while t0 < T:
        rn = <int>_min(TILE, T - t0)
        matmul_tile(c, ins, n0, rs, rm, t0, rn, r, zt)
        if ins.epi == EPI_SWIGLU or ins.epi == EPI_GEGLU:
            matmul_tile(c, ins, ins.n + n0, rs, rm, t0, rn, r2, zt)
        matmul_epilogue(c, ins, n0, rs, rm, t0, rn, r, r2)
        t0 += TILE


cdef void matmul_epilogue(Ctx *c, Instr *ins, int64_t n0, int64_t rs, int rm, int64_t t0, int rn,
                          float *r, float *r2) noexcept nogil:
    """The tile r (rows n0 + i*rs, tokens t0 + j; r2: the up rows N + n0 + i*rs of a gate/up
    weight) into the output."""
    cdef int64_t N = ins.n, t, n, nk
    cdef int i, j
    cdef float g[TILE * TILE]
    cdef float s[TILE * TILE]
    cdef float *out = c.arena + ins.out
    cdef const float *res = c.arena + ins.x2
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
    elif ins.epi == EPI_SWIGLU or ins.epi == EPI_GEGLU:
        # the whole tile in one call each (elementwise: the same bits); a tile of fewer rows
        # need not have stored columns i >= rm: zeroed, never stored
        if rm < TILE:
            for j in range(rn):
                for i in range(rm, TILE):
                    r[j * TILE + i] = 0
                    r2[j * TILE + i] = 0
        if ins.epi == EPI_SWIGLU:
            ignis_silu_row(r, s, rn * TILE)
        else:
            ignis_gelu_row(r, s, rn * TILE)
        ignis_mul_row(s, r2, g, rn * TILE)
        for j in range(rn):
            for i in range(rm):
                out[(t0 + j) * N + n0 + i * rs] = g[j * TILE + i]
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


# -- F16 / BF16 rows widened once ----------------------------------------------------------

cdef inline int64_t wf_group_bytes(Instr *ins) noexcept nogil:
    """A group of 8 widened rows (both halves of a gate/up weight) in wf_prepared_rows' scratch."""
    return (2 if ins.epi == EPI_SWIGLU or ins.epi == EPI_GEGLU else 1) * TILE * ins.k * 4


cdef inline int64_t wf_rows_bytes(Instr *ins) noexcept nogil:
    """The thread scratch wf_prepared_rows needs for this matmul: as many groups as KP_BUDGET
    holds (at least one, at most 8); 0 when it does not apply: at most 8 tokens, or a part that
    is not F16 / BF16."""
    cdef int p
    if ins.rows <= TILE:
        return 0
    for p in range(ins.n_parts):
        if ins.ptype[p] != T_F16 and ins.ptype[p] != T_BF16:
            return 0
    return _max(1, _min(8, KP_BUDGET // wf_group_bytes(ins))) * wf_group_bytes(ins)


cdef bint wf_prepared_rows(Ctx *c, Instr *ins, int64_t r0, int64_t r1, int tid) noexcept nogil:
    """Rows [r0, r1) of F16 / BF16 weights against more than 8 tokens on rows widened to f32
    (prepared_batches), when the thread's scratch holds a batch. The float types share one
    definition (the same chains and tree over exactly converted values), so the F32 tile gives
    the F16 / BF16 tile's bits, without widening every row again for every 8 tokens. Returns
    whether it ran."""
    cdef int64_t need = wf_rows_bytes(ins)
    cdef const uint8_t *wp[1]
    cdef int wt0, wt1 = 0
    if need == 0 or c.kp_buf == NULL or need > c.kp_stride:
        return False
    wt0 = tile_rows(ins, r0, 1, 1, wp)
    if ins.epi == EPI_SWIGLU or ins.epi == EPI_GEGLU:
        wt1 = tile_rows(ins, ins.n + r0, 1, 1, wp)
    prepared_batches(c, ins, r0, r1, c.kp_buf + tid * c.kp_stride, <int>(need // wf_group_bytes(ins)),
                     TILE * ins.k * 4, wt0, wt1, True)
    return True


# -- prepared rows ------------------------------------------------------------------------

cdef inline int kp_groups(int64_t group_bytes, int sides) noexcept nogil:
    """Row groups of 8 prepared at once (group_bytes per group and side): as many as KP_BUDGET
    bytes hold, at most 8; 0 when fewer than 4 fit (one token table then serves too few
    groups to beat the plain tile)."""
    cdef int64_t g
    if group_bytes < 1:         # not a prepared type, or narrower than its block
        return 0
    g = _min(KP_BUDGET // (sides * group_bytes), 8)
    return <int>g if g >= 4 else 0


cdef inline int64_t kp_bytes(int64_t group_bytes, int sides) noexcept nogil:
    """A thread's scratch for the prepared rows (0: too wide to prepare)."""
    return kp_groups(group_bytes, sides) * sides * group_bytes


cdef inline int64_t kp_tab_bytes(int64_t T, int64_t k) noexcept nogil:
    """The token tables of T tokens of width k: one per 8 tokens."""
    return (T + TILE - 1) // TILE * (k // 32) * IGNIS_KP_TOK_BYTES


cdef bint kp_tables_ready(Ctx *c, Instr *ins) noexcept nogil:
    """Whether a matmul writes token tables: more than 8 tokens of Q8_0 activations, a part of
    a type the level prepares, and the plan's table scratch large enough."""
    cdef int p
    if c.kp_tab == NULL or ins.rows <= TILE or ins.act16 or kp_tab_bytes(ins.rows, ins.k) > c.kp_tab_bytes:
        return False
    for p in range(ins.n_parts):
        if ignis_kq_row_bytes(ins.ptype[p], ins.k):
            return True
    return False


cdef void kp_fill_tables(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    """Thread tid's share of the token tables (tiles tid, tid + nt, ...)."""
    cdef int64_t T = ins.rows, nb = ins.k // 32, tile = tid, t0
    cdef const uint8_t *xp[TILE]
    cdef int j, rn
    while tile * TILE < T:
        t0 = tile * TILE
        rn = <int>_min(TILE, T - t0)
        for j in range(rn):
            xp[j] = c.qbuf + (t0 + j) * ins.xq_row_bytes
        ignis_kq_tokens(nb, xp, rn, c.kp_tab + tile * nb * IGNIS_KP_TOK_BYTES)
        tile += nt


cdef bint kp_prepared_rows(Ctx *c, Instr *ins, int64_t r0, int64_t r1, int tid) noexcept nogil:
    """Rows [r0, r1) on prepared rows against the token tables (prepared_batches;
    kp_fill_tables wrote the tables), when the level prepares
    their type (both halves' of a gate/up weight) and the thread's scratch holds them. Returns
    whether it ran."""
    cdef int64_t k = ins.k, group_bytes
    cdef int sides = 2 if (ins.epi == EPI_SWIGLU or ins.epi == EPI_GEGLU) else 1
    cdef const uint8_t *wp[1]
    cdef int wt0, wt1 = 0, G
    if c.kp_buf == NULL:
        return False
    wt0 = tile_rows(ins, r0, 1, 1, wp)
    if sides == 2:
        wt1 = tile_rows(ins, ins.n + r0, 1, 1, wp)
    if not ignis_kq_row_bytes(wt0, k) or (sides == 2 and not ignis_kq_row_bytes(wt1, k)):
        return False
    group_bytes = _max(ignis_kq_row_bytes(wt0, k), ignis_kq_row_bytes(wt1, k))     # a side's stride: the larger
    G = kp_groups(group_bytes, sides)
    if G == 0 or kp_bytes(group_bytes, sides) > c.kp_stride:
        return False
    prepared_batches(c, ins, r0, r1, c.kp_buf + tid * c.kp_stride, G, group_bytes, wt0, wt1, False)
    return True


cdef void prepared_batches(Ctx *c, Instr *ins, int64_t r0, int64_t r1, uint8_t *rows, int G, int64_t side_bytes,
                           int wt0, int wt1, bint widened) noexcept nogil:
    """What both kinds of prepared rows do with rows [r0, r1) (wt0: their type, wt1: the up
    half's of a gate/up weight): the groups kp_group cuts, G at a time, each group's sides
    prepared once into rows (group g, side s at (g*sides + s) * side_bytes), then every 8 tokens
    against each group of the batch, and the epilogue. widened: F16 / BF16 rows widened to f32,
    run by the F32 tile against the rows of x; else the level's prepared quantized rows against
    the token tables (kp_fill_tables)."""
    cdef int64_t T = ins.rows, k = ins.k, Q = (r1 - r0) // TILE, gn0, grs, t0
    cdef int sides = 2 if (ins.epi == EPI_SWIGLU or ins.epi == EPI_GEGLU) else 1
    cdef int ng, b0, nbat, g, side, i, j, rm, rn
    cdef int wts[2]
    cdef const uint8_t *wp[TILE]
    cdef const uint8_t *xp[TILE]
    cdef const uint8_t *tab = NULL
    cdef uint8_t *grp
    cdef float r[TILE * TILE]
    cdef float r2[TILE * TILE]
    wts[0], wts[1] = wt0, wt1
    ng = <int>Q + (1 if r0 + TILE * Q < r1 else 0)
    b0 = 0
    while b0 < ng:
        nbat = min(G, ng - b0)
        for g in range(nbat):
            kp_group(r0, r1, Q, b0 + g, &gn0, &grs, &rm)
            for side in range(sides):
                tile_rows(ins, gn0 + side * ins.n, grs, rm, wp)
                grp = rows + (g * sides + side) * side_bytes
                if widened:
                    for i in range(rm):
                        dequant_row(wts[side], wp[i], <float *>grp + i * k, k)
                else:
                    ignis_kq_prep(wts[side], k, wp, rm, grp)
        t0 = 0
        while t0 < T:
            rn = <int>_min(TILE, T - t0)
            if widened:
                for j in range(rn):
                    xp[j] = <const uint8_t *>(c.arena + ins.x + (t0 + j) * k)
            else:
                tab = c.kp_tab + (t0 // TILE) * (k // 32) * IGNIS_KP_TOK_BYTES
            for g in range(nbat):
                kp_group(r0, r1, Q, b0 + g, &gn0, &grs, &rm)
                prepared_tile(wts[0], k, rows + g * sides * side_bytes, rm, widened, tab, xp, rn, r)
                if sides == 2:
                    prepared_tile(wts[1], k, rows + (g * sides + 1) * side_bytes, rm, widened, tab, xp, rn, r2)
                matmul_epilogue(c, ins, gn0, grs, rm, t0, rn, r, r2)
            t0 += TILE
        b0 += nbat


cdef inline void prepared_tile(int wt, int64_t k, const uint8_t *grp, int rm, bint widened, const uint8_t *tab,
                               const uint8_t **xp, int rn, float *out) noexcept nogil:
    """One group side's tile of prepared_batches: widened f32 rows (k floats each) by the F32
    tile, or prepared quantized rows against a token table."""
    cdef const uint8_t *fp[TILE]
    cdef int i
    if widened:
        for i in range(rm):
            fp[i] = grp + i * k * 4
        ignis_tile(T_F32, k, fp, rm, xp, rn, out)
    else:
        ignis_kq_prep_tile(wt, k, grp, tab, out)


cdef inline void kp_group(int64_t r0, int64_t r1, int64_t Q, int g, int64_t *n0, int64_t *rs, int *rm) noexcept nogil:
    """Group g of rows [r0, r1): the stream r0 + g (stride Q, 8 rows) for g < Q, then the
    leftover rows r0 + 8Q .. r1 (stride 1)."""
    if g < Q:
        n0[0], rs[0], rm[0] = r0 + g, Q, TILE
    else:
        n0[0], rs[0], rm[0] = r0 + TILE * Q, 1, <int>(r1 - r0 - TILE * Q)


# -- decode token tables --------------------------------------------------------------------

cdef inline int64_t zt_sbs(int64_t k) noexcept nogil:
    """Super-blocks of a decode token table of width k (the last one partial when 256 does not
    divide k)."""
    return (k + 255) // 256


cdef inline int64_t zt_tab_bytes(int64_t T, int64_t k) noexcept nogil:
    """The decode token tables of T tokens of width k."""
    return T * zt_sbs(k) * IGNIS_ZT_SB_BYTES


cdef inline bint zt_type_ok(int wtype, int64_t k, int64_t rows) noexcept nogil:
    """Whether rows of wtype and width k, in a matmul of `rows` tokens, run on decode token
    tables: the level can, and a 32-element type has ZT32_MIN_ROWS tokens."""
    return ignis_zt_ok(wtype, k) and (ignis_zt_super(wtype) or rows >= ZT32_MIN_ROWS)


cdef inline bint zt_wanted(int64_t rows, int64_t k, const int *types, int n_types) noexcept nogil:
    """Whether a matmul of `rows` tokens runs on decode token tables at this level: up to 8
    tokens when a part can; up to ZT_MAX_ROWS when every part can (two token tiles on the
    tables beat the prepared rows there, which need more tokens to pay for unpacking)."""
    cdef int p, n = 0
    if rows > ZT_MAX_ROWS:
        return False
    for p in range(n_types):
        n += zt_type_ok(types[p], k, rows)
    return n == n_types if rows > TILE else n > 0


cdef bint zt_tables_ready(Ctx *c, Instr *ins) noexcept nogil:
    """Whether a matmul writes decode token tables (zt_wanted, Q8_0 activations, the plan's
    table scratch large enough)."""
    if c.kp_tab == NULL or ins.act16 or zt_tab_bytes(ins.rows, ins.k) > c.kp_tab_bytes:
        return False
    return zt_wanted(ins.rows, ins.k, ins.ptype, ins.n_parts)


cdef void zt_fill_tables(Ctx *c, Instr *ins, int tid, int nt) noexcept nogil:
    """Thread tid's share of the (token, super-block) pairs of the decode token tables."""
    cdef int64_t nsb = zt_sbs(ins.k), units = ins.rows * nsb
    cdef int64_t u = units * tid // nt, u1 = units * (tid + 1) // nt, t, s1
    while u < u1:
        t = u // nsb
        s1 = _min(u1 - t * nsb, nsb)
        ignis_zt_tokens(u - t * nsb, s1, ins.k // 32, c.qbuf + t * ins.xq_row_bytes, c.kp_tab + t * nsb * IGNIS_ZT_SB_BYTES)
        u = t * nsb + s1
