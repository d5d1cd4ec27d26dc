"""speculative="draft": a second, smaller model sharing the vocabulary proposes the tokens.

The draft model is an ordinary ignis Model with its own KV block pool. Each drafting
request holds one Session in it (ignis.runtime.request.Session): a draft request's ids are
the main request's whole context, so the draft loop continues the parked sequence from what
the two share (the rejected draft rows are dropped by that truncation, for free) and
computes only what is new, then decodes k tokens greedily. The draft model's own engine
loop (`_DraftLoop`) has no thread: the main loop drives it, all of a step's draft requests at
once, so the draft model runs them as one batch, step by step. Whatever the draft says, the
main loop's verification keeps the text plain decoding's; the draft only decides how many
tokens a step yields.

A draft model's step is not free (unlike prompt lookup), so a request drafts only as many
tokens as pay for themselves at its acceptance rate (speculative.DraftLength with a cost),
and none while its acceptance is too low.
"""
from __future__ import annotations

import os
import time

from ignis.errors import IgnisError, ModelError
from ignis.runtime.engine import MAX_STEP_TOKENS
from ignis.runtime.request import Session, make_request
from ignis.runtime.sampling import SamplingParams
from ignis.runtime.scheduler import Scheduler
from ignis.runtime.speculative import SPEC_MAX_BATCH, DraftCost, DraftLength

GREEDY = SamplingParams(temperature=0.0)
CATCH_UP_TIMED = 2       # most tokens per request of a draft step timed as a decode step
# the ids a draft model proposes from: its logits of the first DRAFT_LOGITS ids only. A BPE
# vocabulary numbers its tokens in merge order, so the common ones come first: with the
# Qwen2.5 vocabulary, 98 % of the tokens of Python code (and 97 % of English prose) are
# below 65536, and the 0.5B's step reads 78 MB (a fifth) fewer weight bytes. A token past
# them is never drafted (its position is a rejection), which verification keeps exact.
DRAFT_LOGITS = 81920


def check_vocabulary(main, draft) -> None:
    """A one-line ModelError unless draft has main's vocabulary: the same number of logits
    rows and the same token table (every id the same token text)."""
    name = f"draft model {draft.path}"
    if draft.n_vocab != main.n_vocab:
        raise ModelError(f"{name}: {draft.n_vocab} tokens, the model has {main.n_vocab} (a draft model must "
                         "share the vocabulary)")
    ours = main.gguf.metadata.get("tokenizer.ggml.tokens") or []
    theirs = draft.gguf.metadata.get("tokenizer.ggml.tokens") or []
    if len(ours) != len(theirs):
        raise ModelError(f"{name}: its tokenizer has {len(theirs)} tokens, the model's {len(ours)} (a draft model "
                         "must share the vocabulary)")
    if ours != theirs:
        at = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
        raise ModelError(f"{name}: token {at} is {theirs[at]!r}, the model's is {ours[at]!r} (a draft model must "
                         "share the vocabulary)")


class _DraftLoop(Scheduler):
    """The draft model's engine loop, run by the main loop's thread (no thread of its own):
    submit() queues, drive() steps until every queued request is done."""

    def _ensure_thread(self) -> None:
        if self._stop:
            raise IgnisError("the draft model is closed")

    def drive(self) -> list:
        """Step until every queued request is done: [(tokens, seconds)] of each step run (the
        one-off compilation of a plan for a new shape left out)."""
        self._take_incoming()
        steps = []
        while self._running or self._waiting:
            t0, compiled, before = time.perf_counter(), self.engine.compile_seconds, self.steps
            self._guarded_step("draft step")     # a failure loses the drafts, never the main text
            if self.steps > before:
                seconds = time.perf_counter() - t0 - (self.engine.compile_seconds - compiled)
                steps.append((self.step_sizes[-1], seconds))
            self._outbox.clear()         # nobody reads a draft request's pieces
        return steps

    def release(self, session: Session) -> None:
        """Free a session's KV sequence (its request has ended)."""
        with self.model._lock:
            self._unpark(session)

    def close(self) -> None:
        with self._lock:
            self._stop = True
        with self.model._lock:
            for session in list(self._parked):
                self._unpark(session)

    @property
    def n_parked(self) -> int:
        return len(self._parked)


class ModelDrafter:
    """One request's drafts: its Session in the draft model's pool."""

    def __init__(self, source: "DraftModel", tokens: list):
        self.source = source
        self.tokens = tokens            # the request's own list (prompt, then generated)
        self.session = Session()

    def close(self) -> None:
        self.source.loop.release(self.session)


class DraftModel:
    """A loaded draft model and its loop, shared by every request of one main model."""

    def __init__(self, main, draft, logits: int | None = DRAFT_LOGITS):
        """logits: the ids the draft proposes from are [0, logits) (None or more than the
        vocabulary: all; a tied output projection, the embedding table too, keeps all)."""
        check_vocabulary(main, draft)
        self.model = draft
        if logits is not None and logits < draft.n_vocab and not draft.engine.config.tied_output:
            draft.engine.limit_logits(logits)
        self.loop = _DraftLoop(draft, max_batch=2 * SPEC_MAX_BATCH, step_tokens=MAX_STEP_TOKENS)
        draft._schedulers.append(self.loop)
        # a memory-bound step reads the weights once: the files' sizes are the first guess of
        # what a draft step costs next to a main one, until both are timed
        self.cost = DraftCost(prior=_weight_bytes(draft) / max(1, _weight_bytes(main)))

    def drafter(self, tokens: list) -> ModelDrafter:
        return ModelDrafter(self, tokens)

    def draft_length(self) -> DraftLength:
        return DraftLength(cost=self.cost)

    def propose_many(self, wanted: list) -> list:
        """[(drafter, k)] -> the k greedy tokens the draft model continues each context with
        (fewer at its context's end; none if its request fails), all in one batch."""
        t0, compiled = time.perf_counter(), self.model.engine.compile_seconds
        handles = []
        for drafter, k in wanted:
            try:
                request = make_request(drafter.tokens, n_ctx=self.model.n_ctx, vocab=self.model.n_vocab,
                                       max_tokens=k, params=GREEDY, stop=None, ignore_eos=True,
                                       session=drafter.session)
                handles.append(self.loop.submit(request))
            except IgnisError:       # e.g. the context is past the draft model's: no draft
                handles.append(None)
        steps = self.loop.drive()
        # what a drafted token costs: the round's time (its requests' set-up included, the
        # one-off compilation of a plan for a new shape not) per decode step, a step in which
        # each request computes its last token (or, in a round's first step, the one or two
        # its context grew by since its previous round). A step catching up more (a prompt, or
        # a context that grew while the request drafted nothing) is a prefill, paid once per
        # catch-up, not per drafted token: left out.
        seconds = time.perf_counter() - t0 - (self.model.engine.compile_seconds - compiled)
        small = CATCH_UP_TIMED * sum(h is not None for h in handles)
        prefill = sum(dt for tokens, dt in steps if tokens > small)
        self.cost.draft_round(seconds - prefill, sum(tokens <= small for tokens, _ in steps))
        return [[] if h is None or h.error is not None else list(h.result.tokens) for h in handles]

    def close(self) -> None:
        self.model.close()


def _weight_bytes(model) -> int:
    return os.path.getsize(model.path)
