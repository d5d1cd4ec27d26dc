"""Fidelity of Qwen2.5-Coder-1.5B-Instruct Q4_K_M (mostly Q4_K and Q6_K weights: the K-quant
prefill tiles and decode kernels) against its float reference, tests/data/
logits_qwen15_public.jsonl (copied from the golden set; transformers + torch in float32 on the
dequantized file). The engine runs the golden token ids directly; teacher-forced, every
position scored.

The bar (issue 22): top-1 agreement at least llama.cpp's on the same file, and mean |Δ log-prob|
over the reference's top-20 at most half of llama.cpp's. llama.cpp's figures are the golden
README's (llama-cpp-python 0.3.36 on this file), not recomputed here: its portable build takes
minutes for these 995 positions on two shared cores. ignis measured top-1 0.9980, mean |Δ|
0.0484 when the test was written."""
import json
from pathlib import Path

import numpy as np
import pytest

import ignis

DATA = Path(__file__).parent / "data"
LLAMA_CPP = {"top1": 0.9869, "mean_dlp": 0.1136}


def _log_probs(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (one row at a time would be slow; the whole [T, vocab]
    array in float64 is a gigabyte for the long prompt, so chunks of rows)."""
    out = np.empty(logits.shape, dtype=np.float64)
    for r0 in range(0, logits.shape[0], 64):
        x = logits[r0:r0 + 64].astype(np.float64)
        x -= x.max(axis=1, keepdims=True)
        out[r0:r0 + 64] = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    return out


def _score(model, record: dict) -> tuple:
    """(positions, top-1 agreements, |Δ log-prob| at every (position, reference top-20 id))."""
    ref_ids = np.asarray(record["top_ids"], dtype=np.int64)
    ref_lp = np.asarray(record["top_logprobs"], dtype=np.float64)
    lp = _log_probs(np.asarray(model.logits(record["ids"]), dtype=np.float32))
    assert lp.shape[0] == len(record["ids"]) == ref_ids.shape[0], (lp.shape, ref_ids.shape)
    agree = int((lp.argmax(axis=1) == ref_ids[:, 0]).sum())
    dlp = np.abs(np.take_along_axis(lp, ref_ids, axis=1) - ref_lp)
    return len(record["ids"]), agree, dlp


@pytest.mark.real
@pytest.mark.slow
def test_fidelity_qwen15(qwen15_path):
    records = [json.loads(line) for line in (DATA / "logits_qwen15_public.jsonl").read_text().splitlines()
               if line.strip()]
    positions, agree, errs, lines = 0, 0, [], []
    with ignis.load(qwen15_path, n_ctx=1024, threads=2) as model:
        for rec in records:
            n, a, dlp = _score(model, rec)
            positions, agree = positions + n, agree + a
            errs.append(dlp.ravel())
            lines.append(f"{rec['name']}: n={n} top1={a / n:.4f} mean|dlp|={dlp.mean():.4f} max={dlp.max():.3f}")
    top1, mean_dlp = agree / positions, float(np.concatenate(errs).mean())
    report = "\n".join(lines) + f"\ntotal: n={positions} top1={top1:.4f} mean|dlp|={mean_dlp:.4f}"
    print(report)
    assert positions == 995, report
    assert top1 >= LLAMA_CPP["top1"], report
    assert mean_dlp <= LLAMA_CPP["mean_dlp"] / 2, report
