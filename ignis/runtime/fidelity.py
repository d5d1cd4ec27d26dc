"""Fidelity against the float reference (shared/golden): top-1 agreement, |Δ log-prob| over the
reference's top-20, greedy continuation match. Also the engine factory that
shared/golden/fidelity.py takes: `--engine ignis.runtime.fidelity:factory`. Both run
through the Model (its engine loop), on the golden files' token ids."""
import json
from dataclasses import dataclass

import numpy as np

END_OF_TURN = (151643, 151645)  # <|endoftext|>, <|im_end|> of the Qwen2 vocab
# the end-of-generation ids the golden set stops greedy continuations at, per architecture
# of its models (shared/golden/README.md: --eot)
END_OF_TURN_BY_ARCH = {"qwen2": END_OF_TURN, "llama": (2,), "gemma3": (1, 106)}


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@dataclass
class PromptScore:
    name: str
    positions: int
    top1_agree: int
    abs_dlogp: np.ndarray     # |Δ log-prob| at every (position, reference top-20 token)
    greedy_match: int
    greedy_len: int

    def line(self) -> str:
        return (f"{self.name:16s} n={self.positions:4d} top1={self.top1_agree / self.positions:.3f} "
                f"mean|dlp|={self.abs_dlogp.mean():.4f} max|dlp|={self.abs_dlogp.max():.3f} "
                f"greedy_match={self.greedy_match}/{self.greedy_len}")


def score_prompt(record: dict, logits_fn, greedy_fn) -> PromptScore:
    ref_ids = np.asarray(record["top_ids"])
    ref_lp = np.asarray(record["top_logprobs"])
    lp = log_softmax(logits_fn(record["ids"]))
    agree = int((lp.argmax(axis=-1) == ref_ids[:, 0]).sum())
    dlp = np.abs(np.take_along_axis(lp, ref_ids, axis=-1) - ref_lp)
    ours = greedy_fn(record["ids"], len(record["greedy"]))
    match = 0
    for a, b in zip(ours, record["greedy"]):
        if a != b:
            break
        match += 1
    return PromptScore(record["name"], len(record["ids"]), agree, dlp, match, len(record["greedy"]))


def score_file(golden_path, logits_fn, greedy_fn) -> list:
    with open(golden_path, encoding="utf-8") as f:
        return [score_prompt(json.loads(line), logits_fn, greedy_fn) for line in f if line.strip()]


def totals(scores: list) -> dict:
    errs = np.concatenate([s.abs_dlogp.ravel() for s in scores])
    return {"top1": sum(s.top1_agree for s in scores) / sum(s.positions for s in scores),
            "mean_dlp": float(errs.mean()), "p99_dlp": float(np.quantile(errs, 0.99))}


def scorers(model) -> tuple:
    """(logits, greedy) of a Model over token ids, greedy stopping at the end ids the golden
    set uses for the model's architecture."""
    stop = END_OF_TURN_BY_ARCH.get(model.gguf.metadata.get("general.architecture"), END_OF_TURN)

    def logits(ids):
        return model.logits(list(ids))

    def greedy(ids, n):
        return model.greedy_ids(list(ids), n, stop_ids=stop)

    return logits, greedy


def factory(path):
    """(logits, greedy) for shared/golden/fidelity.py: `--engine ignis.runtime.fidelity:factory`."""
    import ignis
    return scorers(ignis.load(path, n_ctx=2048))
