"""Q5_K, Q3_K, Q2_K and IQ4_XS: numpy quantizers (so that ignis' writer can make test models
of these types) and the IQ4_XS decoder. The quantizers make valid blocks with simple scale
choices (per sub-block min/max or max |x|, then 6- or 4-bit sub-block scales relative to
the super-block's f16 scale); they do not search for llama.cpp's scales.

Layouts (256 elements a super-block, little-endian), as the kernels read them (see
ignis/simd/kquants.h):
  Q5_K  f16 d, f16 dmin, scales[12] (Q4_K packing), qh[32], qs[128]
  Q3_K  hmask[32], qs[64], scales[12], f16 d
  Q2_K  scales[16] (sc | m << 4), qs[64], f16 d, f16 dmin
  IQ4_XS f16 d, u16 scales_h, scales_l[4], qs[128]
"""
from __future__ import annotations

import numpy as np

from ignis.errors import GGUFError

QK_K = 256
IQ4NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                        dtype=np.int8)
IQ4_XS_DTYPE = np.dtype([("d", "<f2"), ("scales_h", "<u2"), ("scales_l", "u1", 4), ("qs", "u1", 128)])
BYTES = {"Q5_K": 176, "Q3_K": 110, "Q2_K": 84, "IQ4_XS": 136}


def decode_iq4_xs(b: np.ndarray, out: np.ndarray) -> None:
    """(n,) IQ4_XS blocks -> out (n, 256): (d * (ls - 32)) * grid value, sub-blocks of 32."""
    n = len(b)
    ls_lo = (b["scales_l"][:, :, None] >> np.array([0, 4], np.uint8)).reshape(n, 8) & 0x0F
    ls_hi = (b["scales_h"][:, None] >> (2 * np.arange(8, dtype=np.uint16))).astype(np.uint8) & 3
    ls = (ls_lo | (ls_hi << 4)).astype(np.int8) - np.int8(32)
    dl = b["d"].astype(np.float32)[:, None] * ls.astype(np.float32)           # (n, 8)
    idx = np.stack((b["qs"].reshape(n, 8, 16) & 0x0F, b["qs"].reshape(n, 8, 16) >> 4), axis=2)
    values = IQ4NL_VALUES[idx.reshape(n, 8, 32)].astype(np.float32)
    np.multiply(dl[:, :, None], values, out=out.reshape(n, 8, 32))


# ---------------------------------------------------------------------------
# quantizers: float32 (n, 256) super-blocks -> (n, bytes)

def _round(v: np.ndarray) -> np.ndarray:
    return np.floor(v + np.float32(0.5))


def _f16(v: np.ndarray, name: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = v.astype(np.float16)
    if not np.isfinite(h).all():
        raise GGUFError(f"cannot quantize to {name}: a block's scale exceeds float16")
    return h


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b == 0, np.float32(0), a / np.where(b == 0, np.float32(1), b)).astype(np.float32)


def _asym(x: np.ndarray, sub: int, qmax: int, smax: int, name: str):
    """x (n, 256) -> d, dmin (f16), sc, m (n, 256/sub ints 0..smax), q (n, 256 ints 0..qmax)
    with x ~ (d*sc) * q - dmin*m per sub-block."""
    n = len(x)
    xs = x.reshape(n, -1, sub)
    lo = np.minimum(xs.min(axis=2), 0)
    scale = (xs.max(axis=2) - lo) / np.float32(qmax)
    d = _f16(scale.max(axis=1) / np.float32(smax), name)
    dmin = _f16(-lo.min(axis=1) / np.float32(smax), name)
    df, dmf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    sc = np.clip(_round(_div(scale, df)), 0, smax)
    m = np.clip(_round(_div(-lo, dmf)), 0, smax)
    eff, off = df * sc, dmf * m
    q = np.clip(_round(_div(xs + off[:, :, None], eff[:, :, None])), 0, qmax)
    return d, dmin, sc.astype(np.uint8), m.astype(np.uint8), q.reshape(n, QK_K).astype(np.uint8)


def _sym(x: np.ndarray, sub: int, qneg: float, name: str):
    """x (n, 256) -> d (f16), sc (n, 256/sub ints -32..31), sub-block scales d*sc (float32)
    with the largest |x| of a sub-block at -qneg * scale."""
    n = len(x)
    xs = x.reshape(n, -1, sub)
    at = np.abs(xs).argmax(axis=2)[:, :, None]
    scale = -np.take_along_axis(xs, at, axis=2)[:, :, 0] / np.float32(qneg)
    d = _f16(np.abs(scale).max(axis=1) / np.float32(32), name)
    df = d.astype(np.float32)[:, None]
    sc = np.clip(_round(_div(scale, df)), -32, 31)
    return d, sc.astype(np.int8), xs, df * sc


def _check(x: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, QK_K)
    if not np.isfinite(x).all():
        raise GGUFError(f"cannot quantize non-finite values to {name}")
    return x


def quantize_q5_k(x: np.ndarray) -> np.ndarray:
    x = _check(x, "Q5_K")
    n = len(x)
    d, dmin, sc, m, q = _asym(x, 32, 31, 63, "Q5_K")
    out = np.zeros((n, 176), np.uint8)
    out[:, 0:2] = d.view(np.uint8).reshape(n, 2)
    out[:, 2:4] = dmin.view(np.uint8).reshape(n, 2)
    out[:, 4:8] = (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6)
    out[:, 8:12] = (m[:, :4] & 63) | ((m[:, 4:] >> 4) << 6)
    out[:, 12:16] = (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4)
    q8 = q.reshape(n, 8, 32)
    out[:, 16:48] = np.bitwise_or.reduce(((q8 >> 4) & 1) << np.arange(8, dtype=np.uint8)[:, None], axis=1)
    out[:, 48:176] = ((q8[:, 0::2] & 0x0F) | ((q8[:, 1::2] & 0x0F) << 4)).reshape(n, 128)
    return out


def _pack_2bit(q: np.ndarray) -> np.ndarray:
    """(n, 256) values 0..3 -> (n, 64): element h*128 + s*32 + l at bits 2s of byte h*32 + l."""
    q4 = q.reshape(len(q), 2, 4, 32)
    return np.bitwise_or.reduce(q4 << (2 * np.arange(4, dtype=np.uint8))[:, None], axis=2).reshape(len(q), 64)


def quantize_q2_k(x: np.ndarray) -> np.ndarray:
    x = _check(x, "Q2_K")
    n = len(x)
    d, dmin, sc, m, q = _asym(x, 16, 3, 15, "Q2_K")
    out = np.zeros((n, 84), np.uint8)
    out[:, 0:16] = sc | (m << 4)
    out[:, 16:80] = _pack_2bit(q)
    out[:, 80:82] = d.view(np.uint8).reshape(n, 2)
    out[:, 82:84] = dmin.view(np.uint8).reshape(n, 2)
    return out


def quantize_q3_k(x: np.ndarray) -> np.ndarray:
    x = _check(x, "Q3_K")
    n = len(x)
    d, sc, xs, eff = _sym(x, 16, 4, "Q3_K")
    q = np.clip(_round(_div(xs, eff[:, :, None])), -4, 3).reshape(n, QK_K)
    qu = (q + 4).astype(np.uint8)                                   # 0..7
    out = np.zeros((n, 110), np.uint8)
    hb = ((qu >> 2) & 1).reshape(n, 8, 32)                          # plane 4h + s
    out[:, 0:32] = np.bitwise_or.reduce(hb << np.arange(8, dtype=np.uint8)[:, None], axis=1)
    out[:, 32:96] = _pack_2bit(qu & 3)
    su = (sc.astype(np.int16) + 32).astype(np.uint8)                # 0..63
    out[:, 96:104] = (su[:, :8] & 0x0F) | ((su[:, 8:] & 0x0F) << 4)
    hi2 = (su >> 4).reshape(n, 4, 4)                                # [i // 4, i % 4]
    out[:, 104:108] = np.bitwise_or.reduce(hi2 << (2 * np.arange(4, dtype=np.uint8))[:, None], axis=1)
    out[:, 108:110] = d.view(np.uint8).reshape(n, 2)
    return out


def quantize_iq4_xs(x: np.ndarray) -> np.ndarray:
    x = _check(x, "IQ4_XS")
    n = len(x)
    d, sc, xs, eff = _sym(x, 32, 127, "IQ4_XS")
    target = _div(xs, eff[:, :, None])
    idx = np.abs(target[..., None] - IQ4NL_VALUES.astype(np.float32)).argmin(axis=-1).astype(np.uint8)
    out = np.zeros((n, 136), np.uint8)
    out[:, 0:2] = d.view(np.uint8).reshape(n, 2)
    su = (sc.astype(np.int16) + 32).astype(np.uint16)               # 0..63
    out[:, 2:4] = np.bitwise_or.reduce((su >> 4) << (2 * np.arange(8, dtype=np.uint16)), axis=1
                                       ).astype("<u2").view(np.uint8).reshape(n, 2)
    lo = (su & 0x0F).astype(np.uint8).reshape(n, 4, 2)
    out[:, 4:8] = lo[:, :, 0] | (lo[:, :, 1] << 4)
    out[:, 8:136] = (idx[:, :, :16] | (idx[:, :, 16:] << 4)).reshape(n, 128)
    return out


QUANTIZERS = {"Q5_K": quantize_q5_k, "Q3_K": quantize_q3_k, "Q2_K": quantize_q2_k, "IQ4_XS": quantize_iq4_xs}
