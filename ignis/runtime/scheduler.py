"""Continuous batching: many requests share one forward pass per step.

Each step of the engine thread gathers
  - one decode token from every running sequence (its last sampled token), and
  - prefill tokens of sequences still reading their prompts, in arrival order, up to
    `step_tokens` tokens in all (chunked prefill: a long prompt never stalls the others),
runs them as one batch (`Engine.step`: every token carries its sequence and position,
attention reads only its own sequence's keys and values), then samples the next token
of every sequence whose last prompt token or decode token was in the batch.

Requests join at step boundaries (a bounded number run at once, `max_batch`; the rest
wait in arrival order) and leave when they finish or are cancelled; their KV blocks go
back to the shared pool at once. Sampling, stop strings and streaming are the same
`Completion` the single-stream loop uses, with the request's own seeded sampler, and the
kernels give every row the same bits whatever else is in the batch: a request's tokens do
not depend on what it ran beside (batch invariance).

Thread safety: `submit` and `RequestHandle.cancel` may be called from any thread; the
engine thread is the only one that touches sequences, the KV cache and the plans (under
the model's lock, so it also waits for a `Model.generate` in progress).
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field

from ignis.errors import ContextOverflowError, IgnisError, KVCacheFullError
from ignis.runtime.generate import Completion, GenerationResult
from ignis.runtime.sampling import SamplingParams

END_OF_STREAM = object()     # end of a request's piece stream


class RequestHandle:
    """A submitted request: iterate it for text pieces as they are generated (blocking),
    or call text() for the whole completion. cancel() stops it at the next step."""

    def __init__(self, request_id: int, sink=None, tag=None):
        self.id = request_id
        self.result = GenerationResult()
        self.error = None
        self._pieces = queue.Queue()
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._sink, self._tag = sink, tag

    # engine side
    def _emit(self, piece: str) -> None:
        if piece:
            self._pieces.put(piece)
            if self._sink is not None:
                self._sink.put((self._tag, piece))

    def _finish(self, error: Exception | None = None) -> None:
        self.error = error
        self._done.set()
        self._pieces.put(END_OF_STREAM)
        if self._sink is not None:
            self._sink.put((self._tag, END_OF_STREAM))

    # caller side
    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def finish_reason(self) -> str:
        return self.result.finish_reason

    def cancel(self) -> None:
        """Stop generating at the next step boundary (finish_reason "cancelled")."""
        self._cancel.set()

    def __iter__(self):
        while True:
            piece = self._pieces.get()
            if piece is END_OF_STREAM:
                if self.error is not None:
                    raise self.error
                return
            yield piece

    def text(self, timeout: float | None = None) -> str:
        """Wait for the request to finish; its whole text (raises the request's error)."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"request {self.id} did not finish within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result.text


@dataclass
class _Request:
    handle: RequestHandle
    ids: list
    completion: Completion
    seq: int | None = None          # the sequence in the paged KV cache (once admitted)
    fed: int = 0                    # prompt tokens already in the cache
    next_token: int | None = None   # the sampled token to evaluate in the next step
    followers: list = field(default_factory=list)   # completions of the same prompt: they fork
                                                    # this sequence once its prompt is in    arrived: float = field(default_factory=time.perf_counter)


class Scheduler:
    """The continuous-batching engine loop over one Model (see the module docstring)."""

    def __init__(self, model, max_batch: int = 16, step_tokens: int = 256):
        if max_batch < 1 or step_tokens < max_batch:
            raise IgnisError(f"scheduler: need max_batch >= 1 and step_tokens >= max_batch, got "
                             f"{max_batch} and {step_tokens}")
        self.model = model
        self.engine = model.engine
        self.max_batch = max_batch
        self.step_tokens = step_tokens
        self._incoming = queue.Queue()
        self._waiting = []      # admitted to the scheduler, not yet holding a sequence
        self._running = []      # holding a sequence: prefilling or decoding
        self._ids = itertools.count()
        self._wake = threading.Event()
        self._stop = False
        self._thread = None
        self._lock = threading.Lock()
        self.steps = 0
        self.step_sizes = []    # tokens per step (recent), for reports
        # the prefix cache: finished sequences kept with the tokens their KV holds, newest
        # last; a new prompt forks the one it shares the longest prefix with
        self._cached = collections.OrderedDict()    # sequence id -> token tuple
        self.cache_hits = 0
        self.cached_tokens = 0                      # prompt tokens not prefilled thanks to it

    # -- submission (any thread) ----------------------------------------------------------

    def submit(self, prompt_ids: list, *, max_tokens: int, params: SamplingParams, stop: list,
               ignore_eos: bool = False, sink=None, tag=None, n: int = 1, logprobs: int | None = None,
               constraint=None):
        """Queue one request (already validated token ids and settings); its handle. With
        n > 1: n completions of the prompt, a list of n handles. The prompt is prefilled
        once and its KV blocks shared (fork, copy-on-write); completion i samples with seed
        params.seed + i (each random when the seed is None). logprobs=N records, per sampled
        token, its log-probability and the top N alternatives in handle.result.logprobs.
        constraint: a compiled Constraint (Model.constraint); each completion keeps its own
        matcher state, so every sequence in a batch is constrained on its own."""
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= self.max_batch:
            raise IgnisError(f"n must be an integer in [1, max_batch = {self.max_batch}], got {n!r}")
        if isinstance(tag, (list, tuple)) and len(tag) != n:
            raise IgnisError(f"{len(tag)} tags for {n} completions")
        if not prompt_ids:
            raise IgnisError("empty prompt: give some text or token ids")
        limit = self.engine.n_ctx
        if len(prompt_ids) > limit:
            raise ContextOverflowError(f"prompt of {len(prompt_ids)} tokens does not fit in the context of "
                                       f"{limit} tokens (raise n_ctx / --ctx, or shorten the prompt)")
        requests = []
        for i in range(n):
            p = params if i == 0 or params.seed is None else dataclasses.replace(params, seed=params.seed + i)
            handle = RequestHandle(next(self._ids), sink, tag[i] if isinstance(tag, (list, tuple)) else tag)
            completion = Completion(self.model.tokenizer, prompt_ids, max_tokens, p, stop,
                                    set(self.model.tokenizer.eot_ids), ignore_eos, handle.result,
                                    logprobs=logprobs, constraint=constraint)
            requests.append(_Request(handle, list(prompt_ids), completion))
        requests[0].followers = requests[1:]
        self._incoming.put(requests[0])
        self._ensure_thread()
        self._wake.set()
        return requests[0].handle if n == 1 else [r.handle for r in requests]

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._stop:
                raise IgnisError("scheduler is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="ignis-scheduler", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Cancel every request and stop the engine thread."""
        with self._lock:
            self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    # -- the engine thread --------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._admit()
            if self._stop:
                with self.model._lock:
                    for r in self._waiting + self._running:
                        self._end(r, "cancelled")
                    self._waiting, self._running = [], []
                    while self._cached:
                        self.engine.kv.free(self._cached.popitem()[0])
                return
            if not self._running and not self._waiting:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                with self.model._lock:
                    self._step()
            except Exception as exc:     # a bug or a failed kernel: every request learns of it
                for r in self._waiting + self._running:
                    self._end(r, "error", exc if isinstance(exc, IgnisError) else
                              IgnisError(f"scheduler step failed: {type(exc).__name__}: {exc}"))
                self._waiting, self._running = [], []

    def _admit(self) -> None:
        while True:
            try:
                self._waiting.append(self._incoming.get_nowait())
            except queue.Empty:
                return

    def _end(self, r: _Request, reason: str | None = None, error: Exception | None = None) -> None:
        """Finish a request (and the completions still waiting for its prompt): its last
        text, its sequence back to the pool."""
        for f in r.followers:
            self._end(f, reason, error)
        r.followers = []
        if r.seq is not None:
            self._retire(r, keep=error is None and reason != "cancelled")
        if error is None:
            r.handle._emit(r.completion.finish())
        if reason is not None:
            r.handle.result.finish_reason = reason
        r.handle._finish(error)

    def _step(self) -> None:
        kv = self.engine.kv
        # cancellations first: their blocks are free for this very step
        for r in [r for r in self._waiting + self._running if r.handle._cancel.is_set()]:
            (self._waiting if r in self._waiting else self._running).remove(r)
            self._end(r, "cancelled")
        while self._waiting and len(self._running) + 1 + len(self._waiting[0].followers) <= self.max_batch:
            r = self._waiting.pop(0)
            r.seq, r.fed = self._reuse(r.ids)
            self._running.append(r)
        tokens, seqs, positions, sampled = [], [], [], []
        budget = self.step_tokens
        for r in list(self._running):
            if r.next_token is None:
                continue
            if not self._grow(r, 1, decoding=True):
                continue
            tokens.append(r.next_token)
            seqs.append(r.seq)
            positions.append(kv.length(r.seq) - 1)
            sampled.append((r, len(tokens) - 1))
            budget -= 1
        for r in list(self._running):
            if r.next_token is not None or budget <= 0:
                continue
            n = min(len(r.ids) - r.fed, budget)
            if not self._grow(r, n, decoding=False):
                continue
            start = r.fed
            tokens.extend(r.ids[start:start + n])
            seqs.extend([r.seq] * n)
            positions.extend(range(start, start + n))
            r.fed += n
            budget -= n
            if r.fed == len(r.ids):
                sampled.append((r, len(tokens) - 1))
        if not tokens:
            return
        logits = self.engine.step(tokens, seqs, positions, [row for _, row in sampled])
        self.steps += 1
        self.step_sizes = (self.step_sizes + [len(tokens)])[-64:]
        for i, (r, _) in enumerate(sampled):
            # completions of the same prompt share its blocks: fork before the first sampled
            # token is appended (its position then goes to a block of the fork's own)
            for f in r.followers:
                f.seq = kv.fork(r.seq)
                f.fed = r.fed
                self._running.append(f)
            for f in [r] + r.followers:
                self._after_logits(f, logits[i])
            r.followers = []

    def _grow(self, r: _Request, n: int, decoding: bool) -> bool:
        """Reserve n positions of r's sequence. A full pool stops only this request (or, for a
        prompt, waits while other sequences may still free blocks)."""
        kv = self.engine.kv
        if kv.length(r.seq) + n > self.engine.n_ctx:
            if decoding:
                r.next_token = None
                self._running.remove(r)
                self._end(r, "length")
                return False
            # a prompt longer than the context was refused at submit
        try:
            kv.reserve(r.seq, n)
            return True
        except KVCacheFullError as exc:
            while self.evict_one() or self.model._release_cached_prefix():
                try:
                    kv.reserve(r.seq, n)
                    return True
                except KVCacheFullError:
                    pass
            others = [o for o in self._running if o is not r and o.next_token is not None]
            if not decoding and others:
                return False         # try again once others have finished
            self._running.remove(r)
            self._end(r, None, exc)
            return False

    # -- the prefix cache -------------------------------------------------------------------

    MAX_CACHED = 64         # finished sequences kept (the oldest go first; all go when the pool is full)

    def evict_one(self) -> bool:
        """Free the least recently used cached sequence (call with the model's lock held, as
        every change to the cache is made); False if the cache is empty."""
        if not self._cached:
            return False
        self.engine.kv.free(self._cached.popitem(last=False)[0])
        return True

    def _retire(self, r: _Request, keep: bool) -> None:
        """A finished request's sequence goes to the prefix cache (its KV holds the prompt and
        every generated token but the last); a cancelled or failed one is freed at once."""
        kv = self.engine.kv
        held = kv.length(r.seq)
        tokens = (r.ids + r.handle.result.tokens)[:held]
        if keep and len(tokens) == held and held >= kv.block_size:
            self._cached[r.seq] = tuple(tokens)
            while len(self._cached) > self.MAX_CACHED:
                kv.free(self._cached.popitem(last=False)[0])
        else:
            kv.free(r.seq)
        r.seq = None

    def _reuse(self, ids: list) -> tuple:
        """(sequence, positions already held) for a new prompt: a fork of the cached sequence
        sharing its longest prefix (at least a block; the last prompt token is always run, its
        logits are wanted), else a new empty sequence. The shared rows hold the bits a fresh
        prefill would write (causal: position p depends on tokens 0..p only)."""
        kv = self.engine.kv
        best, best_n = None, 0
        for seq, tokens in self._cached.items():
            n = 0
            for a, b in zip(tokens, ids[:-1]):
                if a != b:
                    break
                n += 1
            if n > best_n:
                best, best_n = seq, n
        if best is not None:        # a sliding-window cache may not go back that far
            best_n = kv.keepable(best, best_n)
        if best is None or best_n < kv.block_size:
            return kv.new_sequence(), 0
        self._cached.move_to_end(best)
        seq = kv.fork(best)
        kv.truncate(seq, best_n)
        self.cache_hits += 1
        self.cached_tokens += best_n
        return seq, best_n

    def _after_logits(self, r: _Request, row) -> None:
        piece = r.completion.feed(row)
        r.handle._emit(piece)
        if r.completion.done or self.engine.kv.length(r.seq) >= self.engine.n_ctx:
            r.next_token = None
            self._running.remove(r)
            self._end(r)
        else:
            r.next_token = r.completion.last_token
