"""The compiled forward pass: for each step shape, build the model's graph, run the pass
pipeline, plan memory, lower to a kernel Plan (cached per shape), and run it over the
paged KV cache.

One way in, used by the engine loop (ignis.runtime.scheduler) only:
step(tokens, seqs, positions, out_rows) runs one batch of many sequences; token t is at
position positions[t] of sequence seqs[t]; the logits of the rows out_rows. Batches are
padded to a few bucket sizes, so only a handful of plans exist: padding tokens sit in a
sequence of their own and are never read back. Every token's logits have the same bits
whatever batch, chunk or bucket it went in."""
import dataclasses
import os
import time

import numpy as np

from ignis import _kernels
from ignis.errors import ModelError
from ignis.models import build_graph
from ignis.passes import plan_memory, run_pipeline
from ignis.runtime.lower import lower
from ignis.runtime.paged import LayeredKVCache, PagedKVCache
from ignis.runtime.weights import WeightStore

MAX_STEP_TOKENS = 512  # most tokens one sequence puts into a step (a prefill chunk)
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
        self._plans = {}
        self.workspace = _kernels.Workspace()   # every plan's arena and scratch: they run one at a time
        self.compile_seconds = 0.0     # one-off plan compilation (kept out of the run timings)

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
        per_seq = -(-(window + WINDOW_SLACK + MAX_STEP_TOKENS) // BLOCK_SIZE) + 2
        n_local = min(n_blocks, WINDOW_SEQS * per_seq + -(-PAD_TOKENS // BLOCK_SIZE))
        return layers, LayeredKVCache(max(1, len(full)), len(local), config.n_kv_heads, config.head_dim,
                                      n_blocks, n_local, window, BLOCK_SIZE, keep_extra=WINDOW_SLACK)

    def limit_logits(self, rows: int) -> None:
        """From now on a step computes the logits of ids [0, rows) only (the config's
        output_rows): the plans are rebuilt."""
        self.config = dataclasses.replace(self.config, output_rows=rows)
        self._plans.clear()

    def batch_plan(self, T: int, n_out: int, hidden: bool = False):
        """The plan of a batch of T tokens with n_out logit rows (with hidden: n_out rows of
        final-normed hidden states, for embeddings), compiled on first use."""
        key = (T, n_out, hidden)
        if key not in self._plans:
            t0 = time.perf_counter()
            graph, _ = run_pipeline(build_graph(self.config, T, False, n_out, hidden), self.passes)
            self._plans[key] = lower(graph, plan_memory(graph), self.weights, self.threads, self.kv_layers,
                                     self.workspace)
            self.compile_seconds += time.perf_counter() - t0
        return self._plans[key]

    def _run(self, lp, tokens, positions, seq_rows, seqs, rows=None):
        if self.kv_layers is None:
            lp.plan.run(tokens, positions, (self.kv.k, self.kv.v), seq_rows, self.kv.tables(seqs),
                        self.kv.block_size, rows)
        else:
            full, local = self.kv.full, self.kv.local
            lp.plan.run(tokens, positions, (full.k, full.v), seq_rows, full.tables(seqs), self.kv.block_size, rows,
                        kv_local=(local.k, local.v), tables_local=local.tables(seqs))
        return lp.plan.f32(lp.logits_offset, lp.logits_shape)

    @staticmethod
    def _check_finite(result, what: str):
        if not np.isfinite(result).all():   # flagged, never sampled from as if it meant something
            raise ModelError(f"non-finite logits at {what}: the weights overflow float32 (a corrupt file, "
                             "or not a model ignis can run)")
        return result

    def step(self, tokens, seqs, positions, out_rows) -> np.ndarray:
        """One batch: token t at position positions[t] of KV sequence seqs[t] (reserved by the
        caller: positions below the sequence's length). Returns the logits of the batch rows
        out_rows, [len(out_rows), V] (out_rows may be empty: a prefill chunk)."""
        return self._forward(tokens, seqs, positions, out_rows, False)

    def step_hidden(self, tokens, seqs, positions, out_rows) -> np.ndarray:
        """step() returning the final-normed hidden states of the rows out_rows instead of
        their logits, [len(out_rows), width] (what embeddings pool)."""
        return self._forward(tokens, seqs, positions, out_rows, True)

    def _forward(self, tokens, seqs, positions, out_rows, hidden: bool) -> np.ndarray:
        T, n_out = len(tokens), len(out_rows)
        if not T or len(seqs) != T or len(positions) != T:
            raise ModelError(f"engine step: {T} tokens, {len(seqs)} sequences, {len(positions)} positions "
                             f"and {n_out} output rows do not make a batch")
        ids = np.asarray(tokens, dtype=np.int64)     # ids are checked by Model.request and the plan
        Tb = step_bucket(T)
        nb = min(rows_bucket(max(n_out, 1)), Tb)     # a prefill chunk that samples nothing: 1 row
        order = list(dict.fromkeys(seqs)) + [self._pad_seq]
        index = {s: i for i, s in enumerate(order)}
        seq_rows = np.array([index[s] for s in seqs] + [len(order) - 1] * (Tb - T), np.int32)
        tok = np.concatenate([ids, np.zeros(Tb - T, np.int64)]).astype(np.int32)
        pos = np.array(list(positions) + list(range(Tb - T)), np.int32)
        rows = np.array(list(out_rows) + [out_rows[0] if n_out else 0] * (nb - n_out), np.int32)
        out = self._run(self.batch_plan(Tb, nb, hidden), tok, pos, seq_rows, order, rows)
        return self._check_finite(out[:n_out].copy(), f"a batch of {T} tokens")
