"""Tensor formats: bit-exact against the `gguf` package's reference (test-only dependency)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ignis.errors import GGUFError, IgnisError, ModelError
from ignis.gguf.quant import (dequantize, dequantize_rows, f16_to_f32, quantize, quantize_q8_0,
                              row_nbytes)
from ignis.gguf.types import BLOCK_LAYOUTS, TensorType

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize as ref_dequantize  # noqa: E402
from gguf.quants import quantize as ref_quantize  # noqa: E402

# Byte offsets of the f16 scale fields inside one block: random bytes there could be
# NaN/Inf (NaN != NaN), so the tests overwrite them with finite f16 values.
F16_FIELD_OFFSETS = {
    TensorType.Q4_0: [0],
    TensorType.Q4_1: [0, 2],
    TensorType.Q5_0: [0],
    TensorType.Q5_1: [0, 2],
    TensorType.Q8_0: [0],
    TensorType.Q2_K: [80, 82],
    TensorType.Q3_K: [108],
    TensorType.Q4_K: [0, 2],
    TensorType.Q5_K: [0, 2],
    TensorType.Q6_K: [208],
    TensorType.IQ4_NL: [0],
    TensorType.IQ4_XS: [0],
}
BLOCK_TYPES = list(F16_FIELD_OFFSETS)
FLOAT_TYPES = [TensorType.F32, TensorType.F16, TensorType.BF16]
FEW = settings(max_examples=6, deadline=None)


def finite_f16_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random f16 bit patterns over the whole finite range (subnormals included)."""
    bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    inf_or_nan = (bits & 0x7C00) == 0x7C00
    bits[inf_or_nan] &= 0xBFFF  # drop one exponent bit: now finite
    return bits


def random_tensor_bytes(ttype: TensorType, n_rows: int, k: int, seed: int) -> np.ndarray:
    """Random raw bytes of an (n_rows, k) tensor whose float fields are all finite."""
    rng = np.random.default_rng(seed)
    n_elements = n_rows * k
    if ttype == TensorType.F32:
        return (rng.standard_normal(n_elements) * 10.0 ** rng.integers(-30, 30, n_elements)
                ).astype("<f4").view(np.uint8)
    if ttype == TensorType.F16:
        return finite_f16_bits(rng, n_elements).view(np.uint8)
    if ttype == TensorType.BF16:
        bits = rng.integers(0, 1 << 16, n_elements, dtype=np.uint16)
        bits[(bits & 0x7F80) == 0x7F80] &= 0xBFFF
        return bits.view(np.uint8)
    layout = BLOCK_LAYOUTS[ttype]
    n_blocks = n_elements // layout.elements
    blocks = rng.integers(0, 256, (n_blocks, layout.nbytes), dtype=np.uint8)
    for offset in F16_FIELD_OFFSETS[ttype]:
        blocks[:, offset:offset + 2] = finite_f16_bits(rng, n_blocks).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(-1)


def reference(raw: np.ndarray, ttype: TensorType, shape: tuple[int, ...]) -> np.ndarray:
    """gguf's dequantize of the same bytes, as float32 of `shape`."""
    qtype = gguf.GGMLQuantizationType(int(ttype))
    if ttype == TensorType.F32:  # gguf takes the float types as typed arrays, the rest as bytes
        data = raw.view(np.float32).reshape(shape)
    elif ttype == TensorType.F16:
        data = raw.view(np.float16).reshape(shape)
    else:
        data = raw.reshape(shape[:-1] + (row_nbytes(ttype, shape[-1]),))
    return np.asarray(ref_dequantize(data, qtype), dtype=np.float32).reshape(shape)


def assert_bit_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32))


# ---------------------------------------------------------------------------
# dequantization

@pytest.mark.parametrize("ttype", BLOCK_TYPES + FLOAT_TYPES, ids=lambda t: t.name)
@FEW
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(1, 3), blocks_per_row=st.integers(1, 3))
def test_dequantize_bit_exact(ttype, seed, n_rows, blocks_per_row):
    k = blocks_per_row * max(BLOCK_LAYOUTS[ttype].elements, 32)
    raw = random_tensor_bytes(ttype, n_rows, k, seed)
    raw.flags.writeable = False  # like a read-only memmap: must never be written
    shape = (n_rows, k)
    assert_bit_equal(dequantize(raw, ttype, shape), reference(raw, ttype, shape))


@pytest.mark.parametrize("ttype", [TensorType.Q5_0, TensorType.Q4_K, TensorType.Q6_K, TensorType.Q5_K,
                                   TensorType.Q3_K, TensorType.Q2_K, TensorType.IQ4_XS],
                         ids=lambda t: t.name)
def test_dequantize_spans_many_chunks(ttype):
    # more blocks than one internal chunk, with an odd row count
    shape = (1031, 512)
    raw = random_tensor_bytes(ttype, *shape, seed=7)
    assert_bit_equal(dequantize(raw, ttype, shape), reference(raw, ttype, shape))


def test_dequantize_accepts_any_dtype_and_int_type_id():
    raw = random_tensor_bytes(TensorType.Q8_0, 2, 64, seed=1)
    as_words = raw.view(np.uint16).reshape(4, -1)
    expected = dequantize(raw, TensorType.Q8_0, (2, 64))
    assert_bit_equal(dequantize(as_words, int(TensorType.Q8_0), (2, 64)), expected)


def test_dequantize_higher_rank_shapes():
    raw = random_tensor_bytes(TensorType.Q4_0, 6, 32, seed=2)
    flat = dequantize(raw, TensorType.Q4_0, (6, 32))
    assert_bit_equal(dequantize(raw, TensorType.Q4_0, (2, 3, 32)), flat.reshape(2, 3, 32))
    assert_bit_equal(dequantize(raw[:18], TensorType.Q4_0, (32,)), flat[0])


def test_float_types_return_copies():
    raw = random_tensor_bytes(TensorType.F32, 1, 8, seed=3)
    out = dequantize(raw, TensorType.F32, (8,))
    out[:] = 0
    assert raw.view(np.float32).any()


@pytest.mark.parametrize("ttype", BLOCK_TYPES + FLOAT_TYPES, ids=lambda t: t.name)
def test_dequantize_rows_matches_full(ttype):
    k = max(BLOCK_LAYOUTS[ttype].elements, 32)
    raw = random_tensor_bytes(ttype, 10, k, seed=4)
    full = dequantize(raw, ttype, (10, k))
    rows = np.array([9, 0, 3, 3])
    assert_bit_equal(dequantize_rows(raw, ttype, (10, k), rows), full[rows])
    assert dequantize_rows(raw, ttype, (10, k), np.array([], np.int64)).shape == (0, k)


@pytest.mark.parametrize("bad_id", [10, -1, 2**40])
def test_dequantize_rows_out_of_range(bad_id):
    raw = random_tensor_bytes(TensorType.Q8_0, 10, 32, seed=5)
    with pytest.raises(ModelError, match=rf"^token id {bad_id} out of range \[0, 10\)$"):
        dequantize_rows(raw, TensorType.Q8_0, (10, 32), np.array([1, bad_id]))


# ---------------------------------------------------------------------------
# validation

def test_wrong_byte_count():
    raw = random_tensor_bytes(TensorType.Q5_0, 2, 32, seed=6)
    with pytest.raises(GGUFError, match="needs 44 bytes, got 43"):
        dequantize(raw[:-1], TensorType.Q5_0, (2, 32))
    with pytest.raises(GGUFError, match="needs 66 bytes"):
        dequantize(raw, TensorType.Q5_0, (3, 32))


def test_row_not_whole_blocks():
    with pytest.raises(GGUFError, match="not a multiple of the Q4_K block size 256"):
        dequantize(np.zeros(144, np.uint8), TensorType.Q4_K, (1, 128))
    with pytest.raises(GGUFError, match="not a multiple"):
        row_nbytes(TensorType.Q8_0, 33)


@pytest.mark.parametrize("ttype, message", [(TensorType.Q8_K, "Q8_K"), (TensorType.Q8_1, "Q8_1"),
                                            (16, r"IQ2_XXS \(type 16\).*supported: F32, F16"),
                                            (99, "type 99 is not a GGML tensor type")])
def test_unsupported_types(ttype, message):
    with pytest.raises(GGUFError, match=message):
        dequantize(np.zeros(1024, np.uint8), ttype, (256,))


def test_bad_shapes():
    for shape in [(), (-1, 32)]:
        with pytest.raises(GGUFError, match="shape"):
            dequantize(np.zeros(34, np.uint8), TensorType.Q8_0, shape)


def test_errors_are_one_line():
    with pytest.raises(IgnisError) as info:
        dequantize(np.zeros(3, np.uint8), TensorType.Q6_K, (256,))
    assert "\n" not in str(info.value)


def test_row_nbytes():
    assert row_nbytes(TensorType.Q8_0, 896) == 28 * 34
    assert row_nbytes(TensorType.Q5_0, 896) == 28 * 22
    assert row_nbytes(TensorType.Q6_K, 4864) == 19 * 210
    assert row_nbytes(TensorType.F32, 7) == 28
    assert row_nbytes(int(TensorType.F16), 7) == 14


def test_f16_to_f32():
    values = np.array([0.5, -2.0, 65504.0, 6e-8], np.float16)
    expected = values.astype(np.float32)
    assert_bit_equal(f16_to_f32(values), expected)
    assert_bit_equal(f16_to_f32(values.view(np.uint16)), expected)
    assert_bit_equal(f16_to_f32(values.view(np.uint8)), expected)


# ---------------------------------------------------------------------------
# Q8_0 quantization

def assert_q8_0_matches_reference(x: np.ndarray) -> None:
    expected = ref_quantize(x, gguf.GGMLQuantizationType.Q8_0)
    actual = quantize_q8_0(x)
    assert actual.dtype == np.uint8
    assert actual.shape == x.shape[:-1] + (x.shape[-1] // 32 * 34,)
    np.testing.assert_array_equal(actual, expected)


@FEW
@given(seed=st.integers(0, 2**32 - 1), log_scale=st.integers(-10, 6), n_blocks=st.integers(1, 6))
def test_quantize_q8_0_random(seed, log_scale, n_blocks):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((3, n_blocks * 32)) * 10.0 ** log_scale).astype(np.float32)
    assert_q8_0_matches_reference(x)


@pytest.mark.parametrize("d", [1.0, 0.5, 2.0 ** -6, 4.0])
def test_quantize_q8_0_ties_round_away_from_zero(d):
    # amax = 127*d makes x/d exact, so k + 0.5 is an exact tie in both directions
    rng = np.random.default_rng(8)
    halves = rng.integers(-127, 127, (4, 32)) + 0.5
    halves[:, 0] = 127
    halves[1, 0] = -127
    x = (halves * d).astype(np.float32)
    assert_q8_0_matches_reference(x)
    q = quantize_q8_0(x).reshape(4, 34)[:, 2:].view(np.int8)
    away = np.sign(halves) * np.floor(np.abs(halves) + 0.5)
    np.testing.assert_array_equal(q, away)


def test_quantize_q8_0_zero_blocks_and_extremes():
    x = np.zeros((5, 64), np.float32)
    x[1, 32:] = np.linspace(-1, 1, 32)  # zero block next to a non-zero one
    x[2] = 1e4                          # large but d still fits f16
    x[3, :32] = 65504 * 127             # the largest amax whose d fits f16
    x[4] = np.float32(1e-6) * np.arange(64)  # d underflows to an f16 subnormal / zero
    x[0, 5] = -0.0
    assert_q8_0_matches_reference(x)
    assert not quantize_q8_0(np.zeros((1, 32), np.float32)).any()


def test_quantize_q8_0_rejects_non_finite_and_bad_shapes():
    x = np.zeros((1, 32), np.float32)
    x[0, 3] = np.nan
    with pytest.raises(GGUFError, match="non-finite"):
        quantize_q8_0(x)
    with pytest.raises(GGUFError, match="not a multiple"):
        quantize_q8_0(np.zeros((2, 48), np.float32))
    # d = amax/127 would overflow f16 (the reference silently stores inf)
    with pytest.raises(GGUFError, match="exceeds float16"):
        quantize_q8_0(np.full((1, 32), 3e7, np.float32))


@FEW
@given(seed=st.integers(0, 2**32 - 1), log_scale=st.integers(-4, 4))
def test_q8_0_round_trip_error_bound(seed, log_scale):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((4, 128)) * 10.0 ** log_scale).astype(np.float32)
    y = dequantize(quantize_q8_0(x), TensorType.Q8_0, x.shape)
    blocks = x.reshape(-1, 32).astype(np.float64)
    d_exact = np.abs(blocks).max(axis=1, keepdims=True) / 127
    d_stored = d_exact.astype(np.float16).astype(np.float64)
    # rounding to the nearest quant costs d/2; storing d as f16 costs up to 127*|d16 - d|
    bound = d_exact / 2 + 127 * np.abs(d_stored - d_exact) + 1e-6 * d_exact
    assert (np.abs(y.reshape(-1, 32) - blocks) <= bound).all()


def test_quantize_dispatch():
    x = np.random.default_rng(9).standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_array_equal(quantize(x, TensorType.Q8_0), quantize_q8_0(x))
    f16 = quantize(x, TensorType.F16)
    assert f16.dtype == np.uint8 and f16.shape == (2, 128)
    np.testing.assert_array_equal(f16.view(np.float16), ref_quantize(x, gguf.GGMLQuantizationType.F16))
    f32 = quantize(x, int(TensorType.F32))
    assert f32.shape == (2, 256)
    assert_bit_equal(dequantize(f32, TensorType.F32, x.shape), x)
    assert_bit_equal(dequantize(f16, TensorType.F16, x.shape), x.astype(np.float16).astype(np.float32))
    for ttype in (TensorType.Q4_K, TensorType.Q5_0):
        with pytest.raises(GGUFError, match=f"quantizing to {ttype.name} is not supported"):
            quantize(x, ttype)


@pytest.mark.parametrize("ttype", [TensorType.Q4_0, TensorType.Q5_1, TensorType.BF16], ids=lambda t: t.name)
@FEW
@given(seed=st.integers(0, 2**32 - 1), log_scale=st.integers(-6, 6), n_blocks=st.integers(1, 8))
def test_quantize_matches_gguf(ttype, seed, log_scale, n_blocks):
    """ignis' Q4_0 / Q5_1 / BF16 writers give the gguf package's bytes (llama.cpp's reference
    rounding), zero blocks included."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((3, 32 * n_blocks)) * 2.0 ** log_scale).astype(np.float32)
    x[0, :32] = 0.0
    expected = np.asarray(ref_quantize(x, gguf.GGMLQuantizationType(int(ttype)))).view(np.uint8).reshape(3, -1)
    np.testing.assert_array_equal(quantize(x, ttype), expected)


@FEW
@given(seed=st.integers(0, 2**32 - 1), log_scale=st.integers(-6, 6))
def test_quantize_iq4_nl_nearest_level(seed, log_scale):
    """IQ4_NL (gguf has no writer for it): the value of largest magnitude lands on the level
    -127 and every value on its nearest level, so the error is at most d times the larger of
    half the widest gap between levels (12) and the distance from 127 to the top level (14)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((4, 64)) * 2.0 ** log_scale).astype(np.float32)
    raw = quantize(x, TensorType.IQ4_NL)
    y = dequantize(raw, TensorType.IQ4_NL, x.shape)
    assert_bit_equal(y, reference(raw, TensorType.IQ4_NL, x.shape))
    d = np.abs(raw.reshape(-1, 18)[:, :2].copy().view(np.float16).astype(np.float32)).reshape(-1, 1)
    assert (np.abs(y.reshape(-1, 32) - x.reshape(-1, 32)) <= d * 14.5 + 1e-3 * np.abs(x).max()).all()


# ---------------------------------------------------------------------------
# the real model

@pytest.mark.real
@pytest.mark.slow  # GGUFReader parses the whole 151k-token vocab: ~10 s
def test_real_model_tensors_bit_exact(real_model_path):
    reader = gguf.GGUFReader(real_model_path)
    by_type: dict[str, list] = {}
    for tensor in reader.tensors:
        by_type.setdefault(tensor.tensor_type.name, []).append(tensor)
    assert {"Q5_0", "Q8_0", "Q4_K", "Q6_K", "F32"} <= set(by_type)
    for type_name, tensors in by_type.items():
        smallest = min(tensors, key=lambda t: int(t.n_elements))
        ttype = TensorType(int(smallest.tensor_type))
        shape = tuple(int(n) for n in reversed(smallest.shape))
        expected = np.asarray(ref_dequantize(smallest.data, smallest.tensor_type),
                              dtype=np.float32).reshape(shape)
        assert_bit_equal(dequantize(smallest.data, ttype, shape), expected)

    # the embedding (Q5_0) and output (Q8_0) tables: a few rows, including the last
    for name in ("token_embd.weight", "output.weight"):
        tensor = next((t for t in reader.tensors if t.name == name), None)
        if tensor is None:
            continue
        ttype = TensorType(int(tensor.tensor_type))
        shape = tuple(int(n) for n in reversed(tensor.shape))
        rows = np.array([0, 1, 151643, shape[0] - 1, 42])
        expected = np.asarray(ref_dequantize(tensor.data[rows], tensor.tensor_type), dtype=np.float32)
        assert_bit_equal(dequantize_rows(tensor.data, ttype, shape, rows), expected)


# ---------------------------------------------------------------------------
# the super-block quantizers (Q5_K, Q3_K, Q2_K, IQ4_XS): valid blocks that the reference
# decodes to what ignis decodes, close to the input

# mean |error| / mean |x| of N(0, 1) data that a sane quantizer of each type stays under
K_QUANT_ERROR = {TensorType.Q5_K: 0.06, TensorType.Q3_K: 0.22, TensorType.Q2_K: 0.45, TensorType.IQ4_XS: 0.12}


@pytest.mark.parametrize("ttype", list(K_QUANT_ERROR), ids=lambda t: t.name)
@FEW
@given(seed=st.integers(0, 2**32 - 1), log_scale=st.integers(-4, 3))   # below, the f16 scales go subnormal
def test_quantize_super_block_types(ttype, seed, log_scale):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((3, 512)) * 10.0 ** log_scale).astype(np.float32)
    x[0, :256] = 0.0                                               # an all-zero super-block
    x[1, 256:272] = np.abs(x[1, 256:272])                           # a one-signed sub-block
    raw = quantize(x, ttype)
    assert raw.shape == (3, row_nbytes(ttype, 512)) and raw.dtype == np.uint8
    y = dequantize(raw, ttype, x.shape)
    assert_bit_equal(y, reference(raw.reshape(-1), ttype, x.shape))
    assert (y[0, :256] == 0).all()
    err = np.abs(y[1:] - x[1:]).mean() / np.abs(x[1:]).mean()
    assert err < K_QUANT_ERROR[ttype], err


@pytest.mark.parametrize("ttype", list(K_QUANT_ERROR), ids=lambda t: t.name)
def test_quantize_super_block_types_reject_bad_input(ttype):
    with pytest.raises(GGUFError, match="non-finite"):
        quantize(np.full((1, 256), np.nan, np.float32), ttype)
    with pytest.raises(GGUFError, match="multiple"):
        quantize(np.zeros((1, 128), np.float32), ttype)
    with pytest.raises(GGUFError, match="float16"):
        quantize(np.full((1, 256), 3e38, np.float32), ttype)
