# ignis/kernels/matmul.pxi -- the matmul tiles and their epilogues (store, bias, residual,
# SwiGLU or GeGLU of the gate/up halves, the q | k,v split of qkv).
#
# Included by ignis/_kernels.pyx. Invariants it relies on (checked by Plan at add time):
# a weight given as parts covers rows [pstart[p], pstart[p+1]) of part p, a gate/up
# weight's part boundaries mirror across n_ff (so an up tile lies in one part), k is a
# multiple of the weight's block size, x's quantized copy is in scratch. An output element
# is one tile's dot product plus its epilogue: its bits do not depend on the tile it was
# computed in, on T or on the thread count (the chunks threads take are whole rows).

cdef inline void matmul_tile(Ctx *c, Instr *ins, int64_t n0, int64_t rs, int rm, int64_t t0, int rn,
                             float *r) noexcept nogil:
    """r[j*8 + i] = W row (n0 + i*rs) . x row (t0 + j) for i < rm, j < rn (rows of one part)."""
    cdef int i, j, p = 0
    cdef const uint8_t *wp[TILE]
    cdef const uint8_t *xp[TILE]
    cdef int64_t k = ins.k
    while n0 >= ins.pstart[p + 1]:
        p += 1
    cdef int wtype = ins.ptype[p]
    for i in range(rm):
        wp[i] = ins.pw[p] + (n0 + i * rs - ins.pstart[p]) * ins.prb[p]
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
        elif ins.epi == EPI_SWIGLU or ins.epi == EPI_GEGLU:
            matmul_tile(c, ins, N + n0, rs, rm, t0, rn, r2)
            for j in range(rn):
                if ins.epi == EPI_SWIGLU:
                    ignis_silu_row(&r[j * TILE], s, rm)
                else:
                    ignis_gelu_row(&r[j * TILE], s, rm)
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
