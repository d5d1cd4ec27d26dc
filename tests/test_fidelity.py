"""Fidelity of the real model against the float reference (tests/data, copied from the
golden set): at least as faithful as llama.cpp on the same files (README of the golden set)."""
from pathlib import Path

import pytest

import ignis
from ignis.hub import DEFAULT_Q8_0_TENSOR_SHA256
from ignis.quantize import tensor_data_sha256
from ignis.runtime.fidelity import END_OF_TURN, score_file, totals

DATA = Path(__file__).parent / "data"

# llama.cpp's scores on this machine kind (shared/golden/README.md): top-1 agreement and mean
# |Δ log-prob| over the reference top-20; greedy: tokens matching the reference continuation
LLAMA_CPP = {
    "original": {"top1": 0.9885, "mean_dlp": 0.0511,
                 "greedy": {"code_completion": 48, "chat_sort": 48, "chat_chinese": 32, "long_context": 32}},
    "q8_0": {"top1": 0.9891, "mean_dlp": 0.0395,
             "greedy": {"code_completion": 48, "chat_sort": 48, "chat_chinese": 27, "long_context": 32}},
}


def _check(path, golden, bar):
    model = ignis.load(path, n_ctx=2048)
    scores = score_file(golden, model.logits,
                        lambda ids, n: model.greedy_ids(ids, n, stop_ids=END_OF_TURN))
    report = "\n".join(s.line() for s in scores)
    total = totals(scores)
    print(report, total)
    assert total["top1"] >= bar["top1"], report
    assert total["mean_dlp"] <= bar["mean_dlp"], report
    for s in scores:
        assert s.greedy_match >= bar["greedy"][s.name], report


@pytest.mark.real
@pytest.mark.slow
def test_fidelity_original_file(real_model_path):
    _check(real_model_path, DATA / "logits_public.jsonl", LLAMA_CPP["original"])


@pytest.mark.real
@pytest.mark.slow
def test_fidelity_q8_0_file(real_q8_0_path):
    # the file scored holds exactly the weights of the golden set's source (llama.cpp's Q8_0
    # requantization, sha256 45de1f18...563e3): same names, types, shapes and tensor bytes
    assert tensor_data_sha256(real_q8_0_path) == DEFAULT_Q8_0_TENSOR_SHA256
    _check(real_q8_0_path, DATA / "logits_q8_0_public.jsonl", LLAMA_CPP["q8_0"])
