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
