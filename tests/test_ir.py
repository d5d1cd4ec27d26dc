"""The IR: builder shape rules, verifier, printers, reference interpreter semantics."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.passes import broken_graphs, check_broken
from ignis.ir import (Graph, GraphBuilder, KVCache, Op, ShapeError, Value, VerifyError, Weight,
                      format_graph, run, to_dot, verify)
from ignis.ir import interpret as ref
from ignis.models import build_graph
from ignis.passes import run_pipeline
from ignis.testing import random_qwen2_weights, tiny_qwen2_config

FEW = settings(max_examples=30, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


def small_graph(T=2, D=8, layer_count=1):
    """tokens -> embed -> one attention layer's pieces, by hand."""
    b = GraphBuilder(weights={"E": (10, D), "g": (D,), "Wq": (D, D), "Wk": (4, D), "Wv": (4, D)},
                     meta={"n_layers": layer_count, "n_kv_heads": 1, "head_dim": 4})
    tokens, pos = b.input("tokens", (T,), "i32"), b.input("pos", (T,), "i32")
    seq = b.input("seq", (T,), "i32")
    h = b.emit("embed", [tokens], ["E"])
    r = b.emit("rms_inv", [h], eps=1e-6)
    a = b.emit("scale_rows", [h, r], ["g"])
    q = b.emit("rope", [b.emit("matmul", [a], ["Wq"]), pos], n_heads=2, head_dim=4, theta=10000.0)
    k = b.emit("rope", [b.emit("matmul", [a], ["Wk"]), pos], n_heads=1, head_dim=4, theta=10000.0)
    v = b.emit("matmul", [a], ["Wv"])
    kv = b.emit("kv_write", [k, v, pos, seq], layer=0, n_kv_heads=1, head_dim=4)
    o = b.emit("attention", [q, kv, pos, seq], layer=0, n_heads=2, n_kv_heads=1, head_dim=4)
    b.output("out", b.emit("add", [h, o]))
    return b.finish()


# ---------------------------------------------------------------- builder / op table

def test_builder_infers_shapes():
    g = small_graph(T=3)
    shapes = [op.results[0].shape for op in g.ops]
    assert shapes[0] == (3, 8) and shapes[1] == (3, 1) and g.ops[-1].result.shape == (3, 8)
    kv = next(op for op in g.ops if op.kind == "kv_write").result
    assert kv.dtype == "kv" and kv.shape == () and kv.nbytes == 0
    assert verify(g) is g


@pytest.mark.parametrize("kind, inputs, weights, attrs, message", [
    ("matmul", [(2, 8)], [(4, 7)], {}, "weight W"),
    ("add", [(2, 8), (2, 4)], [], {}, "operand shapes differ"),
    ("rope", [(2, 8), "pos"], [], {"n_heads": 3, "head_dim": 4, "theta": 1e4}, "n_heads 3"),
    ("rope", [(2, 6), "pos"], [], {"n_heads": 2, "head_dim": 3, "theta": 1e4}, "even"),
    ("scale_rows", [(2, 8), (2, 2)], [(8,)], {}, "r must be"),
    ("add_bias", [(2, 8)], [(4,)], {}, "weight b"),
    ("rms_inv", [(2, 8)], [], {}, "missing attribute eps"),
    ("silu", [(2, 8), (2, 8)], [], {}, "takes 1 inputs"),
    ("nope", [(2, 8)], [], {}, "unknown op kind"),
    ("attention", [(2, 8), (2, 8), "pos", "pos"], [], {"layer": 0, "n_heads": 2, "n_kv_heads": 1, "head_dim": 4},
     "kv token"),
    ("kv_write", [(2, 8), (2, 8), "pos", (2, 8)], [], {"layer": 0, "n_kv_heads": 1, "head_dim": 8}, "seq must be"),
    ("take_rows", [(2, 8), (2, 8)], [], {}, "rows must be"),
    ("matmul_add", [(2, 8), (2, 5)], [(4, 8)], {}, "res must be"),
    ("gate_up_swiglu", [(2, 8)], [(5, 8)], {}, "even number of rows"),
])
def test_shape_rules_reject(kind, inputs, weights, attrs, message):
    b = GraphBuilder(weights={f"w{i}": s for i, s in enumerate(weights)})
    pos = b.input("pos", (2,), "i32")
    values = [pos if s == "pos" else Value(s, "f32") for s in inputs]
    with pytest.raises(ShapeError, match=message):
        b.emit(kind, values, [f"w{i}" for i in range(len(weights))], **attrs)


def test_weight_concat_shape_and_name():
    w = Weight.of("a", "b", "c")
    assert w.shape({"a": (4, 8), "b": (2, 8), "c": (2, 8)}) == (8, 8)
    assert str(w) == "@cat(a, b, c)" and str(Weight.of("a")) == "@a"
    with pytest.raises(ValueError):
        w.shape({"a": (4, 8), "b": (2, 7), "c": (2, 8)})


# ---------------------------------------------------------------- verifier

def _swap(graph, i, op):
    ops = list(graph.ops)
    ops[i] = op
    return graph.with_ops(ops)


def test_verifier_rejects_use_before_definition():
    g = small_graph()
    ops = list(g.ops)
    ops[1], ops[2] = ops[2], ops[1]          # scale_rows before its rms_inv
    with pytest.raises(VerifyError, match="before its definition"):
        verify(g.with_ops(ops))


def test_verifier_rejects_double_definition():
    g = small_graph()
    op = g.ops[2]
    with pytest.raises(VerifyError, match="second time"):
        verify(_swap(g, 2, Op(op.kind, op.inputs, (g.ops[0].result,), op.weights, op.attrs)))


def test_verifier_rejects_shape_mismatch():
    g = small_graph()
    op = g.ops[1]
    with pytest.raises(VerifyError, match="op table says"):
        verify(_swap(g, 1, Op(op.kind, op.inputs, (Value((2, 2), "f32"),), op.weights, op.attrs)))


def test_verifier_rejects_unknown_weight_and_undefined_output():
    g = small_graph()
    op = g.ops[0]
    with pytest.raises(VerifyError, match="not a tensor"):
        verify(_swap(g, 0, Op(op.kind, op.inputs, op.results, (Weight.of("missing"),), op.attrs)))
    bad = Graph(g.inputs, g.ops, {"out": Value((2, 8), "f32")}, g.weights, g.meta)
    with pytest.raises(VerifyError, match="never defined"):
        verify(bad)


def test_verifier_orders_kv_writes_before_readers():
    g = small_graph()
    i_w = next(i for i, op in enumerate(g.ops) if op.kind == "kv_write")
    i_r = next(i for i, op in enumerate(g.ops) if op.kind == "attention")
    ops = list(g.ops)
    ops.insert(i_r, ops.pop(i_w))            # the write after its reader
    with pytest.raises(VerifyError, match="before its definition"):
        verify(g.with_ops(ops))
    w = g.ops[i_w]
    again = Op(w.kind, w.inputs, (Value((), "kv"),), w.weights, w.attrs)
    with pytest.raises(VerifyError, match="again"):
        verify(g.with_ops(list(g.ops) + [again]))
    r = g.ops[i_r]
    with pytest.raises(VerifyError, match="comes from"):
        verify(_swap(g, i_r, Op(r.kind, r.inputs, r.results, (), dict(r.attrs, layer=1))))
    other_pos = Value((2,), "i32")
    moved = Graph({**g.inputs, "pos2": other_pos}, g.ops, g.outputs, g.weights, g.meta)
    with pytest.raises(VerifyError, match="positions"):
        verify(_swap(moved, i_r, Op(r.kind, (r.inputs[0], r.inputs[1], other_pos, r.inputs[3]), r.results, (),
                                    r.attrs)))
    # the same positions of other sequences: not what was written either
    moved = Graph({**g.inputs, "seq2": other_pos}, g.ops, g.outputs, g.weights, g.meta)
    with pytest.raises(VerifyError, match="sequences"):
        verify(_swap(moved, i_r, Op(r.kind, (r.inputs[0], r.inputs[1], r.inputs[2], other_pos), r.results, (),
                                    r.attrs)))


def test_verifier_accepts_every_pipeline_output():
    config = tiny_qwen2_config(n_layers=2)
    for T in (1, 5):
        graph = build_graph(config, T)
        for passes in ([], ["fuse_rmsnorm", "fuse_swiglu"], None):
            verify(run_pipeline(graph, passes)[0])


@FEW
@given(broken_graphs())
def test_verifier_rejects_generated_broken_graphs(case):
    check_broken(case)


# ---------------------------------------------------------------- printers

def test_format_graph_lines():
    config = tiny_qwen2_config(n_layers=1)
    g = build_graph(config, 1)
    text = format_graph(g)
    assert "%4 = rms_inv %3 {eps=1e-06}  : f32[1,1]" in text
    assert "%5 = scale_rows %3, %4, @blk.0.attn_norm.weight  : f32[1,64]" in text
    assert text.count("\n") == len(g.ops) + 2
    fused = run_pipeline(g)[0]
    ftext = format_graph(fused)
    assert "%4 = rmsnorm %3, @blk.0.attn_norm.weight {eps=1e-06}  : f32[1,64]" in ftext
    assert re.search(r"%5, %6 = qkv_rope_kv %4, %1, %2, @cat\(blk.0.attn_q.weight, blk.0.attn_k.weight, "
                     r"blk.0.attn_v.weight\), @cat\(blk.0.attn_q.bias, blk.0.attn_k.bias, blk.0.attn_v.bias\) "
                     r"\{layer=0, n_heads=4, n_kv_heads=2, head_dim=16, theta=1e\+06\}  : f32\[1,64\], kv", ftext)
    assert "return logits=%" in ftext


def test_to_dot_structure():
    g = run_pipeline(build_graph(tiny_qwen2_config(n_layers=1), 2))[0]
    dot = to_dot(g)
    assert dot.startswith('digraph "ignis" {') and dot.rstrip().endswith("}")
    assert len(re.findall(r"^  op\d+ \[shape=box", dot, re.M)) == len(g.ops)
    assert "in_0" in dot and "out_logits" in dot
    edges = len(re.findall(r" -> ", dot))
    assert edges == sum(len(op.inputs) for op in g.ops) + len(g.outputs)


# ---------------------------------------------------------------- interpreter semantics

def test_rms_inv_and_scale_rows():
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    r = ref.rms_inv(x, 1e-6)
    want = 1 / np.sqrt((x.astype(np.float64) ** 2).mean(1, keepdims=True) + 1e-6)
    assert r.dtype == np.float32 and np.allclose(r, want, rtol=1e-6)
    g = np.arange(16, dtype=np.float32)
    assert np.array_equal(ref.scale_rows(x, r, g), (x * r) * g)


def test_rope_rotates_pairs_half_a_head_apart():
    rng = np.random.default_rng(1)
    hd, nh, theta = 8, 2, 10000.0
    x = rng.standard_normal((2, nh * hd)).astype(np.float32)
    pos = np.array([0, 5], np.int32)
    y = ref.rope(x, pos, nh, hd, theta)
    assert np.array_equal(y[0], x[0])                      # position 0: identity
    for h in range(nh):
        for i in range(hd // 2):
            a = 5 * theta ** (-2 * i / hd)
            x0, x1 = x[1, h * hd + i], x[1, h * hd + i + hd // 2]
            assert np.isclose(y[1, h * hd + i], x0 * np.cos(a) - x1 * np.sin(a), atol=1e-6)
            assert np.isclose(y[1, h * hd + i + hd // 2], x0 * np.sin(a) + x1 * np.cos(a), atol=1e-6)


def test_attention_is_causal_gqa_over_the_f16_cache():
    rng = np.random.default_rng(2)
    H, KVH, hd, T = 4, 2, 8, 3
    cache = KVCache(1, 8, KVH, hd)
    k = rng.standard_normal((T, KVH * hd)).astype(np.float32)
    v = rng.standard_normal((T, KVH * hd)).astype(np.float32)
    pos = np.array([2, 3, 4], np.int32)
    seq = np.zeros_like(pos)
    ref.kv_write(k, v, pos, seq, 0, KVH, hd, cache)
    assert cache.k.dtype == np.float16 and np.array_equal(cache.k[0, 3], k[1].reshape(KVH, hd).astype(np.float16))
    q = rng.standard_normal((T, H * hd)).astype(np.float32)
    out = ref.attention(q, pos, seq, 0, H, KVH, hd, cache)
    K, V = cache.k[0].astype(np.float64), cache.v[0].astype(np.float64)
    for t in range(T):
        for h in range(H):
            kvh = h // (H // KVH)
            s = K[:pos[t] + 1, kvh] @ q[t, h * hd:(h + 1) * hd] / np.sqrt(hd)
            p = np.exp(s - s.max())
            p /= p.sum()
            assert np.allclose(out[t, h * hd:(h + 1) * hd], p @ V[:pos[t] + 1, kvh], atol=1e-5)


def test_kv_write_past_the_cache_is_a_context_overflow():
    from ignis.errors import ContextOverflowError
    cache = KVCache(1, 4, 1, 4)
    with pytest.raises(ContextOverflowError, match="position 4"):
        ref.kv_write(np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32), np.array([4]), np.array([0]), 0, 1, 4, cache)


def test_silu_mul_and_concatenated_matmul():
    x = np.array([[-100.0, -1.0, 0.0, 2.0]], np.float32)
    assert np.allclose(ref.silu(x), x / (1 + np.exp(-x.astype(np.float64))))
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 8)).astype(np.float32)
    W1, W2 = rng.standard_normal((3, 8)).astype(np.float32), rng.standard_normal((5, 8)).astype(np.float32)
    y = ref.matmul(a, [W1, W2])
    assert y.shape == (2, 8) and np.array_equal(y[:, :3], ref.matmul(a, [W1])) \
        and np.array_equal(y[:, 3:], ref.matmul(a, [W2]))


def test_run_checks_inputs_and_matches_kept_values():
    config = tiny_qwen2_config(n_layers=1)
    g = build_graph(config, 2)
    w = random_qwen2_weights(config, 0)
    with pytest.raises(ValueError, match="missing"):
        run(g, w, {"tokens": [1, 2]}, KVCache.for_graph(g, 8))
    with pytest.raises(ValueError, match="shape"):
        run(g, w, {"tokens": [1, 2, 3], "pos": [0, 1, 2]}, KVCache.for_graph(g, 8))
    out = run(g, w, {"tokens": [1, 2], "pos": [0, 1]}, KVCache.for_graph(g, 8))
    env = run(g, w, {"tokens": [1, 2], "pos": [0, 1]}, KVCache.for_graph(g, 8), keep=True)
    assert np.array_equal(out["logits"], env[g.outputs["logits"]]) and out["logits"].shape == (1, config.vocab)
