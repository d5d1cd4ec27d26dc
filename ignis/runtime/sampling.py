"""Next-token sampling: every row of a step in one call into the sampler kernel
(ignis/kernels/sampler_core.pxi); docs/sampling.md defines what it computes.

Order, as llama.cpp's: logit_bias -> penalties -> top-k -> top-p -> min-p -> temperature ->
draw. Temperature <= 0 is greedy (argmax, ties to the lower id). A constrained request
passes a mask of its allowed ids (bit i % 32 of int32 word i // 32): the same steps run over
those ids only. A request's n-th draw is a pure function of (seed, n): the uniform
`sample_uniform(seed, n)` (SplitMix64), so a seed reproduces a generation, and the n-th token
of a speculative run can be redrawn without replaying the ones before it.

API
---
    SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0,
                   repeat_last_n=64, presence_penalty=0.0, frequency_penalty=0.0, seed=None,
                   logit_bias=None)
        .validate(n_vocab=None)      checks and normalises every field (ArgumentError);
                                     logit_bias {token id: finite bias}, ids < n_vocab if given
    Sampler(params)                  one request's sampler: .seed (a random 64-bit seed when
                                     params.seed is None, drawn once), .n (draws consumed =
                                     tokens sampled so far)
        sampler(logits_row, history, mask=None) -> int
                                     samples one token (draw n, then n += 1)
    sample_rows(logits, samplers, histories, masks=None, logprobs=None)
            -> (tokens int32 [B], info: list of B entries)
        logits float32 [B, V], row b sampled by samplers[b] over histories[b] (the tokens so
        far, prompt included; the penalty window is its last repeat_last_n), masks[b] an
        int32 mask or None, logprobs[b] None or N >= 0. info[b] is None, or (log-probability
        of the chosen token, [(id, log-probability)] of the N most likely, most likely
        first, ties to the lower id) under the log-softmax of the raw row. One kernel call
        for the whole step; each sampler's n advances by one.
    sample_rows_at(logits, params, histories, uniforms, masks=None, logprobs=None,
                   survivors=False) -> (tokens, info[, survivors])
        the same with explicit uniforms in [0, 1) and SamplingParams (no Sampler, no counter);
        survivors=True also returns, per row, the ascending ids of the final candidates
        (what the draw chose among; greedy: the one token)
    token_logprobs(logits_row, token, top) -> (log-probability, [(id, log-probability)])
        the kernel's log-softmax of one raw row (generate.token_logprobs' contract)
    sample_uniform(seed, n) -> float in [0, 1)
"""
import secrets
from dataclasses import dataclass

import numpy as np

from ignis._kernels import sample_step, sample_uniform
from ignis.args import INT64_MAX, UINT64_MAX, check_float, check_int, describe
from ignis.errors import ArgumentError, ArgumentTypeError

__all__ = ["SamplingParams", "Sampler", "sample_rows", "sample_rows_at", "sample_uniform", "token_logprobs"]


@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: dict | None = None

    def validate(self, n_vocab: int | None = None) -> None:
        """Check every field's type and range (an ArgumentError naming the first bad one) and
        store them as plain Python numbers. With n_vocab, logit_bias ids must be below it."""
        self.temperature = check_float("temperature", self.temperature, 0.0)
        self.top_k = check_int("top_k", self.top_k, 0, INT64_MAX)
        self.top_p = check_float("top_p", self.top_p, 0.0, 1.0, lo_open=True)
        self.min_p = check_float("min_p", self.min_p, 0.0, 1.0)
        self.repeat_penalty = check_float("repeat_penalty", self.repeat_penalty, 0.0, lo_open=True)
        self.repeat_last_n = check_int("repeat_last_n", self.repeat_last_n, 0, INT64_MAX)
        self.presence_penalty = check_float("presence_penalty", self.presence_penalty)
        self.frequency_penalty = check_float("frequency_penalty", self.frequency_penalty)
        if self.seed is not None:
            self.seed = check_int("seed", self.seed, 0, UINT64_MAX)
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, dict):
                raise ArgumentTypeError(f"logit_bias must be a dict {{token id: bias}}, got {describe(self.logit_bias)}")
            hi = INT64_MAX if n_vocab is None else n_vocab - 1
            self.logit_bias = {check_int("logit_bias id", k, 0, hi): check_float(f"logit_bias[{k}]", v)
                               for k, v in self.logit_bias.items()}

    @property
    def penalized(self) -> bool:
        """Whether the penalties change anything (else the window is not even looked at)."""
        return self.repeat_last_n > 0 and (self.repeat_penalty != 1.0 or self.presence_penalty != 0.0
                                           or self.frequency_penalty != 0.0)


class _Prepared:
    """What the kernel takes from a SamplingParams, computed once per request."""

    __slots__ = ("row", "top_k", "last_n", "bias")

    def __init__(self, p: SamplingParams):
        p.validate()
        self.row = (p.temperature, p.top_p, p.min_p, p.repeat_penalty, p.presence_penalty, p.frequency_penalty)
        self.top_k = p.top_k
        self.last_n = p.repeat_last_n if p.penalized else 0
        self.bias = None
        if p.logit_bias:
            ids = sorted(p.logit_bias)
            self.bias = (np.array(ids, dtype=np.int64), np.array([p.logit_bias[i] for i in ids], dtype=np.float64))


class Sampler:
    """One request's sampler: its parameters, its seed and the number of draws it has used
    (the n of its next uniform)."""

    def __init__(self, params: SamplingParams):
        params.validate()
        self.params = params
        self.seed = params.seed if params.seed is not None else secrets.randbits(64)
        self.n = 0
        self._prepared = _Prepared(params)

    def __call__(self, logits: np.ndarray, history: list, mask: np.ndarray | None = None) -> int:
        """The next token from one row of logits. `mask`: a constraint's allowed ids (bit
        i % 32 of int32 word i // 32); the same steps then run over the allowed ids only."""
        row = np.asarray(logits)
        if row.ndim != 1:
            raise ArgumentError(f"sample: a row of logits must be 1-D, got shape {row.shape}")
        tokens, _ = sample_rows(row[None, :], [self], [history], [mask])
        return int(tokens[0])


def _window(history, last_n: int):
    if last_n <= 0 or not history:
        return None
    tail = history[-last_n:]
    return np.asarray(tail, dtype=np.int64) if len(tail) else None


def _info(tokens, lp, top_ids, top_lps, logprobs, b):
    n = logprobs[b]
    if n is None:
        return None
    return float(lp[b]), [(int(i), float(v)) for i, v in zip(top_ids[b, :n], top_lps[b, :n])]


def _run(logits, prepared, histories, uniforms, masks, logprobs, survivors):
    x = np.asarray(logits)
    if x.ndim != 2:
        raise ArgumentError(f"sample: logits must be 2-D [rows, vocab], got shape {x.shape}")
    B = x.shape[0]
    for name, lst in (("histories", histories), ("masks", masks), ("logprobs", logprobs)):
        if lst is not None and len(lst) != B:
            raise ArgumentError(f"sample: {name} must have one entry per row ({B}), got {len(lst)}")
    logprobs = [None] * B if logprobs is None else [None if n is None else check_int("logprobs", n, 0, x.shape[1])
                                                      for n in logprobs]
    params = np.array([p.row for p in prepared], dtype=np.float64).reshape(B, 6)
    top_k = np.array([min(p.top_k, x.shape[1]) for p in prepared], dtype=np.int64)
    windows = [_window(h, p.last_n) for p, h in zip(prepared, histories)]
    biases = [p.bias for p in prepared]
    n_top = np.array([-1 if n is None else n for n in logprobs], dtype=np.int64)
    tokens, lp, top_ids, top_lps, surv = sample_step(
        x, params, top_k, uniforms, windows=windows, biases=biases, masks=masks, n_top=n_top,
        survivors=survivors)
    info = [_info(tokens, lp, top_ids, top_lps, logprobs, b) for b in range(B)]
    return tokens, info, surv


def sample_rows(logits, samplers: list, histories: list, masks: list | None = None,
                logprobs: list | None = None):
    """Sample row b of logits [B, V] with samplers[b] (its next draw) over histories[b];
    see the module docstring. Returns (tokens int32 [B], info per row)."""
    if len(samplers) != len(histories):
        raise ArgumentError(f"sample: {len(samplers)} samplers for {len(histories)} histories")
    uniforms = np.array([sample_uniform(s.seed, s.n) for s in samplers], dtype=np.float64)
    tokens, info, _ = _run(logits, [s._prepared for s in samplers], histories, uniforms, masks, logprobs, False)
    for s in samplers:                 # only once the whole step has been sampled
        s.n += 1
    return tokens, info


def sample_rows_at(logits, params: list, histories: list, uniforms, masks: list | None = None,
                   logprobs: list | None = None, survivors: bool = False):
    """sample_rows with explicit uniforms in [0, 1) and SamplingParams (no counters):
    (tokens, info), plus the survivors per row when survivors=True."""
    tokens, info, surv = _run(logits, [_Prepared(p) for p in params], histories,
                              np.asarray(uniforms, dtype=np.float64), masks, logprobs, survivors)
    return (tokens, info, surv) if survivors else (tokens, info)


def token_logprobs(logits, token: int, top: int) -> tuple:
    """(log-probability of token, [(id, log-probability)] of the `top` most likely, most
    likely first, ties to the lower id) under the log-softmax of the raw logits row."""
    row = np.asarray(logits)
    if row.ndim != 1:
        raise ArgumentError(f"token_logprobs: a row of logits must be 1-D, got shape {row.shape}")
    token = check_int("token", token, 0, row.shape[0] - 1)
    top = check_int("top", top, 0, row.shape[0])
    # greedy over a mask that allows only `token`: the kernel then reports its log-probability
    mask = np.zeros((row.shape[0] + 31) // 32, dtype=np.uint32)
    mask[token // 32] = np.uint32(1 << (token % 32))
    greedy = _Prepared(SamplingParams(temperature=0.0))
    _, lp, top_ids, top_lps, _ = sample_step(row[None, :], np.array([greedy.row]), np.zeros(1, np.int64),
                                             np.zeros(1), masks=[mask.view(np.int32)], n_top=np.array([top]))
    return float(lp[0]), [(int(i), float(v)) for i, v in zip(top_ids[0, :top], top_lps[0, :top])]
