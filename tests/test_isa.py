"""Kernel levels chosen at run time: every level this CPU runs against the scalar level, on
random inputs and on real weight tiles; IGNIS_ISA; `ignis info`.

Quantized tiles are defined exactly (docs/ops.md, ignis/_neon.h), so every level must give
the scalar level's bits for every weight type and every token count; f32 reductions may
differ between scalar and SIMD, while the SIMD levels of one architecture share them (the
x86-64 levels differ only in their integer dot products) and so give identical logits."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ignis.errors import ISAError

K = pytest.importorskip("ignis._kernels")

RUNNABLE = [name for name, ok in K.isa_levels() if ok]
SIMD_LEVELS = [name for name in RUNNABLE if name != "scalar"]
T_Q4_1, T_Q5_0, T_Q8_0, T_Q4_K, T_Q6_K = 3, 6, 8, 12, 14


@pytest.fixture
def at_level():
    """Switch the process' kernel level for one test; restore the chosen one after."""
    before = K.isa()
    yield K.use_isa
    K.use_isa(before)


def _matmul_at(level, x, w, wtype, act="q8_0"):
    K.use_isa(level)
    return K.matmul(x, w, wtype, threads=2, act=act)


def test_unknown_and_unrunnable_levels_are_refused(at_level):
    with pytest.raises(ISAError, match="unknown kernel level 'sse9'"):
        at_level("sse9")
    with pytest.raises(ISAError):
        at_level(3)
    for name, ok in K.isa_levels():
        if not ok:
            with pytest.raises(ISAError, match=f"'{name}' cannot run on this CPU"):
                at_level(name)


@pytest.mark.parametrize("level", SIMD_LEVELS or ["(none)"])
@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 8, 9, 16, 19])
def test_level_gives_scalar_bits_on_random_q8_0(at_level, level, T):
    if level == "(none)":
        pytest.skip("this CPU runs no SIMD level of this build")
    rng = np.random.default_rng(T)
    K_, N = 32 * 13, 21
    w = K.quantize_q8_0((rng.standard_normal((N, K_)) * 0.05).astype(np.float32))
    w[:, 2:][rng.random((N, K_ // 32 * 34 - 2)) < 0.01] = 0x80     # -128 weights occur in files
    x = rng.standard_normal((T, K_)).astype(np.float32)
    for act in ("q8_0", "q16"):
        ref = _matmul_at("scalar", x, w, T_Q8_0, act)
        got = _matmul_at(level, x, w, T_Q8_0, act)
        assert np.array_equal(ref.view(np.uint32), got.view(np.uint32)), (level, T, act)


@pytest.mark.parametrize("level", SIMD_LEVELS or ["(none)"])
@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 8, 9, 16, 19])
def test_level_gives_scalar_bits_on_random_q4_1(at_level, level, T):
    if level == "(none)":
        pytest.skip("this CPU runs no SIMD level of this build")
    from ignis.gguf.quant import quantize_q4_1
    rng = np.random.default_rng(100 + T)
    K_, N = 32 * 13, 21
    w = quantize_q4_1((rng.standard_normal((N, K_)) * 0.05 + 0.02).astype(np.float32))
    w[::5, 4:20] = 0xff                                             # all-15 quants
    x = rng.standard_normal((T, K_)).astype(np.float32)
    ref = _matmul_at("scalar", x, w, T_Q4_1)
    got = _matmul_at(level, x, w, T_Q4_1)
    assert np.array_equal(ref.view(np.uint32), got.view(np.uint32)), (level, T)


def _real_weights(path, wtype, rows=24):
    """The first `rows` rows of the file's first matrix of type wtype, and its row length."""
    from ignis.gguf import GGUFFile
    f = GGUFFile(path)
    for t in f.tensors.values():
        if int(t.type) == wtype and len(t.shape) == 2:
            n, k = t.shape
            return np.ascontiguousarray(np.asarray(t.data).reshape(n, -1)[:rows]), k, t.name
    pytest.fail(f"no 2-D tensor of type {wtype} in {path}")


@pytest.mark.real
@pytest.mark.parametrize("wtype", [T_Q5_0, T_Q8_0, T_Q4_K, T_Q6_K], ids=["Q5_0", "Q8_0", "Q4_K", "Q6_K"])
def test_every_level_gives_scalar_bits_on_real_tiles(real_model_path, at_level, wtype):
    if not SIMD_LEVELS:
        pytest.skip("this CPU runs no SIMD level of this build")
    w, k, name = _real_weights(real_model_path, wtype)
    rng = np.random.default_rng(wtype)
    for T in (1, 3, 4, 8, 13):
        x = rng.standard_normal((T, k)).astype(np.float32)
        ref = _matmul_at("scalar", x, w, wtype)
        for level in SIMD_LEVELS:
            got = _matmul_at(level, x, w, wtype)
            assert np.array_equal(ref.view(np.uint32), got.view(np.uint32)), (name, level, T)


PROMPT = "<|im_start|>user\nWrite a Python function that reverses a string.<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.real
@pytest.mark.parametrize("path_fixture", ["real_q8_0_path", "real_model_path", "qwen15_path"])
def test_simd_levels_give_identical_logits_and_greedy_ids(path_fixture, request, at_level):
    """The bar of the ISA issue: IGNIS_ISA=avx2 gives the default level's greedy ids (here:
    the very same logits, since the x86-64 levels share their float code). On the Q8_0 copy,
    the original default model (Q5_0, Q8_0, Q4_K, Q6_K) and the 1.5B (Q4_K, Q6_K): the prompt's
    prefill takes each level's prepared rows where it has them, the greedy steps its decode
    kernels."""
    import ignis
    if len(SIMD_LEVELS) < 2:
        pytest.skip(f"this CPU runs only {RUNNABLE}: nothing to compare across SIMD levels")
    model = ignis.load(request.getfixturevalue(path_fixture), n_ctx=256, threads=2)
    ids = model.tokenize(PROMPT)
    out = {}
    for level in SIMD_LEVELS:
        at_level(level)
        logits = model.logits(ids)
        greedy = model.greedy_ids(ids, 24)
        out[level] = (logits, greedy)
    first = SIMD_LEVELS[0]
    for level in SIMD_LEVELS[1:]:
        assert np.array_equal(out[first][0].view(np.uint32), out[level][0].view(np.uint32)), level
        assert out[first][1] == out[level][1], level
    model.close()


def _run(env_isa, *args):
    env = dict(os.environ, IGNIS_ISA=env_isa)
    return subprocess.run([sys.executable, "-m", "ignis", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_ignis_info_reports_cpu_features_and_level():
    done = _run("", "info", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["level"] == K.best_isa() and info["chosen_by"] == "best level this CPU runs"
    assert info["build_levels"] == [name for name, _ in K.isa_levels()]
    assert info["runnable_levels"] == RUNNABLE and info["features"] == K.cpu_features()
    assert info["cpu"] and info["threads"] >= 1
    text = _run("", "info").stdout
    assert "kernel level" in text and K.best_isa() in text


def test_ignis_isa_forces_a_lower_level():
    done = _run("scalar", "info", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["level"] == "scalar" and info["chosen_by"] == "IGNIS_ISA=scalar"


def test_ignis_isa_that_cannot_run_is_a_one_line_error():
    done = _run("sse9", "info")
    assert done.returncode == 1
    assert done.stderr.strip() == ("ignis: error: IGNIS_ISA=sse9: unknown kernel level 'sse9': this build has "
                                   + ", ".join(name for name, _ in K.isa_levels()))
    not_here = [name for name, ok in K.isa_levels() if not ok]
    if not_here:
        done = _run(not_here[0], "info")
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
        assert f"'{not_here[0]}' cannot run on this CPU" in done.stderr


def test_a_plan_refuses_to_run_at_a_level_it_was_not_given():
    """import succeeds (so `ignis info` can explain), but no kernel runs."""
    code = ("import ignis._kernels as K\n"
            "try:\n    K.Plan(64, 1, 1)\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    env = dict(os.environ, IGNIS_ISA="sse9")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.startswith("ISAError IGNIS_ISA=sse9"), done.stdout + done.stderr
