"""Building a case's arguments from their specs, in the child: weights and KV caches in memory
that ends at an inaccessible page (a read past the end faults), odd array forms, lying
subclasses."""
from __future__ import annotations

import ctypes
import mmap
from types import SimpleNamespace

import numpy as np

from fuzz.plan_api.specs import (BF16, BLOCK, F16, F32, IQ4_NL, IQ4_XS, KV, Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1,
                                 Q5_K, Q6_K, Q8_0, Ints, Vec, Wt)

_KEEP = []
_LIBC = None


def _guarded(nbytes: int) -> np.ndarray:
    """A uint8 array of nbytes whose end touches an inaccessible page (reads past it fault)."""
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
        _LIBC.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE
    body = max(1, -(-nbytes // page)) * page
    mm = mmap.mmap(-1, body + page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    if _LIBC.mprotect(base + body, page, 0) != 0:
        raise OSError(ctypes.get_errno(), "mprotect")
    _KEEP.append(mm)
    return np.frombuffer(mm, dtype=np.uint8, count=nbytes, offset=body - nbytes)


class SubArray(np.ndarray):
    """An ndarray subclass that lies about its data address and size."""

    @property
    def __array_interface__(self):
        d = dict(super().__array_interface__)
        d["data"] = (8, False)
        return d

    @property
    def nbytes(self):
        return 1 << 40


def _f16_bytes(values) -> np.ndarray:
    return np.asarray(values, np.float16).view(np.uint8)


def weight_bytes(layout: int, rows: int, k: int, seed: int) -> np.ndarray:
    """rows x row-bytes of random, finite content of a GGUF type (the last row may be ragged
    for a k that is not a block multiple)."""
    r = np.random.default_rng(seed)
    elems, nb = BLOCK[layout]
    if layout == F32:
        return (r.standard_normal(rows * k) * 0.1).astype(np.float32).view(np.uint8)
    if layout == F16:
        return (r.standard_normal(rows * k) * 0.1).astype(np.float16).view(np.uint8)
    if layout == BF16:
        return ((r.standard_normal(rows * k) * 0.1).astype(np.float32).view(np.uint32) >> 16).astype(
            np.uint16).view(np.uint8)
    nblk = -(-k // elems)
    raw = r.integers(0, 256, size=(rows * nblk, nb), dtype=np.uint8)
    scale = lambda m: _f16_bytes(r.uniform(0.001, 0.01, size=m))
    if layout in (Q8_0, Q5_0, Q4_0, IQ4_NL, IQ4_XS):
        raw[:, 0:2] = scale(rows * nblk).reshape(-1, 2)
    elif layout in (Q4_K, Q4_1, Q5_1, Q5_K):
        raw[:, 0:4] = scale(2 * rows * nblk).reshape(-1, 4)
    elif layout == Q2_K:          # d, dmin after the 16 scale bytes and 64 quant bytes
        raw[:, 80:84] = scale(2 * rows * nblk).reshape(-1, 4)
    elif layout == Q3_K:          # d last, after hmask, qs and the 12 scale bytes
        raw[:, 108:110] = scale(rows * nblk).reshape(-1, 2)
    elif layout == Q6_K:
        raw[:, 208:210] = scale(rows * nblk).reshape(-1, 2)
    return raw.reshape(-1)


def build(spec):
    """The argument a spec describes (recursively through lists, tuples and dicts)."""
    if isinstance(spec, list):
        return [build(s) for s in spec]
    if isinstance(spec, tuple):
        return tuple(build(s) for s in spec)
    if isinstance(spec, dict):
        return {key: build(s) for key, s in spec.items()}
    if isinstance(spec, Wt):
        return _build_weight(spec)
    if isinstance(spec, Vec):
        return _build_vec(spec)
    if isinstance(spec, Ints):
        if spec.form == "list":
            return list(spec.values)
        a = np.array(spec.values, dtype=spec.dtype)
        return a.reshape(spec.shape) if spec.shape is not None else a
    if isinstance(spec, KV):
        return _build_kv(spec)
    return spec


def _build_weight(s: Wt):
    if s.real and s.layout == Q8_0 and s.k % 32 == 0:
        from ignis.gguf.quant import quantize_q8_0
        x = np.random.default_rng(s.seed).standard_normal((s.rows, s.k)).astype(np.float32)
        data = quantize_q8_0(x).reshape(-1)
    else:
        data = weight_bytes(s.layout, s.rows, s.k, s.seed)
    if s.extra > 0:
        data = np.concatenate([data, np.arange(s.extra, dtype=np.uint8)])
    elif s.extra < 0:
        data = data[:max(0, data.size + s.extra)]
    nbytes = data.size
    dtype = np.dtype(s.dtype) if s.dtype else {F32: np.dtype(np.float32), F16: np.dtype(np.float16),
                                               BF16: np.dtype(np.uint16)}.get(s.layout, np.dtype(np.uint8))
    if s.form == "empty":
        return np.zeros(0, dtype)
    if s.form == "0d":
        return np.zeros((), dtype)
    if nbytes % dtype.itemsize:
        dtype = np.dtype(np.uint8)
    if s.form == "strided":
        return np.repeat(data, 2).view(np.uint8)[::2].view(np.uint8) if dtype.itemsize == 1 else \
            np.repeat(data.view(dtype), 2)[::2]
    buf = _guarded(nbytes)
    buf[:] = data
    a = buf.view(dtype)
    n_items = a.size
    if s.form == "readonly":
        a.setflags(write=False)
    elif s.form == "2d" and s.rows > 0 and n_items % s.rows == 0:
        a = a.reshape(s.rows, n_items // s.rows)
    elif s.form == "fortran" and n_items >= 4 and n_items % 2 == 0:
        a = np.asfortranarray(a.reshape(2, n_items // 2))
    elif s.form == "sub":
        a = a.view(SubArray)
    return a


def _build_vec(s: Vec):
    r = np.random.default_rng(s.seed)
    v = r.standard_normal(max(s.n, 0)).astype(np.float32)
    if s.form == "nan" and s.n:
        v[r.integers(0, s.n)] = np.nan
    if s.dtype == "str":
        a = np.array([f"{x:.2f}" for x in v])
    elif s.dtype == "object":
        a = np.array([float(x) for x in v] + [None], dtype=object)[:s.n]
    elif s.dtype == "bool":
        a = v > 0
    elif s.dtype == "int32":
        a = np.round(v * 3).astype(np.int32)
    else:
        a = v.astype(s.dtype)
    if s.form == "strided":
        a = np.repeat(a, 2)[::2]
    elif s.form == "2d" and s.n % 2 == 0 and s.n:
        a = a.reshape(2, s.n // 2)
    elif s.form == "readonly":
        a.setflags(write=False)
    elif s.form == "list":
        a = a.tolist()
    return a


def _build_kv(s: KV):
    def one(shape, seed):
        r = np.random.default_rng(seed)
        n = int(np.prod(shape)) if shape else 1
        vals = r.standard_normal(n).astype(s.dtype)
        buf = _guarded(vals.nbytes)
        a = buf.view(vals.dtype)
        a[:] = vals
        a = a.reshape(shape)
        if s.form == "readonly":
            a.setflags(write=False)
        elif s.form == "strided":
            a = np.repeat(a, 2, axis=-1)[..., ::2]
        elif s.form == "fortran":
            a = np.asfortranarray(a)
        elif s.form == "sub":
            a = a.view(SubArray)
        return a
    k = one(s.shape, s.seed)
    v = k if s.how == "same" else one(s.vshape or s.shape, s.seed + 1)
    if s.how in ("obj", "same"):
        return SimpleNamespace(k=k, v=v)
    if s.how == "tuple":
        return (k, v)
    if s.how == "tuple3":
        return (k, v, v)
    if s.how == "tuple1":
        return (k,)
    if s.how == "k_only":
        return SimpleNamespace(k=k)
    if s.how == "list":
        return [k, v]
    return {"k": k, "v": v}
