# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The SentencePiece-style merge loop, compiled.

SPMMerger turns one text fragment (UTF-8, spaces already written as U+2581) into token
ids. Every code point starts as one symbol; repeatedly, of all adjacent pairs whose
concatenated text is a vocabulary token, the one with the highest token score merges
(on a tie, the leftmost). A symbol left over that is not a token falls back to its
bytes' <0xXX> tokens. The vocabulary is a byte-string hash table (text -> id) built
once; the symbols are a linked list and the candidate pairs a binary max-heap, all in C
arrays owned by the merger and grown on demand (the GIL is held throughout, so one
merger may serve several threads one call at a time).
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

import numpy as np

from ignis.errors import TokenizerError


cdef struct Symbol:
    int32_t start       # byte offset of its text in the fragment
    int32_t n           # byte length; 0 once merged into its left neighbour
    int32_t prev        # index of the previous live symbol, -1 at the start
    int32_t next        # index of the next live symbol, -1 at the end


cdef struct Bigram:
    float score         # the score of the token the pair would become
    int32_t left        # index of the left symbol (the tie-break: lower merges first)
    int32_t right
    int32_t size        # byte length of the pair when pushed: a mismatch later means stale


ctypedef Bigram HeapItem


cdef inline bint before(const Bigram* a, const Bigram* b) noexcept nogil:
    """Whether a merges before b: the higher score, then the leftmost (a max-heap)."""
    return a.score > b.score or (a.score == b.score and a.left < b.left)


include "_merge_heap.pxi"


cdef inline uint64_t text_hash(const uint8_t* data, Py_ssize_t n) noexcept nogil:
    # FNV-1a, then the splitmix64 finalizer so that the low bits (the slot) mix well
    cdef uint64_t h = 0xCBF29CE484222325ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ data[i]) * 0x100000001B3ULL
    return splitmix64_finalize(h)


cdef class SPMMerger:
    """Score-ordered merging of code points into vocabulary tokens, with byte fallback."""
    cdef uint8_t* blob          # every token's UTF-8 text, back to back
    cdef int64_t* offsets       # token id -> start of its text in blob; offsets[n_tokens] = end
    cdef float* scores          # token id -> score
    cdef int32_t* slot_ids      # hash slot -> token id, -1 when free
    cdef uint64_t* slot_hashes
    cdef uint64_t slot_mask
    cdef Py_ssize_t n_tokens
    cdef int32_t byte_ids[256]  # byte -> its fallback token, -1 when the vocabulary has none
    cdef int32_t unk_id         # for a byte without a fallback token; -1: an error instead
    # work arrays for one fragment
    cdef Symbol* symbols
    cdef Bigram* heap
    cdef Py_ssize_t capacity    # symbols; the heap has 3 * capacity entries

    def __cinit__(self):
        self.blob = NULL
        self.offsets = NULL
        self.scores = NULL
        self.slot_ids = NULL
        self.slot_hashes = NULL
        self.symbols = NULL
        self.heap = NULL
        self.capacity = 0

    def __init__(self, list texts, scores, byte_ids, int unk_id=-1):
        """texts: token id -> UTF-8 text (bytes); scores: one float per token; byte_ids:
        256 fallback ids (-1: none); unk_id: the id for a byte without one (-1: none)."""
        cdef const float[::1] sv = np.ascontiguousarray(scores, dtype=np.float32)
        cdef const int32_t[::1] bv = np.ascontiguousarray(byte_ids, dtype=np.int32)
        cdef Py_ssize_t n = len(texts), i, total = 0, n_slots = 1024
        cdef bytes text
        if sv.shape[0] != n:
            raise ValueError(f"{sv.shape[0]} scores for {n} tokens")
        if bv.shape[0] != 256:
            raise ValueError("byte_ids must have 256 entries")
        if n >= 0x7FFFFFFF:
            raise ValueError("too many tokens")
        for i in range(256):
            if not -1 <= bv[i] < n:
                raise ValueError(f"byte_ids[{i}] = {bv[i]} is not a token id")
        if not -1 <= unk_id < n:
            raise ValueError(f"unk_id {unk_id} is not a token id")
        for i in range(n):
            if type(texts[i]) is not bytes:         # (a None typed as bytes would pass Cython)
                raise TypeError(f"token text {i} is {type(texts[i]).__name__}, not bytes")
            total += len(<bytes>texts[i])
        self.blob = <uint8_t*>malloc(max(total, 1))
        self.offsets = <int64_t*>malloc((n + 1) * sizeof(int64_t))
        self.scores = <float*>malloc(max(n, 1) * sizeof(float))
        while n_slots < 2 * n:          # load factor <= 1/2 keeps probe chains short
            n_slots *= 2
        self.slot_ids = <int32_t*>malloc(n_slots * sizeof(int32_t))
        self.slot_hashes = <uint64_t*>malloc(n_slots * sizeof(uint64_t))
        if not (self.blob and self.offsets and self.scores and self.slot_ids and self.slot_hashes):
            raise MemoryError()
        self.n_tokens = n
        self.slot_mask = n_slots - 1
        for i in range(n_slots):
            self.slot_ids[i] = -1
        total = 0
        for i in range(n):
            text = texts[i]
            self.offsets[i] = total
            memcpy(self.blob + total, <const char*>text, len(text))
            total += len(text)
            self.scores[i] = sv[i]
        self.offsets[n] = total
        for i in range(n):
            self._insert(<int32_t>i)
        for i in range(256):
            self.byte_ids[i] = bv[i]
        self.unk_id = unk_id

    def __dealloc__(self):
        free(self.blob)
        free(self.offsets)
        free(self.scores)
        free(self.slot_ids)
        free(self.slot_hashes)
        free(self.symbols)
        free(self.heap)

    # --- the vocabulary table ------------------------------------------------------------

    cdef void _insert(self, int32_t token_id) noexcept:
        cdef const uint8_t* data = self.blob + self.offsets[token_id]
        cdef Py_ssize_t n = self.offsets[token_id + 1] - self.offsets[token_id]
        cdef uint64_t h = text_hash(data, n)
        cdef uint64_t i = h & self.slot_mask
        while self.slot_ids[i] >= 0:
            if self.slot_hashes[i] == h and self._same(self.slot_ids[i], data, n):
                self.slot_ids[i] = token_id     # a repeated text: the last id wins
                return
            i = (i + 1) & self.slot_mask
        self.slot_ids[i] = token_id
        self.slot_hashes[i] = h

    cdef inline bint _same(self, int32_t token_id, const uint8_t* data, Py_ssize_t n) noexcept nogil:
        cdef int64_t start = self.offsets[token_id]
        return self.offsets[token_id + 1] - start == n and memcmp(self.blob + start, data, n) == 0

    cdef inline int32_t _find(self, const uint8_t* data, Py_ssize_t n) noexcept nogil:
        """The id of the token whose text is these n bytes, or -1."""
        cdef uint64_t h = text_hash(data, n)
        cdef uint64_t i = h & self.slot_mask
        while self.slot_ids[i] >= 0:
            if self.slot_hashes[i] == h and self._same(self.slot_ids[i], data, n):
                return self.slot_ids[i]
            i = (i + 1) & self.slot_mask
        return -1

    # --- the merge loop ------------------------------------------------------------------

    cdef int _reserve(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t cap
        if n <= self.capacity:
            return 0
        cap = capacity_for(n, self.capacity)
        # each pointer is replaced only once its realloc succeeded: a failure leaves the
        # old (smaller, still valid) arrays and capacity
        self.symbols = <Symbol*>grown(self.symbols, cap * sizeof(Symbol))
        self.heap = <Bigram*>grown(self.heap, 3 * cap * sizeof(Bigram))
        self.capacity = cap
        return 0

    cdef inline Py_ssize_t _push_pair(self, const uint8_t* data, Py_ssize_t heap_len,
                                      int32_t left, int32_t right) noexcept nogil:
        """Push the pair (left, right) if its text is a token; return the heap length."""
        cdef Bigram item
        cdef int32_t token_id
        if left < 0 or right < 0:
            return heap_len
        item.size = self.symbols[left].n + self.symbols[right].n
        token_id = self._find(data + self.symbols[left].start, item.size)
        if token_id < 0:
            return heap_len
        item.score = self.scores[token_id]
        item.left = left
        item.right = right
        return heap_push(self.heap, heap_len, item)

    cdef Py_ssize_t _merge(self, const uint8_t* data, Py_ssize_t n) noexcept nogil:
        """Merge the n bytes of one fragment (valid UTF-8, n >= 1, capacity >= n); the
        result is the live symbols from index 0 along next. Returns how many there are."""
        cdef Py_ssize_t at = 0, count = 0, heap_len = 0, i
        cdef Py_ssize_t width
        cdef uint8_t lead
        cdef Bigram pair
        cdef Symbol* left
        cdef Symbol* right
        while at < n:                   # one symbol per code point (its lead byte gives the width)
            lead = data[at]
            width = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
            if width > n - at:
                width = n - at
            self.symbols[count].start = <int32_t>at
            self.symbols[count].n = <int32_t>width
            self.symbols[count].prev = <int32_t>(count - 1)
            self.symbols[count].next = <int32_t>(count + 1)
            at += width
            count += 1
        self.symbols[count - 1].next = -1
        for i in range(count - 1):
            heap_len = self._push_pair(data, heap_len, <int32_t>i, <int32_t>(i + 1))
        while heap_len > 0:
            pair = heap_pop(self.heap, heap_len)
            heap_len -= 1
            left = &self.symbols[pair.left]
            right = &self.symbols[pair.right]
            if left.n == 0 or right.n == 0 or left.n + right.n != pair.size:
                continue                # stale: one side merged since the pair was pushed
            left.n += right.n
            right.n = 0
            left.next = right.next
            if right.next >= 0:
                self.symbols[right.next].prev = pair.left
            heap_len = self._push_pair(data, heap_len, left.prev, pair.left)
            heap_len = self._push_pair(data, heap_len, pair.left, left.next)
        return count

    cdef inline bint _bytes_known(self, const uint8_t* data, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t j
        for j in range(n):
            if self.byte_ids[data[j]] < 0:
                return False
        return True

    # --- the Python-facing entry points ---------------------------------------------------

    def encode(self, bytes fragment not None, list out not None):
        """Append the ids of one fragment (UTF-8 bytes, spaces as U+2581) to out."""
        cdef Py_ssize_t n = len(fragment), at = 0, j
        cdef const uint8_t* data = <const uint8_t*><const char*>fragment
        cdef Symbol* symbol
        cdef int32_t token_id
        if n == 0:
            return
        if n >= 0x7FFFFFFF // 4:
            raise TokenizerError(f"a text fragment of {n} bytes is too long to encode")
        self._reserve(n)
        self._merge(data, n)
        while at >= 0:
            symbol = &self.symbols[at]
            token_id = self._find(data + symbol.start, symbol.n)
            if token_id >= 0:
                out.append(token_id)
            elif self._bytes_known(data + symbol.start, symbol.n):
                for j in range(symbol.start, symbol.start + symbol.n):
                    out.append(self.byte_ids[data[j]])
            elif self.unk_id >= 0:
                out.append(self.unk_id)     # one unknown token for the whole character
            else:
                raise TokenizerError(
                    f"cannot encode {fragment[symbol.start:symbol.start + symbol.n].decode('utf-8', 'replace')!r}: "
                    "the vocabulary has neither a token nor byte tokens for it, and no unknown token")
            at = symbol.next
