"""The compiled forward pass: for each step shape, build the model's graph, run the pass
pipeline, plan memory, lower to a kernel Plan (cached per shape), and run it over the
paged KV cache.

Two ways in:
  - forward(tokens, start): one sequence (the Model's own), a prompt in chunks of fixed
    power-of-two sizes or one decode token; the last position's logits or every position's.
  - step(tokens, seqs, positions, out_rows): one batch of many sequences (the scheduler);
    token t is at position positions[t] of sequence seqs[t]; the logits of the rows
    out_rows. Batches are padded to a few bucket sizes, so only a handful of plans exist:
    padding tokens sit in a sequence of their own and are never read back.
Every token's logits have the same bits whichever way it went in."""
import os

import numpy as np

from ignis import _kernels
from ignis.errors import ContextOverflowError, KVCacheFullError, ModelError
from ignis.models import build_graph
from ignis.passes import plan_memory, run_pipeline
from ignis.runtime.lower import lower
from ignis.runtime.paged import LayeredKVCache, PagedKVCache
from ignis.runtime.weights import WeightStore

MAX_BATCH = 512        # largest prefill chunk (tokens per plan run)
MAX_LOGITS_BATCH = 64  # chunk size when every position's logits are wanted
BLOCK_SIZE = 16        # positions per KV-cache block
PAD_TOKENS = 16        # most padding a batch bucket adds (see step_bucket)
WINDOW_SLACK = 64      # positions a sliding-window cache keeps beyond the window (a prompt may
                       # rewind this far and still reuse its cache)
WINDOW_SEQS = 8        # sequences the sliding-window cache holds a whole window and chunk for


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def chunk_sizes(n: int, largest: int) -> list:
    """Split n tokens into chunks from a small fixed set of sizes (powers of two up to
    `largest`), so only a handful of plans are ever compiled."""
    out = []
    size = largest
    while n > 0:
        while size > n:
            size //= 2
        out.append(size)
        n -= size
    return out


def step_bucket(n: int) -> int:
    """The plan size a batch of n tokens runs in: n itself up to 16 (decode batches run
    unpadded), then the next multiple of 16 (padding < PAD_TOKENS)."""
    return n if n <= 16 else -(-n // 16) * 16


def rows_bucket(n: int) -> int:
    """The number of logit rows a plan computes for n wanted rows: the next power of two."""
    return 1 << (n - 1).bit_length()


class Engine:
    def __init__(self, gguf, config, n_ctx: int, threads: int, passes=None,
                 kv_tokens: int | None = None):
        """n_ctx: the most positions one sequence may hold; kv_tokens: the KV-cache budget
        shared by every sequence (default n_ctx)."""
        self.config = config
        self.n_ctx = n_ctx
        self.threads = threads
        self.passes = passes
        self.weights = WeightStore(gguf)
        budget = n_ctx if kv_tokens is None else kv_tokens
        n_blocks = -(-budget // BLOCK_SIZE) + -(-PAD_TOKENS // BLOCK_SIZE)
        self.kv_layers, self.kv = self._kv_cache(config, n_blocks)
        self._pad_seq = self.kv.new_sequence()      # where padding tokens write
        self.kv.reserve(self._pad_seq, PAD_TOKENS)
        self.seq = self.kv.new_sequence()           # the single caller's sequence (forward)
        self.reclaim = lambda: False    # frees a cached sequence when the pool is full (set by Model)
        self._plans = {}

    @staticmethod
    def _kv_cache(config, n_blocks):
        """(layer map, cache): one paged cache for every layer, or, when some layers attend to
        a sliding window, those in a second cache that keeps only about the window per sequence
        (then the map: model layer -> (pool, layer within it))."""
        window_of = getattr(config, "layer_window", lambda L: None)
        windows = [window_of(L) for L in range(config.n_layers)]
        local = [L for L, w in enumerate(windows) if w]
        if not local:
            return None, PagedKVCache(config.n_layers, config.n_kv_heads, config.head_dim, n_blocks, BLOCK_SIZE)
        if len({windows[L] for L in local}) != 1:
            raise ModelError("engine: sliding-window layers with different windows are not supported")
        window = windows[local[0]]
        full = [L for L, w in enumerate(windows) if not w]
        layers = {L: (0, i) for i, L in enumerate(full)} | {L: (1, i) for i, L in enumerate(local)}
        # a sequence's windowed rows: the window, the slack, and the chunk being reserved
        per_seq = -(-(window + WINDOW_SLACK + MAX_BATCH) // BLOCK_SIZE) + 2
        n_local = min(n_blocks, WINDOW_SEQS * per_seq + -(-PAD_TOKENS // BLOCK_SIZE))
        return layers, LayeredKVCache(max(1, len(full)), len(local), config.n_kv_heads, config.head_dim,
                                      n_blocks, n_local, window, BLOCK_SIZE, keep_extra=WINDOW_SLACK)

    def _compile(self, key, T: int, all_logits: bool, n_out=None):
        if key not in self._plans:
            graph, _ = run_pipeline(build_graph(self.config, T, all_logits, n_out), self.passes)
            self._plans[key] = lower(graph, plan_memory(graph), self.weights, self.threads, self.kv_layers)
        return self._plans[key]

    def plan(self, T: int, all_logits: bool):
        """The plan of T tokens of one sequence (last or every position's logits)."""
        return self._compile((T, all_logits or T == 1), T, all_logits)

    def batch_plan(self, T: int, n_out: int):
        """The plan of a batch of T tokens with n_out logit rows."""
        return self._compile(("batch", T, n_out), T, False, n_out)

    def _run(self, lp, tokens, positions, seq_rows, seqs, rows=None):
        if self.kv_layers is None:
            lp.plan.run(tokens, positions, (self.kv.k, self.kv.v), seq_rows, self.kv.tables(seqs),
                        self.kv.block_size, rows)
        else:
            full, local = self.kv.full, self.kv.local
            lp.plan.run(tokens, positions, (full.k, full.v), seq_rows, full.tables(seqs), self.kv.block_size, rows,
                        kv_local=(local.k, local.v), tables_local=local.tables(seqs))
        return lp.plan.f32(lp.logits_offset, lp.logits_shape)

    def keepable(self, n: int) -> int:
        """How much of its first n positions the engine's own sequence can keep and continue
        from (n, or 0 where a sliding-window cache released what the next token reads)."""
        return self.kv.keepable(self.seq, min(n, self.kv.length(self.seq)))

    def _check_ids(self, ids: np.ndarray) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab):
            bad = int(ids[(ids < 0) | (ids >= self.config.vocab)][0])
            raise ModelError(f"token id {bad} is out of range [0, {self.config.vocab})")

    @staticmethod
    def _check_finite(result, what: str):
        if not np.isfinite(result).all():   # flagged, never sampled from as if it meant something
            raise ModelError(f"non-finite logits at {what}: the weights overflow float32 (a corrupt file, "
                             "or not a model ignis can run)")
        return result

    def forward(self, tokens, start: int, all_logits: bool = False) -> np.ndarray:
        """Run tokens (a list) at positions start.. of the engine's own sequence (what it
        held past start is dropped), writing the KV cache. Returns the last position's
        logits [V], or every position's [len, V]."""
        n = len(tokens)
        if start + n > self.n_ctx:
            raise ContextOverflowError(f"{start + n} tokens do not fit in the context of {self.n_ctx} "
                                       "(raise n_ctx / --ctx, or shorten the prompt)")
        ids = np.asarray(tokens, dtype=np.int64)
        self._check_ids(ids)
        kv, seq = self.kv, self.seq
        kv.truncate(seq, min(start, kv.length(seq)))
        if kv.length(seq) != start:
            raise ModelError(f"forward at position {start}, but the sequence holds {kv.length(seq)}")
        while True:
            try:
                kv.reserve(seq, n)
                break
            except KVCacheFullError:
                if not self.reclaim():      # cached prefixes of finished requests go first
                    raise
        rows, done, out = [], 0, None
        try:
            for size in chunk_sizes(n, MAX_LOGITS_BATCH if all_logits else MAX_BATCH):
                chunk = ids[done:done + size].astype(np.int32)
                pos = np.arange(start + done, start + done + size, dtype=np.int32)
                out = self._run(self.plan(size, all_logits), chunk, pos, np.zeros(size, np.int32), [seq])
                if all_logits:
                    rows.append(out.copy())
                done += size
        finally:
            kv.truncate(seq, start + done)       # what an interrupt left uncomputed is not held
        # only the last chunk's last row is wanted otherwise (its plan has not run since)
        result = np.concatenate(rows, axis=0) if all_logits else out[-1].copy()
        return self._check_finite(result, f"positions {start}..{start + n - 1}")

    def step(self, tokens, seqs, positions, out_rows) -> np.ndarray:
        """One batch: token t at position positions[t] of KV sequence seqs[t] (reserved by the
        caller: positions below the sequence's length). Returns the logits of the batch rows
        out_rows, [len(out_rows), V] (out_rows may be empty: a prefill chunk)."""
        T, n_out = len(tokens), len(out_rows)
        if not T or len(seqs) != T or len(positions) != T:
            raise ModelError(f"engine step: {T} tokens, {len(seqs)} sequences, {len(positions)} positions "
                             f"and {n_out} output rows do not make a batch")
        ids = np.asarray(tokens, dtype=np.int64)
        self._check_ids(ids)
        Tb = step_bucket(T)
        nb = min(rows_bucket(max(n_out, 1)), Tb)     # a prefill chunk that samples nothing: 1 row
        order = list(dict.fromkeys(seqs)) + [self._pad_seq]
        index = {s: i for i, s in enumerate(order)}
        seq_rows = np.array([index[s] for s in seqs] + [len(order) - 1] * (Tb - T), np.int32)
        tok = np.concatenate([ids, np.zeros(Tb - T, np.int64)]).astype(np.int32)
        pos = np.array(list(positions) + list(range(Tb - T)), np.int32)
        rows = np.array(list(out_rows) + [out_rows[0] if n_out else 0] * (nb - n_out), np.int32)
        out = self._run(self.batch_plan(Tb, nb), tok, pos, seq_rows, order, rows)
        return self._check_finite(out[:n_out].copy(), f"a batch of {T} tokens")
