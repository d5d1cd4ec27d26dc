# ignis/kernels/sampling.pxi -- the sampler's hot loop: the k largest logits of a row.
#
# Included by ignis/_kernels.pyx. One pass over the row with a min-heap of k entries: a
# logit enters only when it beats the smallest kept one, so almost every element costs
# one comparison (numpy's argpartition over 151,936 logits takes ~1.7 ms; this ~0.2 ms).
# Ties go to the lower token id, and the result is ordered by logit (highest first), then
# id: the same candidates and order whatever else the caller does.


cdef inline bint _heap_less(const float *v, const int64_t *ix, int64_t a, int64_t b) noexcept nogil:
    """Entry a ranks below entry b: a smaller logit, or the same logit and a larger id."""
    return v[a] < v[b] or (v[a] == v[b] and ix[a] > ix[b])


cdef void _sift_down(float *v, int64_t *ix, int64_t k, int64_t i) noexcept nogil:
    cdef int64_t c, m
    cdef float tv
    cdef int64_t ti
    while True:
        c = 2 * i + 1
        if c >= k:
            return
        m = c
        if c + 1 < k and _heap_less(v, ix, c + 1, c):
            m = c + 1
        if not _heap_less(v, ix, m, i):
            return
        tv, ti = v[i], ix[i]
        v[i], ix[i] = v[m], ix[m]
        v[m], ix[m] = tv, ti
        i = m


def top_k(x, k):
    """Token ids of the k largest values of the float32 row x (ties: lower id first),
    ordered by value, highest first, then by id. x must be finite."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 1 or a.shape[0] == 0:
        raise ModelError(f"top_k: x must be a non-empty 1-D array, got shape {a.shape}")
    k = _as_int("top_k: k", k)
    if not 1 <= k <= a.shape[0]:
        raise ModelError(f"top_k: k must be in [1, {a.shape[0]}], got {k}")
    if not np.isfinite(a).all():
        raise ModelError("top_k: x holds NaN or infinity")
    heap_v = np.empty(k, np.float32)
    heap_i = np.empty(k, np.int64)
    cdef const float[::1] xv = a
    cdef float[::1] hv = heap_v
    cdef int64_t[::1] hi = heap_i
    cdef int64_t n = a.shape[0], kk = k, i, j
    with nogil:
        for i in range(kk):
            hv[i] = xv[i]
            hi[i] = i
        j = kk // 2
        while j > 0:
            j -= 1
            _sift_down(&hv[0], &hi[0], kk, j)
        for i in range(kk, n):
            if xv[i] > hv[0]:          # a later equal value has a larger id: it never wins
                hv[0] = xv[i]
                hi[0] = i
                _sift_down(&hv[0], &hi[0], kk, 0)
    order = np.lexsort((heap_i, -heap_v.astype(np.float64)))
    return heap_i[order]


def mask_token_ids(words, n):
    """The ids i < n whose bit is set in a token mask (bit i % 32 of int32 word i // 32,
    llguidance's layout), ascending, as int64: the candidates a constrained sampler keeps."""
    w = np.ascontiguousarray(words, dtype=np.int32)
    n = _as_int("mask_token_ids: n", n)
    if w.ndim != 1 or not 0 <= n <= 32 * w.shape[0]:
        raise ModelError(f"mask_token_ids: need a 1-D mask of at least {n} bits, got shape {w.shape}")
    out = np.empty(n, np.int64)
    cdef const uint32_t[::1] wv = w.view(np.uint32)
    cdef int64_t[::1] ov = out
    cdef int64_t nn = n, count = 0, i, base
    cdef uint32_t bits
    cdef int j
    with nogil:
        for i in range((nn + 31) // 32):
            bits = wv[i]
            if bits == 0:         # most words of a tight mask: skip 32 ids at once
                continue
            base = 32 * i
            for j in range(32):
                if (bits >> j) & 1 and base + j < nn:
                    ov[count] = base + j
                    count += 1
    return out[:count]


def top_k_masked(x, words, k):
    """top_k over the allowed ids only (bit i % 32 of int32 word i // 32 set): the ids of
    the k largest allowed values (fewer if fewer are allowed), ordered as top_k orders
    them. One pass over the row, skipping 32 ids at a time where nothing is allowed, so a
    constrained sampler costs what an unconstrained one does."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(words, dtype=np.int32)
    if a.ndim != 1 or a.shape[0] == 0:
        raise ModelError(f"top_k_masked: x must be a non-empty 1-D array, got shape {a.shape}")
    if w.ndim != 1 or 32 * w.shape[0] < a.shape[0]:
        raise ModelError(f"top_k_masked: need a 1-D mask of at least {a.shape[0]} bits, got shape {w.shape}")
    k = _as_int("top_k_masked: k", k)
    if not 1 <= k <= a.shape[0]:
        raise ModelError(f"top_k_masked: k must be in [1, {a.shape[0]}], got {k}")
    if not np.isfinite(a).all():
        raise ModelError("top_k_masked: x holds NaN or infinity")
    heap_v = np.empty(k, np.float32)
    heap_i = np.empty(k, np.int64)
    cdef const float[::1] xv = a
    cdef const uint32_t[::1] wv = w.view(np.uint32)
    cdef float[::1] hv = heap_v
    cdef int64_t[::1] hi = heap_i
    cdef int64_t n = a.shape[0], kk = k, i = 0, j, count = 0
    cdef uint32_t bits
    with nogil:
        while i < n and count < kk:          # the first k allowed fill the heap
            if (wv[i >> 5] >> (i & 31)) & 1:
                hv[count] = xv[i]
                hi[count] = i
                count += 1
            i += 1
        if count == kk:
            j = kk // 2
            while j > 0:
                j -= 1
                _sift_down(&hv[0], &hi[0], kk, j)
            while i < n:
                bits = wv[i >> 5]
                if bits == 0:
                    i = (i | 31) + 1
                    continue
                # the value test first: it almost always fails, and then the bit is not read
                if xv[i] > hv[0] and (bits >> (i & 31)) & 1:   # a later equal value never wins
                    hv[0] = xv[i]
                    hi[0] = i
                    _sift_down(&hv[0], &hi[0], kk, 0)
                i += 1
    heap_v, heap_i = heap_v[:count], heap_i[:count]
    order = np.lexsort((heap_i, -heap_v.astype(np.float64)))
    return heap_i[order]


# --- the sampler kernel: every row of a step in one nogil call -----------------------------
#
# The row kernel is kernels/sampler_core.pxi; docs/sampling.md defines what it computes.
# This wrapper checks every shape, dtype and id against the vocabulary before the nogil
# call, and keeps each thread's scratch between calls (one set at a time, behind a lock).

import threading as _threading

from cpython.mem cimport PyMem_Malloc

from ignis.errors import ArgumentError as _ArgumentError, TokenIdError as _TokenIdError

_SAMPLE_PARAMS = ("temperature", "top_p", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty")
_sample_lock = _threading.Lock()
_sample_scratch = {}          # (threads, V, ints) -> (floats, ints, doubles)


def sample_uniform(seed, n):
    """The uniform in [0, 1) of draw n (n >= 0) of a request seeded with seed (0 <= seed < 2**64):
    SplitMix64's (n+1)-th output for state seed, its top 53 bits times 2**-53."""
    s = _int_in("sample_uniform: seed", seed, 0, 2**64 - 1)
    k = _int_in("sample_uniform: n", n, 0, 2**64 - 1)
    return ignis_uniform_at(<uint64_t>s, <uint64_t>k)


def _sample_sort_max(value=None):
    """The sampler's sort-outright size (see sampler_core.pxi), set when value is given: the
    tests use small values to send small rows down the head and radix paths."""
    global ignis_sort_max
    if value is not None:
        ignis_sort_max = _int_in("sort_max", value, 0, 2**31 - 1)
    return ignis_sort_max


def _ids_row(what, a, V):
    """A 1-D int32 array of token ids in [0, V)."""
    arr = np.asarray(a)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise _ArgumentError(f"sample: {what} must be a 1-D array of token ids, got {arr.dtype} {arr.shape}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= V):
        bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
        raise _TokenIdError(f"sample: {what} holds token id {bad}, outside the vocabulary [0, {V})")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _scratch_for(nt, V, ints):
    key = (nt, V, ints)
    got = _sample_scratch.get(key)
    if got is None:
        _sample_scratch.clear()               # one shape at a time: a step's shapes rarely change
        got = (np.empty(nt * 4 * V, np.float32), np.empty(nt * 3 * ints, np.int32), np.empty(nt * (6144 + V)))
        _sample_scratch[key] = got
    return got


cdef bint _all_finite(const double[::1] v):
    cdef Py_ssize_t i
    for i in range(v.shape[0]):
        if not isfinite(v[i]):
            return False
    return True


cdef bint _all_unit(const double[::1] v):
    """every value in [0, 1)"""
    cdef Py_ssize_t i
    for i in range(v.shape[0]):
        if not (v[i] >= 0 and v[i] < 1):
            return False
    return True


cdef bint _params_in_range(const double[:, ::1] p):
    """top_p in (0, 1], min_p in [0, 1], repeat_penalty > 0 on every row"""
    cdef Py_ssize_t b
    for b in range(p.shape[0]):
        if p[b, 1] <= 0 or p[b, 1] > 1 or p[b, 2] < 0 or p[b, 2] > 1 or p[b, 3] <= 0:
            return False
    return True


def sample_step(logits, params, top_k, uniforms, windows=None, biases=None, masks=None, n_top=None,
                survivors=False, threads=None):
    """Sample every row of a step: logits float32 [B, V]; params float64 [B, 6] (temperature,
    top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty); top_k int [B] (0: none);
    uniforms float64 [B] in [0, 1); per row (lists of B, or None for all): windows (the penalty
    window's token ids, or None: no penalties), biases ((ids ascending distinct, biases) or None),
    masks (int32 words, bit i % 32 of word i // 32 allows id i, or None); n_top int [B]: -1 no
    log-probs, else the chosen token's and the n_top best. Returns (tokens int32 [B], token_lp
    float64 [B] (NaN without log-probs), top_ids int32 [B, N], top_lps float64 [B, N], survivors:
    per row the ids of the final candidates, ascending, when asked, else None)."""
    x = np.asarray(logits)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1 or x.dtype.kind not in "fiu":
        raise _ArgumentError(f"sample: logits must be a non-empty 2-D array of numbers [rows, vocab], "
                             f"got {x.dtype} {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    cdef int64_t B = x.shape[0], V = x.shape[1]
    if V >= 2**31 - 1:
        raise _ArgumentError(f"sample: a vocabulary of {V} ids is too large")
    # the checks below loop over the B rows in C: a step's sampling is a few rows, and numpy's
    # vectorised checks cost a call each
    pa = np.ascontiguousarray(params, dtype=np.float64)
    if pa.shape != (B, 6) or not _all_finite(pa.reshape(-1)):
        raise _ArgumentError(f"sample: params must be {B} rows of 6 finite numbers, got shape {pa.shape}")
    if not _params_in_range(pa):
        raise _ArgumentError("sample: need top_p in (0, 1], min_p in [0, 1] and repeat_penalty > 0")
    ks = np.ascontiguousarray(top_k, dtype=np.int64)
    us = np.ascontiguousarray(uniforms, dtype=np.float64)
    if ks.shape != (B,) or _span[int64_t](ks)[0] < 0:
        raise _ArgumentError(f"sample: top_k must be {B} integers >= 0")
    if us.shape != (B,) or not _all_unit(us):
        raise _ArgumentError(f"sample: uniforms must be {B} numbers in [0, 1)")
    tops = np.full(B, -1, np.int64) if n_top is None else np.ascontiguousarray(n_top, dtype=np.int64)
    if tops.shape != (B,):
        raise _ArgumentError(f"sample: n_top must be {B} integers in [-1, {V}]")
    top_lo, top_hi = _span[int64_t](tops)
    if top_lo < -1 or top_hi > V:
        raise _ArgumentError(f"sample: n_top must be {B} integers in [-1, {V}]")
    for name, lst in (("windows", windows), ("biases", biases), ("masks", masks)):
        if lst is not None and len(lst) != B:
            raise _ArgumentError(f"sample: {name} must have one entry per row ({B}), got {len(lst)}")
    keep = []                                   # every array a row points into, alive until the end
    cdef int64_t n_words = (V + 31) // 32, max_window = 0, N = max(top_hi, 0), b
    cdef void *rows_mem = PyMem_Malloc(B * sizeof(ignis_srow))
    if rows_mem == NULL:
        raise MemoryError("sample: no memory for the rows")
    cdef ignis_srow *rows = <ignis_srow *>rows_mem
    out_tok = np.zeros(B, np.int32)
    out_lp = np.full(B, np.nan)
    out_ids = np.zeros((B, N), np.int32)
    out_lps = np.zeros((B, N), np.float64)
    surv = np.empty((B, V), np.int32) if survivors else None
    cdef const float[:, ::1] xv = x
    cdef const double[:, ::1] pv = pa
    cdef int32_t[:, ::1] idv = out_ids
    cdef double[:, ::1] lpv = out_lps
    cdef int32_t[:, ::1] sv
    cdef const int32_t[::1] iv
    cdef const double[::1] dv
    cdef const uint32_t[::1] mv
    try:
        memset(rows, 0, B * sizeof(ignis_srow))
        if survivors:
            sv = surv
        for b in range(B):
            rows[b].x = &xv[b, 0]
            rows[b].V = V
            rows[b].temperature = pv[b, 0]
            rows[b].top_p = pv[b, 1]
            rows[b].min_p = pv[b, 2]
            rows[b].pen.repeat_penalty = pv[b, 3]
            rows[b].pen.presence_penalty = pv[b, 4]
            rows[b].pen.frequency_penalty = pv[b, 5]
            rows[b].top_k = ks[b]
            rows[b].u = us[b]
            rows[b].n_top = tops[b]
            if N > 0:
                rows[b].top_ids = &idv[b, 0]
                rows[b].top_lps = &lpv[b, 0]
            if survivors:
                rows[b].survivors = &sv[b, 0]
            if windows is not None and windows[b] is not None:
                w = _ids_row(f"row {b}'s penalty window", windows[b], V)
                if w.size:
                    keep.append(w)
                    iv = w
                    rows[b].window = &iv[0]
                    rows[b].n_window = w.size
                    max_window = max(max_window, w.size)
            if biases is not None and biases[b] is not None:
                bi, bvals = biases[b]
                ids = _ids_row(f"row {b}'s logit_bias", bi, V)
                vals = np.ascontiguousarray(bvals, dtype=np.float64)
                if vals.shape != ids.shape or not np.isfinite(vals).all():
                    raise _ArgumentError(f"sample: row {b}'s logit_bias needs one finite bias per id")
                if ids.size > 1 and not (np.diff(ids) > 0).all():
                    raise _ArgumentError(f"sample: row {b}'s logit_bias ids must be ascending and distinct")
                if ids.size:
                    keep += [ids, vals]
                    iv = ids
                    dv = vals
                    rows[b].bias_ids = &iv[0]
                    rows[b].bias_vals = &dv[0]
                    rows[b].n_bias = ids.size
            if masks is not None and masks[b] is not None:
                m = np.asarray(masks[b])
                if m.ndim != 1 or m.dtype not in (np.int32, np.uint32) or m.shape[0] < n_words:
                    raise _ArgumentError(f"sample: row {b}'s mask must be 1-D int32 with at least {n_words} words "
                                         f"(vocab {V}), got {m.dtype} {m.shape}")
                m = np.ascontiguousarray(m).view(np.uint32)
                keep.append(m)
                mv = m
                rows[b].mask = &mv[0]
        nt = min(B, max(1, ignis_omp_max_threads())) if threads is None else _int_in("sample: threads", threads, 1, 256)
        nt = min(nt, B)
        _sample_rows_nogil(rows, B, nt, V, max(V, max_window))
        for b in range(B):
            if rows[b].status == 1:
                raise ModelError(f"sample: logits row {b} holds NaN or infinity")
            if rows[b].status == 2:
                raise _ArgumentError(f"sample: row {b}'s mask allows no token id below {V}")
            out_tok[b] = rows[b].token
            if rows[b].n_top >= 0:
                out_lp[b] = rows[b].token_lp
        surv_lists = [np.sort(surv[b, :rows[b].n_survivors]) for b in range(B)] if survivors else None
    finally:
        PyMem_Free(rows_mem)
    return out_tok, out_lp, out_ids, out_lps, surv_lists


cdef _sample_rows_nogil(ignis_srow *rows, int64_t B, int nt, int64_t V, int64_t ints):
    cdef ignis_sample_job job
    cdef ignis_bar bar
    cdef int t
    cdef void *scratch_mem
    cdef ignis_sscratch *sc
    cdef float *f
    cdef int32_t *ii
    cdef double *d
    with _sample_lock:
        fl, it, db = _scratch_for(nt, V, ints)
        scratch_mem = PyMem_Malloc(nt * sizeof(ignis_sscratch))
        if scratch_mem == NULL:
            raise MemoryError("sample: no memory for the scratch table")
        sc = <ignis_sscratch *>scratch_mem
        try:
            f = <float *><uintptr_t>fl.ctypes.data
            ii = <int32_t *><uintptr_t>it.ctypes.data
            d = <double *><uintptr_t>db.ctypes.data
            for t in range(nt):
                sc[t].zbuf = f + (4 * t) * V
                sc[t].cz = f + (4 * t + 1) * V
                sc[t].cw = f + (4 * t + 2) * V
                sc[t].hv = f + (4 * t + 3) * V
                sc[t].g = ii + (3 * t) * ints
                sc[t].cid = ii + (3 * t + 1) * ints
                sc[t].hp = ii + (3 * t + 2) * ints
                sc[t].hist = d + (6144 + V) * t
                sc[t].tmp = <uint64_t *>(sc[t].hist + 6144)
            job.rows = rows
            job.n_rows = B
            job.scratch = sc
            job.next = 0
            with nogil:
                ignis_parallel(ignis_sample_body, &job, &bar, nt)
        finally:
            PyMem_Free(scratch_mem)
