"""Fused ≡ unfused through the compiled kernels: on generated models of every weight type
(Hypothesis, fuzz/compiled.py) and on the real model, both files. The reference
interpreter plays no part here (tests/test_passes.py checks the graph rewiring)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import ignis
from fuzz.compiled import check_compiled, compiled_cases

# the default count: each of the planted kernel bugs listed in fuzz/README.md is caught at it
DEFAULT_EXAMPLES = 60


@settings(max_examples=DEFAULT_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(case=compiled_cases())
def test_fused_plan_equals_unfused_plan_through_the_kernels(case):
    check_compiled(case)


PROMPT = ("def quicksort(items):\n    \"\"\"Sort a list with quicksort and return a new list.\"\"\"\n"
          "    if len(items) <= 1:\n        return list(items)\n    pivot = items[len(items) // 2]\n"
          "    left = [x for x in items if x < pivot]\n    middle = [x for x in items if x == pivot]\n"
          "    right = [x for x in items if x > pivot]\n    return quicksort(left) + middle + quicksort(right)\n\n\n"
          "def binary_search(items, target):\n")


def _fused_vs_unfused(path):
    fused = ignis.load(path, n_ctx=256, threads=2)
    unfused = ignis.load(path, n_ctx=256, threads=2, passes=[])
    try:
        ids = fused.tokenize(PROMPT)
        assert len(ids) >= 64
        a, b = fused.logits(ids), unfused.logits(ids)
        assert a.shape == (len(ids), fused.n_vocab)
        assert np.array_equal(a, b), f"{int(np.sum(a != b))} of {a.size} teacher-forced logits differ"
        ga, gb = fused.greedy_ids(ids, 16, stop_ids=()), unfused.greedy_ids(ids, 16, stop_ids=())
        assert len(ga) == 16 and ga == gb
        # the context of prompt and continuation, kept by each model's session
        assert np.array_equal(fused.eval_prompt(ids + ga), unfused.eval_prompt(ids + gb))
        n = fused.n_past
        assert n == unfused.n_past == len(ids) + 16
        for name in ("k", "v"):                       # the rows of the sequence, in position order
            rows = fused.engine.kv.slots(fused._session.seq)
            assert rows.shape == (n,) and np.array_equal(rows, unfused.engine.kv.slots(unfused._session.seq))
            ka, kb = getattr(fused.engine.kv, name), getattr(unfused.engine.kv, name)
            assert np.array_equal(ka[:, rows], kb[:, rows]), f"KV cache {name} differs"
    finally:
        fused.close()
        unfused.close()


@pytest.mark.real
@pytest.mark.slow
def test_real_model_fused_equals_unfused(real_model_path):
    _fused_vs_unfused(real_model_path)


@pytest.mark.real
@pytest.mark.slow
def test_real_q8_0_model_fused_equals_unfused(real_q8_0_path):
    _fused_vs_unfused(real_q8_0_path)
