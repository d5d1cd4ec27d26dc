"""The engine loop: the one thing that runs the model.

Every request (a generation, a chat turn, a batch, a server call, a teacher-forced score)
is a `Request` (ignis.runtime.request, validated once) submitted here. One thread runs
steps; each step

  1. gives every running sequence the tokens it still has to compute, in one budget of
     `step_tokens`: a sequence whose known tokens are all computed but its last sampled
     one needs 1 (a decode), one reading its prompt (or recomputing after a preemption)
     gets a chunk of what is left (chunked prefill beside the decodes, at most
     PROMPT_BESIDE_DECODES prompt tokens in a step that decodes); waiting requests
     are admitted, arrival order first, while batch slots and the budget last (a request
     that needs more slots than are free is passed over, not waited for);
  2. reserves KV positions in the block pool. A new sequence starts from the longest
     cached chain of blocks of its tokens (the prefix cache: ignis.runtime.paged). When the
     pool is full, parked sessions are dropped, then the most recently arrived running
     sequence is preempted: its blocks go back (full ones stay cached), it is requeued with
     everything it has generated, and recomputed later. Prefill is bit-stable, so its text
     is the one it would have had alone;
  3. runs one Engine.step over all those tokens (each token carries its sequence and
     position; the kernels give every row the same bits whatever else is in the batch);
  4. commits the computed tokens to the pool (full blocks become cached prefixes) and
     samples the sequences whose known tokens are all computed (or hands a score request
     its rows).

Errors stay with their request: a step that fails is rerun one request at a time, and only
a request that fails alone ends (with the error); an exception while sampling one request
ends that request. Thread safety: submit() and RequestHandle.cancel() may be called from any
thread, and a Ctrl-C anywhere in them (or in waiting for a result) leaves no lock held: every
hand-off between the caller and the loop is a SimpleQueue put/get or a flag store (see
ignis.runtime.handle); only the loop's thread touches sequences and the pool (under the
model's engine lock, shared by the schedulers of one model).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
import time

import numpy as np

from ignis.errors import ArgumentTypeError, IgnisError, KVCacheFullError
from ignis.runtime.embedding import pool_rows
from ignis.runtime.engine import MAX_STEP_TOKENS
from ignis.runtime.generate import Completion
from ignis.runtime.handle import END_OF_STREAM, PieceStream, RequestHandle  # noqa: F401 (re-exported)
from ignis.runtime.request import Request
from ignis.runtime.sampling import sample_rows
from ignis.runtime.speculative import SPEC_MAX_BATCH, DraftLength, NgramDrafter, propose_all

ALL_ROWS_CHUNK = 64          # tokens per step of a request that wants every row's logits
PROMPT_BESIDE_DECODES = 64   # prompt tokens a step takes while sequences decode in it: a step
                             # is as long as its slowest part, so a 256-token chunk held every
                             # running stream for seconds on 2 cores (inter-token p99 ~2 s)

log = logging.getLogger("ignis.scheduler")


class _Seq:
    """One completion in the loop: its tokens (prompt, then what it generated), how many of
    them have their keys and values in its KV sequence, and how to hand results back."""

    def __init__(self, request: Request, handle: RequestHandle, completion, arrival: int):
        self.request = request
        self.handle = handle
        self.completion = completion        # None for a score request
        self.tokens = list(request.ids)
        self.n_prompt = len(self.tokens)
        self.arrival = arrival              # priority (a total order): the earliest is preempted last
        self.seq = None                     # KV sequence id while admitted
        self.computed = 0                   # tokens whose rows are in the KV sequence
        self.followers = []                 # completions of the same prompt: they fork this
                                            # sequence once its prompt is computed
        self.rows = []                      # a score request's logits rows so far (an embedding
                                            # request's hidden-state rows)
        self.skipped = 0                    # admissions passed over (too few batch slots)
        self.draft = []                     # tokens drafted to verify in this step
        self.drafter = NgramDrafter(self.tokens) if request.speculative == "ngram" else None
        self.draft_len = DraftLength()

    @property
    def width(self) -> int:
        return 1 + len(self.followers)

    @property
    def left(self) -> int:
        return len(self.tokens) - self.computed

    def match_limit(self) -> int:
        """How many leading tokens may come from cached KV instead of being computed: all
        but the last (its logits are wanted), or for every-row scores and embeddings the rows
        already had."""
        if self.request.rows in ("all", "embed"):
            return len(self.rows)
        return len(self.tokens) - 1


def _nothing_to_compute(request: Request) -> bool:
    return request.rows == "sample" and request.max_tokens == 0


class Scheduler:
    """The engine loop over one Model (see the module docstring)."""

    def __init__(self, model, max_batch: int = 16, step_tokens: int = 256):
        if max_batch < 1 or step_tokens < max_batch:
            raise IgnisError(f"scheduler: need max_batch >= 1 and step_tokens >= max_batch, got "
                             f"{max_batch} and {step_tokens}")
        self.model = model
        self.engine = model.engine
        self.kv = model.engine.kv
        self.max_batch = max_batch
        self.step_tokens = step_tokens
        self.prompt_beside_decodes = min(step_tokens, PROMPT_BESIDE_DECODES)
        # the hand-offs from submitting threads are signal-atomic (ignis.runtime.handle's docstring):
        # requests come in through a SimpleQueue, and wake-ups are tokens in another one
        self._incoming = queue.SimpleQueue()
        self._waiting = []      # not holding a sequence, arrival order
        self._running = []      # holding a sequence, arrival order
        self._parked = []       # sessions holding an idle sequence
        self._outbox = []       # (sink, item) of this step: handed over once, per sink, after it
        self._ids = itertools.count()
        self._arrivals = itertools.count()
        self._wakeups = queue.SimpleQueue()
        self._stop = False
        self._thread = None
        self._lock = threading.Lock()
        # counts for reports and /metrics
        self.steps = 0
        self.step_sizes = []    # tokens per step (recent)
        self.preemptions = 0
        self.cache_hits = 0     # admissions that started from cached blocks
        self.cached_tokens = 0  # tokens not computed thanks to them

    # -- submission (any thread) ----------------------------------------------------------

    def submit(self, request: Request, *, sink=None, tag=None):
        """Queue a Request (Model.request makes one); its handle, or with n > 1 a list of n
        handles. Completion i of n samples with seed + i (each random when the seed is None);
        the prompt is computed once and its KV blocks shared. sink/tag: every piece (and
        END_OF_STREAM) also goes to sink.put((tag, piece)); tag may be a list of one per
        completion."""
        return self.submit_many([request], sink=sink, tags=[tag])[0]

    def submit_many(self, requests: list, *, sink=None, tags=None) -> list:
        """Queue several Requests at once: the loop takes them in the same step (a batch
        starts together, not the first one alone because the loop woke before the others
        arrived). Their handles as submit() gives them; tags: one per request (or None)."""
        tags = [None] * len(requests) if tags is None else list(tags)
        if len(tags) != len(requests):
            raise IgnisError(f"{len(tags)} tags for {len(requests)} requests")
        groups = [self._group(r, sink, t) for r, t in zip(requests, tags)]
        handles = [g[0].handle if len(g) == 1 else [s.handle for s in g] for g in groups]
        queued = [g[0] for g, r in zip(groups, requests) if not _nothing_to_compute(r)]
        if queued:
            self._incoming.put(queued)      # one item: the loop takes all or none of them
            self._ensure_thread()
            self._wake()
        return handles

    def _group(self, request: Request, sink, tag) -> list:
        """The n sequences of one request (the first leads, the others follow its prompt);
        a request with nothing to compute is finished here."""
        if not isinstance(request, Request):
            raise ArgumentTypeError(f"Scheduler.submit takes a Request (make one with Model.request(...)), "
                                    f"got {type(request).__name__}")
        if request.vocab != self.engine.config.vocab:
            raise IgnisError(f"this request was made for a vocabulary of {request.vocab} tokens, the scheduler's "
                             f"model has {self.engine.config.vocab}")
        n = request.n
        if n > self.max_batch:
            raise IgnisError(f"n = {n} is more than this scheduler runs at once ({self.max_batch})")
        if isinstance(tag, (list, tuple)) and len(tag) != n:
            raise IgnisError(f"{len(tag)} tags for {n} completions")
        arrival = next(self._arrivals)
        draft = getattr(self.model, "draft", None)
        if request.speculative == "draft" and draft is None:
            raise IgnisError("speculative=\"draft\" needs a draft model (load the model with draft_model=...)")
        group = []
        for i in range(n):
            handle = RequestHandle(next(self._ids), sink, tag[i] if isinstance(tag, (list, tuple)) else tag,
                                   self._outbox)
            # (arrival, i): the completions of one request are ordered too, or two of them short
            # of memory would each wait for the other to be preempted, for ever
            group.append(_Seq(request, handle, self._completion(request, i, handle), (arrival, i)))
            if request.speculative == "draft":
                group[-1].drafter, group[-1].draft_len = draft.drafter(group[-1].tokens), draft.draft_length()
        group[0].followers = group[1:]
        if _nothing_to_compute(request):
            for s in group:
                s.handle._outbox = None
                s.handle._finish()
        return group

    def _completion(self, request: Request, i: int, handle: RequestHandle):
        if request.rows != "sample":
            return None
        params = request.params
        if i and params.seed is not None:
            params = dataclasses.replace(params, seed=params.seed + i)
        return Completion(self.model.tokenizer, list(request.ids), request.max_tokens, params, list(request.stop),
                          set(request.end_ids), request.ignore_eos, handle.result, logprobs=request.logprobs,
                          constraint=request.constraint, keep_end=request.keep_end)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._stop:
                raise IgnisError("scheduler is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="ignis-scheduler", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Cancel every request and stop the loop's thread."""
        with self._lock:
            self._stop = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # -- counts -----------------------------------------------------------------------------

    @property
    def n_waiting(self) -> int:
        """Requests not holding a sequence yet (a submit_many not yet taken by the loop counts
        once: 0 means none)."""
        return len(self._waiting) + self._incoming.qsize()

    @property
    def n_running(self) -> int:
        return len(self._running)

    def stats(self) -> dict:
        """What /metrics shows: blocks held by sequences and cached, preemptions, prefix hits."""
        kv = self.kv
        return {"kv_blocks_total": kv.n_blocks,
                "kv_blocks_used": kv.n_used_blocks, "kv_blocks_cached": kv.n_cached_blocks,
                "kv_blocks_idle_cached": kv.n_idle_cached_blocks, "preemptions": self.preemptions,
                "prefix_hits": self.cache_hits, "prefix_hit_tokens": self.cached_tokens,
                "steps": self.steps}

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._take_incoming()
            if self._stop:
                with self.model._lock:
                    for s in self._waiting + self._running:
                        self._end(s, "cancelled")
                    self._waiting, self._running = [], []
                    for session in list(self._parked):
                        self._unpark(session)
                self._hand_over()
                return
            if not self._running and not self._waiting:
                self._sleep(0.5)
                continue
            self._guarded_step("scheduler step")
            self._hand_over()

    def _wake(self) -> None:
        """Wake the loop (from any thread). One token is enough: the loop takes every incoming
        request after any wake-up (empty() then put() may race into two: harmless)."""
        if self._wakeups.empty():
            self._wakeups.put(True)

    def _sleep(self, seconds: float) -> None:
        """Wait up to `seconds` unless woken (loop thread), then drop the other tokens."""
        try:
            self._wakeups.get(timeout=seconds)
        except queue.Empty:
            return
        while True:
            try:
                self._wakeups.get_nowait()
            except queue.Empty:
                return

    def _guarded_step(self, what: str) -> None:
        """One step; an exception there is a bug in the loop itself: every request of the
        loop ends with it as its error (never a hang)."""
        try:
            with self.model._lock:
                self._step()
        except Exception as exc:
            log.exception("%s failed", what)
            error = IgnisError(f"{what} failed: {type(exc).__name__}: {exc}")
            with self.model._lock:
                for s in self._waiting + self._running:
                    self._end(s, "error", error)
                self._waiting, self._running = [], []

    def _hand_over(self) -> None:
        """One hand-off per sink per step: a sink with put_many gets the step's items in one
        call (the server: one event-loop wake-up), any other sink one put() per item."""
        if not self._outbox:
            return
        items, self._outbox[:] = list(self._outbox), []
        by_sink = {}
        for sink, item in items:
            by_sink.setdefault(id(sink), (sink, []))[1].append(item)
        for sink, batch in by_sink.values():
            if hasattr(sink, "put_many"):
                sink.put_many(batch)
            else:
                for item in batch:
                    sink.put(item)

    def _take_incoming(self) -> None:
        while True:
            try:
                self._waiting.extend(self._incoming.get_nowait())
            except queue.Empty:
                return

    def _end(self, s: _Seq, reason: str | None = None, error: Exception | None = None) -> None:
        """Finish a completion (and the completions still waiting for its prompt): its last
        text, its sequence back to the pool (or to its session)."""
        for f in s.followers:
            self._end(f, reason, error)
        s.followers = []
        if s.drafter is not None:        # a draft model's session goes back to its pool
            s.drafter.close()
        if s.seq is not None:
            session = s.request.session
            if session is not None and error is None and reason != "cancelled":
                self._park(session, s)
            else:
                self.kv.free(s.seq)
            s.seq = None
        if error is None and s.completion is not None:
            s.handle._emit(s.completion.finish())
        if reason is not None:
            s.handle.result.finish_reason = reason
        s.handle._finish(error)

    def _drop(self, s: _Seq) -> None:
        """Take s out of the loop's lists (before ending it)."""
        if s in self._running:
            self._running.remove(s)
        elif s in self._waiting:
            self._waiting.remove(s)

    def _cancellations(self) -> None:
        for s in list(self._waiting + self._running):
            for f in [f for f in s.followers if f.handle._cancel.is_set()]:
                s.followers.remove(f)
                self._end(f, "cancelled")
            if s.handle._cancel.is_set():
                successor = s.followers[0] if s.followers else None
                if successor is not None:        # the next completion takes over the prompt
                    successor.followers, s.followers = s.followers[1:], []
                    successor.seq, successor.computed, s.seq = s.seq, s.computed, None
                    lst = self._running if s in self._running else self._waiting
                    lst[lst.index(s)] = successor
                else:
                    self._drop(s)
                self._end(s, "cancelled")

    # -- sessions ------------------------------------------------------------------------------

    def _park(self, session, s: _Seq) -> None:
        if session.seq is not None:
            self._unpark(session)
        session.seq, session.held, session.tokens = s.seq, s.computed, s.tokens[:s.computed]
        self._parked.append(session)

    def _unpark(self, session) -> None:
        if session in self._parked:
            self._parked.remove(session)
        if session.seq is not None:
            self.kv.free(session.seq)
        session.seq, session.held = None, 0

    def _from_session(self, s: _Seq, session) -> bool:
        """Continue s from its session's parked sequence (truncated to what they share);
        False to start from the prefix cache instead, when that holds more of it."""
        if session.seq is None:
            return False
        limit = s.match_limit()
        keep = 0
        for a, b in zip(session.tokens[:session.held], s.tokens[:limit]):
            if a != b:
                break
            keep += 1
        keep = self.kv.keepable(session.seq, keep)
        if limit - keep >= self.kv.block_size and self.kv.cached_length(s.tokens[:limit]) > keep:
            self._unpark(session)
            return False
        self._parked.remove(session)
        self.kv.truncate(session.seq, keep)
        s.seq, s.computed = session.seq, keep
        session.seq, session.held = None, 0
        return True

    # -- one step ----------------------------------------------------------------------------

    def _step(self) -> None:
        self._take_incoming()        # all that was submitted together steps together
        self._cancellations()
        budget = self.step_tokens
        batch = []       # (seq, n tokens) in the order they go into the step
        decoding = [s for s in self._running if s.left == 1]
        drafts = propose_all(decoding, self.engine.n_ctx) if len(decoding) <= SPEC_MAX_BATCH else {}
        for s in decoding:                                            # decodes first
            if s in self._running and (self._draft(s, drafts.get(id(s))) or self._reserve(s, 1, batch)):
                batch.append((s, 1 + len(s.draft)))
                budget -= 1 + len(s.draft)
        if batch:
            budget = min(budget, self.prompt_beside_decodes)
        for s in list(self._running):                                 # then prompt chunks
            if budget <= 0:
                break
            if s.left > 1 and s in self._running:
                n = self._chunk(s, budget)
                if self._reserve(s, n, batch):
                    batch.append((s, n))
                    budget -= n
        slots = self.max_batch - sum(s.width for s in self._running)
        for s in list(self._waiting):                                 # then admissions
            if budget <= 0:
                break
            if s.width > slots:
                s.skipped += 1
                if s.skipped > 64:       # never passed over for ever
                    break
                continue
            if not self._admit(s, budget, batch):
                break
            n = self._chunk(s, budget)
            batch.append((s, n))
            budget -= n
            slots -= s.width
        if batch:
            self._run(batch)
        else:           # everything waits for memory another scheduler of the model holds
            self._sleep(0.005)

    def _chunk(self, s: _Seq, budget: int) -> int:
        n = min(s.left, budget, MAX_STEP_TOKENS)
        return min(n, ALL_ROWS_CHUNK) if s.request.rows == "all" else n

    def _admit(self, s: _Seq, budget: int, batch: list) -> bool:
        """Give s a KV sequence (from its session, the prefix cache, or new) and reserve its
        first chunk; False (s stays waiting, nothing held) if the pool cannot take it now."""
        kv = self.kv
        session = s.request.session
        if not (session is not None and self._from_session(s, session)):
            seq, n = kv.adopt_prefix(s.tokens[:s.match_limit()])
            if seq is None:
                seq, n = kv.new_sequence(), 0
            elif n:
                self.cache_hits += 1
                self.cached_tokens += n
            s.seq, s.computed = seq, n
        if s.request.rows in ("all", "embed"):
            s.rows = s.rows[:s.computed]
        n = self._chunk(s, budget)
        try:
            kv.reserve(s.seq, n)
        except KVCacheFullError as exc:
            while self._drop_parked():
                try:
                    kv.reserve(s.seq, n)
                    break
                except KVCacheFullError:
                    pass
            else:
                self._unadmit(s)
                if not (self._running or batch):      # alone, and still too big for the pool
                    self._waiting.remove(s)
                    self._end(s, None, exc)
                return False
        self._waiting.remove(s)
        self._running.append(s)
        self._running.sort(key=lambda r: r.arrival)
        return True

    def _unadmit(self, s: _Seq) -> bool:
        self.kv.free(s.seq)
        s.seq, s.computed = None, 0
        return False

    def _drop_parked(self) -> bool:
        if not self._parked:
            return False
        self._unpark(self._parked[0])
        return True

    def _reserve(self, s: _Seq, n: int, batch: list) -> bool:
        """Reserve n positions of s's sequence; under memory pressure drop parked sessions,
        then preempt the latest-arrived running sequences not in this step. False if s must
        wait (or ended: past the context, or alone and too big for the pool)."""
        kv = self.kv
        if kv.length(s.seq) + n > self.engine.n_ctx:
            self._drop(s)
            self._end(s, "length")
            return False
        while True:
            try:
                kv.reserve(s.seq, n)
                return True
            except KVCacheFullError as exc:
                if self._drop_parked():
                    continue
                in_batch = {id(b) for b, _ in batch}
                victims = [r for r in self._running if r is not s and r.arrival > s.arrival and id(r) not in in_batch]
                if victims:
                    self._preempt(victims[-1])
                    continue
                if batch or any(r is not s for r in self._running):
                    return False         # others hold the blocks: wait for them
                self._drop(s)
                self._end(s, None, exc)
                return False

    def _preempt(self, s: _Seq) -> None:
        """Free s's blocks (full ones stay cached) and requeue it to be recomputed."""
        self.kv.free(s.seq)
        s.seq, s.computed = None, 0
        self._running.remove(s)
        self._waiting.append(s)
        self._waiting.sort(key=lambda r: r.arrival)
        self.preemptions += 1

    def _run(self, batch: list) -> None:
        kv = self.kv
        t0, compiled = time.perf_counter(), self.engine.compile_seconds
        # embedding requests' chunks run beside the others in a plan of their own (its output
        # is hidden states, not logits): one engine call per kind present in the step
        logits = {}
        for hidden in (False, True):
            part = [(s, n) for s, n in batch if (s.request.rows == "embed") == hidden]
            if part:
                logits.update(self._step_rows(part, hidden))
        # the timings are the step's, not the one-off compilation of a plan for its shape
        dt = time.perf_counter() - t0 - (self.engine.compile_seconds - compiled)
        self.steps += 1
        self.step_sizes = (self.step_sizes + [sum(n for _, n in batch)])[-64:]
        to_sample, to_verify = [], []       # (sequence, its logits row(s))
        for s, n in batch:
            if s.seq is None or logits.get(id(s)) is False:
                s.draft = []
                continue        # failed alone: already ended
            if s.draft:
                to_verify.append((s, logits[id(s)], dt))
                continue
            kv.commit(s.seq, s.tokens[s.computed:s.computed + n])
            if n == 1 and s.drafter is not None and s.computed >= s.n_prompt:
                s.draft_len.plain_step(dt)       # a decode step without drafts: what drafts must beat
            self._time(s, n, dt)
            s.computed += n
            rows = logits[id(s)] if id(s) in logits else None
            if s.request.rows in ("all", "embed"):
                s.rows.extend(rows)
            if s.left == 0:
                to_sample += self._computed(s, rows)
        if to_sample:
            self._sample(to_sample)
        for s, rows, dt in to_verify:
            self._verify(s, rows, dt)

    def _step_rows(self, batch: list, hidden: bool) -> dict:
        """One engine call over batch's chunks: id(seq) -> the rows it wants (logits, or with
        hidden the normed hidden states of an embedding request's every token)."""
        tokens, seqs, positions, out_rows, wants = [], [], [], [], []
        for s, n in batch:
            start = s.computed
            tokens.extend((s.tokens + s.draft)[start:start + n] if s.draft else s.tokens[start:start + n])
            seqs.extend([s.seq] * n)
            positions.extend(range(start, start + n))
            first = len(tokens) - n
            if s.request.rows in ("all", "embed") or s.draft:
                want = list(range(first, first + n))
            elif start + n == len(s.tokens):
                want = [first + n - 1]
            else:
                want = []
            wants.append((len(out_rows), len(want)))
            out_rows.extend(want)
        return self._logits(batch, tokens, seqs, positions, out_rows, wants, hidden)

    def _logits(self, batch, tokens, seqs, positions, out_rows, wants, hidden: bool = False) -> dict:
        """id(seq) -> its logits rows; on a failed step, each request is rerun alone and one
        that fails alone is ended (id -> False)."""
        engine_step = self.engine.step_hidden if hidden else self.engine.step
        try:
            out = engine_step(tokens, seqs, positions, out_rows)
            return {id(s): out[at:at + count] for (s, _), (at, count) in zip(batch, wants) if count}
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0][0], exc)
                return {id(batch[0][0]): False}
        result, at = {}, 0
        for (s, n), (_, count) in zip(batch, wants):
            part = slice(at, at + n)
            at += n
            rows = [r - part.start for r in out_rows if part.start <= r < part.stop]
            try:
                out = engine_step(tokens[part], seqs[part], positions[part], rows)
                if count:
                    result[id(s)] = out
            except Exception as exc:
                self._fail(s, exc)
                result[id(s)] = False
        return result

    @staticmethod
    def _time(s: _Seq, n: int, dt: float) -> None:
        result = s.handle.result
        if s.computed < s.n_prompt:
            result.prompt_tokens += min(n, s.n_prompt - s.computed)
            result.prompt_seconds += dt
        else:
            result.decode_tokens += n
            result.decode_seconds += dt

    def _computed(self, s: _Seq, rows) -> list:
        """Every known token of s is computed: score requests are done; generations fork
        their followers (sharing the prompt's blocks). The (sequence, row) pairs to sample."""
        if s.request.rows == "embed":
            s.handle.embedding = pool_rows(np.stack(s.rows), s.request.pooling)
        elif s.request.rows != "sample":
            s.handle.logits = np.stack(s.rows) if s.request.rows == "all" else np.array(rows[-1])
        if s.request.rows != "sample":
            self._drop(s)
            self._end(s)
            return []
        group = [s] + s.followers
        for f in s.followers:
            f.seq, f.computed = self.kv.fork(s.seq), s.computed
            self._running.insert(self._running.index(s) + 1, f)
        s.followers = []
        return [(f, rows[-1]) for f in group]

    def _sample(self, pairs: list) -> None:
        """Every row of the step in one sampler call (ignis.runtime.sampling.sample_rows);
        an exception from one request's constraint or settings ends that request only."""
        live, masks = [], []
        for s, row in pairs:
            try:
                masks.append(s.completion.next_mask())
                live.append((s, row))
            except Exception as exc:
                self._fail(s, exc)
        if not live:
            return
        try:
            tokens, info = self._sample_rows([s for s, _ in live], np.stack([row for _, row in live]), masks)
        except Exception:           # find the request it came from: each alone
            tokens, info, kept = [], [], []
            for (s, row), mask in zip(live, masks):
                try:
                    t, i = self._sample_rows([s], row[None, :], [mask])
                except Exception as exc:
                    self._fail(s, exc)
                    continue
                tokens.append(t[0])
                info.append(i[0])
                kept.append((s, row))
            live = kept
        for (s, _), token, lp in zip(live, tokens, info):
            self._accept(s, int(token), lp)

    def _accept(self, s: _Seq, token: int, lp) -> bool:
        """Hand a sampled token to s's completion; False if s ended with it."""
        try:
            piece = s.completion.accept(token, lp)
        except Exception as exc:
            self._fail(s, exc)
            return False
        s.handle._emit(piece)
        if s.completion.done:
            self._drop(s)
            self._end(s)
            return False
        s.tokens.append(s.completion.last_token)
        if len(s.tokens) > self.engine.n_ctx:     # no room left for the token's position
            self._drop(s)
            self._end(s)
            return False
        return True

    # -- speculative decoding (ignis.runtime.speculative) -----------------------------------

    def _draft(self, s: _Seq, draft) -> bool:
        """Reserve the positions of s's draft (speculative.propose_all: none when the batch is
        large, a step being compute-bound there) with its next one; False (and no draft) when
        there is nothing to verify or the pool has no room for it."""
        s.draft = []
        if not draft:
            return False
        try:
            self.kv.reserve(s.seq, 1 + len(draft))
        except KVCacheFullError:
            return False
        s.draft = draft
        return True

    def _verify(self, s: _Seq, rows, dt: float) -> None:
        """Sample s's rows in order as plain decoding would (its own draw for each position);
        go on while the sampled token is the drafted one; keep the KV rows of what was
        accepted and drop the rest."""
        draft, s.draft = s.draft, []
        start = s.computed               # the position of the last sampled token
        result = s.handle.result
        accepted = 0
        for j in range(len(draft) + 1):
            try:
                mask = s.completion.next_mask()
                tokens, info = self._sample_rows([s], rows[j][None, :], [mask])
            except Exception as exc:
                self._fail(s, exc)
                return
            token = int(tokens[0])
            if not self._accept(s, token, info[0]):
                break
            if j == len(draft) or token != draft[j]:
                break
            accepted += 1
        result.drafted += len(draft)
        result.accepted += accepted
        s.draft_len.update(len(draft), accepted, dt)
        self._time(s, 1 + len(draft), dt)
        if s.seq is None:                # ended
            return
        self.kv.truncate(s.seq, start + 1 + accepted)
        self.kv.commit(s.seq, s.tokens[start:start + 1 + accepted])
        s.computed = start + 1 + accepted

    @staticmethod
    def _sample_rows(seqs: list, logits, masks: list):
        completions = [s.completion for s in seqs]
        return sample_rows(logits, [c.sampler for c in completions], [c.history for c in completions], masks,
                           [c.logprobs for c in completions])

    def _fail(self, s: _Seq, exc: Exception) -> None:
        self._drop(s)
        self._end(s, "error", _as_ignis(exc))


def _as_ignis(exc: Exception) -> IgnisError:
    return exc if isinstance(exc, IgnisError) else IgnisError(f"{type(exc).__name__}: {exc}")
