"""Tensor formats: dequantize every common GGML type to float32, quantize to Q8_0.

Pure numpy, vectorised over blocks. Each block format is described once as a
numpy structured dtype (the byte layout) plus a decoder that turns a chunk of
blocks into float32 values.

Bit-exactness with the reference dequantizers does not depend on operation
order here: in every format the scale-times-quant products are exact in
float32 (f16 scale: 11 significant bits, scales/quants: at most 8 + 6 bits),
so the only rounding is the last multiply or the final `- min` / `+ min`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ignis.errors import GGUFError, ModelError
from ignis.gguf import quant_k
from ignis.gguf.types import BLOCK_LAYOUTS, QK_K, TensorType, type_label

__all__ = ["dequantize", "dequantize_rows", "quantize", "quantize_q8_0", "row_nbytes",
           "f16_to_f32", "SUPPORTED_DEQUANT_TYPES", "SUPPORTED_QUANT_TYPES"]

# Blocks decoded per step: bounds the temporaries to a few MB whatever the tensor size.
_CHUNK_ELEMENTS = 1 << 18

# ---------------------------------------------------------------------------
# block layouts (little-endian, fields in storage order)

_F16 = "<f2"
_BLOCK_DTYPES = {
    TensorType.Q4_0: np.dtype([("d", _F16), ("qs", "u1", 16)]),
    TensorType.Q4_1: np.dtype([("d", _F16), ("m", _F16), ("qs", "u1", 16)]),
    TensorType.Q5_0: np.dtype([("d", _F16), ("qh", "u1", 4), ("qs", "u1", 16)]),
    TensorType.Q5_1: np.dtype([("d", _F16), ("m", _F16), ("qh", "u1", 4), ("qs", "u1", 16)]),
    TensorType.Q8_0: np.dtype([("d", _F16), ("qs", "i1", 32)]),
    TensorType.Q2_K: np.dtype([("scales", "u1", QK_K // 16), ("qs", "u1", QK_K // 4),
                               ("d", _F16), ("dmin", _F16)]),
    TensorType.Q3_K: np.dtype([("hmask", "u1", QK_K // 8), ("qs", "u1", QK_K // 4),
                               ("scales", "u1", 12), ("d", _F16)]),
    TensorType.Q4_K: np.dtype([("d", _F16), ("dmin", _F16), ("scales", "u1", 12),
                               ("qs", "u1", QK_K // 2)]),
    TensorType.Q5_K: np.dtype([("d", _F16), ("dmin", _F16), ("scales", "u1", 12),
                               ("qh", "u1", QK_K // 8), ("qs", "u1", QK_K // 2)]),
    TensorType.Q6_K: np.dtype([("ql", "u1", QK_K // 2), ("qh", "u1", QK_K // 4),
                               ("scales", "i1", QK_K // 16), ("d", _F16)]),
    TensorType.IQ4_NL: np.dtype([("d", _F16), ("qs", "u1", 16)]),
}
_BLOCK_DTYPES[TensorType.IQ4_XS] = quant_k.IQ4_XS_DTYPE
for _t, _dt in _BLOCK_DTYPES.items():  # the dtypes must agree with the shared layout table
    assert _dt.itemsize == BLOCK_LAYOUTS[_t].nbytes, _t


# ---------------------------------------------------------------------------
# small bit-unpacking helpers

def f16_to_f32(values: np.ndarray) -> np.ndarray:
    """float16 values, or their bit patterns (uint16, or little-endian uint8 pairs), as float32."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        values = np.ascontiguousarray(values).view("<u2")
    if values.dtype.kind in "ui":
        values = values.astype("<u2", copy=False).view(_F16)
    return values.astype(np.float32)


def _scale(field: np.ndarray) -> np.ndarray:
    """An f16 block field as float32 with a trailing axis for broadcasting."""
    return field.astype(np.float32)[:, None]


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, m) bytes -> (n, 2, m): low nibbles first, then high nibbles."""
    return np.stack((qs & 0x0F, qs >> 4), axis=1)


def _bits(mask: np.ndarray) -> np.ndarray:
    """(n, m) bytes -> (n, m*8) 0/1 values, bit i of byte b at index b*8 + i."""
    return np.unpackbits(mask, axis=1, bitorder="little")


def _bit_planes(mask: np.ndarray) -> np.ndarray:
    """(n, m) bytes -> (n, 8, m): plane p holds bit p of every byte."""
    return _bits(mask).reshape(mask.shape[0], mask.shape[1], 8).transpose(0, 2, 1)


# ---------------------------------------------------------------------------
# 32-element block decoders: each writes float32 values into out (n_blocks, 32)

def _decode_q4_0(b: np.ndarray, out: np.ndarray) -> None:
    q = _nibbles(b["qs"]).reshape(len(b), 32).view(np.int8) - np.int8(8)
    np.multiply(q, _scale(b["d"]), out=out)


def _decode_q4_1(b: np.ndarray, out: np.ndarray) -> None:
    q = _nibbles(b["qs"]).reshape(len(b), 32)
    np.multiply(q, _scale(b["d"]), out=out)
    out += _scale(b["m"])


def _five_bit_quants(b: np.ndarray) -> np.ndarray:
    """Q5_0/Q5_1 quants 0..31: nibble (low nibbles = elements 0..15) plus bit j of qh."""
    q = _nibbles(b["qs"]).reshape(len(b), 32)
    q |= _bits(b["qh"]) << 4
    return q


def _decode_q5_0(b: np.ndarray, out: np.ndarray) -> None:
    q = _five_bit_quants(b).view(np.int8) - np.int8(16)
    np.multiply(q, _scale(b["d"]), out=out)


def _decode_q5_1(b: np.ndarray, out: np.ndarray) -> None:
    np.multiply(_five_bit_quants(b), _scale(b["d"]), out=out)
    out += _scale(b["m"])


def _decode_q8_0(b: np.ndarray, out: np.ndarray) -> None:
    np.multiply(b["qs"], _scale(b["d"]), out=out)


# IQ4_NL: a nibble indexes the format's fixed non-linear levels
IQ4_NL_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)


def _decode_iq4_nl(b: np.ndarray, out: np.ndarray) -> None:
    q = IQ4_NL_LEVELS[_nibbles(b["qs"]).reshape(len(b), 32)]
    np.multiply(q, _scale(b["d"]), out=out)


# ---------------------------------------------------------------------------
# 256-element super-block decoders. Element index is spelled as nested axes so
# that each quant lines up with its sub-block scale by broadcasting.

def _decode_q2_k(b: np.ndarray, out: np.ndarray) -> None:
    # element = half*128 + shift*32 + l; quant = qs[half*32 + l] >> 2*shift; scale = [half, shift, l//16]
    n = len(b)
    qs = b["qs"].reshape(n, 2, 1, 32)
    q = (qs >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)) & 3
    scales = b["scales"].reshape(n, 2, 4, 2, 1)
    d = b["d"].astype(np.float32).reshape(n, 1, 1, 1, 1)
    dmin = b["dmin"].astype(np.float32).reshape(n, 1, 1, 1, 1)
    o = out.reshape(n, 2, 4, 2, 16)
    np.multiply(q.reshape(n, 2, 4, 2, 16), d * (scales & 0x0F), out=o)
    o -= dmin * (scales >> 4)


def _q3_k_scales(packed: np.ndarray) -> np.ndarray:
    """12 bytes -> 16 signed 6-bit scales: low nibbles from bytes 0..7, 2 high bits from bytes 8..11."""
    n = len(packed)
    low4 = np.concatenate((packed[:, :8] & 0x0F, packed[:, :8] >> 4), axis=1)
    shifts = np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    high2 = ((packed[:, None, 8:12] >> shifts) & 3).reshape(n, 16)  # scale i uses byte 8+i%4, bits 2*(i//4)
    return (low4 | (high2 << 4)).view(np.int8) - np.int8(32)


def _decode_q3_k(b: np.ndarray, out: np.ndarray) -> None:
    # element = half*128 + shift*32 + l; low 2 bits as Q2_K; hmask bit (half*4 + shift) of byte l
    # set means +0, clear means -4.
    n = len(b)
    qs = b["qs"].reshape(n, 2, 1, 32)
    low2 = (qs >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)) & 3
    high = _bit_planes(b["hmask"]).reshape(n, 2, 4, 32)
    q = (low2 | (high << 2)).view(np.int8) - np.int8(4)
    d = b["d"].astype(np.float32).reshape(n, 1)
    scale = (d * _q3_k_scales(b["scales"])).reshape(n, 2, 4, 2, 1)
    np.multiply(q.reshape(n, 2, 4, 2, 16), scale, out=out.reshape(n, 2, 4, 2, 16))


def _k4_scales_mins(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: 12 bytes -> 8 six-bit scales and 8 six-bit mins.

    Sub-blocks 0..3 take the low 6 bits of bytes 0..3 (scales) and 4..7 (mins);
    sub-blocks 4..7 take a nibble of bytes 8..11 plus the top 2 bits of bytes 0..7."""
    lo, mid, hi = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scales = np.concatenate((lo & 63, (hi & 0x0F) | ((lo >> 6) << 4)), axis=1)
    mins = np.concatenate((mid & 63, (hi >> 4) | ((mid >> 6) << 4)), axis=1)
    return scales, mins


def _k4_dequant(b: np.ndarray, q: np.ndarray, out: np.ndarray) -> None:
    """out = (d*scale) * q - (dmin*min) with q shaped (n, 4, 2, 32): [pair, sub-block, l]."""
    n = len(b)
    scales, mins = _k4_scales_mins(b["scales"])
    d = _scale(b["d"])
    dmin = _scale(b["dmin"])
    o = out.reshape(n, 4, 2, 32)
    np.multiply(q, (d * scales).reshape(n, 4, 2, 1), out=o)
    o -= (dmin * mins).reshape(n, 4, 2, 1)


def _k4_nibbles(b: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K low 4 bits: element pair*64 + s*32 + l is nibble s of qs[pair*32 + l]."""
    n = len(b)
    qs = b["qs"].reshape(n * 4, 32)
    return _nibbles(qs).reshape(n, 4, 2, 32)


def _decode_q4_k(b: np.ndarray, out: np.ndarray) -> None:
    _k4_dequant(b, _k4_nibbles(b), out)


def _decode_q5_k(b: np.ndarray, out: np.ndarray) -> None:
    # fifth bit of element k*32 + l (sub-block k) is bit k of qh[l]
    q = _k4_nibbles(b)
    q |= _bit_planes(b["qh"]).reshape(len(b), 4, 2, 32) << 4
    _k4_dequant(b, q, out)


def _decode_q6_k(b: np.ndarray, out: np.ndarray) -> None:
    # element = half*128 + k*32 + l: low 4 bits are nibble k//2 of ql[half*64 + (k%2)*32 + l],
    # high 2 bits are bits 2k..2k+1 of qh[half*32 + l]; scale index half*8 + k*2 + l//16
    n = len(b)
    low4 = _nibbles(b["ql"].reshape(n * 2, 64)).reshape(n, 2, 4, 32)
    qh = b["qh"].reshape(n, 2, 1, 32)
    high2 = (qh >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)) & 3
    q = (low4 | (high2 << 4)).view(np.int8) - np.int8(32)
    d = b["d"].astype(np.float32).reshape(n, 1)
    scale = (d * b["scales"]).reshape(n, 2, 4, 2, 1)
    np.multiply(q.reshape(n, 2, 4, 2, 16), scale, out=out.reshape(n, 2, 4, 2, 16))


_BLOCK_DECODERS: dict[TensorType, Callable[[np.ndarray, np.ndarray], None]] = {
    TensorType.Q4_0: _decode_q4_0,
    TensorType.Q4_1: _decode_q4_1,
    TensorType.Q5_0: _decode_q5_0,
    TensorType.Q5_1: _decode_q5_1,
    TensorType.Q8_0: _decode_q8_0,
    TensorType.Q2_K: _decode_q2_k,
    TensorType.Q3_K: _decode_q3_k,
    TensorType.Q4_K: _decode_q4_k,
    TensorType.Q5_K: _decode_q5_k,
    TensorType.Q6_K: _decode_q6_k,
    TensorType.IQ4_NL: _decode_iq4_nl,
}
_BLOCK_DECODERS[TensorType.IQ4_XS] = quant_k.decode_iq4_xs

SUPPORTED_DEQUANT_TYPES = frozenset(
    [TensorType.F32, TensorType.F16, TensorType.BF16, *_BLOCK_DECODERS])
SUPPORTED_QUANT_TYPES = frozenset([TensorType.F32, TensorType.F16, TensorType.BF16, TensorType.Q8_0,
                                   TensorType.Q4_1, TensorType.Q4_0, TensorType.Q5_1, TensorType.IQ4_NL,
                                   *(TensorType[name] for name in quant_k.QUANTIZERS)])


# ---------------------------------------------------------------------------
# validation

def _tensor_type(ttype: TensorType | int) -> TensorType:
    try:
        return TensorType(int(ttype))
    except ValueError:
        raise GGUFError(f"{type_label(ttype)} is not a GGML tensor type") from None


def row_nbytes(ttype: TensorType | int, k: int) -> int:
    """Bytes of one row of k elements of ttype (k must be a whole number of blocks)."""
    ttype = _tensor_type(ttype)
    layout = BLOCK_LAYOUTS[ttype]
    if k < 0 or k % layout.elements:
        raise GGUFError(f"row length {k} is not a multiple of the {ttype.name} block size "
                        f"{layout.elements}")
    return k // layout.elements * layout.nbytes


def _check_shape(ttype: TensorType, shape: tuple[int, ...]) -> tuple[int, int]:
    """Validate a numpy-order tensor shape; return (rows, row length)."""
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 0 for s in shape):
        raise GGUFError(f"invalid {ttype.name} tensor shape {shape}")
    k = shape[-1]
    row_nbytes(ttype, k)
    return int(np.prod(shape[:-1], dtype=np.int64)), k


def _as_bytes(raw: np.ndarray) -> np.ndarray:
    """The bytes of raw as a flat uint8 array (a view when raw is contiguous, never written)."""
    raw = np.asarray(raw)
    if raw.dtype == np.uint8 and raw.ndim == 1:
        return raw
    return np.ascontiguousarray(raw).reshape(-1).view(np.uint8)


def _supported(ttype: TensorType | int) -> TensorType:
    ttype = _tensor_type(ttype)
    if ttype not in SUPPORTED_DEQUANT_TYPES:
        raise GGUFError(f"dequantizing {type_label(ttype)} tensors is not supported (supported: "
                        f"{', '.join(t.name for t in sorted(SUPPORTED_DEQUANT_TYPES))})")
    return ttype


# ---------------------------------------------------------------------------
# public dequantization

def dequantize(raw: np.ndarray, ttype: TensorType | int, shape: tuple[int, ...]) -> np.ndarray:
    """Decode a tensor's raw bytes to float32 of the given numpy shape (last axis = GGUF ne[0])."""
    ttype = _supported(ttype)
    n_rows, k = _check_shape(ttype, shape)
    data = _as_bytes(raw)
    expected = n_rows * row_nbytes(ttype, k)
    if data.nbytes != expected:
        raise GGUFError(f"{ttype.name} tensor of shape {tuple(shape)} needs {expected} bytes, "
                        f"got {data.nbytes}")
    return _decode(data, ttype, n_rows * k).reshape(tuple(int(s) for s in shape))


def _decode(data: np.ndarray, ttype: TensorType, n_elements: int) -> np.ndarray:
    """Flat bytes (size already checked) -> flat float32."""
    if ttype == TensorType.F32:
        return data.view("<f4").astype(np.float32)
    if ttype == TensorType.F16:
        return data.view(_F16).astype(np.float32)
    if ttype == TensorType.BF16:  # bf16 is the top half of an f32
        return (data.view("<u2").astype(np.uint32) << 16).view(np.float32)
    out = np.empty(n_elements, dtype=np.float32)
    blocks = data.view(_BLOCK_DTYPES[ttype])
    per_block = BLOCK_LAYOUTS[ttype].elements
    out_blocks = out.reshape(-1, per_block)
    decode = _BLOCK_DECODERS[ttype]
    step = max(1, _CHUNK_ELEMENTS // per_block)
    for start in range(0, len(blocks), step):
        decode(blocks[start:start + step], out_blocks[start:start + step])
    return out


def dequantize_rows(raw: np.ndarray, ttype: TensorType | int, shape: tuple[int, ...],
                    rows: np.ndarray) -> np.ndarray:
    """Decode only the given rows (e.g. token ids of an embedding) -> float32 [len(rows), K]."""
    ttype = _supported(ttype)
    n_rows, k = _check_shape(ttype, shape)
    stride = row_nbytes(ttype, k)
    data = _as_bytes(raw)
    if data.nbytes != n_rows * stride:
        raise GGUFError(f"{ttype.name} tensor of shape {tuple(shape)} needs {n_rows * stride} "
                        f"bytes, got {data.nbytes}")
    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "ui"):
        raise ModelError(f"row indices must be a 1-D integer array, got shape {rows.shape} "
                         f"dtype {rows.dtype}")
    bad = (rows < 0) | (rows >= n_rows)
    if bad.any():
        raise ModelError(f"token id {int(rows[bad.argmax()])} out of range [0, {n_rows})")
    picked = data.reshape(n_rows, stride)[rows.astype(np.intp)]
    return _decode(picked.reshape(-1), ttype, len(rows) * k).reshape(len(rows), k)


# ---------------------------------------------------------------------------
# quantization

def _round_half_away(v: np.ndarray) -> np.ndarray:
    """C roundf on float32: ties go away from zero (np.rint would go to even)."""
    whole = np.trunc(v)
    frac = v - whole  # exact: the fractional part of a float is representable
    return whole + np.copysign(np.abs(frac) >= 0.5, v)


def _quantize_q8_0_blocks(x: np.ndarray, out: np.ndarray) -> None:
    """(n, 32) float32 -> out (n, 34) bytes: f16 d = max|x|/127, then round(x/d) as int8."""
    d = np.abs(x).max(axis=1) / np.float32(127)
    if not np.isfinite(d).all():  # max propagates NaN; Inf would give meaningless quants
        raise GGUFError("cannot quantize non-finite values to Q8_0")
    with np.errstate(divide="ignore"):
        inv_d = np.where(d == 0, np.float32(0), np.float32(1) / d)
    with np.errstate(over="ignore"):
        d_f16 = d.astype(np.float16)
    if np.isinf(d_f16).any():  # the reference would store d = inf and decode to inf/NaN
        amax = float(np.abs(x).max())
        raise GGUFError(f"cannot quantize |x| = {amax:g} to Q8_0: its scale exceeds float16 "
                        f"(max |x| about {65504 * 127:g})")
    q = _round_half_away(x * inv_d[:, None])
    blocks = out.view(_BLOCK_DTYPES[TensorType.Q8_0]).reshape(-1)
    blocks["d"] = d_f16
    blocks["qs"] = q.astype(np.int8)


def _quantize_rows(x: np.ndarray, ttype: TensorType, name: str, blocks_fn) -> np.ndarray:
    """float32 [..., K] -> [..., row bytes] of ttype, 32-element blocks quantized by blocks_fn
    in chunks (bounded temporary memory)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0:
        raise GGUFError(f"cannot quantize a 0-d array to {name}")
    k = x.shape[-1]
    stride = row_nbytes(ttype, k)
    out = np.empty(x.shape[:-1] + (stride,), dtype=np.uint8)
    blocks_in = np.ascontiguousarray(x).reshape(-1, 32)
    blocks_out = out.reshape(-1, row_nbytes(ttype, 32))
    step = _CHUNK_ELEMENTS // 32
    for start in range(0, len(blocks_in), step):
        blocks_fn(blocks_in[start:start + step], blocks_out[start:start + step])
    return out


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """float32 [..., K] -> Q8_0 bytes uint8 [..., K//32*34] (llama.cpp's reference rounding)."""
    return _quantize_rows(x, TensorType.Q8_0, "Q8_0", _quantize_q8_0_blocks)


def _quantize_q4_1_blocks(x: np.ndarray, out: np.ndarray) -> None:
    """(n, 32) float32 -> out (n, 20) bytes: m = min, d = (max - min)/15 (both stored as f16),
    q = round((x - m)/d) (ties away from zero) clamped to 0..15; low nibbles are elements 0..15."""
    lo, hi = x.min(axis=1), x.max(axis=1)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise GGUFError("cannot quantize non-finite values to Q4_1")
    d = (hi - lo) / np.float32(15)
    with np.errstate(divide="ignore"):
        inv_d = np.where(d == 0, np.float32(0), np.float32(1) / d)
    with np.errstate(over="ignore"):
        d_f16, m_f16 = d.astype(np.float16), lo.astype(np.float16)
    if np.isinf(d_f16).any() or np.isinf(m_f16).any():
        raise GGUFError("cannot quantize to Q4_1: a block's scale or minimum exceeds float16")
    q = np.clip(_round_half_away((x - lo[:, None]) * inv_d[:, None]), 0, 15).astype(np.uint8)
    blocks = out.view(_BLOCK_DTYPES[TensorType.Q4_1]).reshape(-1)
    blocks["d"] = d_f16
    blocks["m"] = m_f16
    blocks["qs"] = q[:, :16] | (q[:, 16:] << 4)


def quantize_q4_1(x: np.ndarray) -> np.ndarray:
    """float32 [..., K] -> Q4_1 bytes uint8 [..., K//32*20] (min/max per block of 32)."""
    return _quantize_rows(x, TensorType.Q4_1, "Q4_1", _quantize_q4_1_blocks)


def _finite_f16(name: str, **fields) -> dict:
    """Block fields (float32) as float16, refusing non-finite inputs and overflow."""
    out = {}
    for key, v in fields.items():
        if not np.isfinite(v).all():
            raise GGUFError(f"cannot quantize non-finite values to {name}")
        with np.errstate(over="ignore"):
            out[key] = v.astype(np.float16)
        if np.isinf(out[key]).any():
            raise GGUFError(f"cannot quantize to {name}: a block's {key} exceeds float16")
    return out


def _quantize_q4_0_blocks(x: np.ndarray, out: np.ndarray) -> None:
    """(n, 32) -> (n, 18): d = (the value of largest magnitude) / -8, q = trunc(x/d + 8.5)
    clamped to 0..15 (llama.cpp's reference rounding); low nibbles are elements 0..15."""
    mx = np.take_along_axis(x, np.abs(x).argmax(axis=1)[:, None], axis=1)[:, 0]
    d = mx / np.float32(-8)
    f = _finite_f16("Q4_0", d=d)
    with np.errstate(divide="ignore"):
        inv_d = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np.clip(np.trunc(x * inv_d[:, None] + np.float32(8.5)), 0, 15).astype(np.uint8)
    blocks = out.view(np.dtype([("d", _F16), ("qs", "u1", 16)])).reshape(-1)
    blocks["d"] = f["d"]
    blocks["qs"] = q[:, :16] | (q[:, 16:] << 4)


def _quantize_q5_1_blocks(x: np.ndarray, out: np.ndarray) -> None:
    """(n, 32) -> (n, 24): m = min, d = (max - min)/31, q = trunc((x - m)/d + 0.5) clamped to
    0..31; the fifth bits in qh (bit j = element j)."""
    lo, hi = x.min(axis=1), x.max(axis=1)
    d = (hi - lo) / np.float32(31)
    f = _finite_f16("Q5_1", d=d, m=lo)
    with np.errstate(divide="ignore"):
        inv_d = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np.clip(np.trunc((x - lo[:, None]) * inv_d[:, None] + np.float32(0.5)), 0, 31).astype(np.uint8)
    blocks = out.view(_BLOCK_DTYPES[TensorType.Q5_1]).reshape(-1)
    blocks["d"], blocks["m"] = f["d"], f["m"]
    blocks["qs"] = (q[:, :16] & 0x0F) | ((q[:, 16:] & 0x0F) << 4)
    blocks["qh"] = np.packbits(q >> 4, axis=1, bitorder="little")


def _quantize_iq4_nl_blocks(x: np.ndarray, out: np.ndarray) -> None:
    """(n, 32) -> (n, 18): d maps the value of largest magnitude to the level -127, each
    element takes the nearest level (a plain nearest-level quantizer, not llama.cpp's scale
    search: ignis needs it for test models, not for quality)."""
    mx = np.take_along_axis(x, np.abs(x).argmax(axis=1)[:, None], axis=1)[:, 0]
    d = mx / np.float32(-127)
    f = _finite_f16("IQ4_NL", d=d)
    dq = f["d"].astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(dq[:, None] == 0, np.float32(0), x / dq[:, None])
    q = np.abs(v[:, :, None] - IQ4_NL_LEVELS.astype(np.float32)).argmin(axis=2).astype(np.uint8)
    blocks = out.view(_BLOCK_DTYPES[TensorType.IQ4_NL]).reshape(-1)
    blocks["d"] = f["d"]
    blocks["qs"] = q[:, :16] | (q[:, 16:] << 4)


def _to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16): round to nearest even; NaNs stay (quiet) NaNs."""
    u = np.ascontiguousarray(x, dtype="<f4").view("<u4")
    r = ((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16).astype("<u2")
    nan = np.isnan(x)
    return np.where(nan, ((u >> 16) | 0x40).astype("<u2"), r) if nan.any() else r


_BLOCK_QUANTIZERS = {TensorType.Q4_0: _quantize_q4_0_blocks, TensorType.Q5_1: _quantize_q5_1_blocks,
                     TensorType.IQ4_NL: _quantize_iq4_nl_blocks}


def quantize(x: np.ndarray, ttype: TensorType | int) -> np.ndarray:
    """float [..., K] -> the raw bytes of ttype, uint8 [..., row_nbytes(ttype, K)]."""
    ttype = _tensor_type(ttype)
    x = np.asarray(x)
    if ttype == TensorType.Q8_0:
        return quantize_q8_0(x)
    if ttype == TensorType.Q4_1:
        return quantize_q4_1(x)
    if ttype in _BLOCK_QUANTIZERS:
        return _quantize_rows(x, ttype, ttype.name, _BLOCK_QUANTIZERS[ttype])
    if ttype == TensorType.BF16:
        data = _to_bf16(np.asarray(x, dtype=np.float32))
        if data.ndim == 0:
            raise GGUFError("cannot quantize a 0-d array to BF16")
        return data.view(np.uint8).reshape(data.shape[:-1] + (-1,))
    if ttype.name in quant_k.QUANTIZERS:
        return _quantize_super_blocks(x, ttype)
    if ttype == TensorType.F32:
        data = np.ascontiguousarray(x, dtype="<f4")
    elif ttype == TensorType.F16:
        data = np.ascontiguousarray(x, dtype=_F16)
    else:
        raise GGUFError(f"quantizing to {ttype.name} is not supported")
    if data.ndim == 0:
        raise GGUFError(f"cannot quantize a 0-d array to {ttype.name}")
    return data.view(np.uint8).reshape(data.shape[:-1] + (-1,))


def _quantize_super_blocks(x: np.ndarray, ttype: TensorType) -> np.ndarray:
    """float [..., K] -> [..., row bytes] of a 256-element type of quant_k, in chunks."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0:
        raise GGUFError(f"cannot quantize a 0-d array to {ttype.name}")
    stride = row_nbytes(ttype, x.shape[-1])
    out = np.empty(x.shape[:-1] + (stride,), dtype=np.uint8)
    blocks_in = np.ascontiguousarray(x).reshape(-1, QK_K)
    blocks_out = out.reshape(-1, BLOCK_LAYOUTS[ttype].nbytes)
    step = _CHUNK_ELEMENTS // QK_K
    for start in range(0, len(blocks_in), step):
        blocks_out[start:start + step] = quant_k.QUANTIZERS[ttype.name](blocks_in[start:start + step])
    return out
