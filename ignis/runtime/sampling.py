"""Next-token sampling over one row of logits, in llama.cpp's order:
penalties → top-k → top-p → min-p → temperature → draw. Temperature <= 0 is greedy.
A constrained request passes the ids its constraint allows: the same steps run over
those candidates only (as if every other logit were -inf)."""
from dataclasses import dataclass

import numpy as np

from ignis._kernels import mask_token_ids, top_k, top_k_masked
from ignis.args import INT64_MAX, UINT64_MAX, check_float, check_int

_F32_MAX = float(np.finfo(np.float32).max)


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

    def validate(self) -> None:
        """Check every field's type and range (an ArgumentError naming the first bad one) and
        store them as plain Python numbers."""
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


def apply_penalties(logits: np.ndarray, history: list, p: SamplingParams) -> np.ndarray:
    """Repetition (over the last repeat_last_n tokens), presence and frequency penalties."""
    if not history or (p.repeat_penalty == 1.0 and p.presence_penalty == 0.0 and p.frequency_penalty == 0.0):
        return logits
    recent = np.asarray(history[-p.repeat_last_n:] if p.repeat_last_n else [], dtype=np.int64)
    if recent.size == 0:
        return logits
    ids, counts = np.unique(recent, return_counts=True)
    out = logits.copy()
    vals = out[ids]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # extreme (finite) settings overflow
        if p.repeat_penalty != 1.0:
            vals = np.where(vals > 0, vals / p.repeat_penalty, vals * p.repeat_penalty)
        vals = vals - counts * p.frequency_penalty - (counts > 0) * p.presence_penalty
    # keep every logit finite (an overflow saturates; inf - inf, pushed both ways, is the lowest)
    out[ids] = np.clip(np.nan_to_num(vals, nan=-_F32_MAX), -_F32_MAX, _F32_MAX)
    return out


class Sampler:
    """Holds the RNG, so one seed reproduces a whole generation."""

    def __init__(self, params: SamplingParams):
        params.validate()
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, history: list, mask: np.ndarray | None = None) -> int:
        """The next token. `mask`: a constraint's allowed ids (bit i % 32 of int32 word
        i // 32); the same steps then run over the allowed ids only."""
        p = self.params
        logits = apply_penalties(np.asarray(logits, dtype=np.float32), history, p)
        if p.temperature <= 0:
            return int(np.argmax(logits)) if mask is None else int(top_k_masked(logits, mask, 1)[0])
        cand = self._candidates(logits, mask)
        z = logits[cand].astype(np.float64)
        probs = np.exp(z - z[0])
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            cand, z, probs = cand[:keep], z[:keep], probs[:keep]
        if p.min_p > 0.0:
            keep = probs >= p.min_p * probs[0]
            cand, z = cand[keep], z[keep]
        with np.errstate(over="ignore"):
            scaled = z / p.temperature
            if not np.isfinite(scaled).all():   # a tiny temperature: the same distribution without overflow
                scaled = (z - z.max()) / p.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        return int(cand[self.rng.choice(cand.size, p=probs)])

    def _candidates(self, logits: np.ndarray, mask) -> np.ndarray:
        """Candidate ids sorted by logit, highest first (ties: the lower id first, so the
        candidates never depend on how they were found): the top_k, or all of them."""
        k = self.params.top_k
        if mask is not None:
            if k > 0:
                return top_k_masked(logits, mask, min(k, logits.size))
            ids = mask_token_ids(mask, logits.size)
            return ids[np.lexsort((ids, -logits[ids].astype(np.float64)))]
        if 0 < k < logits.size:
            return top_k(logits, k)
        return np.lexsort((np.arange(logits.size), -logits.astype(np.float64)))
