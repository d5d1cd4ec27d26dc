"""One completion's state: logits rows in, sampled ids and final text out, with stop
strings, end-of-generation tokens and a token budget (the engine loop drives it)."""
from dataclasses import dataclass, field

import numpy as np

from ignis.runtime.sampling import Sampler, SamplingParams, sample_rows


@dataclass
class GenerationResult:
    text: str = ""
    tokens: list = field(default_factory=list)
    finish_reason: str = "length"   # "stop" (eog token or stop string) or "length"
    prompt_tokens: int = 0          # tokens actually evaluated for the prompt (after cache reuse)
    prompt_seconds: float = 0.0
    decode_tokens: int = 0          # single-token forward passes after the prompt
    decode_seconds: float = 0.0
    # with Completion(logprobs=N): per generated token, (log-probability of the token,
    # [(id, log-probability)] of the N most likely) from the raw logits row (log-softmax)
    logprobs: list = field(default_factory=list)
    end_token: int | None = None    # the end-of-generation id that stopped it (with keep_end)
    drafted: int = 0                # speculative decoding: tokens drafted, and accepted
    accepted: int = 0


def _stop_cut(text: str, stops: list) -> int:
    """Index where the earliest stop string begins in text, or -1."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def _held_back(text: str, stops: list) -> int:
    """How many trailing characters could still grow into a stop string (so are not yet safe to emit)."""
    keep = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                keep = max(keep, n)
                break
    return keep


class Completion:
    """One request's generation state, fed one row of logits at a time: it samples the
    next token (its own seeded sampler), stops on an end-of-generation id, a stop string
    or the token budget, and turns tokens into text that is final (never a broken UTF-8
    sequence, never a prefix of a stop string that may still complete). The engine loop
    (ignis.runtime.scheduler) drives one per completion.

    With a constraint (ignis.runtime.constraint), every token is drawn from the ids it
    allows, and generation ends when the output is complete, whatever ignore_eos says.
    The mask for the next token is started as soon as a token is accepted, so it is
    computed while the forward pass that produces the next logits runs."""

    def __init__(self, tokenizer, prompt_ids: list, max_tokens: int, params: SamplingParams, stop: list,
                 eog_ids: set, ignore_eos: bool, result: GenerationResult, logprobs: int | None = None,
                 constraint=None, keep_end: bool = False):
        self.sampler = Sampler(params)
        self.constraint = constraint.start() if constraint is not None else None
        self.logprobs = logprobs     # None: not recorded; N >= 0: the chosen token and the top N
        self.detok = tokenizer.stream()
        self.history = list(prompt_ids)
        self.max_tokens = max_tokens
        self.stop = stop
        self.eog_ids = eog_ids
        self.ignore_eos = ignore_eos
        self.keep_end = keep_end     # record the end id that stopped generation (result.end_token)
        self.result = result
        self.pending = ""            # decoded text not yet emitted (may hold a stop-string prefix)
        self.hit_stop_string = False
        self.done = max_tokens <= 0
        self.last_token = None
        result.finish_reason = "length"
        if self.constraint is not None and not self.done:
            self.constraint.begin()       # the first mask: computed while the prompt is read

    def next_mask(self):
        """The constraint's mask of allowed ids for the next token (None: unconstrained)."""
        return None if self.constraint is None else self.constraint.next_mask()

    def feed(self, logits) -> str:
        """Sample the next token from one row of logits, then accept it (see accept)."""
        tokens, info = sample_rows(np.asarray(logits)[None, :], [self.sampler], [self.history], [self.next_mask()],
                                   [self.logprobs])
        return self.accept(int(tokens[0]), info[0])

    def accept(self, token: int, logprob=None) -> str:
        """Take the sampled token (and its log-probability record, when logprobs were asked
        for); the text that became final ("" if none). Afterwards `done` says whether
        generation ended, else `last_token` is the token to evaluate next."""
        result = self.result
        constraint = self.constraint
        if token in self.eog_ids and (not self.ignore_eos or constraint is not None):
            # (a constraint allows an end id only once its output is complete)
            result.finish_reason = "stop"
            if self.keep_end:
                result.end_token = token
            self.done = True
            return ""
        if constraint is not None:
            constraint.accept(token)
        result.tokens.append(token)
        if self.logprobs is not None:
            result.logprobs.append(logprob)
        self.history.append(token)
        self.last_token = token
        self.pending += self.detok.push(token)
        cut = _stop_cut(self.pending, self.stop) if self.stop else -1
        if cut >= 0:
            self.pending = self.pending[:cut]
            result.finish_reason = "stop"
            self.hit_stop_string = self.done = True
            return ""
        if constraint is not None and constraint.finished:
            result.finish_reason = "stop"
            self.done = True
        elif len(result.tokens) >= self.max_tokens:
            self.done = True
        elif constraint is not None:
            constraint.begin()
        safe = len(self.pending) - (_held_back(self.pending, self.stop) if self.stop else 0)
        if safe <= 0:
            return ""
        piece, self.pending = self.pending[:safe], self.pending[safe:]
        result.text += piece
        return piece

    def finish(self) -> str:
        """End of generation: the text still held back (incomplete UTF-8 becomes U+FFFD)."""
        self.done = True
        pending = self.pending
        if not self.hit_stop_string:
            pending += self.detok.flush()
        if self.stop:
            cut = _stop_cut(pending, self.stop)
            if cut >= 0:
                pending, self.result.finish_reason = pending[:cut], "stop"
        self.pending = ""
        self.result.text += pending
        return pending
