# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The tokenizer's compiled hot paths.

BPEMerger turns pre-tokens (the pieces the pre-tokenizer regex cut out of the text) into
token ids. A merge step touches only C arrays: the symbols of the piece as a linked list
of token ids, a binary min-heap of candidate merges keyed by (rank, position), and an
open-addressing hash table (left id, right id) -> (rank, merged id) built once. Pieces
already seen come straight from a piece -> ids cache.

contains_marked() is the scan that tells the pre-tokenizer whether a text holds any code
point from a small marked set (see _pretokenize.py for why).
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from cpython.unicode cimport (PyUnicode_1BYTE_KIND, PyUnicode_2BYTE_KIND, PyUnicode_DATA,
                              PyUnicode_GET_LENGTH, PyUnicode_KIND)
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF

import numpy as np

from ignis.errors import TokenizerError

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

cdef uint64_t EMPTY_KEY = 0xFFFFFFFFFFFFFFFFULL


cdef struct MergeSlot:
    uint64_t key        # left id << 32 | right id, EMPTY_KEY when the slot is free
    int32_t rank
    int32_t merged


# a candidate merge: rank << 32 | position of its left symbol
ctypedef int64_t HeapItem


cdef inline bint before(const int64_t* a, const int64_t* b) noexcept nogil:
    """Whether a merges before b: the lower rank, then the leftmost (a min-heap)."""
    return a[0] < b[0]


include "_merge_heap.pxi"


cdef inline uint64_t pair_key(int32_t left, int32_t right) noexcept nogil:
    return (<uint64_t><uint32_t>left << 32) | <uint32_t>right


cdef inline uint64_t slot_hash(uint64_t key) noexcept nogil:
    return splitmix64_finalize(key)


cdef class BPEMerger:
    """Byte-level BPE over pre-tokens, with a piece -> ids cache."""
    cdef MergeSlot* slots
    cdef uint64_t slot_mask
    cdef int32_t byte_ids[256]      # byte -> id of its one-byte token, -1 when the vocab lacks it
    cdef dict cache                 # piece (str) -> tuple of ids
    cdef Py_ssize_t cache_limit
    cdef Py_ssize_t cache_piece_max # longer pieces are not cached (rare, and they would bloat it)
    cdef bint drop_missing_bytes    # a byte without a token: dropped (llama.cpp) or an error
    # work arrays for one piece, grown on demand
    cdef int32_t* sym       # token id of each symbol; -1 once merged into its left neighbour
    cdef int32_t* nxt       # index of the next live symbol, -1 at the end
    cdef int32_t* prv       # index of the previous live symbol, -1 at the start
    cdef int64_t* heap      # candidate merges: rank << 32 | position of the left symbol
    cdef Py_ssize_t capacity

    def __cinit__(self):
        self.slots = NULL
        self.sym = self.nxt = self.prv = NULL
        self.heap = NULL
        self.capacity = 0

    def __init__(self, left, right, merged, byte_ids, Py_ssize_t cache_limit=100_000,
                 Py_ssize_t cache_piece_max=256, bint drop_missing_bytes=False):
        """left/right/merged: int32 arrays in rank order (a lower rank merges first);
        byte_ids: 256 ids, -1 where the vocabulary has no token for that byte;
        drop_missing_bytes: such a byte is left out (it still separates its neighbours,
        which never merge across it) instead of being an error."""
        cdef const int32_t[::1] lv = np.ascontiguousarray(left, dtype=np.int32)
        cdef const int32_t[::1] rv = np.ascontiguousarray(right, dtype=np.int32)
        cdef const int32_t[::1] mv = np.ascontiguousarray(merged, dtype=np.int32)
        cdef const int32_t[::1] bv = np.ascontiguousarray(byte_ids, dtype=np.int32)
        cdef Py_ssize_t n = lv.shape[0], i, n_slots = 1024
        if rv.shape[0] != n or mv.shape[0] != n:
            raise ValueError("left, right and merged must have the same length")
        if bv.shape[0] != 256:
            raise ValueError("byte_ids must have 256 entries")
        for i in range(n):
            if lv[i] < 0 or rv[i] < 0 or mv[i] < 0:
                raise ValueError(f"merge {i} has a negative token id")
        while n_slots < 2 * n:          # load factor <= 1/2 keeps probe chains short
            n_slots *= 2
        self.slots = <MergeSlot*>malloc(n_slots * sizeof(MergeSlot))
        if self.slots == NULL:
            raise MemoryError()
        self.slot_mask = n_slots - 1
        for i in range(n_slots):
            self.slots[i].key = EMPTY_KEY
        for i in range(n):
            self._insert(lv[i], rv[i], <int32_t>i, mv[i])
        for i in range(256):
            self.byte_ids[i] = bv[i]
        self.cache = {}
        self.cache_limit = cache_limit
        self.cache_piece_max = cache_piece_max
        self.drop_missing_bytes = drop_missing_bytes

    def __dealloc__(self):
        free(self.slots)
        free(self.sym)
        free(self.nxt)
        free(self.prv)
        free(self.heap)

    cdef void _insert(self, int32_t left, int32_t right, int32_t rank, int32_t merged) noexcept:
        cdef uint64_t key = pair_key(left, right)
        cdef uint64_t i = slot_hash(key) & self.slot_mask
        while self.slots[i].key != EMPTY_KEY:
            if self.slots[i].key == key:
                return                  # a duplicate merge: the first (lowest rank) one wins
            i = (i + 1) & self.slot_mask
        self.slots[i].key = key
        self.slots[i].rank = rank
        self.slots[i].merged = merged

    cdef inline MergeSlot* _find(self, int32_t left, int32_t right) noexcept nogil:
        cdef uint64_t key = pair_key(left, right)
        cdef uint64_t i = slot_hash(key) & self.slot_mask
        while self.slots[i].key != EMPTY_KEY:
            if self.slots[i].key == key:
                return &self.slots[i]
            i = (i + 1) & self.slot_mask
        return NULL

    cdef int _reserve(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t cap
        if n <= self.capacity:
            return 0
        cap = capacity_for(n, self.capacity)
        # each pointer is replaced only once its realloc succeeded, so a failure leaves
        # the old (smaller, still valid) arrays and the old capacity in place
        self.sym = <int32_t*>grown(self.sym, cap * sizeof(int32_t))
        self.nxt = <int32_t*>grown(self.nxt, cap * sizeof(int32_t))
        self.prv = <int32_t*>grown(self.prv, cap * sizeof(int32_t))
        self.heap = <int64_t*>grown(self.heap, 3 * cap * sizeof(int64_t))
        self.capacity = cap
        return 0

    # --- the merge loop ------------------------------------------------------------------

    cdef inline Py_ssize_t _push_pair(self, Py_ssize_t heap_len, int32_t pos) noexcept nogil:
        """Push the pair starting at symbol pos (if it has a merge); return the heap length."""
        cdef int32_t j = self.nxt[pos]
        cdef MergeSlot* slot
        if j < 0:
            return heap_len
        slot = self._find(self.sym[pos], self.sym[j])
        if slot == NULL:
            return heap_len
        return heap_push(self.heap, heap_len, (<int64_t>slot.rank << 32) | pos)

    cdef Py_ssize_t _merge(self, const uint8_t* data, Py_ssize_t n) noexcept nogil:
        """Merge the n bytes of one piece (all bytes known to have a token); the result
        ids are the live symbols from index 0 along nxt. Returns their count."""
        cdef Py_ssize_t i, heap_len = 0, count = n
        cdef int64_t item
        cdef int32_t pos, j, k, rank
        cdef MergeSlot* slot
        for i in range(n):
            self.sym[i] = self.byte_ids[data[i]]
            self.prv[i] = <int32_t>(i - 1)
            self.nxt[i] = <int32_t>(i + 1)
        self.nxt[n - 1] = -1
        for i in range(n - 1):
            heap_len = self._push_pair(heap_len, <int32_t>i)
        while heap_len > 0:
            item = heap_pop(self.heap, heap_len)
            heap_len -= 1
            rank = <int32_t>(item >> 32)
            pos = <int32_t>(item & <int64_t>0x7FFFFFFF)
            if self.sym[pos] < 0:
                continue                # its left symbol was merged away
            j = self.nxt[pos]
            if j < 0:
                continue
            slot = self._find(self.sym[pos], self.sym[j])
            if slot == NULL or slot.rank != rank:
                continue                # stale: one side changed since it was pushed
            self.sym[pos] = slot.merged
            self.sym[j] = -1
            k = self.nxt[j]
            self.nxt[pos] = k
            if k >= 0:
                self.prv[k] = pos
            count -= 1
            if self.prv[pos] >= 0:
                heap_len = self._push_pair(heap_len, self.prv[pos])
            heap_len = self._push_pair(heap_len, pos)
        return count

    cdef tuple _encode_piece(self, str piece):
        cdef Py_ssize_t n = 0, i, count
        cdef const uint8_t* data
        cdef tuple ids
        cdef object id_obj
        cdef int32_t at
        try:
            data = <const uint8_t*>PyUnicode_AsUTF8AndSize(piece, &n)
        except UnicodeEncodeError as exc:
            raise TokenizerError(f"cannot encode {piece!r}: {exc.reason} (a lone surrogate has no UTF-8 form)") from None
        if n == 0:
            return ()
        if n >= 0x7FFFFFFF:
            raise TokenizerError(f"a pre-token of {n} bytes is too long to encode")
        for i in range(n):
            if self.byte_ids[data[i]] < 0:
                if self.drop_missing_bytes:
                    return self._encode_around_missing(data, n)
                raise TokenizerError(
                    f"cannot encode byte 0x{data[i]:02x} of {piece!r}: the vocabulary has no token for it")
        self._reserve(n)
        count = self._merge(data, n)
        ids = PyTuple_New(count)
        at = 0
        for i in range(count):
            id_obj = self.sym[at]
            Py_INCREF(id_obj)
            PyTuple_SET_ITEM(ids, i, id_obj)
            at = self.nxt[at]
        return ids

    cdef tuple _encode_around_missing(self, const uint8_t* data, Py_ssize_t n):
        """The ids of a piece holding bytes without a token: each run of known bytes merged
        on its own, the unknown bytes left out."""
        cdef Py_ssize_t start = 0, end, i, at, count
        cdef list ids = []
        self._reserve(n)
        while start < n:
            if self.byte_ids[data[start]] < 0:
                start += 1
                continue
            end = start
            while end < n and self.byte_ids[data[end]] >= 0:
                end += 1
            count = self._merge(data + start, end - start)
            at = 0
            for i in range(count):
                ids.append(self.sym[at])
                at = self.nxt[at]
            start = end
        return tuple(ids)

    # --- the Python-facing entry points ---------------------------------------------------

    cpdef void encode_pieces(self, list pieces, list out) except *:
        """Append the ids of every pre-token in pieces to out."""
        cdef object piece
        cdef PyObject* hit
        cdef tuple ids
        for piece in pieces:
            hit = PyDict_GetItem(self.cache, piece)
            if hit != NULL:
                ids = <tuple>hit
            else:
                ids = self._encode_piece(<str>piece)
                if PyUnicode_GET_LENGTH(piece) <= self.cache_piece_max:
                    if len(self.cache) >= self.cache_limit:
                        self.cache.clear()
                    PyDict_SetItem(self.cache, piece, ids)
            if len(ids) == 1:
                PyList_Append(out, (<tuple>ids)[0])
            else:
                out.extend(ids)

    def clear_cache(self):
        self.cache.clear()


def contains_marked(str text, const uint8_t[::1] bitmap not None, uint32_t lowest):
    """Whether text holds a code point c >= lowest whose bit is set in bitmap
    (bit c % 8 of byte c // 8; the bitmap covers U+0000..U+10FFFF)."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(text)
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef uint32_t c
    if bitmap.shape[0] < 0x110000 // 8:
        raise ValueError("the bitmap must cover every code point")
    if kind == PyUnicode_1BYTE_KIND:
        if lowest > 0xFF:
            return False
        for i in range(n):
            c = (<const uint8_t*>data)[i]
            if c >= lowest and (bitmap[c >> 3] >> (c & 7)) & 1:
                return True
    elif kind == PyUnicode_2BYTE_KIND:
        if lowest > 0xFFFF:
            return False
        for i in range(n):
            c = (<const uint16_t*>data)[i]
            if c >= lowest and (bitmap[c >> 3] >> (c & 7)) & 1:
                return True
    else:
        for i in range(n):
            c = (<const uint32_t*>data)[i]
            if c >= lowest and (bitmap[c >> 3] >> (c & 7)) & 1:
                return True
    return False


# -- the merge table (read once per model load: 150k merges made loading take seconds in Python) --

cdef Py_ssize_t _split_at(str merge):
    """Where a merge "left right" splits: the index of its one space, or -1 when it is not
    two non-empty tokens separated by exactly one space."""
    cdef Py_ssize_t n = len(merge), at = merge.find(" ")
    if at <= 0 or at == n - 1 or merge.find(" ", at + 1) >= 0:
        return -1
    return at


def first_bad_merge(list merges):
    """The rank of the first merge that is not "left right" (one space, two non-empty tokens),
    or -1 when every one is."""
    cdef Py_ssize_t r
    for r in range(len(merges)):
        if _split_at(<str>merges[r]) < 0:
            return r
    return -1


def merge_table(list merges, dict token_to_id):
    """(left ids, right ids, merged ids, -1) as int32 arrays in rank order for well-formed
    merges (first_bad_merge), or (…, rank) at the first merge one of whose three tokens is not
    in token_to_id (the caller names it)."""
    cdef Py_ssize_t n = len(merges), r, at
    left = np.empty(n, dtype=np.int32)
    right = np.empty(n, dtype=np.int32)
    merged = np.empty(n, dtype=np.int32)
    cdef int32_t[::1] lv = left, rv = right, mv = merged
    cdef str merge
    cdef PyObject *a
    cdef PyObject *b
    cdef PyObject *ab
    for r in range(n):
        merge = <str>merges[r]
        at = _split_at(merge)
        a = PyDict_GetItem(token_to_id, merge[:at])
        b = PyDict_GetItem(token_to_id, merge[at + 1:])
        ab = PyDict_GetItem(token_to_id, merge[:at] + merge[at + 1:])
        if a == NULL or b == NULL or ab == NULL:
            return left, right, merged, r
        lv[r] = <object>a
        rv[r] = <object>b
        mv[r] = <object>ab
    return left, right, merged, -1
