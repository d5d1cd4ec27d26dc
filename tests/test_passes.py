"""Fusion passes, DCE and the pipeline: what each rewrites, what it must leave alone,
and (hypothesis) that any pass list preserves the outputs bit for bit."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.passes import check_dag, check_dce, check_rewiring, dag_cases, random_graphs, rewiring_cases
from ignis.ir import GraphBuilder, KVCache, Weight, run, verify
from ignis.models import build_graph
from ignis.passes import (ARTICLE_PASSES, DEFAULT_PIPELINE, PASSES, dce, fuse_gate_up, fuse_qkv, fuse_residual,
                          fuse_rmsnorm, fuse_swiglu, resolve_passes, run_pipeline)
from ignis.testing import random_qwen2_weights, tiny_qwen2_config

FEW = settings(max_examples=25, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def tiny():
    return tiny_qwen2_config(n_layers=3)


@pytest.mark.parametrize("name, rewrites", [
    ("fuse_rmsnorm", 7), ("fuse_swiglu", 3), ("fuse_matmul_bias", 9), ("fuse_qkv", 3), ("fuse_residual", 6),
    ("fuse_gate_up", 3), ("fuse_norm_add", 0), ("dce", 0)])
def test_each_pass_alone(tiny, name, rewrites):
    g = build_graph(tiny, 2)
    out, report = PASSES[name](g)
    verify(out)
    assert report.rewrites == rewrites and report.ops_before == len(g.ops) and report.ops_after == len(out.ops)


def test_passes_leave_their_input_alone(tiny):
    g = build_graph(tiny, 2)
    ops = list(g.ops)
    text_before = [repr(op) for op in ops]
    run_pipeline(g)
    assert list(g.ops) == ops and [repr(op) for op in g.ops] == text_before
    verify(g)


def test_full_pipeline_kinds(tiny):
    fused, reports = run_pipeline(build_graph(tiny, 4))
    assert [r.name for r in reports] == list(DEFAULT_PIPELINE)
    assert fused.op_counts() == {"embed": 1, "rmsnorm": 7, "qkv_rope_kv": 3, "attention": 3, "matmul_add": 6,
                                 "gate_up_swiglu": 3, "take_last": 1, "matmul": 1}
    qkv = next(op for op in fused.ops if op.kind == "qkv_rope_kv")
    assert qkv.weights == (Weight.of("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"),
                           Weight.of("blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"))
    assert fused.weight_shape(qkv.weights[0]) == (64 + 2 * 32, 64)
    gu = next(op for op in fused.ops if op.kind == "gate_up_swiglu")
    assert gu.weights[0].parts == ("blk.0.ffn_gate.weight", "blk.0.ffn_up.weight")
    article = run_pipeline(build_graph(tiny, 4), ARTICLE_PASSES)[0]
    assert len(build_graph(tiny, 4).ops) - len(article.ops) == 7 + 3


def test_gate_up_and_qkv_work_on_the_unfused_forms(tiny):
    g = build_graph(tiny, 1)
    out, r = fuse_gate_up(g)             # straight from mul(silu(matmul), matmul)
    assert r.rewrites == 3 and "silu" not in out.op_counts()
    out, r = fuse_qkv(g)                 # straight from matmul + add_bias
    assert r.rewrites == 3 and "rope" not in out.op_counts() and "kv_write" not in out.op_counts()


def _builder(T=2, D=8):
    b = GraphBuilder(weights={"g": (D,), "g2": (D,), "W": (D, D), "W2": (D, D)})
    x = b.input("x", (T, D), "f32")
    return b, x


def test_no_fusion_when_the_intermediate_has_other_readers():
    b, x = _builder()
    r = b.emit("rms_inv", [x], eps=1e-6)
    y = b.emit("scale_rows", [x, r], ["g"])
    z = b.emit("scale_rows", [y, r], ["g2"])          # r read twice
    s = b.emit("silu", [z])
    m = b.emit("mul", [s, y])
    b.output("m", m)
    b.output("s", s)                                  # silu result is also an output
    g = b.finish()
    assert fuse_rmsnorm(g)[1].rewrites == 0
    assert fuse_swiglu(g)[1].rewrites == 0


def test_no_rmsnorm_fusion_across_different_values():
    b, x = _builder()
    y = b.emit("silu", [x])
    r = b.emit("rms_inv", [x], eps=1e-6)
    b.output("out", b.emit("scale_rows", [y, r], ["g"]))    # scales y by x's norm
    assert fuse_rmsnorm(b.finish())[1].rewrites == 0


def test_residual_fuses_either_operand_order():
    for order in (0, 1):
        b, x = _builder()
        y = b.emit("matmul", [x], ["W"])
        b.output("out", b.emit("add", [y, x] if order else [x, y]))
        g = b.finish()
        out, r = fuse_residual(g)
        assert r.rewrites == 1 and out.ops[0].kind == "matmul_add" and out.ops[0].inputs == (x, x)
        data = {"x": np.random.default_rng(order).standard_normal((2, 8)).astype(np.float32)}
        w = {"W": np.random.default_rng(9).standard_normal((8, 8)).astype(np.float32)}
        assert np.array_equal(run(g, w, data)["out"], run(out, w, data)["out"])


def test_dce_removes_dead_ops_but_keeps_kv_writes(tiny):
    g = build_graph(tiny, 1)
    # make the last layer's attention dead: point the output at the embedding instead
    dead = g.__class__(g.inputs, g.ops, {"logits": g.ops[0].result}, g.weights, g.meta)
    out, r = dce(dead)
    verify(out)
    kinds = out.op_counts()
    assert kinds["kv_write"] == 3 and kinds["attention"] == 2 and kinds["silu"] == 2
    assert all(w.parts != ("output.weight",) for op in out.ops for w in op.weights)
    assert r.rewrites == len(g.ops) - len(out.ops) > 0


def test_resolve_passes():
    assert resolve_passes(None) == DEFAULT_PIPELINE
    assert resolve_passes("fuse_swiglu, dce") == ("fuse_swiglu", "dce")
    assert resolve_passes([]) == ()
    with pytest.raises(ValueError, match="unknown pass 'fuse_all'; known passes: fuse_rmsnorm"):
        resolve_passes(["fuse_all"])


def test_prefill_then_decode_fused_equals_unfused(tiny):
    w = random_qwen2_weights(tiny, 11)
    caches = [KVCache(3, 16, 2, 16) for _ in range(2)]
    for T, tokens, pos in ((6, [1, 2, 3, 4, 5, 6], np.arange(6)), (1, [7], np.array([6]))):
        g = build_graph(tiny, T, all_logits=True)
        want = run(g, w, {"tokens": tokens, "pos": pos}, caches[0])["logits"]
        got = run(run_pipeline(g)[0], w, {"tokens": tokens, "pos": pos}, caches[1])["logits"]
        assert np.array_equal(want, got)
    assert np.array_equal(caches[0].k, caches[1].k) and np.array_equal(caches[0].v, caches[1].v)


# ---------------------------------------------------------------- properties (fuzz/ runs them longer)

@FEW
@given(rewiring_cases())
def test_any_pass_list_rewires_qwen2_graphs_faithfully(case):
    # the reference interpreter: graph rewiring only (tests/test_compiled.py runs the kernels)
    check_rewiring(case)


@FEW
@given(dag_cases())
def test_any_pass_list_preserves_random_dag_outputs(case):
    check_dag(case)


@FEW
@given(random_graphs().map(lambda c: c[0]))
def test_dce_removes_exactly_the_unreachable_ops(graph):
    check_dce(graph)
