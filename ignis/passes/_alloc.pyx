# cython: language_level=3
"""Offset assignment for activation buffers in one arena.

Invariants (ignis.passes.memory.check_plan proves them on every plan, independently):

  1. Buffer b is live over the closed interval [start[b], end[b]] of program points.
     Two buffers conflict when their intervals intersect.
  2. Conflicting buffers get disjoint byte ranges [offset, offset + size).
  3. Sizes arrive rounded up to `align` and every offset is a multiple of `align`:
     offsets are only ever 0, a gap boundary or `limit - size`, all multiples of align
     when `limit` is.
  4. A buffer is placed exactly once and never moved; it only looks at the buffers
     already placed that conflict with it.
  5. Buffers that do not conflict may share bytes: that is the whole saving.

Placement of one buffer (`place`): sort the conflicting placed buffers by offset, list
the free gaps between them below `limit`, and take the smallest gap that fits
(best fit). Side 0 puts the buffer at the gap's bottom, side 1 at its top. If no gap
below `limit` fits, the buffer goes right above the highest conflicting buffer (the
arena grows past `limit`). With `limit` = the lower bound and sides from a proper
2-colouring of the conflict graph (possible when at most two buffers are ever live
at once, e.g. straight chains), every buffer of one colour sits at 0 and every
buffer of the other at limit - size: the plan meets the lower bound exactly.
"""
import numpy as np
cimport numpy as cnp
from libc.stdlib cimport malloc, free, qsort

ctypedef long long i64


cdef struct Range:
    i64 lo
    i64 hi


cdef int _cmp_range(const void* a, const void* b) noexcept nogil:
    cdef i64 x = (<Range*>a).lo
    cdef i64 y = (<Range*>b).lo
    return -1 if x < y else (1 if x > y else 0)


def place(i64[::1] start, i64[::1] end, i64[::1] size, i64[::1] order, signed char[::1] side,
          i64 limit):
    """Offsets for the buffers, placed one by one in `order` (see the module docstring).
    limit <= 0 means no limit (always bottom of the best gap)."""
    cdef Py_ssize_t n = start.shape[0], k, j, m, b, c, best
    cdef i64 hi, gap, best_gap, at, top
    offsets = np.full(n, -1, dtype=np.int64)
    cdef i64[::1] off = offsets
    cdef Py_ssize_t* placed = <Py_ssize_t*>malloc(max(n, 1) * sizeof(Py_ssize_t))
    cdef Range* busy = <Range*>malloc(max(n, 1) * sizeof(Range))
    cdef Py_ssize_t n_placed = 0
    if placed == NULL or busy == NULL:
        free(placed)
        free(busy)
        raise MemoryError()
    try:
        for k in range(order.shape[0]):
            b = order[k]
            m = 0
            for j in range(n_placed):
                c = placed[j]
                if start[c] <= end[b] and start[b] <= end[c]:
                    busy[m].lo = off[c]
                    busy[m].hi = off[c] + size[c]
                    m += 1
            qsort(busy, m, sizeof(Range), _cmp_range)
            # walk the gaps below `limit`, keep the smallest one that fits
            best = -1
            best_gap = -1
            at = 0
            top = 0             # first free byte above the conflicts seen so far
            for j in range(m + 1):
                if j < m:
                    hi = busy[j].lo if limit <= 0 or busy[j].lo < limit else limit
                elif limit > 0:
                    hi = limit
                else:
                    break
                gap = hi - top
                if gap >= size[b] and (best < 0 or gap < best_gap):
                    best, best_gap = j, gap
                    at = top if side[b] == 0 else hi - size[b]
                if j < m and busy[j].hi > top:
                    top = busy[j].hi
            if best < 0:
                at = top            # no gap below the limit: right above every conflict
            off[b] = at
            placed[n_placed] = b
            n_placed += 1
    finally:
        free(placed)
        free(busy)
    return offsets


def two_colouring(i64[::1] start, i64[::1] end):
    """Side 0/1 per buffer by breadth-first parity over the conflict graph, visiting
    buffers in order of start. A proper colouring whenever the graph is bipartite
    (at most two buffers live at any point); a heuristic otherwise."""
    cdef Py_ssize_t n = start.shape[0], head = 0, tail = 0, i, j, r
    colour = np.full(n, -1, dtype=np.int8)
    cdef signed char[::1] col = colour
    by_start = np.argsort(np.asarray(start), kind="stable").astype(np.int64)
    cdef i64[::1] order = by_start
    cdef i64[::1] queue = np.empty(max(n, 1), dtype=np.int64)
    for r in range(n):
        if col[order[r]] >= 0:
            continue
        col[order[r]] = 0
        queue[tail] = order[r]
        tail += 1
        while head < tail:
            i = queue[head]
            head += 1
            for j in range(n):
                if col[j] < 0 and start[j] <= end[i] and start[i] <= end[j]:
                    col[j] = 1 - col[i]
                    queue[tail] = j
                    tail += 1
    return colour
