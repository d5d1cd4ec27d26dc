"""Model files that are well-formed GGUF but lie, and weights that hold NaN/Inf: each is
rejected by ignis.load with a typed one-line error naming the key or tensor, before any
kernel runs (issue 7)."""
import time

import numpy as np
import pytest

import ignis
from ignis.errors import ModelError, TokenizerError
from ignis.gguf import GGUFFile, TensorType, ValueType, write_gguf
from ignis.gguf.quant import quantize_q8_0
from ignis.testing import make_tiny_qwen2

from helpers import weights_in_place


@pytest.fixture(scope="module")
def tiny(tiny_model):
    """A 1-layer tiny model (Q8_0 matrices, F32 norms and biases)."""
    return tiny_model(n_layers=1, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=3)


def rewrite(src, dst, set_keys=None, drop_keys=(), types=None, tensors=None):
    """Copy a GGUF with edits. tensors: a function (list of [name, TensorType, shape, data]) -> list."""
    with GGUFFile(src) as g:
        metadata = dict(g.metadata)
        vtypes = dict(g.metadata_types)
        items = [[n, t.type, tuple(t.shape), np.array(t.data)] for n, t in g.tensors.items()]
    for key in drop_keys:
        metadata.pop(key)
        vtypes.pop(key)
    for key, value in (set_keys or {}).items():
        metadata[key] = value
        vtypes.pop(key, None)
    vtypes.update(types or {})
    if tensors is not None:
        items = tensors(items)
    write_gguf(dst, metadata, [tuple(i) for i in items], types=vtypes)
    return str(dst)


def replace_tensor(name, ttype=None, shape=None, data=None):
    def edit(items):
        for item in items:
            if item[0] == name:
                if ttype is not None:
                    item[1] = ttype
                if shape is not None:
                    item[2] = shape
                item[3] = data
        return items
    return edit


def drop_tensor(name):
    return lambda items: [i for i in items if i[0] != name]


def f32_of(path, name):
    """A tensor of the file as float32 (dequantized)."""
    from ignis.gguf.quant import dequantize
    with GGUFFile(path) as g:
        t = g.tensors[name]
        return dequantize(t.data, t.type, t.shape)


def assert_rejected(path, error, *needles):
    with pytest.raises(error) as info:
        ignis.load(path, n_ctx=32, threads=1)
    message = str(info.value)
    assert "\n" not in message and path in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# -- hyper-parameters and tensors that do not agree ---------------------------------------

LIES = {
    "hidden size not divisible by heads": (
        dict(set_keys={"qwen2.attention.head_count": 5}),
        ModelError, ["qwen2.embedding_length 64 is not divisible by qwen2.attention.head_count 5"]),
    "heads not a multiple of kv heads": (
        dict(set_keys={"qwen2.attention.head_count_kv": 3}),
        ModelError, ["qwen2.attention.head_count_kv 3"]),
    "missing tensor": (
        dict(tensors=drop_tensor("blk.0.ffn_down.weight")),
        ModelError, ["tensor blk.0.ffn_down.weight is missing"]),
    "missing embedding": (
        dict(tensors=drop_tensor("token_embd.weight")),
        ModelError, ["tensor token_embd.weight is missing"]),
    "tensor shape against the hyper-parameters": (
        dict(set_keys={"qwen2.feed_forward_length": 256}),
        ModelError, ["blk.0.ffn_gate.weight has shape (128, 64), expected (256, 64)"]),
    "kv projection of the wrong shape": (
        dict(tensors=lambda items: replace_tensor(
            "blk.0.attn_k.weight", shape=(64, 64), data=quantize_q8_0(np.zeros((64, 64), np.float32)))(items)),
        ModelError, ["blk.0.attn_k.weight has shape (64, 64), expected (32, 64)"]),
    "vocab != embedding rows": (
        dict(set_keys={"tokenizer.ggml.tokens": [f"t{i}" for i in range(299)],
                       "tokenizer.ggml.token_type": [1] * 299},
             types={"tokenizer.ggml.token_type": (ValueType.ARRAY, ValueType.INT32)}),
        ModelError, ["tokenizer.ggml.tokens has 299 entries but token_embd.weight has 300 rows"]),
    "absurd context length": (
        dict(set_keys={"qwen2.context_length": 1 << 40}),
        ModelError, ["qwen2.context_length", "absurd"]),
    "zero context length": (
        dict(set_keys={"qwen2.context_length": 0}),
        ModelError, ["qwen2.context_length = 0"]),
    "absurd block count": (
        dict(set_keys={"qwen2.block_count": 1 << 33}),
        ModelError, ["qwen2.block_count", "absurd"]),
    "more layers than tensors": (
        dict(set_keys={"qwen2.block_count": 2}),
        ModelError, ["tensor blk.1.attn_norm.weight is missing"]),
    "unknown architecture": (
        dict(set_keys={"general.architecture": "mamba"}),
        ModelError, ["general.architecture is 'mamba': that architecture is not supported (ignis runs qwen2, "]),
    "architecture not a string": (
        dict(set_keys={"general.architecture": 7}),
        ModelError, ["general.architecture is 7"]),
    "hyper-parameter of the wrong type": (
        dict(set_keys={"qwen2.embedding_length": "64"}),
        ModelError, ["qwen2.embedding_length = '64', expected a positive integer"]),
    "negative epsilon": (
        dict(set_keys={"qwen2.attention.layer_norm_rms_epsilon": -1.0}),
        ModelError, ["qwen2.attention.layer_norm_rms_epsilon = -1.0"]),
    "NaN rope base": (
        dict(set_keys={"qwen2.rope.freq_base": float("nan")}),
        ModelError, ["qwen2.rope.freq_base = nan"]),
    "key_length against the head size": (
        dict(set_keys={"qwen2.attention.key_length": 32}),
        ModelError, ["qwen2.attention.key_length = 32, expected 16"]),
    # the type checks below were added by issue 7: each loaded before and failed only later
    "quantized norm": (
        dict(tensors=lambda items: replace_tensor(
            "blk.0.attn_norm.weight", ttype=TensorType.Q8_0,
            data=quantize_q8_0(np.ones((1, 64), np.float32)).reshape(-1))(items)),
        ModelError, ["tensor blk.0.attn_norm.weight is Q8_0, expected a float type"]),
    "quantized bias": (
        dict(tensors=lambda items: replace_tensor(
            "blk.0.attn_q.bias", ttype=TensorType.Q8_0,
            data=quantize_q8_0(np.ones((1, 64), np.float32)).reshape(-1))(items)),
        ModelError, ["tensor blk.0.attn_q.bias is Q8_0"]),
    "tokens not an array": (
        dict(set_keys={"tokenizer.ggml.tokens": 300}),
        ModelError, ["tokenizer.ggml.tokens is a int, expected an array of strings"]),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_lying_model_is_rejected_at_load(tiny, tmp_path, lie):
    edits, error, needles = LIES[lie]
    path = rewrite(tiny, tmp_path / "lie.gguf", **edits)
    assert_rejected(path, error, *needles)


def test_unreadable_matrix_type_is_rejected_at_load(tmp_path):
    """A Q8_K matrix (no dequantizer) used to load and fail at the first generate."""
    src = make_tiny_qwen2(tmp_path / "wide.gguf", n_layers=1, width=256, n_heads=4, n_kv_heads=2, ffn=256,
                          vocab=260, seed=1)
    path = rewrite(src, tmp_path / "q8k.gguf", tensors=replace_tensor(
        "blk.0.ffn_up.weight", ttype=TensorType.Q8_K, data=np.zeros(256 * 292, np.uint8)))
    assert_rejected(path, ModelError, "tensor blk.0.ffn_up.weight is Q8_K (type 15), a type ignis cannot run")


def test_bf16_matrix_with_rows_not_a_multiple_of_32_runs_natively(tmp_path):
    """BF16 weights are read in place against the float activations (they used to be repacked to
    Q8_0, which needed rows of 32k): rows of 48 load and run."""
    src = make_tiny_qwen2(tmp_path / "f32.gguf", n_layers=1, width=48, n_heads=2, n_kv_heads=1, ffn=64,
                          vocab=260, seed=1, weight_type="f32")
    bf16 = (np.zeros((48, 48), np.float32).view(np.uint32) >> 16).astype(np.uint16)
    path = rewrite(src, tmp_path / "bf16.gguf", tensors=replace_tensor(
        "blk.0.attn_q.weight", ttype=TensorType.BF16, data=bf16.view(np.uint8).reshape(-1)))
    model = ignis.load(str(path), n_ctx=32)
    try:
        assert np.isfinite(model.logits([1, 2, 3])).all()
        assert weights_in_place(model)          # checked once the plans have taken their weights
    finally:
        model.close()


@pytest.mark.parametrize("key", ["tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.model",
                                 "tokenizer.ggml.pre"])
def test_missing_tokenizer_key_is_rejected_at_load(tiny, tmp_path, key):
    path = rewrite(tiny, tmp_path / "notok.gguf", drop_keys=[key])
    assert_rejected(path, TokenizerError, key, "missing")


@pytest.mark.parametrize("key, value, needle", [
    ("tokenizer.ggml.merges", ["a"], "tokenizer.ggml.merges[0]: expected two tokens"),
    ("tokenizer.ggml.merges", ["zz qq"], "needs token 'zz'"),
    ("tokenizer.ggml.merges", [1, 2], "tokenizer.ggml.merges[0]: expected a string"),
    ("tokenizer.ggml.token_type", ["x"] * 300, "tokenizer.ggml.token_type: expected an array of integers"),
    ("tokenizer.ggml.token_type", [1] * 7, "has 7 entries"),
    ("tokenizer.ggml.eos_token_id", 300, "token id 300 is outside the vocabulary"),
    ("tokenizer.ggml.model", "bert", "unsupported tokenizer model 'bert'"),
    ("tokenizer.ggml.add_bos_token", 3, "expected a bool"),
])
def test_malformed_tokenizer_metadata_is_rejected_at_load(tiny, tmp_path, key, value, needle):
    path = rewrite(tiny, tmp_path / "badtok.gguf", set_keys={key: value})
    assert_rejected(path, TokenizerError, needle)


def test_lies_are_caught_before_any_kernel_runs(tiny, tmp_path, monkeypatch):
    """Validation happens before the engine (KV cache, plans, kernels) is even built."""
    import ignis.runtime.model as model_module

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine was built for a lying file")

    monkeypatch.setattr(model_module, "Engine", no_engine)
    for lie in ("missing tensor", "quantized norm", "unknown architecture", "vocab != embedding rows"):
        edits, error, needles = LIES[lie]
        assert_rejected(rewrite(tiny, tmp_path / "x.gguf", **edits), error, *needles)
    poisoned = rewrite(tiny, tmp_path / "nan.gguf", tensors=_poison_f32("blk.0.ffn_norm.weight", 5, np.nan))
    assert_rejected(poisoned, ModelError, "blk.0.ffn_norm.weight")


def test_failed_load_releases_the_file(tiny, tmp_path, monkeypatch):
    path = rewrite(tiny, tmp_path / "arch.gguf", set_keys={"general.architecture": "llama"})
    closed = []
    original = GGUFFile.close
    monkeypatch.setattr(GGUFFile, "close", lambda self: (closed.append(self.path), original(self)))
    with pytest.raises(ModelError):
        ignis.load(path)
    assert closed == [path]


# -- NaN / Inf in weights -------------------------------------------------------------------

def _poison_f32(name, index, value):
    def edit(items):
        for item in items:
            if item[0] == name:
                data = np.array(item[3]).view(np.float32).copy()
                data[index] = value
                item[3] = data.view(np.uint8)
        return items
    return edit


def _poison_q8_0_scale(name, block, value):
    def edit(items):
        for item in items:
            if item[0] == name:
                data = np.array(item[3]).copy()
                data[block * 34:block * 34 + 2] = np.frombuffer(np.float16(value).tobytes(), np.uint8)
                item[3] = data
        return items
    return edit


@pytest.mark.parametrize("name, edit, needle", [
    ("blk.0.attn_norm.weight", _poison_f32("blk.0.attn_norm.weight", 7, np.nan), "element 7 is nan"),
    ("output_norm.weight", _poison_f32("output_norm.weight", 0, np.inf), "element 0 is inf"),
    ("blk.0.attn_v.bias", _poison_f32("blk.0.attn_v.bias", 3, -np.inf), "element 3 is -inf"),
    ("blk.0.ffn_gate.weight", _poison_q8_0_scale("blk.0.ffn_gate.weight", 9, np.inf), "block 9 (row 4)"),
    ("token_embd.weight", _poison_q8_0_scale("token_embd.weight", 100, np.nan), "block 100 (row 50)"),
])
def test_nonfinite_weights_are_rejected_at_load(tiny, tmp_path, name, edit, needle):
    path = rewrite(tiny, tmp_path / "nan.gguf", tensors=edit)
    assert_rejected(path, ModelError, f"tensor {name} holds NaN/Inf", needle)


@pytest.mark.parametrize("ttype", [TensorType.F16, TensorType.BF16, TensorType.Q4_0, TensorType.Q5_0,
                                   TensorType.Q4_1, TensorType.Q5_1, TensorType.Q2_K, TensorType.Q3_K,
                                   TensorType.Q4_K, TensorType.Q5_K, TensorType.Q6_K, TensorType.Q8_K])
def test_nonfinite_scales_are_found_in_every_type(ttype):
    """validate reads the right field of every block layout: a clean tensor passes, the same
    tensor with one scale (or element) set to Inf is caught at that block."""
    from fuzz.gguf_mutator import poison, random_tensor_bytes
    from ignis.runtime.validate import nonfinite_location
    shape = (4, 256)
    rng = np.random.default_rng(0)
    clean = random_tensor_bytes(ttype, shape, rng)
    bad = poison(clean, ttype, at=3, kind="inf")

    class Info:
        def __init__(self, raw):
            self.data, self.type, self.shape = np.frombuffer(raw, np.uint8), ttype, shape

    assert nonfinite_location(Info(clean)) is None
    where = nonfinite_location(Info(bad))
    assert where is not None and ("block 3" in where or "element 3" in where), where


def test_overflowing_finite_weights_are_flagged_not_sampled(tmp_path):
    """Finite weights so large that the logits overflow: generation raises ModelError
    instead of emitting tokens sampled from NaN."""
    src = make_tiny_qwen2(tmp_path / "f32.gguf", n_layers=1, width=64, n_heads=4, n_kv_heads=2, ffn=64,
                          vocab=260, weight_type="f32", seed=2)
    huge = np.full((260, 64), 3e38, np.float32)
    path = rewrite(src, tmp_path / "huge.gguf", tensors=replace_tensor("output.weight", data=huge))
    model = ignis.load(path, n_ctx=32, threads=1)
    with pytest.raises(ModelError, match="non-finite logits"):
        model.generate("ab", max_tokens=3, temperature=0.0)
    with pytest.raises(ModelError, match="non-finite logits"):
        model.logits([1, 2, 3])
    assert model.n_past == 0 and model.last_result.finish_reason == "error"


def test_clean_tiny_model_still_loads_and_generates(tiny):
    model = ignis.load(tiny, n_ctx=32, threads=1)
    assert isinstance(model.generate("ab", max_tokens=4, temperature=0.0), str)


@pytest.mark.real
def test_nan_check_is_cheap_on_the_real_model(real_model_path):
    """The NaN/Inf scan of the 0.5 GB model stays well under a second (mmap already warm)."""
    from ignis.runtime.validate import check_finite_weights
    with GGUFFile(real_model_path) as g:
        check_finite_weights(g)             # warms the page cache / mapping
        start = time.perf_counter()
        check_finite_weights(g)
        assert time.perf_counter() - start < 0.5
