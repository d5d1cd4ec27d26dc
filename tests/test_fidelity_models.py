"""Fidelity of the second-wave architectures (llama: SmolLM2-135M; gemma3: Gemma 3 270M)
against their float references (tests/data, copied from the golden set): at least as
faithful as llama.cpp on the same files (shared/golden/README.md). The engine runs the
golden token ids directly."""
from pathlib import Path

import pytest

import ignis
from ignis.runtime.fidelity import score_file, scorers, totals

DATA = Path(__file__).parent / "data"

# llama.cpp's scores on these files: top-1 agreement and mean |Δ log-prob| over the reference
# top-20. Greedy continuations of models this small diverge at near-ties for every engine
# (the README), so they are reported, not asserted.
LLAMA_CPP = {
    "smollm2": {"top1": 0.9556, "mean_dlp": 0.0951},
    "gemma3": {"top1": 0.9603, "mean_dlp": 0.1180},
}


def _check(path, golden, bar):
    with ignis.load(path, n_ctx=2048) as model:
        scores = score_file(golden, *scorers(model))
    report = "\n".join(s.line() for s in scores)
    total = totals(scores)
    print(report, total)
    assert total["top1"] >= bar["top1"], report
    assert total["mean_dlp"] <= bar["mean_dlp"], report
    return scores


@pytest.mark.real
@pytest.mark.slow
def test_fidelity_smollm2(smollm2_path):
    _check(smollm2_path, DATA / "logits_smollm2_public.jsonl", LLAMA_CPP["smollm2"])


@pytest.mark.real
@pytest.mark.slow
def test_fidelity_gemma3(gemma3_path):
    scores = _check(gemma3_path, DATA / "logits_gemma3_public.jsonl", LLAMA_CPP["gemma3"])
    assert max(s.positions for s in scores) > 1024     # one prompt runs past the 512-token window
