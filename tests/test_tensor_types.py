"""Tensor types end to end: a type ignis cannot run is refused at load in one line that names
it (and lists the ones it runs); `ignis inspect` names every type, unknown ids too; and the
weight types Q4_0, Q5_1, IQ4_NL, BF16 (plus F32/F16) run natively through the compiled
kernels: the embedding is the gguf package's dequantization bit for bit, a matmul agrees with
numpy on the dequantized weights, and a model of each type loads without a repack."""
import json
import subprocess
import sys

import numpy as np
import pytest

import ignis
from ignis import _kernels as K
from ignis.errors import GGUFError, IgnisError, ModelError
from ignis.gguf import GGUFFile, TensorType, write_gguf
from ignis.gguf.quant import dequantize, quantize_q8_0
from ignis.gguf.types import BLOCK_LAYOUTS
from ignis.testing import qwen2_metadata, random_weight_bytes, tiny_qwen2_config, write_model

from helpers import weights_in_place

gguf = pytest.importorskip("gguf")

NEW_TYPES = ["Q4_0", "Q5_1", "IQ4_NL", "BF16"]


def _config():
    return tiny_qwen2_config(n_layers=1, width=256, n_heads=4, n_kv_heads=2, ffn=256, vocab=300)


def _write_with_type(path, name, ttype):
    """A tiny qwen2 file whose tensor `name` has type ttype (random bytes of its layout)."""
    config = _config()
    rng = np.random.default_rng(0)
    metadata, types = qwen2_metadata(config, "types", 1)
    tensors = []
    for tname, shape in config.tensor_shapes().items():
        if tname == name:
            layout = BLOCK_LAYOUTS[ttype]
            n = int(np.prod(shape)) // layout.elements * layout.nbytes
            tensors.append((tname, ttype, shape, rng.integers(0, 256, n, dtype=np.uint8)))
        elif len(shape) == 2:
            tensors.append((tname, TensorType.Q8_0, shape, random_weight_bytes("Q8_0", shape, rng)))
        else:
            tensors.append((tname, TensorType.F32, shape, np.ones(shape, np.float32)))
    write_gguf(path, metadata, tensors, types=types)
    return path


def _retype(path, name, new_id):
    """Patch the type id of tensor `name` in the file's tensor info (a type write_gguf refuses)."""
    data = bytearray(path.read_bytes())
    key = len(name).to_bytes(8, "little") + name.encode()
    at = data.index(key) + len(key)
    n_dims = int.from_bytes(data[at:at + 4], "little")
    at += 4 + 8 * n_dims
    data[at:at + 4] = int(new_id).to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("ttype", [TensorType.IQ2_XXS, TensorType.IQ3_S, TensorType.IQ1_M, TensorType.TQ2_0],
                         ids=lambda t: t.name)
def test_a_type_ignis_cannot_run_is_named_at_load(tmp_path, ttype):
    path = _write_with_type(tmp_path / "m.gguf", "blk.0.ffn_down.weight", ttype)
    with pytest.raises(ModelError) as info:
        ignis.load(str(path), n_ctx=32)
    msg = str(info.value)
    assert "\n" not in msg and "blk.0.ffn_down.weight" in msg
    assert f"{ttype.name} (type {int(ttype)})" in msg
    assert "supported: " in msg and "Q4_0" in msg and "IQ4_NL" in msg and "BF16" in msg


def test_an_unknown_type_id_is_named_and_inspect_lists_every_type(tmp_path):
    path = _write_with_type(tmp_path / "m.gguf", "blk.0.ffn_down.weight", TensorType.IQ2_XXS)
    _retype(path, "blk.0.attn_q.weight", 99)
    with pytest.raises(GGUFError) as info:
        GGUFFile(path)
    msg = str(info.value)
    assert "\n" not in msg and "type 99 is not a GGML tensor type" in msg and "IQ4_NL" in msg
    with pytest.raises(IgnisError):
        ignis.load(str(path), n_ctx=32)
    out = subprocess.run([sys.executable, "-m", "ignis", "inspect", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line.startswith("  blk.0.")}
    assert rows["blk.0.ffn_down.weight"][0] == "IQ2_XXS"
    assert rows["blk.0.attn_q.weight"][:2] == ["type", "99"]
    js = subprocess.run([sys.executable, "-m", "ignis", "inspect", "--json", str(path)], capture_output=True, text=True)
    types = {t["name"]: t["type"] for t in json.loads(js.stdout)["tensors"]}
    assert types["blk.0.attn_q.weight"] == "type 99" and types["blk.0.ffn_down.weight"] == "IQ2_XXS"


def _kernel_weight(type_name, raw, rows):
    """Raw bytes as the array the kernels take for that type."""
    if type_name == "F32":
        return raw.view(np.float32).reshape(rows, -1)
    if type_name in ("F16", "BF16"):
        return raw.view(np.float16 if type_name == "F16" else np.uint16).reshape(rows, -1)
    return raw.reshape(rows, -1)


def _gguf_dequantize(raw, type_name, shape):
    qtype = gguf.GGMLQuantizationType[type_name]
    if type_name == "F32":
        return raw.view(np.float32).reshape(shape)
    if type_name == "F16":
        return raw.view(np.float16).astype(np.float32).reshape(shape)
    return np.asarray(gguf.quants.dequantize(raw.reshape(shape[0], -1), qtype), np.float32).reshape(shape)


@pytest.mark.parametrize("type_name", NEW_TYPES + ["F32", "F16"])
def test_embedding_is_the_gguf_dequantization(type_name):
    rng = np.random.default_rng(1)
    raw = random_weight_bytes(type_name, (50, 96), rng)
    w = _kernel_weight(type_name, raw, 50)
    ids = np.array([0, 7, 49, 7, 13])
    got = K.embed(ids, w, 96, int(TensorType[type_name]))
    ref = _gguf_dequantize(raw, type_name, (50, 96))[ids]
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("type_name", NEW_TYPES + ["F32", "F16"])
@pytest.mark.parametrize("tokens", [1, 3, 8, 13])
def test_matmul_agrees_with_numpy(type_name, tokens):
    """Quantized types: exact up to float rounding against the dequantized weights times the
    Q8_0-rounded activations; float types against the float activations."""
    rng = np.random.default_rng(2)
    n, k = 37, 160
    raw = random_weight_bytes(type_name, (n, k), rng)
    w = _kernel_weight(type_name, raw, n)
    x = rng.standard_normal((tokens, k)).astype(np.float32)
    wf = _gguf_dequantize(raw, type_name, (n, k)).astype(np.float64)
    xf = x if type_name in ("F32", "F16", "BF16") else dequantize(quantize_q8_0(x), TensorType.Q8_0, x.shape)
    ref = xf.astype(np.float64) @ wf.T
    got = K.matmul(x, w, int(TensorType[type_name]), threads=2)
    mag = np.abs(xf.astype(np.float64)) @ np.abs(wf).T
    assert (np.abs(got - ref) <= 1e-5 * mag + 1e-30).all()


@pytest.mark.parametrize("type_name", NEW_TYPES)
def test_model_of_the_type_runs_without_a_repack(tmp_path, type_name):
    config = _config()
    weight_types = {name: type_name for name, shape in config.tensor_shapes().items() if len(shape) == 2}
    path = write_model(tmp_path / f"{type_name}.gguf", config, weight_types)
    model = ignis.load(str(path), n_ctx=64)
    try:
        logits = model.logits([1, 2, 3, 4, 5])
        assert logits.shape == (5, config.vocab) and np.isfinite(logits).all()
        assert weights_in_place(model)          # checked once the plans have taken their weights
    finally:
        model.close()


def _float_types_oracle_rows(type_name, raw, x):
    """Each output as the definition of the float weight types computes it, in numpy and not
    through the kernels: element i into chain i mod 16 (fmas in element order, emulated in float64
    then rounded: exact here, as the tests' products and sums need far fewer bits), then the
    fixed tree c8 = c[l] + c[l+8], c4 = c8[l] + c8[l+4], (c4[0] + c4[2]) + (c4[1] + c4[3])."""
    w = _gguf_dequantize(raw, type_name, (raw.shape[0], x.shape[1]))
    out = np.empty((x.shape[0], w.shape[0]), np.float32)
    for t in range(x.shape[0]):
        for n in range(w.shape[0]):
            c = np.zeros(16, np.float32)
            for i in range(x.shape[1]):
                c[i % 16] = np.float32(np.float64(c[i % 16]) + np.float64(x[t, i]) * np.float64(w[n, i]))
            c8 = c[:8] + c[8:]
            c4 = c8[:4] + c8[4:]
            out[t, n] = (c4[0] + c4[2]) + (c4[1] + c4[3])
    return out


@pytest.mark.parametrize("type_name", ["F16", "BF16", "F32"])
@pytest.mark.parametrize("k", [160, 150])
def test_float_weight_matmul_bits_independent_of_tokens_and_threads(type_name, k):
    """F16 / BF16 rows against more than 8 tokens are widened once per 8 rows and run through the
    F32 tile (matmul.pxi wf_prepared_rows): every output keeps the bits of the one-token path,
    of 1 and 2 threads, and of the definition's value (a numpy oracle on small integers, where
    every step is exact: a wrong or missing element shows; the order is the bit comparisons'
    part, against the one-token path here and against the scalar definition in the harness)."""
    rng = np.random.default_rng(5)
    n, T = 21, 19
    raw = random_weight_bytes(type_name, (n, k), rng)
    w = _kernel_weight(type_name, raw, n)
    x = rng.standard_normal((T, k)).astype(np.float32)
    y = K.matmul(x, w, int(TensorType[type_name]), threads=1)
    assert np.array_equal(y, K.matmul(x, w, int(TensorType[type_name]), threads=2))
    rows = np.concatenate([K.matmul(x[t:t + 1], w, int(TensorType[type_name])) for t in range(T)])
    assert np.array_equal(y, rows)
    xi = rng.integers(-8, 9, size=(T, k)).astype(np.float32)
    wi = rng.integers(-8, 9, size=(n, k)).astype(np.float32)
    if type_name == "F32":
        enc = wi
    elif type_name == "F16":
        enc = wi.astype(np.float16)
    else:               # BF16: the high half of the f32 bits, exact for small integers
        enc = (wi.view(np.uint32) >> 16).astype(np.uint16)
    raw_i = np.ascontiguousarray(enc).view(np.uint8).reshape(n, -1)
    got = K.matmul(xi, _kernel_weight(type_name, raw_i, n), int(TensorType[type_name]), threads=2)
    assert np.array_equal(got, _float_types_oracle_rows(type_name, raw_i, xi))


@pytest.mark.parametrize("type_name", ["F16", "BF16"])
def test_float_weight_model_prefill_equals_one_token_at_a_time(tmp_path, type_name):
    """A tiny model of F16 / BF16 weights: a prompt of 13 tokens (its gate/up, qkv and output
    matmuls on the widened rows) gives the logits of 13 single-token steps, bit for bit."""
    config = _config()
    weight_types = {name: type_name for name, shape in config.tensor_shapes().items() if len(shape) == 2}
    model = ignis.load(str(write_model(tmp_path / "m.gguf", config, weight_types)), n_ctx=64, threads=2)
    try:
        ids = [3, 9, 27, 81, 243, 11, 33, 99, 297, 7, 1, 2, 5]
        teacher = model.logits(ids)
        model.reset()
        stepwise = np.stack([model.eval([t]) for t in ids])
        assert np.array_equal(teacher, stepwise)
    finally:
        model.close()
