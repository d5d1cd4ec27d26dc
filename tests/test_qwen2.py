"""The Qwen2 model: config from GGUF metadata with validation, the unfused graph,
tiny generated GGUF models, and the real model's graph numbers."""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ignis.errors import ModelError
from ignis.gguf import GGUFFile
from ignis.ir import KVCache, run, verify
from ignis.models import Qwen2Config, build_graph, load_weights
from ignis.passes import ARTICLE_PASSES, run_pipeline
from ignis.testing import make_tiny_qwen2, random_qwen2_weights, tiny_qwen2_config, tiny_vocab


def fake_file(n_layers=2, width=64, ffn=128, heads=4, kv_heads=2, vocab=300, **overrides):
    """(metadata, tensor infos) of a Qwen2 GGUF without writing one."""
    metadata = {"general.architecture": "qwen2", "qwen2.block_count": n_layers, "qwen2.embedding_length": width,
                "qwen2.feed_forward_length": ffn, "qwen2.attention.head_count": heads,
                "qwen2.attention.head_count_kv": kv_heads, "qwen2.rope.freq_base": 1e6,
                "qwen2.attention.layer_norm_rms_epsilon": 1e-6, "qwen2.context_length": 512}
    config = tiny_qwen2_config(n_layers=n_layers, width=width, n_heads=heads, n_kv_heads=kv_heads, ffn=ffn,
                               vocab=vocab)
    tensors = {name: SimpleNamespace(shape=shape, type=SimpleNamespace(name="F32"))
               for name, shape in config.tensor_shapes().items()}
    for key, value in overrides.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    return metadata, tensors


def test_config_from_metadata():
    c = Qwen2Config.from_gguf(*fake_file())
    assert (c.n_layers, c.width, c.ffn, c.n_heads, c.n_kv_heads, c.vocab, c.head_dim) == (2, 64, 128, 4, 2, 300, 16)
    assert c.rope_theta == 1e6 and c.rms_eps == 1e-6 and c.context_length == 512 and not c.tied_output


@pytest.mark.parametrize("overrides, message", [
    ({"general.architecture": "llama"}, "general.architecture"),
    ({"qwen2.block_count": None}, "qwen2.block_count is missing"),
    ({"qwen2.attention.head_count": 5}, "not divisible by qwen2.attention.head_count 5"),
    ({"qwen2.attention.head_count_kv": 3}, "not a multiple of qwen2.attention.head_count_kv 3"),
    ({"qwen2.context_length": 1 << 40}, "qwen2.context_length .* absurd"),
    ({"qwen2.context_length": 0}, "qwen2.context_length = 0"),
    ({"qwen2.attention.layer_norm_rms_epsilon": -1.0}, "layer_norm_rms_epsilon"),
    ({"qwen2.embedding_length": "64"}, "qwen2.embedding_length = '64'"),
    ({"qwen2.feed_forward_length": 256}, "blk.0.ffn_gate.weight has shape"),
    ({"tokenizer.ggml.tokens": ["a"] * 299}, "299 entries but token_embd.weight has 300 rows"),
])
def test_config_validation_names_the_key(overrides, message):
    with pytest.raises(ModelError, match=message):
        Qwen2Config.from_gguf(*fake_file(**overrides))


def test_config_validation_names_the_tensor():
    metadata, tensors = fake_file()
    del tensors["blk.1.attn_v.bias"]
    with pytest.raises(ModelError, match="tensor blk.1.attn_v.bias is missing"):
        Qwen2Config.from_gguf(metadata, tensors)
    metadata, tensors = fake_file()
    tensors["blk.0.attn_k.weight"] = SimpleNamespace(shape=(64, 64), type=None)
    with pytest.raises(ModelError, match=r"blk.0.attn_k.weight has shape \(64, 64\), expected \(32, 64\)"):
        Qwen2Config.from_gguf(metadata, tensors)
    metadata, tensors = fake_file()
    del tensors["token_embd.weight"]
    with pytest.raises(ModelError, match="token_embd.weight is missing"):
        Qwen2Config.from_gguf(metadata, tensors)
    metadata, tensors = fake_file()
    del tensors["output.weight"]
    assert Qwen2Config.from_gguf(metadata, tensors).tied_output


def test_config_direct_validation():
    with pytest.raises(ModelError, match="n_heads 4 is not a multiple of n_kv_heads 3"):
        Qwen2Config(n_layers=1, width=64, ffn=64, n_heads=4, n_kv_heads=3, vocab=300)
    with pytest.raises(ModelError, match="T must be"):
        build_graph(tiny_qwen2_config(), 0)


@pytest.mark.parametrize("T, all_logits", [(1, False), (7, False), (7, True)])
def test_unfused_graph_shape(T, all_logits):
    L = 3
    g = build_graph(tiny_qwen2_config(n_layers=L), T, all_logits)
    verify(g)
    take_last = T > 1 and not all_logits
    assert len(g.ops) == 22 * L + 4 + take_last
    counts = g.op_counts()
    assert counts["rms_inv"] == counts["scale_rows"] == 2 * L + 1
    assert counts["matmul"] == 7 * L + 1 and counts["add_bias"] == 3 * L and counts["rope"] == 2 * L
    assert counts["kv_write"] == counts["attention"] == counts["silu"] == counts["mul"] == L
    assert g.outputs["logits"].shape == ((T if all_logits or T == 1 else 1), 300)
    assert g.ops[-1].weights[0].parts == ("output.weight",)
    tied = build_graph(tiny_qwen2_config(n_layers=1, tied_output=True), 1)
    assert tied.ops[-1].weights[0].parts == ("token_embd.weight",)


def test_tiny_vocab_is_byte_level_with_control_tokens():
    tokens, types, merges = tiny_vocab(300)
    assert len(tokens) == 300 and tokens[-3:] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert types[-3:] == [3, 3, 3] and set(types[:-3]) == {1}
    assert len(set(tokens)) == 300 and tokens[ord("A")] == "A" and tokens[ord(" ")] == "\u0120"
    for merge in merges:
        a, b = merge.split(" ")
        assert a in tokens and b in tokens and a + b in tokens


@pytest.mark.parametrize("weight_type", ["q8_0", "f32"])
def test_tiny_gguf_model_runs_fused_equal_unfused(tmp_path, weight_type):
    path = make_tiny_qwen2(tmp_path / "tiny.gguf", n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=96,
                           vocab=280, seed=3, weight_type=weight_type, n_ctx=64)
    gguf = GGUFFile(path)
    config = Qwen2Config.from_file(gguf)
    assert (config.n_layers, config.width, config.ffn, config.vocab, config.context_length) == (2, 64, 96, 280, 64)
    assert config.weight_types["blk.0.attn_q.weight"] == ("Q8_0" if weight_type == "q8_0" else "F32")
    assert gguf.metadata["tokenizer.ggml.model"] == "gpt2" and gguf.metadata["tokenizer.ggml.pre"] == "qwen2"
    weights = load_weights(gguf)
    if weight_type == "f32":
        assert np.array_equal(weights["blk.1.ffn_up.weight"], random_qwen2_weights(config, 3)["blk.1.ffn_up.weight"])
    caches = [KVCache(2, 64, 2, 16) for _ in range(3)]
    tokens = [5, 70, 260, 277, 3]
    logits = []
    for graph, toks, pos in ((build_graph(config, 4), tokens[:4], np.arange(4)),
                             (build_graph(config, 1), tokens[4:], np.array([4]))):
        fused = run_pipeline(graph)[0]
        a = run(graph, weights, {"tokens": toks, "pos": pos}, caches[0])["logits"]
        b = run(fused, weights, {"tokens": toks, "pos": pos}, caches[1])["logits"]
        assert np.array_equal(a, b) and np.array_equal(caches[0].k, caches[1].k)
        logits.append(a)
    # the same five tokens in one prefill: same last-token logits up to float rounding
    once = run(build_graph(config, 5), weights, {"tokens": tokens, "pos": np.arange(5)}, caches[2])["logits"]
    assert np.allclose(once, logits[1], atol=1e-4)
    assert np.abs(logits[1]).max() > 0.1     # not degenerate


# ---------------------------------------------------------------- the real model

@pytest.fixture(scope="module")
def real_config(real_model_path):
    return Qwen2Config.from_file(GGUFFile(real_model_path))


@pytest.mark.real
def test_real_config(real_config):
    c = real_config
    assert (c.n_layers, c.width, c.ffn, c.n_heads, c.n_kv_heads, c.vocab) == (24, 896, 4864, 14, 2, 151936)
    assert c.head_dim == 64 and c.rope_theta == 1e6 and c.context_length == 32768 and not c.tied_output
    assert c.weight_types["blk.0.ffn_down.weight"] == "Q6_K"


@pytest.mark.real
@pytest.mark.parametrize("T, unfused, article, full", [(1, 532, 459, 171), (512, 533, 460, 172)])
def test_real_graph_op_counts(real_config, T, unfused, article, full):
    g = build_graph(real_config, T)
    assert len(g.ops) == unfused
    assert len(run_pipeline(g, ARTICLE_PASSES)[0].ops) == article      # 49 rmsnorm + 24 swiglu fusions
    fused, reports = run_pipeline(g)
    assert len(fused.ops) == full <= 200
    assert {r.name: r.rewrites for r in reports} == {
        "fuse_rmsnorm": 49, "fuse_swiglu": 24, "fuse_matmul_bias": 72, "fuse_qkv": 24, "fuse_residual": 48,
        "fuse_gate_up": 24, "fuse_norm_add": 0, "dce": 0}


GOLDEN = Path(__file__).parent / "data" / "logits_public.jsonl"


@pytest.mark.real
@pytest.mark.slow
def test_reference_interpreter_matches_the_float_reference(real_model_path, real_config):
    """The interpreter defines the ops: on the real model it must agree with the
    float32 golden log-probs (the f16 KV cache is the only deliberate difference)."""
    record = json.loads(GOLDEN.read_text().splitlines()[0])
    ids = np.array(record["ids"])
    graph = run_pipeline(build_graph(real_config, len(ids), all_logits=True))[0]
    logits = run(graph, load_weights(GGUFFile(real_model_path)), {"tokens": ids, "pos": np.arange(len(ids))},
                 KVCache.for_graph(graph, len(ids)))["logits"].astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    top1 = np.mean([np.argmax(logp[t]) == record["top_ids"][t][0] for t in range(len(ids))])
    delta = np.mean([np.abs(logp[t][record["top_ids"][t]] - record["top_logprobs"][t]).mean()
                     for t in range(len(ids))])
    assert top1 == 1.0 and delta < 0.02
