"""Next-token sampling over one row of logits, in llama.cpp's order:
penalties → top-k → top-p → min-p → temperature → draw. Temperature <= 0 is greedy."""
from dataclasses import dataclass

import numpy as np

from ignis.errors import IgnisError


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
        checks = [
            (0 <= self.temperature < float("inf"), f"temperature must be >= 0 and finite, got {self.temperature}"),
            (self.top_k >= 0, f"top_k must be >= 0 (0 disables it), got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}"),
            (0 < self.repeat_penalty < float("inf"), f"repeat_penalty must be a finite number > 0, got {self.repeat_penalty}"),
            (abs(self.presence_penalty) < float("inf") and abs(self.frequency_penalty) < float("inf"),
             "presence and frequency penalties must be finite numbers"),
            (self.repeat_last_n >= 0, f"repeat_last_n must be >= 0, got {self.repeat_last_n}"),
        ]
        for ok, message in checks:
            if not ok:
                raise IgnisError(message)


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
    if p.repeat_penalty != 1.0:
        vals = np.where(vals > 0, vals / p.repeat_penalty, vals * p.repeat_penalty)
    vals = vals - counts * p.frequency_penalty - (counts > 0) * p.presence_penalty
    out[ids] = vals
    return out


class Sampler:
    """Holds the RNG, so one seed reproduces a whole generation."""

    def __init__(self, params: SamplingParams):
        params.validate()
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, history: list) -> int:
        p = self.params
        logits = apply_penalties(np.asarray(logits, dtype=np.float32), history, p)
        if p.temperature <= 0:
            return int(np.argmax(logits))
        # candidates sorted by logit, highest first
        k = logits.size if p.top_k <= 0 else min(p.top_k, logits.size)
        cand = np.argpartition(-logits, k - 1)[:k] if k < logits.size else np.arange(logits.size)
        cand = cand[np.argsort(-logits[cand], kind="stable")]
        z = logits[cand].astype(np.float64)
        probs = np.exp(z - z[0])
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            cand, z, probs = cand[:keep], z[:keep], probs[:keep]
        if p.min_p > 0.0:
            keep = probs >= p.min_p * probs[0]
            cand, z = cand[keep], z[keep]
        z = z / p.temperature
        probs = np.exp(z - z.max())
        probs /= probs.sum()
        return int(cand[self.rng.choice(cand.size, p=probs)])
