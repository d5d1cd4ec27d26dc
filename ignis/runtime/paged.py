"""A paged KV cache: every sequence of a batch draws its K/V rows from one pool of
fixed-size blocks, so memory follows the tokens actually held, a shared prompt prefix is
stored once (fork + copy-on-write), and a full pool stops only the sequence that asked.

Layout. k and v are float16 [n_layers, n_blocks * block_size, n_kv_heads, head_dim]. Block b
owns rows [b * block_size, (b + 1) * block_size) of every layer, in k and in v. A sequence is
a list of block ids (its table) and a length; position p of sequence s lives in row

    table[s][p >> shift] * block_size + (p & mask)        (block_size == 1 << shift)

Invariants (checked by tests/test_paged.py after every step of a random state machine):

  - a sequence of length L holds exactly ceil(L / block_size) blocks, all distinct; rows of
    its last block past L are scratch (stale data from an earlier owner, or a copy).
  - refcount[b] == the number of live sequences whose table holds b. A block is used iff
    its refcount is > 0, and free iff it is in the free list; never both, never neither:
    n_free_blocks + n_used_blocks == n_blocks.
  - a block with refcount > 1 is shared and read-only: fork() shares every block of the
    parent (refcount + 1, no data moves), truncate() may leave a shared block shared.
  - copies happen in one place only: reserve() on a sequence whose first new position falls
    into its last block while that block is shared copies the block's rows (all layers,
    k and v) into a fresh block, points the writer's table at the copy and drops one
    reference to the original. Full shared blocks are never copied: new positions go to
    new blocks. So rows a caller writes after reserve() are always in blocks it owns alone,
    and positions below a sequence's length before the reserve() must not be written.
  - the free list is a min-heap: the lowest free id is allocated first, so a given sequence
    of calls always yields the same tables. A block returns to it when its refcount drops
    to 0 (truncate, free, or the last sharer copying away).
  - reserve() is all-or-nothing: it counts the blocks it needs (blocks_needed) before
    touching anything, and raises KVCacheFullError with nothing changed if too few are free.

Sliding windows. A cache made with `window=W` serves layers whose readers look back at most W
positions (pos - W < p <= pos). reserve(seq, n) first releases the blocks that hold only
positions below length - W + 1 - keep_extra: no token at or after the current length reads
them. Their table entries become -1 (holes, at the front of the table); tables() fills them
with a held block id so that every entry stays a valid block (the kernels never read them).
So a sequence holds about W + keep_extra + its last reservation's positions, whatever its
length. A sequence can only be resumed where its window is still held: keepable(seq, n) is
the position truncate() can go back to (n itself, or 0 when the rows before n were
released), and truncate() to anything else is an error.

Prefix cache. A block whose block_size positions all hold known tokens can be registered
(commit()) under a hash chained on its parent's: key(i) = hash((key(i - 1), tokens of block i)),
so a key names the whole prefix up to the end of its block. Registered blocks are read-only:

  - a block is in exactly one of: held (refcount > 0), the free heap (refcount 0, not
    registered), the LRU of cached blocks (refcount 0, registered). n_free_blocks counts the
    heap and the LRU (both can be allocated); allocation takes the heap first, then evicts
    the least recently used cached block (its key is forgotten).
  - reserve() copies a sequence's partial last block first when it is shared *or registered*,
    so a registered block's rows never change while it is registered.
  - find(parent, tokens) returns the registered block of that chain link (its key and its
    tokens are both compared: a hash collision is a miss), and adopt() makes a new sequence
    of such blocks: a later request reuses the KV rows of any earlier one's prefix.

LayeredKVCache puts a model's full-attention layers in one PagedKVCache and its sliding-window
layers in a windowed one, with one sequence id for both (the engine's plans address the two
pools through the same block-table rows).
"""
import collections
import heapq

import numpy as np

from ignis.args import check_int, describe, is_int
from ignis.errors import ArgumentError, ArgumentTypeError, KVCacheFullError

_MAX_DIM = 1 << 16            # n_layers, n_kv_heads, head_dim, block_size
_MAX_ROWS = (1 << 31) - 1     # n_blocks * block_size: rows (and block ids) fit in int32


ROOT_KEY = 0                  # the parent key of a sequence's first block


def chain(tokens, block_size: int) -> list:
    """[(parent key, block tokens, key)] of every full block of tokens, in order."""
    out, parent = [], ROOT_KEY
    for i in range(len(tokens) // block_size):
        block = tuple(tokens[i * block_size:(i + 1) * block_size])
        key = hash((parent, block))
        out.append((parent, block, key))
        parent = key
    return out


class _Seq:
    __slots__ = ("blocks", "length", "tokens", "keys")

    def __init__(self, blocks, length, tokens=(), keys=()):
        self.blocks = blocks      # physical block ids, one per block_size positions
        self.length = length      # positions held
        self.tokens = list(tokens)   # the committed tokens of positions 0.. (their rows are written)
        self.keys = list(keys)       # the chain key of each full committed block


class PagedKVCache:
    """float16 K and V caches shared by many sequences through block tables (see the module
    docstring for the invariants)."""

    def __init__(self, n_layers, n_kv_heads, head_dim, n_blocks, block_size=16, window=None, keep_extra=0):
        n_layers = check_int("PagedKVCache n_layers", n_layers, 1, _MAX_DIM)
        self.window = None if window is None else check_int("PagedKVCache window", window, 1, _MAX_ROWS)
        self.keep_extra = check_int("PagedKVCache keep_extra", keep_extra, 0, _MAX_ROWS)
        n_kv_heads = check_int("PagedKVCache n_kv_heads", n_kv_heads, 1, _MAX_DIM)
        head_dim = check_int("PagedKVCache head_dim", head_dim, 1, _MAX_DIM)
        block_size = check_int("PagedKVCache block_size", block_size, 1, _MAX_DIM)
        if block_size & (block_size - 1):
            raise ArgumentError(f"PagedKVCache block_size must be a power of two, got {block_size}")
        n_blocks = check_int("PagedKVCache n_blocks", n_blocks, 1, _MAX_ROWS // block_size)
        shape = (n_layers, n_blocks * block_size, n_kv_heads, head_dim)
        try:
            self.k = np.zeros(shape, np.float16)
            self.v = np.zeros(shape, np.float16)
        except (MemoryError, ValueError):
            gib = 2 * 2 * n_layers * n_blocks * block_size * n_kv_heads * head_dim / 2**30
            raise ArgumentError(f"PagedKVCache: cannot allocate {gib:.1f} GiB for k and v of shape "
                                f"{shape} (float16); use fewer blocks") from None
        self.n_layers, self.n_kv_heads, self.head_dim = n_layers, n_kv_heads, head_dim
        self.n_blocks, self.block_size = n_blocks, block_size
        self._shift = block_size.bit_length() - 1
        self._mask = block_size - 1
        self.bytes_per_block = 2 * n_layers * block_size * n_kv_heads * head_dim * 2
        self._ref = [0] * n_blocks             # refcount per block
        self._free = list(range(n_blocks))     # a min-heap (a sorted list is one)
        self._lru = collections.OrderedDict()  # unheld registered blocks, least recently used first
        self._entry = {}                       # registered block -> (parent key, tokens, key)
        self._by_key = {}                      # key -> registered block
        self._seqs = {}                        # seq id -> _Seq
        self._next_id = 0

    # -- accounting ---------------------------------------------------------------------

    @property
    def n_free_blocks(self) -> int:
        """Blocks an allocation can take: free ones and unheld cached ones."""
        return len(self._free) + len(self._lru)

    @property
    def n_used_blocks(self) -> int:
        """Blocks held by live sequences."""
        return self.n_blocks - self.n_free_blocks

    @property
    def n_cached_blocks(self) -> int:
        """Registered blocks (held or not): the prefix cache."""
        return len(self._entry)

    @property
    def n_idle_cached_blocks(self) -> int:
        """Registered blocks no sequence holds (the LRU allocation evicts from)."""
        return len(self._lru)

    def held_bytes(self) -> int:
        return self.n_used_blocks * self.bytes_per_block

    def refcount(self, block) -> int:
        """How many live sequences hold block (0: it is free)."""
        return self._ref[check_int("PagedKVCache.refcount block", block, 0, self.n_blocks - 1)]

    def sequences(self) -> list:
        """The live sequence ids, oldest first."""
        return list(self._seqs)

    def __contains__(self, seq) -> bool:
        return is_int(seq) and int(seq) in self._seqs

    # -- blocks -------------------------------------------------------------------------

    def _alloc(self) -> int:
        if self._free:
            b = heapq.heappop(self._free)
        else:       # evict the least recently used cached block
            b = self._lru.popitem(last=False)[0]
            del self._by_key[self._entry.pop(b)[2]]
        self._ref[b] = 1
        return b

    def _release(self, b: int) -> None:
        self._ref[b] -= 1
        if self._ref[b] == 0:
            if b in self._entry:
                self._lru[b] = None
            else:
                heapq.heappush(self._free, b)

    def _hold(self, b: int) -> None:
        if self._ref[b] == 0:
            del self._lru[b]
        self._ref[b] += 1

    def _copy_block(self, src: int, dst: int) -> None:
        bs = self.block_size
        self.k[:, dst * bs:(dst + 1) * bs] = self.k[:, src * bs:(src + 1) * bs]
        self.v[:, dst * bs:(dst + 1) * bs] = self.v[:, src * bs:(src + 1) * bs]

    def _seq(self, what: str, seq) -> _Seq:
        if not is_int(seq):
            raise ArgumentTypeError(f"PagedKVCache.{what}: a sequence id is an int, got {describe(seq)}")
        s = self._seqs.get(int(seq))
        if s is None:
            raise ArgumentError(f"PagedKVCache.{what}: sequence {int(seq)} is not live "
                                "(never created, or freed)")
        return s

    def _needs(self, s: _Seq, n: int):
        """(new blocks, whether the last block must be copied) for reserving n positions."""
        new = -(-(s.length + n) >> self._shift) - len(s.blocks)
        cow = n > 0 and (s.length & self._mask) != 0 and (self._ref[s.blocks[-1]] > 1 or s.blocks[-1] in self._entry)
        return new, cow

    def _release_behind(self, s: _Seq) -> None:
        """A windowed cache: release the blocks no reader at or past s.length looks at."""
        if self.window is None:
            return
        stop = max(0, s.length - self.window + 1 - self.keep_extra) >> self._shift
        for i in range(min(stop, len(s.blocks))):
            if s.blocks[i] >= 0:
                self._release(s.blocks[i])
                s.blocks[i] = -1

    def _held_from(self, s: _Seq) -> int:
        """The first position whose rows s still holds (0 unless a window released some)."""
        for i, b in enumerate(s.blocks):
            if b >= 0:
                return i << self._shift
        return s.length

    # -- sequences ----------------------------------------------------------------------

    def new_sequence(self) -> int:
        """A fresh empty sequence (ids are never reused)."""
        seq = self._next_id
        self._next_id += 1
        self._seqs[seq] = _Seq([], 0)
        return seq

    def length(self, seq) -> int:
        return self._seq("length", seq).length

    def fork(self, seq) -> int:
        """A new sequence holding the same positions as seq, sharing all its blocks."""
        s = self._seq("fork", seq)
        for b in s.blocks:
            if b >= 0:
                self._ref[b] += 1
        child = self.new_sequence()
        self._seqs[child] = _Seq(list(s.blocks), s.length, s.tokens, s.keys)
        return child

    def blocks_needed(self, seq, n) -> int:
        """How many free blocks reserve(seq, n) would take, a copy-on-write copy included."""
        s = self._seq("blocks_needed", seq)
        new, cow = self._needs(s, check_int("PagedKVCache.blocks_needed n", n, 0))
        return new + cow

    def reserve(self, seq, n) -> None:
        """Make positions [length, length + n) of seq writable (allocating blocks, copying a
        shared last block), then length += n. On KVCacheFullError nothing has changed."""
        s = self._seq("reserve", seq)
        n = check_int("PagedKVCache.reserve n", n, 0)
        self._release_behind(s)      # invisible to every reader from s.length on
        new, cow = self._needs(s, n)
        if new + cow > self.n_free_blocks:
            raise KVCacheFullError(
                f"KV cache full: sequence {int(seq)} needs {new + cow} blocks of {self.block_size} tokens "
                f"to grow from {s.length} to {s.length + n} positions, {self.n_free_blocks} of "
                f"{self.n_blocks} are free")
        if cow:
            old = s.blocks[-1]
            b = self._alloc()
            self._copy_block(old, b)
            s.blocks[-1] = b
            self._release(old)       # still held by its other sharers: refcount stays >= 1
        for _ in range(new):
            s.blocks.append(self._alloc())
        s.length += n

    def truncate(self, seq, n) -> None:
        """Keep positions [0, n); blocks past them are released. A shared block that stays
        is left shared (the next reserve into it copies it)."""
        s = self._seq("truncate", seq)
        n = check_int("PagedKVCache.truncate n", n, 0)
        if n > s.length:
            raise ArgumentError(f"PagedKVCache.truncate: cannot keep {n} positions of sequence {int(seq)}, "
                                f"it holds {s.length}")
        if self._keepable(s, n) != n:
            raise ArgumentError(f"PagedKVCache.truncate: cannot resume sequence {int(seq)} at position {n}: "
                                f"its window before it was released (keepable: 0)")
        keep = -(-n >> self._shift)
        for b in s.blocks[keep:]:
            if b >= 0:
                self._release(b)
        del s.blocks[keep:]
        s.length = n
        del s.tokens[n:]
        del s.keys[n >> self._shift:]

    def _keepable(self, s: _Seq, n: int) -> int:
        held = self._held_from(s)
        return n if held == 0 or n - (self.window or 0) + 1 >= held else 0

    def keepable(self, seq, n) -> int:
        """The longest prefix of at most n positions of seq that truncate() can keep and a
        step can continue from: n, or 0 when a window released rows the next token would read."""
        s = self._seq("keepable", seq)
        n = check_int("PagedKVCache.keepable n", n, 0, s.length)
        return self._keepable(s, n)

    def free(self, seq) -> None:
        """Release every block of seq; the id becomes invalid."""
        s = self._seq("free", seq)
        for b in s.blocks:
            if b >= 0:
                self._release(b)
        del self._seqs[int(seq)]

    # -- the prefix cache ---------------------------------------------------------------

    def commit(self, seq, tokens) -> None:
        """The rows of positions [c, c + len(tokens)) of seq now hold these tokens' keys and
        values, c being what was committed before (positions must be reserved). Every block
        this fills is registered under its chain key, unless that key already has a block."""
        s = self._seq("commit", seq)
        if len(s.tokens) + len(tokens) > s.length:
            raise ArgumentError(f"PagedKVCache.commit: {len(s.tokens)} + {len(tokens)} tokens, but sequence "
                                f"{int(seq)} holds {s.length} positions")
        s.tokens.extend(tokens)
        bs = self.block_size
        while (len(s.keys) + 1) * bs <= len(s.tokens):
            i = len(s.keys)
            parent = s.keys[-1] if s.keys else ROOT_KEY
            block = tuple(s.tokens[i * bs:(i + 1) * bs])
            key = hash((parent, block))
            s.keys.append(key)
            b = s.blocks[i]
            if b >= 0 and key not in self._by_key and b not in self._entry:
                self._entry[b] = (parent, block, key)
                self._by_key[key] = b

    def find(self, parent, tokens, key) -> int:
        """The registered block of the chain link (parent key, block tokens, key), or -1."""
        b = self._by_key.get(key, -1)
        if b >= 0 and self._entry[b][:2] != (parent, tokens):
            return -1          # a hash collision
        return b

    def match(self, links) -> list:
        """The registered blocks of the longest run of the chain links (see chain()) from
        the first one on."""
        out = []
        for parent, tokens, key in links:
            b = self.find(parent, tokens, key)
            if b < 0:
                break
            out.append(b)
        return out

    def adopt(self, blocks, links, first: int = 0) -> int:
        """A new sequence of len(links) full blocks: the registered blocks `blocks` at block
        indices first.. (earlier indices are holes: a window's released rows)."""
        held = [-1] * first + list(blocks)
        if len(held) != len(links):
            raise ArgumentError(f"PagedKVCache.adopt: {len(blocks)} blocks from index {first} for {len(links)} links")
        for b in blocks:
            self._hold(b)
        seq = self.new_sequence()
        s = self._seqs[seq]
        s.blocks, s.length = held, len(links) * self.block_size
        s.tokens = [t for _, block, _ in links for t in block]
        s.keys = [key for _, _, key in links]
        return seq

    def clear_cache(self) -> None:
        """Forget every registered block: idle ones become free, held ones plain blocks."""
        for b in self._lru:
            heapq.heappush(self._free, b)
        self._lru.clear()
        self._entry.clear()
        self._by_key.clear()

    def cached_length(self, tokens) -> int:
        """How many leading tokens the cached full blocks hold (an upper bound of what
        adopt_prefix gives: a window may need blocks that are gone)."""
        return len(self.match(chain(tokens, self.block_size))) * self.block_size

    def adopt_prefix(self, tokens) -> tuple:
        """(a new sequence holding the longest cached prefix of tokens, its length), or
        (None, 0) when no full block of it is cached."""
        links = chain(tokens, self.block_size)
        blocks = self.match(links)
        if self.window is not None:
            raise ArgumentError("PagedKVCache.adopt_prefix: a windowed cache is matched through LayeredKVCache")
        if not blocks:
            return None, 0
        return self.adopt(blocks, links[:len(blocks)]), len(blocks) * self.block_size

    # -- addressing ---------------------------------------------------------------------

    def table(self, seq) -> np.ndarray:
        """int32 [ceil(length / block_size)] physical block ids of seq."""
        return np.array(self._seq("table", seq).blocks, dtype=np.int32)

    def tables(self, seqs) -> np.ndarray:
        """int32 [len(seqs), max blocks]: row i is table(seqs[i]) padded with its first
        entry (0 for an empty sequence), so every entry is a valid block id."""
        rows = [self._seq("tables", s).blocks for s in seqs]
        out = np.zeros((len(rows), max((len(r) for r in rows), default=0)), dtype=np.int32)
        for i, r in enumerate(rows):
            if r:
                held = next((b for b in r if b >= 0), 0)     # a window's holes: any held block
                out[i, :len(r)] = [b if b >= 0 else held for b in r]
                out[i, len(r):] = out[i, 0]
        return out

    def slot(self, seq, p) -> int:
        """The physical row (in k[layer] and v[layer]) of position p of seq."""
        s = self._seq("slot", seq)
        if not is_int(p):
            raise ArgumentTypeError(f"PagedKVCache.slot: a position is an int, got {describe(p)}")
        p = int(p)
        if not 0 <= p < s.length:
            raise ArgumentError(f"PagedKVCache.slot: position {p} is out of range [0, {s.length}) "
                                f"of sequence {int(seq)}")
        if s.blocks[p >> self._shift] < 0:
            raise ArgumentError(f"PagedKVCache.slot: position {p} of sequence {int(seq)} was released "
                                "(behind its sliding window)")
        return (s.blocks[p >> self._shift] << self._shift) | (p & self._mask)

    def slots(self, seq, start=0, stop=None) -> np.ndarray:
        """int64 physical rows of positions [start, stop) of seq (stop defaults to its length):
        k[layer, cache.slots(seq)] gathers the sequence's keys in order."""
        s = self._seq("slots", seq)
        stop = s.length if stop is None else check_int("PagedKVCache.slots stop", stop, 0, s.length)
        start = check_int("PagedKVCache.slots start", start, 0, stop)
        if start < stop and start < self._held_from(s):
            raise ArgumentError(f"PagedKVCache.slots: positions below {self._held_from(s)} of sequence "
                                f"{int(seq)} were released (behind its sliding window)")
        p = np.arange(start, stop, dtype=np.int64)
        return (np.asarray(s.blocks, dtype=np.int64)[p >> self._shift] << self._shift) | (p & self._mask)


class LayeredKVCache:
    """Full-attention layers in one PagedKVCache (`full`), sliding-window layers in a windowed
    one (`local`), behind the sequence API of one cache: every call goes to both, so a
    sequence has the same id in both. reserve() is all-or-nothing across the two."""

    def __init__(self, n_full_layers, n_local_layers, n_kv_heads, head_dim, n_blocks, n_local_blocks,
                 window, block_size=16, keep_extra=0):
        self.full = PagedKVCache(n_full_layers, n_kv_heads, head_dim, n_blocks, block_size)
        self.local = PagedKVCache(n_local_layers, n_kv_heads, head_dim, n_local_blocks, block_size,
                                  window=window, keep_extra=keep_extra)
        self.block_size = block_size
        self.window = window

    @property
    def n_free_blocks(self) -> int:
        return self.full.n_free_blocks

    @property
    def n_used_blocks(self) -> int:
        return self.full.n_used_blocks

    @property
    def n_cached_blocks(self) -> int:
        return self.full.n_cached_blocks

    @property
    def n_blocks(self) -> int:
        return self.full.n_blocks

    def cached_length(self, tokens) -> int:
        return self.full.cached_length(tokens)

    def clear_cache(self) -> None:
        self.full.clear_cache()
        self.local.clear_cache()

    @property
    def n_idle_cached_blocks(self) -> int:
        return self.full.n_idle_cached_blocks

    def held_bytes(self) -> int:
        return self.full.held_bytes() + self.local.held_bytes()

    def sequences(self) -> list:
        return self.full.sequences()

    def __contains__(self, seq) -> bool:
        return seq in self.full

    def new_sequence(self) -> int:
        seq = self.full.new_sequence()
        if self.local.new_sequence() != seq:
            raise AssertionError("LayeredKVCache: the two pools' sequence ids diverged")
        return seq

    def length(self, seq) -> int:
        return self.full.length(seq)

    def fork(self, seq) -> int:
        child = self.full.fork(seq)
        if self.local.fork(seq) != child:
            raise AssertionError("LayeredKVCache: the two pools' sequence ids diverged")
        return child

    def blocks_needed(self, seq, n) -> int:
        return self.full.blocks_needed(seq, n)

    def reserve(self, seq, n) -> None:
        s = self.local._seq("reserve", seq)
        self.local._release_behind(s)
        need_local = self.local.blocks_needed(seq, n)
        if need_local > self.local.n_free_blocks:
            raise KVCacheFullError(
                f"KV cache full: sequence {int(seq)} needs {need_local} blocks of {self.block_size} tokens "
                f"for its sliding-window layers, {self.local.n_free_blocks} of {self.local.n_blocks} are free")
        self.full.reserve(seq, n)          # all-or-nothing; after it the local reserve cannot fail
        self.local.reserve(seq, n)

    def keepable(self, seq, n) -> int:
        return self.local.keepable(seq, n)

    def truncate(self, seq, n) -> None:
        self.local.truncate(seq, n)        # first: it refuses a position whose window is gone
        self.full.truncate(seq, n)

    def free(self, seq) -> None:
        self.full.free(seq)
        self.local.free(seq)

    def commit(self, seq, tokens) -> None:
        self.full.commit(seq, tokens)
        self.local.commit(seq, tokens)

    def adopt_prefix(self, tokens) -> tuple:
        """(a new sequence, its length) holding the longest prefix of tokens whose full blocks
        are cached in the full pool and whose last window is cached in the windowed one (the
        rows a step continuing from it reads); (None, 0) if there is none."""
        bs = self.block_size
        links = chain(tokens, bs)
        full = self.full.match(links)
        for m in range(len(full), 0, -1):
            first = max(0, m * bs - self.window + 1) // bs
            local = self.local.match(links[first:m])
            if len(local) == m - first:
                seq = self.full.adopt(full[:m], links[:m])
                if self.local.adopt(local, links[:m], first) != seq:
                    raise AssertionError("LayeredKVCache: the two pools' sequence ids diverged")
                return seq, m * bs
        return None, 0
