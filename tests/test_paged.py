"""The paged KV-cache block manager (ignis/runtime/paged.py): block arithmetic, fork and
copy-on-write, the shared budget, and a Hypothesis state machine checking that every live
sequence always reads back what was written through it."""
import heapq
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from ignis.errors import ArgumentError, ArgumentTypeError, IgnisError, KVCacheFullError
from ignis.runtime.paged import PagedKVCache, chain


def fill(cache, seq, start, stop, rng):
    """Write random values into positions [start, stop) of seq (all layers, k and v) through
    slot(); returns what was written, [n_layers, n, n_kv_heads, head_dim] for k and v."""
    rows = [cache.slot(seq, p) for p in range(start, stop)]
    shape = (cache.n_layers, len(rows), cache.n_kv_heads, cache.head_dim)
    k = rng.standard_normal(shape).astype(np.float16)
    v = rng.standard_normal(shape).astype(np.float16)
    cache.k[:, rows] = k
    cache.v[:, rows] = v
    return k, v


def read(cache, seq):
    rows = cache.slots(seq)
    return cache.k[:, rows], cache.v[:, rows]


def one_line(err):
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


# -- construction ---------------------------------------------------------------------------

def test_construct():
    c = PagedKVCache(3, 2, 8, n_blocks=5, block_size=4)
    for a in (c.k, c.v):
        assert a.dtype == np.float16 and a.shape == (3, 20, 2, 8)
        assert a.flags.c_contiguous and a.flags.writeable and not a.any()
    assert (c.n_layers, c.n_kv_heads, c.head_dim, c.n_blocks, c.block_size) == (3, 2, 8, 5, 4)
    assert c.bytes_per_block == 2 * 3 * 4 * 2 * 8 * 2
    assert c.bytes_per_block * c.n_blocks == c.k.nbytes + c.v.nbytes
    assert (c.n_free_blocks, c.n_used_blocks, c.held_bytes()) == (5, 0, 0)
    assert PagedKVCache(1, 1, 1, 1).block_size == 16


@pytest.mark.parametrize("kwargs, err", [
    (dict(n_layers=0), ArgumentError), (dict(n_kv_heads=-1), ArgumentError),
    (dict(head_dim=1 << 17), ArgumentError), (dict(n_blocks=0), ArgumentError),
    (dict(block_size=0), ArgumentError), (dict(block_size=12), ArgumentError),
    (dict(block_size=3), ArgumentError), (dict(n_blocks=2**31), ArgumentError),
    (dict(n_layers="2"), ArgumentTypeError), (dict(n_blocks=4.0), ArgumentTypeError),
    (dict(block_size=True), ArgumentTypeError), (dict(head_dim=None), ArgumentTypeError),
])
def test_bad_construct(kwargs, err):
    args = dict(n_layers=2, n_kv_heads=2, head_dim=4, n_blocks=4, block_size=4) | kwargs
    with pytest.raises(err) as e:
        PagedKVCache(**args)
    assert next(iter(kwargs)) in one_line(e)


@pytest.mark.parametrize("n_layers, n_blocks, heads, dim, gib", [
    (1 << 12, 1 << 16, 1 << 8, 1 << 8, "1048576.0 GiB"),        # MemoryError: past the address space
    (1 << 16, (1 << 27) - 1, 1 << 16, 1 << 16, "GiB"),          # ValueError: array is too big
])
def test_absurd_size(n_layers, n_blocks, heads, dim, gib):
    with pytest.raises(IgnisError) as e:
        PagedKVCache(n_layers, heads, dim, n_blocks, block_size=16)
    assert gib in one_line(e)


# -- arithmetic -----------------------------------------------------------------------------

def test_reserve_slot_table():
    c = PagedKVCache(2, 1, 2, n_blocks=8, block_size=4)
    s = c.new_sequence()
    c.reserve(s, 0)
    assert c.length(s) == 0 and c.table(s).tolist() == [] and c.n_used_blocks == 0
    c.reserve(s, 5)                                     # 2 blocks, the second holds 1 position
    assert c.length(s) == 5 and c.table(s).tolist() == [0, 1]
    t = c.new_sequence()
    c.reserve(t, 3)
    assert c.table(t).tolist() == [2]
    assert c.blocks_needed(s, 3) == 0 and c.blocks_needed(s, 4) == 1
    c.reserve(s, 4)                                     # 9 positions: room for 3 in block 1, then block 3
    assert c.length(s) == 9 and c.table(s).tolist() == [0, 1, 3]
    assert [c.slot(s, p) for p in range(9)] == [0, 1, 2, 3, 4, 5, 6, 7, 12]
    assert [c.slot(t, p) for p in range(3)] == [8, 9, 10]
    assert c.slots(s).tolist() == [c.slot(s, p) for p in range(9)]
    assert c.slots(s, 3, 6).tolist() == [3, 4, 5]
    tab = c.table(s)
    assert tab.dtype == np.int32 and all(c.slot(s, p) == tab[p // 4] * 4 + p % 4 for p in range(9))
    tabs = c.tables([s, t, c.new_sequence(), s])
    assert tabs.dtype == np.int32 and tabs.tolist() == [[0, 1, 3], [2, 2, 2], [0, 0, 0], [0, 1, 3]]
    assert c.tables([]).shape == (0, 0)
    assert (c.n_used_blocks, c.n_free_blocks, c.held_bytes()) == (4, 4, 4 * c.bytes_per_block)


def test_lowest_free_block_first():
    c = PagedKVCache(1, 1, 1, n_blocks=6, block_size=2)
    a, b, d = (c.new_sequence() for _ in range(3))
    c.reserve(a, 4)
    c.reserve(b, 2)
    c.reserve(d, 2)
    assert [c.table(x).tolist() for x in (a, b, d)] == [[0, 1], [2], [3]]
    c.free(a)
    c.truncate(d, 0)
    e = c.new_sequence()
    c.reserve(e, 6)
    assert c.table(e).tolist() == [0, 1, 3]
    assert len({a, b, d, e}) == 4 and e > d                # ids are never reused


# -- fork and copy-on-write -----------------------------------------------------------------

def test_fork_shares_full_blocks():
    c = PagedKVCache(2, 1, 2, n_blocks=8, block_size=4)
    s = c.new_sequence()
    c.reserve(s, 8)
    f = c.fork(s)
    assert c.length(f) == 8 and c.table(f).tolist() == c.table(s).tolist() == [0, 1]
    assert c.n_used_blocks == 2 and c.refcount(0) == c.refcount(1) == 2
    assert c.blocks_needed(f, 1) == 1                     # a new block, no copy: the shared ones are full
    c.reserve(f, 1)
    assert c.table(f).tolist() == [0, 1, 2] and c.table(s).tolist() == [0, 1]
    assert c.n_used_blocks == 3


def test_write_after_fork_copies_partial_last_block():
    rng = np.random.default_rng(0)
    c = PagedKVCache(3, 2, 4, n_blocks=8, block_size=4)
    s = c.new_sequence()
    c.reserve(s, 6)                                       # block 0 full, block 1 holds 2 positions
    k0, v0 = fill(c, s, 0, 6, rng)
    f = c.fork(s)
    assert c.n_used_blocks == 2
    assert c.blocks_needed(f, 1) == 1 and c.blocks_needed(f, 2) == 1 and c.blocks_needed(f, 3) == 2
    c.reserve(f, 1)                                       # position 6 falls into the shared block 1: copy it
    assert c.n_used_blocks == 3
    assert c.table(s).tolist() == [0, 1] and c.table(f).tolist() == [0, 2]
    assert c.refcount(0) == 2 and c.refcount(1) == 1 and c.refcount(2) == 1
    # the copy holds the original block's rows, every layer, k and v
    np.testing.assert_array_equal(c.k[:, 8:12], c.k[:, 4:8])
    np.testing.assert_array_equal(c.v[:, 8:12], c.v[:, 4:8])
    kf, vf = read(c, f)
    np.testing.assert_array_equal(kf[:, :6], k0)
    np.testing.assert_array_equal(vf[:, :6], v0)
    k1, v1 = fill(c, f, 6, 7, rng)                        # writing through the fork...
    ks, vs = read(c, s)                                   # ...leaves the parent as it was
    np.testing.assert_array_equal(ks, k0)
    np.testing.assert_array_equal(vs, v0)
    kf, vf = read(c, f)
    np.testing.assert_array_equal(kf, np.concatenate([k0, k1], axis=1))
    np.testing.assert_array_equal(vf, np.concatenate([v0, v1], axis=1))
    # block 1 is the parent's alone now: its next write goes in place, no second copy
    assert c.blocks_needed(s, 2) == 0
    c.reserve(s, 2)
    assert c.table(s).tolist() == [0, 1] and c.n_used_blocks == 3


def test_truncate_releases_and_keeps_sharing():
    c = PagedKVCache(1, 1, 2, n_blocks=8, block_size=4)
    s = c.new_sequence()
    c.reserve(s, 12)
    f = c.fork(s)
    c.truncate(f, 5)                                      # keeps blocks 0 and 1, block 1 still shared
    assert c.table(f).tolist() == [0, 1] and c.refcount(1) == 2 and c.refcount(2) == 1
    assert c.n_used_blocks == 3
    assert c.blocks_needed(f, 1) == 1                     # copy-on-write of block 1
    c.reserve(f, 1)
    assert c.table(f).tolist() == [0, 3] and c.refcount(1) == 1
    c.truncate(s, 0)
    assert c.length(s) == 0 and c.table(s).tolist() == [] and c.n_used_blocks == 2
    c.truncate(f, 6)                                      # a no-op
    assert c.table(f).tolist() == [0, 3]


def test_free_returns_blocks():
    c = PagedKVCache(1, 1, 2, n_blocks=8, block_size=4)
    s = c.new_sequence()
    c.reserve(s, 10)
    f = c.fork(s)
    c.reserve(f, 8)
    assert c.n_used_blocks == 3 + 1 + 2
    c.free(s)
    assert c.n_used_blocks == 3 + 2 and c.table(f).tolist()[:2] == [0, 1]
    c.free(f)
    assert (c.n_free_blocks, c.n_used_blocks, c.held_bytes()) == (8, 0, 0)
    assert all(c.refcount(b) == 0 for b in range(8))
    for op in (c.length, c.free, c.table, c.fork):
        with pytest.raises(ArgumentError, match=f"sequence {s} is not live"):
            op(s)
    assert c.sequences() == [] and s not in c


def test_full_is_all_or_nothing():
    rng = np.random.default_rng(1)
    c = PagedKVCache(2, 1, 4, n_blocks=4, block_size=4)
    a, b = c.new_sequence(), c.new_sequence()
    c.reserve(a, 8)
    c.reserve(b, 2)
    data = {a: fill(c, a, 0, 8, rng), b: fill(c, b, 0, 2, rng)}
    f = c.fork(b)
    data[f] = data[b]
    assert c.n_free_blocks == 1
    before = ({x: (c.length(x), c.table(x).tolist()) for x in (a, b, f)}, c.k.copy(), c.v.copy())
    assert c.blocks_needed(f, 3) == 2                     # the copy of the shared block + one more
    with pytest.raises(KVCacheFullError) as e:
        c.reserve(f, 3)
    assert one_line(e) == ("KV cache full: sequence 2 needs 2 blocks of 4 tokens to grow from 2 to 5 "
                           "positions, 1 of 4 are free")
    with pytest.raises(KVCacheFullError):
        c.reserve(a, 9)
    after = ({x: (c.length(x), c.table(x).tolist()) for x in (a, b, f)}, c.k.copy(), c.v.copy())
    assert before[0] == after[0] and c.n_free_blocks == 1
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[2], after[2])
    # the others go on: b fits (its copy takes the last block), and everyone reads back intact
    c.reserve(b, 2)
    assert c.n_free_blocks == 0
    for x in (a, b, f):
        k, v = read(c, x)
        n = data[x][0].shape[1]
        np.testing.assert_array_equal(k[:, :n], data[x][0])
        np.testing.assert_array_equal(v[:, :n], data[x][1])
    c.free(a)
    c.reserve(f, 3)                                       # room again after a frees its blocks
    assert c.length(f) == 5


def test_bad_arguments():
    c = PagedKVCache(1, 1, 2, n_blocks=4, block_size=4)
    s = c.new_sequence()
    c.reserve(s, 3)
    cases = [
        (lambda: c.length(99), ArgumentError, "sequence 99 is not live"),
        (lambda: c.reserve(-1, 1), ArgumentError, "sequence -1 is not live"),
        (lambda: c.table("0"), ArgumentTypeError, "a sequence id is an int"),
        (lambda: c.fork(1.0), ArgumentTypeError, "a sequence id is an int"),
        (lambda: c.tables([s, 7]), ArgumentError, "sequence 7 is not live"),
        (lambda: c.reserve(s, -1), ArgumentError, "n must be an integer >= 0"),
        (lambda: c.blocks_needed(s, -2), ArgumentError, "n must be an integer >= 0"),
        (lambda: c.reserve(s, 1.5), ArgumentTypeError, "n must be an integer"),
        (lambda: c.truncate(s, 4), ArgumentError, "cannot keep 4 positions of sequence 0, it holds 3"),
        (lambda: c.truncate(s, -1), ArgumentError, "n must be an integer >= 0"),
        (lambda: c.slot(s, 3), ArgumentError, "position 3 is out of range [0, 3)"),
        (lambda: c.slot(s, -1), ArgumentError, "position -1 is out of range [0, 3)"),
        (lambda: c.slot(s, None), ArgumentTypeError, "a position is an int"),
        (lambda: c.slots(s, 0, 4), ArgumentError, "stop must be an integer in [0, 3]"),
        (lambda: c.refcount(4), ArgumentError, "block must be an integer in [0, 3]"),
    ]
    for call, err, text in cases:
        with pytest.raises(err) as e:
            call()
        assert not isinstance(e.value, KVCacheFullError)
        assert text in one_line(e), (text, str(e.value))
    assert c.length(s) == 3 and c.n_used_blocks == 1
    c.reserve(np.int64(s), np.int32(1))                  # numpy integers are integers
    assert c.slot(np.int64(s), np.int16(3)) == 3


# -- memory ---------------------------------------------------------------------------------

def test_eight_forks_share_the_prefix():
    """8 forks of a 512-token prompt, each generating 32 tokens, against one 544-token sequence."""
    def cache():
        return PagedKVCache(24, 2, 64, n_blocks=512, block_size=16)    # Qwen2.5-0.5B's K/V shape
    one = cache()
    s = one.new_sequence()
    one.reserve(s, 544)
    c = cache()
    prompt = c.new_sequence()
    c.reserve(prompt, 512)
    forks = [c.fork(prompt) for _ in range(8)]
    c.free(prompt)
    for f in forks:
        for _ in range(32):                               # decode: one token at a time
            c.reserve(f, 1)
    assert all(c.length(f) == 544 for f in forks)
    ratio = c.held_bytes() / one.held_bytes()
    print(f"\n8 forks of a 512-token prefix +32 tokens each: {c.n_used_blocks} blocks, "
          f"{c.held_bytes() / 2**20:.2f} MiB; one 544-token sequence: {one.n_used_blocks} blocks, "
          f"{one.held_bytes() / 2**20:.2f} MiB; ratio {ratio:.3f} (unshared: 8.0)")
    assert c.n_used_blocks == 32 + 8 * 2 and one.n_used_blocks == 34
    assert ratio < 1.5


# -- the state machine ----------------------------------------------------------------------

LAYERS, HEADS, DIM = 3, 2, 2
TAG_MAX = 500          # k = tag + TAG_MAX * layer, v = -k: exact in float16 (|x| <= 1500 < 2048)


class PagedMachine(RuleBasedStateMachine):
    """The model: seq -> list of per-position tags (None: reserved but never written). Every
    step, every live sequence must read back its tags through table()/slot(), and the
    refcounts must match the tables."""
    cache_class = PagedKVCache

    def __init__(self):
        super().__init__()
        self.cache = None
        self.model = {}
        self.dead = []

    @initialize(block_size=st.sampled_from([1, 2, 4, 8]), n_blocks=st.integers(1, 24))
    def setup(self, block_size, n_blocks):
        self.cache = self.cache_class(LAYERS, HEADS, DIM, n_blocks, block_size)

    def pick(self, data):
        return data.draw(st.sampled_from(sorted(self.model)), label="seq")

    @rule()
    def new(self):
        seq = self.cache.new_sequence()
        assert seq not in self.model and seq not in self.dead
        assert self.cache.length(seq) == 0
        self.model[seq] = []

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def fork(self, data):
        seq = self.pick(data)
        used = self.cache.n_used_blocks
        child = self.cache.fork(seq)
        assert child not in self.model and child not in self.dead
        assert self.cache.n_used_blocks == used
        self.model[child] = list(self.model[seq])

    @precondition(lambda self: self.model)
    @rule(data=st.data(), write=st.sampled_from([True, True, True, False]))
    def reserve(self, data, write):
        """Reserve n positions, then (usually) write them as a forward pass would."""
        seq = self.pick(data)
        n = data.draw(st.integers(1, 3) | st.integers(0, 2 * self.cache.block_size + 1), label="n")
        self.grow(data, seq, n, write)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def diverge(self, data):
        """Parallel sampling: fork a sequence, then decode a few tokens into each copy."""
        seq = self.pick(data)
        child = self.cache.fork(seq)
        self.model[child] = list(self.model[seq])
        for _ in range(data.draw(st.integers(1, 3), label="steps")):
            for s in data.draw(st.permutations([seq, child]), label="order"):
                self.grow(data, s, 1, True)

    def grow(self, data, seq, n, write):
        c = self.cache
        needed = c.blocks_needed(seq, n)
        if needed > c.n_free_blocks:
            before = self.snapshot()
            with pytest.raises(KVCacheFullError):
                c.reserve(seq, n)
            after = self.snapshot()
            assert before[:-2] == after[:-2]
            np.testing.assert_array_equal(before[-2], after[-2])
            np.testing.assert_array_equal(before[-1], after[-1])
            return
        free = c.n_free_blocks
        start = c.length(seq)
        # copying an unshared cached last block leaves the original idle in the cache, where
        # an allocation can still take it: one block comes back
        s = c._seqs[seq]
        src = s.blocks[-1] if n and s.blocks and s.length & c._mask else None
        back = int(src is not None and c.refcount(src) == 1 and src in c._entry)
        c.reserve(seq, n)
        assert c.n_free_blocks == free - needed + back and c.length(seq) == start + n
        # the rows about to be written are in blocks this sequence holds alone
        mine = c.table(seq)[start // c.block_size:] if n else []
        assert all(c.refcount(b) == 1 for b in mine), f"reserve left a shared block to write: {mine}"
        assert not any(b in c._entry for b in mine), f"reserve left a cached block to write: {mine}"
        if not write:
            self.model[seq].extend([None] * n)
            return
        tags = data.draw(st.lists(st.integers(1, TAG_MAX), min_size=n, max_size=n), label="tags")
        for p, tag in enumerate(tags, start):
            row = c.slot(seq, p)
            for layer in range(LAYERS):
                c.k[layer, row] = tag + TAG_MAX * layer
                c.v[layer, row] = -(tag + TAG_MAX * layer)
        self.model[seq].extend(tags)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def commit(self, data):
        """Say which tokens (here: the tags) the written rows of a sequence hold."""
        seq = self.pick(data)
        tags = self.model[seq]
        done = len(self.cache._seqs[seq].tokens)
        known = 0
        while done + known < len(tags) and tags[done + known] is not None:
            known += 1
        n = data.draw(st.integers(0, known), label="commit n")
        self.cache.commit(seq, tags[done:done + n])

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def adopt_prefix(self, data):
        """A new sequence from the cached blocks of another's committed tokens (changed at
        a drawn position, so the match may stop early)."""
        c = self.cache
        src = self.pick(data)
        tokens = list(c._seqs[src].tokens)
        if tokens and data.draw(st.booleans(), label="change"):
            at = data.draw(st.integers(0, len(tokens) - 1), label="at")
            tokens[at] = tokens[at] % TAG_MAX + 1
        held = sum(1 for b in range(c.n_blocks) if c.refcount(b))
        seq, n = c.adopt_prefix(tokens)
        if seq is None:
            assert n == 0 and not c.match(chain(tokens, c.block_size))
            return
        assert n % c.block_size == 0 and 0 < n <= len(tokens) and c.length(seq) == n
        assert sum(1 for b in range(c.n_blocks) if c.refcount(b)) >= held
        self.model[seq] = tokens[:n]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def truncate(self, data):
        seq = self.pick(data)
        n = data.draw(st.integers(0, len(self.model[seq])), label="n")
        self.cache.truncate(seq, n)
        del self.model[seq][n:]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def free(self, data):
        seq = self.pick(data)
        self.cache.free(seq)
        del self.model[seq]
        self.dead.append(seq)

    @precondition(lambda self: self.dead)
    @rule(data=st.data())
    def use_dead(self, data):
        seq = data.draw(st.sampled_from(self.dead), label="dead")
        with pytest.raises(ArgumentError):
            self.cache.reserve(seq, 1)

    def snapshot(self):
        c = self.cache
        return ({s: (c.length(s), c.table(s).tolist()) for s in self.model}, c.n_free_blocks,
                c.k.copy(), c.v.copy())

    @invariant()
    def reads_back(self):
        c = self.cache
        if c is None:
            return
        bs = c.block_size
        for seq, tags in self.model.items():
            assert c.length(seq) == len(tags)
            tab = c.table(seq)
            assert tab.dtype == np.int32 and len(tab) == -(-len(tags) // bs)
            rows = [int(tab[p // bs]) * bs + p % bs for p in range(len(tags))]
            assert rows == [c.slot(seq, p) for p in range(len(tags))] == c.slots(seq).tolist()
            known = [p for p, t in enumerate(tags) if t is not None]
            if not known:
                continue
            want = np.array([tags[p] for p in known], np.float16)[None, :] \
                + np.float16(TAG_MAX) * np.arange(LAYERS, dtype=np.float16)[:, None]
            at = [rows[p] for p in known]
            got_k, got_v = c.k[:, at, :, :], c.v[:, at, :, :]
            want = want[:, :, None, None]
            assert np.array_equal(got_k, np.broadcast_to(want, got_k.shape)), \
                f"k of sequence {seq}: {got_k[:, :, 0, 0].tolist()} != {want[:, :, 0, 0].tolist()}"
            assert np.array_equal(got_v, np.broadcast_to(-want, got_v.shape)), \
                f"v of sequence {seq}: {got_v[:, :, 0, 0].tolist()} != {(-want)[:, :, 0, 0].tolist()}"

    @invariant()
    def cached_blocks_hold_their_tokens(self):
        """A registered block's rows are the tags of its tokens, for as long as it is cached."""
        c = self.cache
        if c is None:
            return
        bs = c.block_size
        for b, (_, tokens, _) in c._entry.items():
            want = np.array(tokens, np.float16)[None, :] + np.float16(TAG_MAX) * np.arange(LAYERS, dtype=np.float16)[:, None]
            got = c.k[:, b * bs:(b + 1) * bs, 0, 0]
            assert np.array_equal(got, want), f"cached block {b}: {got.tolist()} != {want.tolist()}"

    @invariant()
    def refcounts_match_tables(self):
        c = self.cache
        if c is None:
            return
        held = Counter()
        for seq in self.model:
            tab = c.table(seq).tolist()
            assert len(set(tab)) == len(tab), f"sequence {seq} holds a block twice: {tab}"
            assert all(0 <= b < c.n_blocks for b in tab)
            held.update(tab)
        assert [c.refcount(b) for b in range(c.n_blocks)] == [held[b] for b in range(c.n_blocks)]
        free, lru = c._free, list(c._lru)                 # the free heap and the idle cached blocks
        assert len(set(free)) == len(free), "a block is twice in the free list"
        assert not set(free) & set(lru), "a block both free and cached"
        assert set(free) | set(lru) == {b for b in range(c.n_blocks) if not held[b]}, "free list vs used blocks"
        assert set(lru) <= set(c._entry) and not set(free) & set(c._entry), "idle blocks vs the cache"
        assert {e[2]: b for b, e in c._entry.items()} == c._by_key
        assert c.n_free_blocks + c.n_used_blocks == c.n_blocks
        assert c.n_used_blocks == len(held) and c.held_bytes() == len(held) * c.bytes_per_block
        assert sorted(c.sequences()) == sorted(self.model)
        seqs = sorted(self.model)
        tabs = c.tables(seqs)
        assert tabs.dtype == np.int32 and tabs.shape[0] == len(seqs)
        assert ((tabs >= 0) & (tabs < c.n_blocks)).all()
        for i, seq in enumerate(seqs):
            assert tabs[i, :len(held_row := c.table(seq))].tolist() == held_row.tolist()

    def teardown(self):
        c = self.cache
        if c is None:
            return
        for seq in list(self.model):
            c.free(seq)
        assert c.n_free_blocks == c.n_blocks and c.n_used_blocks == 0 and c.held_bytes() == 0
        assert c.n_idle_cached_blocks == c.n_cached_blocks
        assert all(c.refcount(b) == 0 for b in range(c.n_blocks))


PagedMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestPagedMachine = PagedMachine.TestCase


# -- the machine catches planted bugs ---------------------------------------------------------

class _NoCopy(PagedKVCache):
    """Copy-on-write takes a fresh block but forgets to copy the rows into it."""
    def _copy_block(self, src, dst):
        pass


class _NoCow(PagedKVCache):
    """Writes into a shared last block in place."""
    def _needs(self, s, n):
        return super()._needs(s, n)[0], False


class _FreeShared(PagedKVCache):
    """Returns a block to the free list when its refcount drops to 1 instead of 0."""
    def _release(self, b):
        self._ref[b] -= 1
        if self._ref[b] <= 1 and b not in self._free:
            self._ref[b] = 0
            self._free.append(b)
            self._free.sort()


class _WriteCached(PagedKVCache):
    """Writes into a registered (cached) last block in place when it is not shared."""
    def _needs(self, s, n):
        new = -(-(s.length + n) >> self._shift) - len(s.blocks)
        return new, n > 0 and (s.length & self._mask) != 0 and self._ref[s.blocks[-1]] > 1


class _ReuseCached(PagedKVCache):
    """Allocates an idle cached block without forgetting its key."""
    def _alloc(self):
        if self._free:
            b = heapq.heappop(self._free)
        else:
            b = self._lru.popitem(last=False)[0]
        self._ref[b] = 1
        return b


def _cached_block_scenario(cache_class):
    """Two full blocks committed and the sequence freed (both cached, idle); a sequence adopts
    them, is truncated into the second and written there; then the pool is filled."""
    c = cache_class(1, 1, 1, 4, block_size=2)
    s = c.new_sequence()
    c.reserve(s, 4)
    c.k[0, [c.slot(s, p) for p in range(4)], 0, 0] = [1, 2, 3, 4]
    c.commit(s, [1, 2, 3, 4])
    c.free(s)
    t, n = c.adopt_prefix([1, 2, 3, 4, 5])
    assert n == 4
    c.truncate(t, 3)
    c.reserve(t, 1)
    c.k[0, c.slot(t, 3), 0, 0] = 9           # position 3 now holds token 9, in a block of t's own
    c.commit(t, [9])
    u, m = c.adopt_prefix([1, 2, 3, 4, 5])   # the cached [3, 4] block must still hold 3, 4
    assert m == 4 and c.k[0, [c.slot(u, p) for p in range(4)], 0, 0].tolist() == [1, 2, 3, 4]
    c.free(u)
    c.free(t)
    v = c.new_sequence()                     # fill the pool: cached blocks are evicted
    c.reserve(v, 8)
    assert c.n_cached_blocks == 0 and c.adopt_prefix([1, 2, 3, 4, 5]) == (None, 0)


def test_cached_blocks_are_read_only_and_evicted_when_allocated():
    _cached_block_scenario(PagedKVCache)


@pytest.mark.parametrize("broken", [_WriteCached, _ReuseCached])
def test_cached_block_scenario_catches_planted_bugs(broken):
    with pytest.raises(AssertionError):
        _cached_block_scenario(broken)


@pytest.mark.parametrize("broken", [_NoCopy, _NoCow, _FreeShared])
def test_machine_catches_planted_bug(broken):
    machine = type(f"Machine{broken.__name__}", (PagedMachine,), {"cache_class": broken})
    with pytest.raises(AssertionError):
        run_state_machine_as_test(machine, settings=settings(
            max_examples=200, stateful_step_count=40, deadline=None, database=None,
            report_multiple_bugs=False, phases=[Phase.generate],
            suppress_health_check=[HealthCheck.too_slow]))


# -- sliding windows ------------------------------------------------------------------------

def test_window_releases_blocks_behind_it():
    c = PagedKVCache(1, 1, 2, n_blocks=16, block_size=4, window=6, keep_extra=2)
    s = c.new_sequence()
    c.reserve(s, 10)                       # nothing held before: nothing to release
    assert c.table(s).tolist() == [0, 1, 2]
    c.reserve(s, 10)                       # readers from 10 on look back to 10 - 6 + 1 - 2 = 3: block 0 holds 0..3
    assert c.table(s).tolist() == [0, 1, 2, 3, 4]
    c.reserve(s, 1)                        # from 20: back to 13 -> blocks 0..2 (positions 0..11) go,
    assert c.table(s).tolist() == [-1, -1, -1, 3, 4, 0] and c.n_used_blocks == 3     # and 0 is reused
    assert c.tables([s]).tolist() == [[3, 3, 3, 3, 4, 0]]          # holes: a held block id
    with pytest.raises(ArgumentError, match="released"):
        c.slot(s, 11)
    assert c.slot(s, 12) == 12 and c.slots(s, 12).tolist() == list(range(12, 20)) + [0]
    # resuming at n needs positions n - 6 + 1 .. n - 1, held from 12 on: 17 yes, 16 no
    assert [c.keepable(s, n) for n in (21, 18, 17, 16, 5, 0)] == [21, 18, 17, 0, 0, 0]
    with pytest.raises(ArgumentError, match="cannot resume sequence .* at position 16"):
        c.truncate(s, 16)
    c.truncate(s, 18)
    f = c.fork(s)                          # holes are shared as holes
    assert c.table(f).tolist() == [-1, -1, -1, 3, 4] and c.refcount(3) == 2
    c.free(s)
    c.free(f)
    assert c.n_used_blocks == 0 and c.n_free_blocks == 16


def test_window_bounds_what_a_sequence_holds():
    c = PagedKVCache(1, 1, 2, n_blocks=8, block_size=4, window=5)
    s = c.new_sequence()
    for _ in range(200):                   # a long decode: never more than the window's blocks
        c.reserve(s, 1)
        assert c.n_used_blocks <= 3
    assert c.length(s) == 200 and c.keepable(s, 200) == 200


def test_layered_cache_keeps_both_pools_in_step():
    from ignis.runtime.paged import LayeredKVCache
    c = LayeredKVCache(1, 2, 1, 2, n_blocks=20, n_local_blocks=4, window=4, block_size=4)
    s = c.new_sequence()
    c.reserve(s, 8)
    for _ in range(40):
        c.reserve(s, 1)
    assert c.length(s) == 48 and c.full.length(s) == c.local.length(s) == 48
    assert c.full.n_used_blocks == 12 and c.local.n_used_blocks <= 3
    t = c.new_sequence()
    with pytest.raises(KVCacheFullError, match="sliding-window layers"):
        c.reserve(t, 16)                   # 4 local blocks, one or more held by s
    assert c.length(t) == 0 and c.full.length(t) == 0            # all or nothing
    assert c.keepable(s, 10) == 0 and c.keepable(s, 47) == 47
    c.truncate(s, 0)
    c.free(s)
    c.free(t)
    assert c.full.n_used_blocks == c.local.n_used_blocks == 0
