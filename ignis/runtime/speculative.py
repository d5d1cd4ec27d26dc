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
proposed. `DraftLength` adapts how many tokens a request drafts from how many it had
accepted, so a request whose drafts keep failing stops paying for them.
"""
from __future__ import annotations

MODES = ("ngram",)
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


class DraftLength:
    """How many tokens to draft next: grows while drafts are accepted whole, shrinks to what
    was accepted (plus one) when one fails, never above DRAFT_MAX."""

    def __init__(self, most: int = DRAFT_MAX):
        self.most = most
        self.k = most

    def update(self, drafted: int, accepted: int) -> None:
        if drafted == 0:
            return
        if accepted == drafted:
            self.k = min(self.most, self.k + 2)
        else:
            self.k = max(1, accepted + 1)
