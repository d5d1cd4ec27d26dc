"""Draft tokens for exact speculative decoding.

The engine loop (ignis.runtime.scheduler) verifies a request's draft in one step: the
sequence puts its last sampled token and k drafted tokens into the step, gets k + 1 logits
rows (bit-identical to what k + 1 single-token steps compute: the kernels give a row the
same bits whatever the step's shape), and samples them in order exactly as plain decoding
would, each with the request's own draw for that position (draw n is a pure function of
(seed, n)). While the sampled token equals the draft it goes on; the first that differs is
emitted and the KV rows after it are dropped. So the text is plain decoding's, greedy or
sampled, with penalties, stop strings and constraints (the matcher only ever sees sampled
tokens); the draft only decides how many tokens one step yields.

`NgramDrafter` is prompt lookup: the last n tokens (longest n first) are looked up in the
prompt and what was generated so far, and what followed their latest earlier occurrence is
proposed. A draft model (mode "draft", ignis.runtime.draft_model) proposes its own greedy
continuation instead. `DraftLength` adapts how many tokens a request drafts from how many it
had accepted, so a request whose drafts keep failing stops paying for them; for a draft
model, whose steps cost time, it weighs that cost (`DraftCost`) against the expected gain.
`propose_all` gathers one step's drafts: a draft model gets all its requests at once.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("ignis.speculative")

MODES = ("ngram", "draft")
SPEC_MAX_BATCH = 4   # no drafting when more sequences decode at once (compute-bound steps)
NGRAM_MAX = 4        # the longest suffix looked up
NGRAM_MIN = 2        # the shortest (a single token matches too often to be worth a draft)
DRAFT_MAX = 10       # most tokens drafted at once


class NgramDrafter:
    """An index of every n-gram (NGRAM_MIN <= n <= NGRAM_MAX) of a token list to the position
    after its latest occurrence, kept up to date as tokens are appended."""

    def __init__(self, tokens: list):
        self.tokens = tokens           # the request's own list (prompt, then generated)
        self._next = {}                # n-gram -> index of the token that followed it last
        self._indexed = 0              # tokens[:_indexed] are in the index as n-gram ends

    def _index(self) -> None:
        toks = self.tokens
        # an n-gram ending at i is indexed with the token after it, so only up to len - 2
        for end in range(self._indexed, len(toks) - 1):
            for n in range(NGRAM_MIN, NGRAM_MAX + 1):
                if end + 1 >= n:
                    self._next[tuple(toks[end + 1 - n:end + 1])] = end + 1
        self._indexed = max(self._indexed, len(toks) - 1)

    def propose(self, k: int) -> list:
        """Up to k tokens to follow the current tokens (empty when no suffix was seen before)."""
        if k <= 0:
            return []
        self._index()
        toks = self.tokens
        for n in range(min(NGRAM_MAX, len(toks)), NGRAM_MIN - 1, -1):
            at = self._next.get(tuple(toks[len(toks) - n:]))
            if at is not None:
                return toks[at:at + k]
        return []

    def close(self) -> None:
        """Nothing held outside the request."""


VERIFY_ROW = 0.03     # what one more row costs a memory-bound verify step, next to the step
FIT_DECAY = 0.95      # weight of the verify steps seen so far in the fit of their time
ROWS_DECAY = 0.8      # weight of the times seen so far of a main step of one number of rows
ROWS_FRESH = 32       # a row count's own mean is used while it was timed in the last this many main steps
MIN_GAIN = 1.05       # a draft model drafts only when it is expected to pay this much
DECAY = 0.8           # weight of the acceptance seen so far at each new round
PAUSE_MAX = 64        # most steps a request waits before it tries drafting again


class DraftCost:
    """What drafting costs, from timings shared by every request of one draft model:
    - the draft model's step (`draft_round`: its decode steps only; catching up a context
      that grew while no draft was asked for is a prefill, paid once, not per drafted token);
    - the main model's step by the rows one request puts into it (`main_round`: 1 for a
      plain decode step, k + 1 for a verify step). The kernels do not make a row's cost a
      line (a memory-bound step costs little more per row up to some shape, then a tile
      shape may cost much more), so each row count seen has its own decayed mean; a count
      not seen lately (the machine's load moves) is estimated from them (`main_time`) or a
      line a + b * rows fitted to all of them.
    step_cost(k): a step verifying k drafts, the k draft steps included, in single-row main
    steps; `prior` (+ VERIFY_ROW) per drafted token until both models were timed."""

    def __init__(self, prior: float):
        self.prior = prior
        self.draft_step = None
        self._sums = [0.0] * 5      # decayed weight, rows, seconds, rows^2, rows * seconds
        self._by_rows = {}          # rows -> (decayed mean seconds of a main step of that many, when)
        self._main_rounds = 0

    def draft_round(self, seconds: float, steps: int) -> None:
        """`steps` draft-model decode steps took `seconds`."""
        if steps > 0 and seconds > 0:
            per = seconds / steps
            self.draft_step = per if self.draft_step is None else 0.8 * self.draft_step + 0.2 * per

    def main_round(self, seconds: float, rows: int) -> None:
        if seconds > 0:
            for i, v in enumerate((1.0, rows, seconds, rows * rows, rows * seconds)):
                self._sums[i] = FIT_DECAY * self._sums[i] + v
            self._main_rounds += 1
            old = self._by_rows.get(rows)
            mean = seconds if old is None else ROWS_DECAY * old[0] + (1 - ROWS_DECAY) * seconds
            self._by_rows[rows] = (mean, self._main_rounds)

    def main_line(self):
        """(a, b): a main step of r rows takes about a + b * r seconds; None before any."""
        n, sx, sy, sxx, sxy = self._sums
        if n == 0:
            return None
        mx, my = sx / n, sy / n
        var = sxx / n - mx * mx
        if var > 0.25:               # the rows varied enough to fit a slope
            b = max(0.0, (sxy / n - mx * my) / var)
        else:
            b = VERIFY_ROW * my / (1 + VERIFY_ROW * mx)
        return max(my - b * mx, 0.05 * my), b

    def main_time(self, rows: int):
        """Seconds of a main step of `rows` rows: its own mean if timed lately; between two
        row counts timed lately, the smaller one's (a step of more rows never costs less: the
        bound is tried, then known); past them, the line's (not below the largest's)."""
        fresh = {r: t for r, (t, when) in self._by_rows.items() if self._main_rounds - when < ROWS_FRESH}
        if rows in fresh:
            return fresh[rows]
        below = max((r for r in fresh if r < rows), default=None)
        if below is not None and any(r > rows for r in fresh):
            return fresh[below]
        line = self.main_line()
        if line is None:
            return None
        return max(line[0] + line[1] * rows, fresh[below] if below is not None else 0.0)

    @property
    def main_step(self):
        """Seconds of a single-row main step (None before any)."""
        return self.main_time(1)

    def step_cost(self, k: int) -> float:
        """A main step verifying k drafted tokens plus the k draft steps, in single-row main steps."""
        one = self.main_time(1)
        if self.draft_step is None or not one:
            return 1 + k * (self.prior + VERIFY_ROW)
        return (self.main_time(k + 1) + k * self.draft_step) / one


def best_length(p: float, cost, most: int) -> tuple:
    """(k, expected speed-up) of drafting k tokens, each accepted with probability p (until the
    first rejection): a step then yields 1 + p + ... + p^k tokens for cost(k) single-row steps'
    time (a float c: a drafted token costs c such steps, cost(k) = 1 + c * k)."""
    step_cost = cost if callable(cost) else (lambda k: 1 + cost * k)
    best = (0, 1.0)
    tokens = 1.0
    for k in range(1, most + 1):
        tokens += p ** k
        gain = tokens / step_cost(k)
        if gain > best[1]:
            best = (k, gain)
    return best


class DraftLength:
    """How many tokens to draft next. Free drafts (prompt lookup): grows while drafts are
    accepted whole, shrinks to what was accepted (plus one) when one fails, never above
    DRAFT_MAX. Costly drafts (a DraftCost): the k that maximises the expected speed-up at the
    request's acceptance rate (a decaying count of accepted and rejected tokens); when no k
    pays MIN_GAIN, no drafts for a while (doubling, at most PAUSE_MAX steps), then a short probe."""

    def __init__(self, most: int = DRAFT_MAX, cost: DraftCost | None = None):
        self.most = most
        self.k = most
        self.cost = cost
        if cost is not None:
            self.k = 4
            self.hits, self.misses = 3.0, 1.0      # a prior acceptance rate of 3/4
            self.pause = self.backoff = 0

    def want(self) -> int:
        """The length to draft at this step (0 while paused)."""
        if self.cost is not None and self.pause > 0:
            self.pause -= 1
            return 0
        return self.k

    def plain_step(self, seconds: float) -> None:
        """A main step that decoded one token of the request without drafts took `seconds`."""
        if self.cost is not None:
            self.cost.main_round(seconds, 1)

    def update(self, drafted: int, accepted: int, seconds: float | None = None) -> None:
        """A verified draft: `seconds` is the main step's time that verified it."""
        if drafted == 0:
            return
        if self.cost is not None:
            self._weigh(drafted, accepted, seconds)
            return
        if accepted == drafted:
            self.k = min(self.most, self.k + 2)
        else:
            self.k = max(1, accepted + 1)

    def _weigh(self, drafted: int, accepted: int, seconds: float | None) -> None:
        if seconds is not None:
            self.cost.main_round(seconds, drafted + 1)
        self.hits = DECAY * self.hits + accepted
        self.misses = DECAY * self.misses + (accepted < drafted)
        k, gain = best_length(self.hits / (self.hits + self.misses), self.cost.step_cost, self.most)
        if gain < MIN_GAIN:
            self.backoff = min(PAUSE_MAX, max(4, 2 * self.backoff))
            self.pause, self.k = self.backoff, 2
        else:
            self.backoff, self.pause, self.k = 0, 0, k


def propose_all(seqs: list, n_ctx: int) -> dict:
    """id(seq) -> the tokens drafted for it at this step, for the loop's decoding sequences
    (ignis.runtime.scheduler._Seq) that draft: prompt lookup at once, a draft model's requests
    all together (one batch in the draft model). The drafting time counts as decode time."""
    out, by_source = {}, {}
    for s in seqs:
        if s.drafter is None:
            continue
        done = len(s.handle.result.tokens)
        room = min(s.completion.max_tokens - done - 1, n_ctx - len(s.tokens))
        k = min(s.draft_len.want(), room)
        if k <= 0:
            continue
        source = getattr(s.drafter, "source", None)
        if source is None:
            out[id(s)] = s.drafter.propose(k)
        else:
            by_source.setdefault(id(source), (source, []))[1].append((s, k))
    for source, items in by_source.values():
        t0 = time.perf_counter()
        try:
            drafts = source.propose_many([(s.drafter, k) for s, k in items])
        except Exception:       # the draft model failed (or was closed): no drafts, the text goes on
            log.exception("drafting failed")
            drafts = [[] for _ in items]
        seconds = time.perf_counter() - t0
        for (s, _), draft in zip(items, drafts):
            out[id(s)] = draft
            s.handle.result.decode_seconds += seconds
    return out
