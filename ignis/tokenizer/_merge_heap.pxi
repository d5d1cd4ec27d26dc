# The parts both merge loops (_bpe.pyx, _spm.pyx) share, included as text by each.
#
# The heap is generic the way a C template is: the including module first defines the
# item type, `ctypedef ... HeapItem`, and `before(a, b)`, whether item a pops before b;
# the root is the item that pops first. Every helper is nogil and does no bounds checks:
# the callers size the arrays (_reserve) before a loop starts.
from libc.stdint cimport uint64_t
from libc.stdlib cimport realloc


cdef inline uint64_t splitmix64_finalize(uint64_t h) noexcept nogil:
    # every input bit reaches the low bits that pick a hash slot
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL
    return h ^ (h >> 31)


cdef inline Py_ssize_t heap_push(HeapItem* heap, Py_ssize_t heap_len, HeapItem item) noexcept nogil:
    """Add item to the heap of heap_len items; return the new length."""
    cdef Py_ssize_t child = heap_len, parent
    while child > 0:                    # sift up
        parent = (child - 1) >> 1
        if not before(&item, &heap[parent]):
            break
        heap[child] = heap[parent]
        child = parent
    heap[child] = item
    return heap_len + 1


cdef inline HeapItem heap_pop(HeapItem* heap, Py_ssize_t heap_len) noexcept nogil:
    """Remove and return the root; heap_len is the length before the pop (>= 1)."""
    cdef HeapItem top = heap[0]
    cdef HeapItem last = heap[heap_len - 1]
    cdef Py_ssize_t n = heap_len - 1, i = 0, child
    while True:                         # sift the last item down from the root
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and before(&heap[child + 1], &heap[child]):
            child += 1
        if not before(&heap[child], &last):
            break
        heap[i] = heap[child]
        i = child
    if n > 0:
        heap[i] = last
    return top


cdef inline Py_ssize_t capacity_for(Py_ssize_t n, Py_ssize_t capacity) noexcept nogil:
    """The capacity work arrays of capacity entries grow to for n (> capacity) entries:
    at least doubled, so that a run of growing fragments reallocates only a few times."""
    return max(n, 2 * capacity, 64)


cdef inline void* grown(void* old, size_t size) except NULL:
    """old reallocated to size bytes, or MemoryError. On failure old stays valid, so a
    caller that assigns the result only then keeps its arrays and capacity intact."""
    cdef void* new = realloc(old, size)
    if new == NULL:
        raise MemoryError()
    return new
