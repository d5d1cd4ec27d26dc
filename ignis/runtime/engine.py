"""The compiled forward pass: for each step size T, build the Qwen2 graph, run the pass
pipeline, plan memory, lower to a kernel Plan (cached per T), and run it on a KV cache."""
import os

import numpy as np

from ignis import _kernels
from ignis.errors import ContextOverflowError, ModelError
from ignis.models.qwen2 import Qwen2Config, build_graph
from ignis.passes import plan_memory, run_pipeline
from ignis.runtime.lower import lower
from ignis.runtime.weights import WeightStore

MAX_BATCH = 512        # largest prefill chunk (tokens per plan run)
MAX_LOGITS_BATCH = 64  # chunk size when every position's logits are wanted


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


class Engine:
    def __init__(self, gguf, config: Qwen2Config, n_ctx: int, threads: int, passes=None):
        self.config = config
        self.n_ctx = n_ctx
        self.threads = threads
        self.passes = passes
        self.weights = WeightStore(gguf)
        self.kv = _kernels.KVCache(config.n_layers, n_ctx, config.n_kv_heads, config.head_dim)
        self._plans = {}

    def plan(self, T: int, all_logits: bool):
        key = (T, all_logits or T == 1)
        if key not in self._plans:
            graph, _ = run_pipeline(build_graph(self.config, T, all_logits), self.passes)
            self._plans[key] = lower(graph, plan_memory(graph), self.weights, self.threads)
        return self._plans[key]

    def forward(self, tokens, start: int, all_logits: bool = False) -> np.ndarray:
        """Run tokens (a list) at positions start.. through the model, writing the KV cache.
        Returns the last position's logits [V], or every position's [len, V]."""
        n = len(tokens)
        if start + n > self.n_ctx:
            raise ContextOverflowError(f"{start + n} tokens do not fit in the context of {self.n_ctx} "
                                       "(raise n_ctx / --ctx, or shorten the prompt)")
        ids = np.asarray(tokens, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab):
            bad = int(ids[(ids < 0) | (ids >= self.config.vocab)][0])
            raise ModelError(f"token id {bad} is out of range [0, {self.config.vocab})")
        rows, done, out = [], 0, None
        for size in chunk_sizes(n, MAX_LOGITS_BATCH if all_logits else MAX_BATCH):
            lp = self.plan(size, all_logits)
            chunk = ids[done:done + size].astype(np.int32)
            pos = np.arange(start + done, start + done + size, dtype=np.int32)
            lp.plan.run(chunk, pos, self.kv)
            out = lp.plan.f32(lp.logits_offset, lp.logits_shape)
            if all_logits:
                rows.append(out.copy())
            done += size
        # only the last chunk's last row is wanted otherwise (its plan has not run since)
        result = np.concatenate(rows, axis=0) if all_logits else out[-1].copy()
        if not np.isfinite(result).all():   # flagged, never sampled from as if it meant something
            raise ModelError(f"non-finite logits at positions {start}..{start + n - 1}: the weights overflow "
                             "float32 (a corrupt file, or not a model ignis can run)")
        return result
