"""The kernel Plan API under random, mostly invalid arguments, each case in a child process:
`python -m fuzz.plan_api --cases 10000 [--seed N]`.

A case builds one `ignis._kernels.Plan` (arena size, threads, tokens), adds 1-3 instructions
through the public `add_*` methods and usually runs it. The arguments start from a valid
call (a small random layout in the arena, random weights of every kernel type, whole or as
part lists) and 0-4 of them are then replaced by something wrong: offsets negative,
unaligned, past the arena or near 2^63; dims 0, negative, off by one, 2^31, 2^62+1, 2^63,
2^64+x, 10^30; part lists re-split anywhere (0-4 parts, empty parts, a gate/up split that
does not mirror), rows added or dropped, bytes that are not whole rows, wrong dtypes,
non-contiguous / 0-d / Fortran / read-only / subclassed arrays, non-arrays; weight types
unsupported, of the wrong Python type, or lists of the wrong length; vectors of the wrong
length or of strings/complex/bool/objects; eps/theta NaN, inf, negative, 10^400; act
strings; Plan() sizes, thread and token counts; run() tokens/positions of float/string/
object dtype, outside int32 (2^32+5 used to wrap to 5), empty, 2-D, of the wrong length,
out of range; KV caches that are None, not caches, tuples of the wrong length, of the wrong
dtype/shape/layout, read-only.

What must hold (checked in the child, which reports back; a signal, a hang or a non-zero
exit is a failure of the case):
  - every call returns or raises an IgnisError with a one-line message: never another
    exception type;
  - a failed add_* leaves the plan unchanged (instruction count and listing);
  - after a successful run, every instruction whose inputs are known (not rewritten by a
    later instruction, or only by earlier ones) matches a numpy reference computed from the
    weights dequantized by the `gguf` package (not by ignis): matmuls within the Q8_0
    activation rounding bound (per output: sum over blocks of max|x_block|/127 * sum|w|),
    the rest within float tolerances; and nothing outside the written arena regions and
    KV cache rows changed.
Weights and KV caches live in memory that ends at an inaccessible page, so a read past the
end of a weight is a SIGSEGV, not a silent wrong value.

Child processes are forked by a small case server (a fresh interpreter that has imported
numpy, gguf and ignis._kernels but never runs an OpenMP region: libgomp is not fork-safe
after one), so a case costs a fork, not an interpreter start, and the parent (pytest, or
this script) never forks at all.
"""
from __future__ import annotations

import argparse
import atexit
import ctypes
import math
import mmap
import operator
import os
import pickle
import select
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

# GGUF type numbers the kernels take, with (elements, bytes) per block
F32, F16, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K = 0, 1, 3, 6, 8, 12, 14
Q4_0, Q5_1, IQ4_NL, BF16 = 2, 7, 20, 30
BLOCK = {F32: (1, 4), F16: (1, 2), Q4_1: (32, 20), Q5_0: (32, 22), Q8_0: (32, 34), Q4_K: (256, 144),
         Q6_K: (256, 210)}
BLOCK.update({Q4_0: (32, 18), Q5_1: (32, 24), IQ4_NL: (32, 18), BF16: (1, 2)})
FLOAT_TYPES = (F32, F16, BF16)

# every public add_* method: (parameter, kind), in order
SIGS = {
    "embed": [("out", "off"), ("w", "w"), ("dim", "dim"), ("wtype", "wtype")],
    "rms_inv": [("x", "off"), ("out", "off"), ("rows", "rows"), ("dim", "dim"), ("eps", "eps")],
    "scale_rows": [("x", "off"), ("r", "off"), ("out", "off"), ("g", "vec"), ("rows", "rows"), ("dim", "dim")],
    "matmul": [("x", "off"), ("out", "off"), ("w", "w"), ("rows", "rows"), ("k", "dim"), ("n", "dim"),
               ("wtype", "wtype"), ("act", "act")],
    "add_bias": [("y", "off"), ("out", "off"), ("b", "vec"), ("rows", "rows"), ("n", "dim")],
    "rope": [("x", "off"), ("out", "off"), ("n_heads", "heads"), ("head_dim", "heads"), ("theta", "theta")],
    "kv_write": [("k", "off"), ("v", "off"), ("layer", "layer"), ("n_kv_heads", "heads"), ("head_dim", "heads")],
    "attention": [("q", "off"), ("out", "off"), ("layer", "layer"), ("n_heads", "heads"),
                  ("n_kv_heads", "heads"), ("head_dim", "heads")],
    "add": [("a", "off"), ("b", "off"), ("out", "off"), ("n", "n")],
    "mul": [("a", "off"), ("b", "off"), ("out", "off"), ("n", "n")],
    "silu": [("x", "off"), ("out", "off"), ("n", "n")],
    "swiglu": [("g", "off"), ("u", "off"), ("out", "off"), ("n", "n")],
    "take_last": [("x", "off"), ("out", "off"), ("rows", "rows"), ("dim", "dim")],
    "take_rows": [("x", "off"), ("out", "off"), ("rows", "rows"), ("dim", "dim"), ("n_out", "rows")],
    "rmsnorm": [("x", "off"), ("out", "off"), ("g", "vec"), ("rows", "rows"), ("dim", "dim"), ("eps", "eps")],
    "matmul_bias": [("x", "off"), ("out", "off"), ("w", "w"), ("b", "vec"), ("rows", "rows"), ("k", "dim"),
                    ("n", "dim"), ("wtype", "wtype")],
    "matmul_add": [("x", "off"), ("res", "off"), ("out", "off"), ("w", "w"), ("rows", "rows"), ("k", "dim"),
                   ("n", "dim"), ("wtype", "wtype")],
    "gate_up_swiglu": [("x", "off"), ("out", "off"), ("w", "w"), ("rows", "rows"), ("k", "dim"),
                       ("n_ff", "dim"), ("wtype", "wtype")],
    "qkv_rope_kv": [("x", "off"), ("q_out", "off"), ("w", "w"), ("b", "vec"), ("layer", "layer"),
                    ("n_heads", "heads"), ("n_kv_heads", "heads"), ("head_dim", "heads"), ("theta", "theta"),
                    ("k", "dim"), ("wtype", "wtype")],
    "gelu": [("x", "off"), ("out", "off"), ("n", "n")],
    "scale": [("x", "off"), ("out", "off"), ("n", "n"), ("factor", "theta")],
    "head_rmsnorm": [("x", "off"), ("out", "off"), ("g", "vec"), ("rows", "rows"), ("n_heads", "heads"),
                     ("head_dim", "heads"), ("eps", "eps")],
    "rmsnorm_add": [("y", "off"), ("res", "off"), ("out", "off"), ("g", "vec"), ("rows", "rows"), ("dim", "dim"),
                    ("eps", "eps")],
    "gate_up_geglu": [("x", "off"), ("out", "off"), ("w", "w"), ("rows", "rows"), ("k", "dim"),
                      ("n_ff", "dim"), ("wtype", "wtype")],
    "qkv_norm_rope_kv": [("x", "off"), ("q_out", "off"), ("w", "w"), ("gq", "vec"), ("gk", "vec"),
                         ("layer", "layer"), ("n_heads", "heads"), ("n_kv_heads", "heads"), ("head_dim", "heads"),
                         ("theta", "theta"), ("eps", "eps"), ("k", "dim"), ("wtype", "wtype")],
}
OPS = tuple(SIGS)
MATMULS = ("matmul", "matmul_bias", "matmul_add", "gate_up_swiglu", "qkv_rope_kv", "gate_up_geglu",
           "qkv_norm_rope_kv")
_PLAN_OPS = None


def plan_ops() -> tuple:
    """The ops of SIGS the installed Plan has (take_rows is newer than the rest)."""
    global _PLAN_OPS
    if _PLAN_OPS is None:
        from ignis._kernels import Plan      # importing runs no kernel (no OpenMP region)
        _PLAN_OPS = tuple(op for op in OPS if hasattr(Plan, "add_" + op))
    return _PLAN_OPS


# ------------------------------------------------------------------ argument specs
# Cases are plain picklable data; arrays are described here and built in the child.

@dataclass(frozen=True)
class Wt:
    """A weight part: `rows` rows of `k` elements laid out as GGUF type `layout` (random
    blocks with sane f16 scales; with real=True and Q8_0, random floats quantized by
    ignis.gguf.quant), then `extra` bytes more (or fewer), seen as `dtype` (None: the type's
    own) with `form` c | readonly | 2d | sub (an ndarray subclass that lies about its
    address and size) | strided | fortran | 0d | empty."""
    layout: int
    rows: int
    k: int
    seed: int
    dtype: str | None = None
    form: str = "c"
    extra: int = 0
    real: bool = False


@dataclass(frozen=True)
class Vec:
    """n random values as dtype, form c | strided | 2d | readonly | list | nan."""
    n: int
    seed: int
    dtype: str = "float32"
    form: str = "c"


@dataclass(frozen=True)
class Ints:
    """An integer input (tokens, positions): values as dtype, reshaped to shape (None: 1-D)."""
    values: tuple
    dtype: str = "int32"
    shape: tuple | None = None
    form: str = "array"          # array | list


@dataclass(frozen=True)
class KV:
    """A KV cache: k and v of shape / dtype / form (c | readonly | strided | fortran | sub),
    handed over as `how`: obj (.k/.v) | tuple | tuple3 | tuple1 | k_only | dict | same (v is k)."""
    shape: tuple
    seed: int
    vshape: tuple | None = None
    dtype: str = "float16"
    form: str = "c"
    how: str = "obj"


class Opaque:
    """An object that is nothing the API knows."""

    def __repr__(self):
        return "Opaque()"


class Segfault:
    """An integer argument whose conversion kills the process with SIGSEGV (tests the harness)."""

    def __index__(self):
        os.kill(os.getpid(), signal.SIGSEGV)
        return 0

    def __repr__(self):
        return "Segfault()"


class Hang:
    """An integer argument whose conversion never returns (tests the harness's timeout)."""

    def __index__(self):
        while True:
            time.sleep(1)

    def __repr__(self):
        return "Hang()"


@dataclass
class Case:
    plan: tuple                   # Plan(arena_bytes, n_threads, n_tokens) arguments
    fill: int                     # bytes of the arena to fill with random floats
    ops: list                     # [(op name, [args])]
    run: tuple | None             # (tokens, positions, kv[, {keyword: spec}]) specs; None: not run
    seed: int
    mutations: list = field(default_factory=list)   # what was made wrong (for the report)


# ------------------------------------------------------------------ building (child side)

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
    if layout in (Q8_0, Q5_0, Q4_0, IQ4_NL):
        raw[:, 0:2] = scale(rows * nblk).reshape(-1, 2)
    elif layout in (Q4_K, Q4_1, Q5_1):
        raw[:, 0:4] = scale(2 * rows * nblk).reshape(-1, 4)
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


# ------------------------------------------------------------------ the reference (numpy + gguf only)

def dequantize(w, t: int, k: int) -> np.ndarray:
    """float64 [rows, k] of a weight array of GGUF type t (the gguf package's dequantizer)."""
    from gguf import GGMLQuantizationType, dequantize as gguf_dequantize
    raw = np.asarray(w).reshape(-1).view(np.uint8)
    vals = gguf_dequantize(raw, GGMLQuantizationType(t))
    return np.asarray(vals, np.float64).reshape(-1, k)


def _silu(x):
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-x))


def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _act(name):
    return _gelu if "geglu" in name else _silu


def head_norm_ref(x, g, n_heads, hd, eps):
    """float64 rmsnorm of every head of x [T, n_heads*hd]; and 1/rms per element."""
    h = x.reshape(len(x), n_heads, hd)
    inv = 1.0 / np.sqrt((h * h).mean(axis=2, keepdims=True) + float(np.float32(eps)))
    return (h * inv * g).reshape(len(x), -1), np.broadcast_to(inv, h.shape).reshape(len(x), -1)


def q8_bound(x: np.ndarray, w_abs: np.ndarray, quantized: bool) -> np.ndarray:
    """Bound on |kernel - exact| of x @ w.T when x is rounded to Q8_0 blocks (per element:
    at most max|x_block|/127 * 0.57; taken as max|x_block|/127), plus float rounding."""
    mag = np.abs(x) @ w_abs.T
    bound = 1e-5 * mag + 1e-30
    if quantized:
        T, k = x.shape
        nb = k // 32
        amax = np.abs(x).reshape(T, nb, 32).max(axis=2) / 127.0
        wsum = w_abs.reshape(w_abs.shape[0], nb, 32).sum(axis=2)
        bound = bound + amax @ wsum.T + 1e-6 * mag
    return bound


def matmul_ref(x, parts, k, act16=False):
    """(exact x @ W.T, bound) for weight parts [(array, type)]."""
    ys, bs = [], []
    for arr, t in parts:
        w = dequantize(arr, t, k)
        ys.append(x @ w.T)
        bs.append(q8_bound(x, np.abs(w), t not in FLOAT_TYPES))
    return np.concatenate(ys, axis=1), np.concatenate(bs, axis=1)


def rope_ref(x, pos, n_heads, hd, theta):
    """float64 NeoX rope of x [T, n_heads*hd]; None when the angles are too large to compare."""
    half = hd // 2
    ang = pos[:, None].astype(np.float64) * theta ** (-2.0 * np.arange(half) / hd)
    if not np.all(np.isfinite(ang)) or np.abs(ang).max(initial=0) > 1e5:
        return None
    x = x.reshape(len(x), n_heads, hd)
    x0, x1 = x[..., :half], x[..., half:]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    return np.concatenate([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1).reshape(len(x), -1)


def rope_bound(b, n_heads, hd):
    """A per-element bound through a rotation: |d(out)| <= |d x0| + |d x1| of its pair."""
    half = hd // 2
    b = b.reshape(len(b), n_heads, hd)
    pair = b[..., :half] + b[..., half:]
    return np.concatenate([pair, pair], axis=-1).reshape(len(b), -1)


# ------------------------------------------------------------------ running one case (child side)

class CaseFailure(Exception):
    """The case broke a property (reported to the parent)."""


def _ints(v) -> int:
    return operator.index(v)


def _regions(name, a, T):
    """(reads, writes, kv_read, kv_write) of a successful add: arena regions as (offset, nbytes)."""
    i = {key: a[key] for key, _ in SIGS[name]}
    n_ = lambda key: _ints(i[key])
    if name == "embed":
        return [], [(n_("out"), T * n_("dim") * 4)], False, False
    if name == "rms_inv":
        return [(n_("x"), n_("rows") * n_("dim") * 4)], [(n_("out"), n_("rows") * 4)], False, False
    if name in ("scale_rows",):
        r, d = n_("rows"), n_("dim")
        return [(n_("x"), r * d * 4), (n_("r"), r * 4)], [(n_("out"), r * d * 4)], False, False
    if name in ("matmul", "matmul_bias", "gate_up_swiglu", "gate_up_geglu"):
        r, k = n_("rows"), n_("k")
        n = n_("n_ff") if name.startswith("gate_up") else n_("n")
        return [(n_("x"), r * k * 4)], [(n_("out"), r * n * 4)], False, False
    if name == "matmul_add":
        r, k, n = n_("rows"), n_("k"), n_("n")
        return [(n_("x"), r * k * 4), (n_("res"), r * n * 4)], [(n_("out"), r * n * 4)], False, False
    if name == "add_bias":
        r, n = n_("rows"), n_("n")
        return [(n_("y"), r * n * 4)], [(n_("out"), r * n * 4)], False, False
    if name == "rope":
        nb = T * n_("n_heads") * n_("head_dim") * 4
        return [(n_("x"), nb)], [(n_("out"), nb)], False, False
    if name == "kv_write":
        nb = T * n_("n_kv_heads") * n_("head_dim") * 4
        return [(n_("k"), nb), (n_("v"), nb)], [], False, True
    if name == "attention":
        nb = T * n_("n_heads") * n_("head_dim") * 4
        return [(n_("q"), nb)], [(n_("out"), nb)], True, False
    if name in ("add", "mul", "swiglu"):
        keys = [key for key, _ in SIGS[name]]
        nb = n_("n") * 4
        return [(n_(keys[0]), nb), (n_(keys[1]), nb)], [(n_("out"), nb)], False, False
    if name in ("silu", "gelu", "scale"):
        return [(n_("x"), n_("n") * 4)], [(n_("out"), n_("n") * 4)], False, False
    if name == "head_rmsnorm":
        nb = n_("rows") * n_("n_heads") * n_("head_dim") * 4
        return [(n_("x"), nb)], [(n_("out"), nb)], False, False
    if name == "rmsnorm_add":
        nb = n_("rows") * n_("dim") * 4
        return [(n_("y"), nb), (n_("res"), nb)], [(n_("out"), nb)], False, False
    if name == "take_last":
        return [(n_("x"), n_("rows") * n_("dim") * 4)], [(n_("out"), n_("dim") * 4)], False, False
    if name == "take_rows":
        return ([(n_("x"), n_("rows") * n_("dim") * 4)], [(n_("out"), n_("n_out") * n_("dim") * 4)],
                False, False)
    if name == "rmsnorm":
        nb = n_("rows") * n_("dim") * 4
        return [(n_("x"), nb)], [(n_("out"), nb)], False, False
    if name in ("qkv_rope_kv", "qkv_norm_rope_kv"):
        return ([(n_("x"), T * n_("k") * 4)], [(n_("q_out"), T * n_("n_heads") * n_("head_dim") * 4)],
                False, True)
    raise AssertionError(name)


def _overlap(a, b):
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def _parts(w, wtype):
    arrays = list(w) if isinstance(w, (list, tuple)) else [w]
    types = list(wtype) if isinstance(wtype, (list, tuple)) else [wtype] * len(arrays)
    return [(np.asarray(a), _ints(t)) for a, t in zip(arrays, types)]


def _close(what, got, want, bound):
    got = np.asarray(got, np.float64)
    if not np.all(np.isfinite(want)):
        return
    bad = ~(np.abs(got - want) <= bound)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise CaseFailure(f"{what}: wrong result at {tuple(idx)}: got {got[tuple(idx)]!r}, "
                          f"expected {want[tuple(idx)]!r} +- {np.broadcast_to(bound, want.shape)[tuple(idx)]!r} "
                          f"({int(bad.sum())} of {bad.size} elements off)")


class Oracle:
    """Reference values of one successful instruction from the inputs it read."""

    def __init__(self, T, pos, tokens, kv_before, take=None):
        self.T, self.pos, self.tokens, self.kv, self.take = T, pos, tokens, kv_before, take

    def check(self, name, a, read, out_now, kv_after):
        """read(offset, n_floats) -> float64 input values; out_now(offset, n) -> result."""
        i = {key: a[key] for key, _ in SIGS[name]}
        n_ = lambda key: _ints(i[key])
        T = self.T
        tol = lambda ref, rel: rel * np.abs(ref) + rel * (np.abs(ref).max(initial=0) + 1e-30)
        if name == "embed":
            dim, t = n_("dim"), _ints(i["wtype"])
            w = dequantize(np.asarray(i["w"]), t, dim)
            ref = w[self.tokens]
            _close("embed", out_now(n_("out"), T * dim).reshape(T, dim), ref, tol(ref, 1e-6))
        elif name in ("rms_inv", "rmsnorm"):
            r, d = n_("rows"), n_("dim")
            x = read(n_("x"), r * d).reshape(r, d)
            eps = float(i["eps"])
            inv = 1.0 / np.sqrt((x * x).mean(axis=1, keepdims=True) + float(np.float32(eps)))
            if name == "rms_inv":
                _close(name, out_now(n_("out"), r).reshape(r, 1), inv, tol(inv, 1e-4))
            else:
                g = np.asarray(i["g"], np.float64).reshape(-1)
                ref = x * inv * g
                _close(name, out_now(n_("out"), r * d).reshape(r, d), ref, tol(ref, 1e-4))
        elif name == "scale_rows":
            r, d = n_("rows"), n_("dim")
            x = read(n_("x"), r * d).reshape(r, d)
            rr = read(n_("r"), r).reshape(r, 1)
            g = np.asarray(i["g"], np.float64).reshape(-1)
            ref = x * rr * g
            _close(name, out_now(n_("out"), r * d).reshape(r, d), ref, tol(ref, 1e-6))
        elif name == "add_bias":
            r, n = n_("rows"), n_("n")
            ref = read(n_("y"), r * n).reshape(r, n) + np.asarray(i["b"], np.float64).reshape(-1)
            _close(name, out_now(n_("out"), r * n).reshape(r, n), ref, tol(ref, 1e-6))
        elif name in ("add", "mul", "swiglu", "silu"):
            n = n_("n")
            keys = [key for key, _ in SIGS[name]]
            a0 = read(n_(keys[0]), n)
            if name == "silu":
                ref = _silu(a0)
            else:
                b0 = read(n_(keys[1]), n)
                ref = a0 + b0 if name == "add" else a0 * b0 if name == "mul" else _silu(a0) * b0
            _close(name, out_now(n_("out"), n), ref, tol(ref, 1e-5))
        elif name in ("gelu", "scale"):
            n = n_("n")
            x = read(n_("x"), n)
            ref = _gelu(x) if name == "gelu" else x * float(np.float32(float(i["factor"])))
            _close(name, out_now(n_("out"), n), ref, tol(ref, 1e-5))
        elif name == "head_rmsnorm":
            r, nh, hd = n_("rows"), n_("n_heads"), n_("head_dim")
            x = read(n_("x"), r * nh * hd).reshape(r, nh * hd)
            ref, _ = head_norm_ref(x, np.asarray(i["g"], np.float64).reshape(-1), nh, hd, float(i["eps"]))
            _close(name, out_now(n_("out"), r * nh * hd).reshape(r, -1), ref, tol(ref, 1e-4))
        elif name == "rmsnorm_add":
            r, d = n_("rows"), n_("dim")
            y = read(n_("y"), r * d).reshape(r, d)
            res = read(n_("res"), r * d).reshape(r, d)
            inv = 1.0 / np.sqrt((y * y).mean(axis=1, keepdims=True) + float(np.float32(float(i["eps"]))))
            normed = y * inv * np.asarray(i["g"], np.float64).reshape(-1)
            ref = res + normed
            _close(name, out_now(n_("out"), r * d).reshape(r, d), ref,
                   tol(normed, 1e-4) + 1e-6 * np.abs(ref) + 1e-30)
        elif name == "take_last":
            r, d = n_("rows"), n_("dim")
            ref = read(n_("x"), r * d).reshape(r, d)[r - 1:]
            _close(name, out_now(n_("out"), d).reshape(1, d), ref, 0.0)
        elif name == "take_rows":
            r, d, n = n_("rows"), n_("dim"), n_("n_out")
            ref = read(n_("x"), r * d).reshape(r, d)[self.take]
            _close(name, out_now(n_("out"), n * d).reshape(n, d), ref, 0.0)
        elif name in ("matmul", "matmul_bias", "matmul_add", "gate_up_swiglu", "gate_up_geglu"):
            r, k = n_("rows"), n_("k")
            x = read(n_("x"), r * k).reshape(r, k)
            parts = _parts(i["w"], i["wtype"])
            y, b = matmul_ref(x, parts, k)
            if name.startswith("gate_up"):
                n = n_("n_ff")
                act = _act(name)
                g, u, bg, bu = y[:, :n], y[:, n:], b[:, :n], b[:, n:]
                ref = act(g) * u
                # both activations have slopes below 1.2
                bound = (np.abs(act(g)) + 1.2 * bg) * bu + 1.2 * bg * np.abs(u) + 1e-5 * np.abs(ref) + 1e-30
            else:
                n = n_("n")
                ref, bound = y, b
                if name == "matmul_bias":
                    ref = ref + np.asarray(i["b"], np.float64).reshape(-1)
                    bound = bound + 1e-6 * np.abs(ref)
                elif name == "matmul_add":
                    ref = ref + read(n_("res"), r * n).reshape(r, n)
                    bound = bound + 1e-6 * np.abs(ref)
            _close(name, out_now(n_("out"), r * n).reshape(r, n), ref, bound)
        elif name == "rope":
            nh, hd = n_("n_heads"), n_("head_dim")
            x = read(n_("x"), T * nh * hd).reshape(T, nh * hd)
            ref = rope_ref(x, self.pos, nh, hd, float(i["theta"]))
            if ref is not None:
                _close(name, out_now(n_("out"), T * nh * hd).reshape(T, -1), ref, tol(ref, 1e-5))
        elif name == "attention":
            nh, kvh, hd, layer = n_("n_heads"), n_("n_kv_heads"), n_("head_dim"), n_("layer")
            q = read(n_("q"), T * nh * hd).reshape(T, nh, hd)
            K = self.kv[0][layer].astype(np.float64)
            V = self.kv[1][layer].astype(np.float64)
            G = nh // kvh
            ref = np.empty((T, nh, hd))
            for t in range(T):
                p = int(self.pos[t])
                for h in range(nh):
                    s = K[:p + 1, h // G] @ q[t, h] / math.sqrt(hd)
                    e = np.exp(s - s.max())
                    ref[t, h] = (e / e.sum()) @ V[:p + 1, h // G]
            got = out_now(n_("out"), T * nh * hd).reshape(T, nh, hd)
            _close(name, got, ref, 1e-4 * (np.abs(V).max(initial=0) + 1.0))
        elif name == "kv_write":
            kvh, hd, layer = n_("n_kv_heads"), n_("head_dim"), n_("layer")
            for key, cache in (("k", kv_after[0]), ("v", kv_after[1])):
                want = read(n_(key), T * kvh * hd).reshape(T, kvh, hd).astype(np.float16)
                got = cache[layer][self.pos]
                _close(f"kv_write {key}", got.astype(np.float64), want.astype(np.float64),
                       1e-3 * np.abs(want.astype(np.float64)))
        elif name in ("qkv_rope_kv", "qkv_norm_rope_kv"):
            nh, kvh, hd, layer, k = n_("n_heads"), n_("n_kv_heads"), n_("head_dim"), n_("layer"), n_("k")
            x = read(n_("x"), T * k).reshape(T, k)
            y, b = matmul_ref(x, _parts(i["w"], i["wtype"]), k)
            nq, nkv = nh * hd, kvh * hd
            if name == "qkv_rope_kv" and i["b"] is not None:
                y = y + np.asarray(i["b"], np.float64).reshape(-1)
                b = b + 1e-6 * np.abs(y)
            if name == "qkv_norm_rope_kv":     # a norm scales an error by |g| / rms (and moves it
                eps = float(i["eps"])       # by at most that again through the rms itself)
                parts = []
                for lo, hi, heads, g in ((0, nq, nh, i["gq"]), (nq, nq + nkv, kvh, i["gk"])):
                    g = np.asarray(g, np.float64).reshape(-1)
                    normed, inv = head_norm_ref(y[:, lo:hi], g, heads, hd, eps)
                    err = b[:, lo:hi].reshape(T, heads, hd).max(axis=2, keepdims=True)
                    err = np.broadcast_to(err, (T, heads, hd)).reshape(T, -1)
                    gabs = np.tile(np.abs(g), heads)
                    parts.append((normed, 2.0 * err * inv * gabs + 1e-4 * (np.abs(normed) + gabs) + 1e-6))
                y = np.concatenate([parts[0][0], parts[1][0], y[:, nq + nkv:]], axis=1)
                b = np.concatenate([parts[0][1], parts[1][1], b[:, nq + nkv:]], axis=1)
            theta = float(i["theta"])
            q = rope_ref(y[:, :nq], self.pos, nh, hd, theta)
            kk = rope_ref(y[:, nq:nq + nkv], self.pos, kvh, hd, theta)
            if q is None:
                return
            _close("qkv q", out_now(n_("q_out"), T * nq).reshape(T, nq), q, rope_bound(b[:, :nq], nh, hd))
            vv = y[:, nq + nkv:]
            for what, want, bound, cache in (("k", kk, rope_bound(b[:, nq:nq + nkv], kvh, hd), kv_after[0]),
                                             ("v", vv, b[:, nq + nkv:], kv_after[1])):
                got = cache[layer][self.pos].reshape(T, nkv).astype(np.float64)
                _close(f"qkv {what} cache", got, want, bound * 1.01 + 1e-3 * np.abs(want) + 1e-7)


def _one_line(e: Exception, where: str) -> None:
    msg = str(e)
    if not msg or "\n" in msg:
        raise CaseFailure(f"{where}: {type(e).__name__} message is not one line: {msg!r}")


def execute(case: Case) -> dict:
    """Run a case. Returns {"status": "ok" (no error) | "error" (IgnisErrors only),
    "errors": [(call, error type, message)], ...}; raises CaseFailure when a property breaks."""
    from ignis import _kernels as K
    from ignis.errors import IgnisError

    info = {"status": "ok", "errors": [], "adds_ok": 0, "adds_failed": 0, "checked": 0, "ran": False}

    def refused(call, e):
        _one_line(e, call)
        info["status"] = "error"
        info["errors"].append((call, type(e).__name__, str(e)))

    try:
        plan = K.Plan(*build(case.plan))
    except IgnisError as e:
        refused("Plan", e)
        return info
    except Exception as e:
        raise CaseFailure(f"Plan{case.plan!r} raised {type(e).__name__}: {e}") from None
    T = plan.n_tokens
    fill = min(plan.arena_bytes, case.fill + 4096)
    r = np.random.default_rng(case.seed)
    nf = min(plan.arena_bytes, case.fill) // 4
    plan.arena[:nf * 4].view(np.float32)[:] = r.standard_normal(nf).astype(np.float32)
    snap = plan.arena[:fill].copy()
    done = []
    for name, spec in case.ops:
        args = build(spec)
        before = (plan.n_instructions, plan.describe())
        try:
            getattr(plan, "add_" + name)(*args)
        except IgnisError as e:
            refused(f"add_{name}", e)
            info["adds_failed"] += 1
            if (plan.n_instructions, plan.describe()) != before:
                raise CaseFailure(f"add_{name} failed ({e}) but changed the plan") from None
            continue
        except Exception as e:
            raise CaseFailure(f"add_{name}{tuple(spec)!r} raised {type(e).__name__}: {e}") from None
        info["adds_ok"] += 1
        done.append((name, {key: v for (key, _), v in zip(SIGS[name], args)}))
    if case.run is None:
        return info
    tokens, positions, kv, *more = build(case.run)
    run_kw = more[0] if more else {}
    kv_arrays = None
    if kv is not None:
        try:
            kc, vc = (kv if isinstance(kv, tuple) else (kv.k, kv.v))
            if isinstance(kc, np.ndarray) and isinstance(vc, np.ndarray):
                kv_arrays = (np.asarray(kc), np.asarray(vc))
        except Exception:
            kv_arrays = None
    kv_before = tuple(a.copy() for a in kv_arrays) if kv_arrays else None
    try:
        plan.run(tokens, positions, kv, **run_kw)
    except IgnisError as e:
        refused("run", e)
        return info
    except Exception as e:
        raise CaseFailure(f"run raised {type(e).__name__}: {e}") from None
    info["ran"] = True
    info["checked"] = _check_run(plan, T, done, snap, tokens, positions, kv_arrays, kv_before,
                                 run_kw.get("rows"))
    return info


def _as_index_array(v):
    """tokens / positions as int64 (None if absent or not integers: then no instruction used them)."""
    try:
        a = np.asarray(v)
        return a.astype(np.int64).reshape(-1) if v is not None and a.dtype.kind in "iu" else None
    except (TypeError, ValueError, OverflowError):
        return None


def _check_run(plan, T, done, snap, tokens, positions, kv_arrays, kv_before, take=None) -> int:
    """Reference values and untouched memory after a successful run; returns how many
    instructions were value-checked."""
    final = plan.arena[:snap.size]
    regs = [_regions(name, a, T) for name, a in done]
    # nothing outside the written regions changed
    written = np.zeros(snap.size, bool)
    for _, writes, _, _ in regs:
        for o, nb in writes:
            written[max(0, o):max(0, min(snap.size, o + nb))] = True
    changed = (final != snap) & ~written
    if changed.any():
        at = int(np.argmax(changed))
        raise CaseFailure(f"arena byte {at} changed outside every written region")
    pos, tok, take = _as_index_array(positions), _as_index_array(tokens), _as_index_array(take)
    kv_rows = set()
    kv_writers = [j for j, (_, _, _, kw) in enumerate(regs) if kw]
    if kv_arrays is not None and kv_writers:
        for j in kv_writers:
            layer = _ints(done[j][1]["layer"])
            kv_rows.update((layer, int(p)) for p in pos)
        for a, b in zip(kv_arrays, kv_before):
            mask = np.ones(a.shape[:2], bool)
            for layer, p in kv_rows:
                mask[layer, p] = False
            if not np.array_equal(a[mask].view(np.uint16), b[mask].view(np.uint16)):
                raise CaseFailure("KV cache rows changed that no instruction writes")
    elif kv_arrays is not None and not all(np.array_equal(a.view(np.uint16), b.view(np.uint16))
                                           for a, b in zip(kv_arrays, kv_before)):
        raise CaseFailure("KV cache changed by a plan that does not write it")
    f32 = lambda buf, o, n: buf[o:o + 4 * n].view(np.float32).astype(np.float64)
    checked = 0
    for i, (name, a) in enumerate(done):
        reads, writes, kv_read, kv_write = regs[i]
        later_w = [w for j in range(i + 1, len(done)) for w in regs[j][1]]
        if any(_overlap(w, o) for w in later_w for o in writes):
            continue                              # its result was overwritten
        sources = []
        for rd in reads:
            before = any(_overlap(w, rd) for j in range(i) for w in regs[j][1])
            after = any(_overlap(w, rd) for j in range(i, len(done)) for w in regs[j][1])
            sources.append(None if before and after else final if before else snap)
        if any(s is None for s in sources):
            continue
        src = {rd: s for rd, s in zip(reads, sources)}
        read = lambda o, n, src=src: f32(src[(o, 4 * n)], o, n)
        if kv_read:
            if kv_arrays is None:
                continue
            if any(j > i for j in kv_writers) and any(j < i for j in kv_writers):
                continue
            kv_src = kv_before if not any(j < i for j in kv_writers) else kv_arrays
        else:
            kv_src = kv_before
        if kv_write:
            layer = _ints(a["layer"])
            if np.shares_memory(*kv_arrays) or len(set(pos.tolist())) != len(pos) or \
                    any(j != i and _ints(done[j][1]["layer"]) == layer for j in kv_writers):
                continue
        oracle = Oracle(T, pos, tok, kv_src, take)
        try:
            oracle.check(name, a, read, lambda o, n: f32(final, o, n), kv_arrays)
        except CaseFailure:
            raise
        except Exception as e:
            raise CaseFailure(f"add_{name} accepted arguments the reference cannot read "
                              f"({type(e).__name__}: {e})") from None
        checked += 1
    return checked


# ------------------------------------------------------------------ running a case (parent side)

TIMEOUT = 60.0          # seconds per case (a valid case takes milliseconds)


def _write_msg(f, obj) -> None:
    data = pickle.dumps(obj)
    f.write(len(data).to_bytes(8, "little") + data)
    f.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """n bytes from fd, or None on EOF or when the deadline passes."""
    buf = b""
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _read_msg(fd: int, deadline: float | None):
    head = _read_exact(fd, 8, deadline)
    if head is None:
        return None
    body = _read_exact(fd, int.from_bytes(head, "little"), deadline)
    return None if body is None else pickle.loads(body)


def _serve() -> None:
    """The case server: a fresh interpreter that has imported numpy, gguf and ignis._kernels
    but never runs a case itself (so no OpenMP region: libgomp is not fork-safe after one).
    For each case it receives it forks a child, which runs the case and reports; the server
    sends back the report, or how the child died (signal, exit code, timeout)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                                    # anything printed goes to stderr
    import warnings

    import gguf  # noqa: F401
    import ignis._kernels  # noqa: F401
    warnings.simplefilter("ignore")                  # numpy casts in rejected arguments: not news
    np.seterr(all="ignore")
    _child(WARM_UP)                                  # lazy imports and first-call costs, paid once
    while True:
        msg = _read_msg(0, None)
        if msg is None:
            return
        case, timeout = msg
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                 # the child
            os.close(r)
            code = 0
            try:
                report = _child(case)
                data = pickle.dumps(report)
                os.write(w, len(data).to_bytes(8, "little"))
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view):]
            except BaseException:
                code = 3
            finally:
                os._exit(code)
        os.close(w)
        report = _read_msg(r, time.monotonic() + timeout)
        os.close(r)
        if report is None:
            try:                                     # no report in time (or it died): make sure
                os.kill(pid, signal.SIGKILL)         # it is gone before reaping it
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and report is None:
            sig = os.WTERMSIG(status)
            report = {"status": "crash", "detail": f"child killed by signal {sig} ({signal.Signals(sig).name})"}
            if sig == signal.SIGKILL:
                report = {"status": "timeout", "detail": f"no report within {timeout:.0f}s (killed)"}
        elif report is None or os.WEXITSTATUS(status) != 0:
            report = {"status": "crash", "detail": f"child exited with status {os.WEXITSTATUS(status)} "
                                                   f"without a report"}
        _write_msg(out, report)


# one thread (no OpenMP region), every path of the child once
WARM_UP = Case(plan=(4096, 1, 2), fill=4096, seed=0, ops=[
    ("matmul", [0, 2048, [Wt(Q8_0, 3, 256, 0), Wt(Q4_K, 2, 256, 1)], 2, 256, 5, [Q8_0, Q4_K], "q8_0"]),
    ("rope", [3072, 3072, 2, 4, 1e4])],
    run=(Ints((1, 2)), Ints((0, 1)), KV((1, 4, 2, 4), 0)))


def _child(case) -> dict:
    try:
        return execute(case)
    except CaseFailure as e:
        return {"status": "fail", "detail": str(e)}
    except BaseException:
        return {"status": "fail", "detail": "unexpected exception in the child:\n" + traceback.format_exc()}


class Runner:
    """The parent's handle on a case server (started on first use, restarted if it dies)."""

    def __init__(self):
        self.proc = None

    def _start(self):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-c", "from fuzz.plan_api import _serve; _serve()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, env=env)

    def run(self, case, timeout: float = TIMEOUT) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            _write_msg(self.proc.stdin, (case, timeout))
            report = _read_msg(self.proc.stdout.fileno(), time.monotonic() + timeout + 60)
        except (BrokenPipeError, OSError):
            report = None
        if report is None:                          # the server itself is gone or stuck
            self.close(kill=True)
            return {"status": "crash", "detail": "the case server died or hung"}
        return report

    def close(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


_RUNNER = Runner()
atexit.register(_RUNNER.close)


def run_case(case: Case, timeout: float = TIMEOUT) -> dict:
    """Run a case in a child process: {"status": ok | error | fail | crash | timeout, ...}."""
    return _RUNNER.run(case, timeout)


def check_case(case: Case) -> dict:
    """The property: the child exits normally and reports success or an IgnisError."""
    out = run_case(case)
    if out["status"] not in ("ok", "error"):
        raise AssertionError(f"{out['status']}: {out.get('detail', '')}\ncase: {case!r}")
    return out


# ------------------------------------------------------------------ case generation

POW = [2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 62 + 1, 2 ** 63 - 1, 2 ** 63, -2 ** 63, 2 ** 64 + 5, 10 ** 30, -(2 ** 64)]


def _wrong_types(v):
    return [str(v), float(v), None, [v], (v,), np.float64(v), b"1", complex(v, 0), Opaque(), True,
            np.array([v]), np.uint64(2 ** 64 - 1)]


def bad_int(draw, v, *, lo=1):
    """A wrong value for an integer argument whose valid value is v."""
    choice = draw(st.sampled_from(["small", "pow", "type", "near", "numpy"]))
    if choice == "small":
        return draw(st.sampled_from([0, -1, lo - 1, -v, v + 1, 2 * v + 3, 3 * v + 1]))
    if choice == "pow":
        return draw(st.sampled_from(POW + [2 ** 62 + v, 2 ** 64 + v, 2 ** 16, 2 ** 16 + 2, 2 ** 20 + 1,
                                           2 ** 24 + 1, 2 ** 32 + v]))
    if choice == "type":
        return draw(st.sampled_from(_wrong_types(v)))
    if choice == "near":
        return v + draw(st.integers(-3, 3))
    return draw(st.sampled_from([np.int64(v), np.int32(v), np.uint8(min(v, 255)), np.array(v),
                                 np.int64(2 ** 63 - 1), np.int64(-2 ** 63)]))


def bad_offset(draw, o, arena, others):
    choice = draw(st.sampled_from(["edge", "pow", "type", "other", "shift"]))
    if choice == "edge":
        return draw(st.sampled_from([-4, -1, 1, 2, o + 2, arena, arena - 4, arena + 4, arena - 64]))
    if choice == "pow":
        return draw(st.sampled_from([2 ** 62, 2 ** 63 - 4, 2 ** 63 - 8, 2 ** 64 - 4, -2 ** 63, 2 ** 63,
                                     2 ** 62 + 4, 4 * (2 ** 61 - 1), 10 ** 20]))
    if choice == "type":
        return draw(st.sampled_from(_wrong_types(o)))
    if choice == "other" and others:
        return draw(st.sampled_from(others)) + draw(st.sampled_from([0, 0, 4, 32, -4]))
    return o + 4 * draw(st.integers(-8, 8))


BAD_WTYPES = [3, 4, 5, 9, 10, 13, 15, 16, 17, 39, -1, 255, 2 ** 31, 2 ** 63, 2 ** 64, "8", 8.0, None,
              [8, 8, 8, 8], ["8"], [None], [], np.float32(8), True, Opaque(), F32, F16, Q5_0, Q8_0,
              Q4_K, Q6_K, np.int64(8), (8,), [8, 8], [8, 6], [0, 8, 8]]
BAD_EPS = [float("nan"), float("inf"), -float("inf"), -1.0, -1e-30, 0.0, 1e300, 3.5e38, "1e-6", None,
           [1e-6], np.float32(1e-6), np.float64(1e-5), 10 ** 400, True, 1, np.array(1e-6), complex(1e-6, 0),
           Opaque()]
BAD_THETA = [float("nan"), float("inf"), 0.0, -1.0, -1e4, 1e-300, 1e308, "1e4", None, 10 ** 400, True,
             np.float32(1e4), 10000, np.array(1e4), [1e4], Opaque()]
BAD_ACT = ["q16", "Q16", "", None, 16, b"q16", ["q16"], "q8_0 ", "q4", Opaque(), np.str_("q16")]


def bad_weight(draw, w, n_rows, k, seed):
    """A wrong weight (spec) for a valid w of n_rows rows of k elements."""
    parts = list(w) if isinstance(w, list) else [w]
    first = parts[0]
    choice = draw(st.sampled_from(["split", "split", "rows", "extra", "dtype", "form", "nonarray", "empty",
                                   "four", "tuple", "nested", "bytes", "layout"]))
    if choice == "split":           # the same rows cut anywhere into 1-4 parts (0-row parts included)
        total = sum(p.rows for p in parts)
        n_cuts = draw(st.integers(0, 3))
        cuts = sorted(draw(st.lists(st.integers(0, total), min_size=n_cuts, max_size=n_cuts)))
        bounds = [0] + cuts + [total]
        return [Wt(first.layout, b - a, k, seed + i) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    i = draw(st.integers(0, len(parts) - 1))
    p = parts[i]
    if choice == "rows":
        p = Wt(p.layout, max(0, p.rows + draw(st.sampled_from([-1, 1, 2, -p.rows]))), p.k, p.seed)
    elif choice == "extra":
        p = Wt(p.layout, p.rows, p.k, p.seed, extra=draw(st.sampled_from([1, 2, 3, 17, -1, -2])))
    elif choice == "dtype":
        p = Wt(p.layout, p.rows, p.k, p.seed, dtype=draw(st.sampled_from(
            ["float32", "float16", "uint16", "int8", "uint8", "float64", "int32", ">f4", "complex64", "bool"])))
    elif choice == "form":
        p = Wt(p.layout, p.rows, p.k, p.seed, form=draw(st.sampled_from(
            ["strided", "0d", "fortran", "readonly", "2d", "sub", "empty"])))
    elif choice == "nonarray":
        p = draw(st.sampled_from(["W", None, 3, 2.5, [1, 2, 3], b"\x00" * 34, Opaque(), (1,)]))
    elif choice == "empty":
        return draw(st.sampled_from([[], ()]))
    elif choice == "four":
        return parts + [Wt(first.layout, 1, k, seed + 7)] * (4 - len(parts))
    elif choice == "tuple":
        return tuple(parts)
    elif choice == "nested":
        return [parts]
    elif choice == "bytes":
        return b"\x00" * 64
    elif choice == "layout":         # the bytes of another type (row bytes differ, or the same count)
        p = Wt(draw(st.sampled_from(list(BLOCK))), p.rows, p.k, p.seed)
    parts[i] = p
    return parts if isinstance(w, list) or len(parts) > 1 else parts[0]


def bad_vec(draw, n, seed):
    return draw(st.sampled_from([
        Vec(n + 1, seed), Vec(max(0, n - 1), seed), Vec(0, seed), Vec(n, seed, "str"), Vec(n, seed, "complex64"),
        Vec(n, seed, "bool"), Vec(n, seed, "object"), None, "abc", ["a"] * n, Vec(n, seed, form="strided"),
        Vec(n, seed, "float64"), Vec(n, seed, "int32"), Vec(n, seed, form="2d"), Vec(n, seed, form="list"),
        Vec(n, seed, form="nan"), Vec(n, seed, form="readonly"), Opaque(), 1.5, Vec(2 * n, seed, form="2d")]))


class Layout:
    """Bump allocation of arena regions (bytes, 64-aligned)."""

    def __init__(self):
        self.top = 0
        self.offsets = []

    def __call__(self, n_floats):
        off = self.top
        self.top += (max(n_floats, 1) * 4 + 63) // 64 * 64
        self.offsets.append(off)
        return off


@st.composite
def weight_spec(draw, n, k, types, seed, splits=None):
    """(w, wtype) for n rows of k elements of the allowed types: one array, or a part list
    (at splits, or random ones) with one type or a type per part."""
    n_parts = draw(st.sampled_from([1, 1, 2, 3])) if splits is None else len(splits) + 1
    if splits is None:
        n_parts = min(n_parts, n)
        splits = sorted(draw(st.lists(st.integers(1, n - 1), min_size=n_parts - 1, max_size=n_parts - 1,
                                      unique=True))) if n_parts > 1 else []
    bounds = [0] + list(splits) + [n]
    per_part = len(bounds) > 2 and draw(st.booleans())
    tlist = [draw(st.sampled_from(types)) for _ in bounds[1:]] if per_part else [draw(st.sampled_from(types))] * (
        len(bounds) - 1)
    parts = [Wt(t, b - a, k, seed + i) for i, (t, a, b) in enumerate(zip(tlist, bounds, bounds[1:]))]
    if len(parts) == 1 and not draw(st.integers(0, 4)) == 0:
        return parts[0], tlist[0]
    return parts, (tlist if per_part or draw(st.booleans()) and len(parts) > 1 else tlist[0])


@st.composite
def k_and_types(draw):
    cls = draw(st.sampled_from(["q", "q", "q", "kq", "float"]))
    if cls == "kq":
        return 256, [Q8_0, Q5_0, Q4_1, Q4_K, Q6_K, F32, F16, Q4_0, Q5_1, IQ4_NL, BF16]
    if cls == "q":
        return 32 * draw(st.integers(1, 4)), [Q8_0, Q8_0, Q5_0, Q4_1, F32, F16, Q4_0, Q5_1, IQ4_NL, BF16]
    return draw(st.integers(1, 40)), [F32, F16, BF16]


@st.composite
def valid_op(draw, name, T, lay, ctx, seed):
    """A valid call: {parameter: value} (array arguments as specs)."""
    rows = draw(st.integers(1, T))
    if name == "embed":
        k, types = draw(k_and_types())
        vocab = draw(st.integers(1, 12))
        t = draw(st.sampled_from(types))
        ctx["vocab"] = min(ctx.get("vocab", 1 << 30), vocab)
        return dict(out=lay(T * k), w=Wt(t, vocab, k, seed), dim=k, wtype=t)
    if name == "take_rows":
        d, n_out = draw(st.integers(1, 48)), draw(st.integers(1, T))
        ctx.setdefault("take", (n_out, rows))
        return dict(x=lay(rows * d), out=lay(n_out * d), rows=rows, dim=d, n_out=n_out)
    if name in ("rms_inv", "rmsnorm", "scale_rows", "take_last"):
        d = draw(st.integers(1, 48))
        x = lay(rows * d)
        eps = draw(st.sampled_from([1e-6, 1e-5, 0.0]))
        if name == "rms_inv":
            return dict(x=x, out=lay(rows), rows=rows, dim=d, eps=eps)
        if name == "take_last":
            return dict(x=x, out=x if draw(st.booleans()) else lay(d), rows=rows, dim=d)
        out = x if draw(st.booleans()) else lay(rows * d)
        if name == "rmsnorm":
            return dict(x=x, out=out, g=Vec(d, seed), rows=rows, dim=d, eps=eps)
        return dict(x=x, r=lay(rows), out=out, g=Vec(d, seed), rows=rows, dim=d)
    if name == "add_bias":
        n = draw(st.integers(1, 48))
        y = lay(rows * n)
        return dict(y=y, out=y if draw(st.booleans()) else lay(rows * n), b=Vec(n, seed), rows=rows, n=n)
    if name in ("matmul", "matmul_bias", "matmul_add"):
        k, types = draw(k_and_types())
        n = draw(st.integers(1, 24))
        w, wt = draw(weight_spec(n, k, types, seed))
        x = lay(rows * k)
        d = dict(x=x)
        if name == "matmul_add":
            d["res"] = lay(rows * n)
            d["out"] = d["res"] if draw(st.booleans()) else lay(rows * n)
        else:
            d["out"] = lay(rows * n)
        d["w"] = w
        if name == "matmul_bias":
            d["b"] = Vec(n, seed)
        d.update(rows=rows, k=k, n=n, wtype=wt)
        if name == "matmul":
            tl = wt if isinstance(wt, list) else [wt]
            d["act"] = "q16" if all(t in (Q8_0,) + FLOAT_TYPES for t in tl) and draw(st.booleans()) else "q8_0"
        return d
    if name == "head_rmsnorm":
        nh, hd = draw(st.integers(1, 4)), draw(st.integers(1, 16))
        x = lay(rows * nh * hd)
        return dict(x=x, out=x if draw(st.booleans()) else lay(rows * nh * hd), g=Vec(hd, seed), rows=rows,
                    n_heads=nh, head_dim=hd, eps=draw(st.sampled_from([1e-6, 1e-5, 0.0])))
    if name == "rmsnorm_add":
        d = draw(st.integers(1, 48))
        res = lay(rows * d)
        return dict(y=lay(rows * d), res=res, out=res if draw(st.booleans()) else lay(rows * d), g=Vec(d, seed),
                    rows=rows, dim=d, eps=draw(st.sampled_from([1e-6, 1e-5, 0.0])))
    if name in ("gate_up_swiglu", "gate_up_geglu"):
        k, types = draw(k_and_types())
        n_ff = draw(st.integers(1, 16))
        kind = draw(st.sampled_from(["one", "two", "three", "up", "up", "any"]))
        if kind == "three" and n_ff > 1:     # a split inside the gate half: valid
            splits = [draw(st.integers(1, n_ff - 1)), n_ff]
        elif kind == "up" and n_ff > 1:      # [n_ff, a, n_ff - a]: the up half split alone (invalid)
            splits = [n_ff, n_ff + draw(st.integers(1, n_ff - 1))]
        elif kind == "any":                  # 1-2 cuts anywhere: mostly not a gate | up split
            splits = sorted(set(draw(st.lists(st.integers(1, 2 * n_ff - 1), min_size=1, max_size=2))))
        else:
            splits = [] if kind == "one" else [n_ff]
        w, wt = draw(weight_spec(2 * n_ff, k, types, seed, splits=splits))
        return dict(x=lay(rows * k), out=lay(rows * n_ff), w=w, rows=rows, k=k, n_ff=n_ff, wtype=wt)
    kvh, G, hd, theta = ctx["kvh"], ctx["G"], ctx["hd"], ctx["theta"]
    nh = kvh * G
    layer = draw(st.integers(0, ctx["L"] - 1))
    if name == "rope":
        heads = draw(st.sampled_from([nh, kvh]))
        x = lay(T * heads * hd)
        return dict(x=x, out=x if draw(st.booleans()) else lay(T * heads * hd), n_heads=heads, head_dim=hd,
                    theta=theta)
    if name == "kv_write":
        return dict(k=lay(T * kvh * hd), v=lay(T * kvh * hd), layer=layer, n_kv_heads=kvh, head_dim=hd)
    if name == "attention":
        q = lay(T * nh * hd)
        return dict(q=q, out=q if draw(st.booleans()) else lay(T * nh * hd), layer=layer, n_heads=nh,
                    n_kv_heads=kvh, head_dim=hd)
    if name == "qkv_norm_rope_kv":
        k, types = draw(k_and_types())
        nq, nkv = nh * hd, kvh * hd
        w, wt = draw(weight_spec(nq + 2 * nkv, k, types, seed,
                                 splits=[nq, nq + nkv] if draw(st.booleans()) else None))
        return dict(x=lay(T * k), q_out=lay(T * nq), w=w, gq=Vec(hd, seed), gk=Vec(hd, seed + 1), layer=layer,
                    n_heads=nh, n_kv_heads=kvh, head_dim=hd, theta=theta, eps=draw(st.sampled_from([1e-6, 1e-5])),
                    k=k, wtype=wt)
    if name == "qkv_rope_kv":
        k, types = draw(k_and_types())
        nq, nkv = nh * hd, kvh * hd
        w, wt = draw(weight_spec(nq + 2 * nkv, k, types, seed,
                                 splits=[nq, nq + nkv] if draw(st.booleans()) else None))
        return dict(x=lay(T * k), q_out=lay(T * nq), w=w, b=Vec(nq + 2 * nkv, seed) if draw(st.booleans()) else None,
                    layer=layer, n_heads=nh, n_kv_heads=kvh, head_dim=hd, theta=theta, k=k, wtype=wt)
    # elementwise
    n = draw(st.integers(1, 200))
    a = lay(n)
    if name in ("silu", "gelu"):
        return dict(x=a, out=a if draw(st.booleans()) else lay(n), n=n)
    if name == "scale":
        return dict(x=a, out=a if draw(st.booleans()) else lay(n), n=n,
                    factor=draw(st.sampled_from([25.298221, -0.5, 0.0, 1.0])))
    b = lay(n)
    keys = [key for key, _ in SIGS[name]]
    out = draw(st.sampled_from([a, b, None]))
    return {keys[0]: a, keys[1]: b, "out": lay(n) if out is None else out, "n": n}


def mutate_arg(draw, name, key, kind, value, arena, lay, seed, T):
    """A wrong value for one argument."""
    if kind == "off":
        return bad_offset(draw, value, arena, lay.offsets)
    if kind == "rows":
        return bad_int(draw, value) if draw(st.booleans()) else draw(st.sampled_from([T + 1, 0, 2 * T]))
    if kind in ("dim", "n", "heads"):
        return bad_int(draw, value)
    if kind == "layer":
        return draw(st.sampled_from([-1, 2, 3, 2 ** 16, 2 ** 16 - 1, 2 ** 31, 2 ** 63, "0", None, 0.0,
                                     np.int64(1), Opaque()]))
    if kind == "wtype":
        return draw(st.sampled_from(BAD_WTYPES))
    if kind == "eps":
        return draw(st.sampled_from(BAD_EPS))
    if kind == "theta":
        return draw(st.sampled_from(BAD_THETA))
    if kind == "act":
        return draw(st.sampled_from(BAD_ACT))
    if kind == "vec":
        return bad_vec(draw, value.n if isinstance(value, Vec) else 4, seed)
    if kind == "w":
        if isinstance(value, Wt):
            rows, k = value.rows, value.k
        else:
            rows, k = sum(p.rows for p in value), value[0].k
        return bad_weight(draw, value, rows, k, seed)
    raise AssertionError(kind)


@st.composite
def cases(draw):
    """A Plan API case: mostly invalid arguments somewhere (see the module docstring)."""
    seed = draw(st.integers(0, 2 ** 20))
    T = draw(st.integers(1, 4))
    threads = draw(st.sampled_from([1, 1, 2, 3]))
    ctx = {"kvh": draw(st.sampled_from([1, 2])), "G": draw(st.sampled_from([1, 2, 3])),
           "hd": draw(st.sampled_from([2, 4, 8, 16, 32])), "L": 2,
           "theta": draw(st.sampled_from([10000.0, 1e6, 500.0]))}
    n_ctx = T + draw(st.integers(0, 5))
    lay = Layout()
    names = draw(st.lists(st.sampled_from(plan_ops() + MATMULS), min_size=1, max_size=3))
    if len(names) > 1 and draw(st.booleans()):
        names = names[:1]
    ops, valid = [], []
    for j, name in enumerate(names):
        args = draw(valid_op(name, T, lay, ctx, seed + 101 * j))
        ops.append([name, args])
        valid.append(dict(args))
    arena = lay.top + draw(st.sampled_from([0, 0, 4, 64, 1000]))
    plan = [arena, threads, T]
    uses_tokens = "embed" in names
    vocab = ctx.get("vocab", 8)
    tokens = Ints(tuple(draw(st.lists(st.integers(0, vocab - 1), min_size=T, max_size=T))),
                  draw(st.sampled_from(["int32", "int64", "int32", "uint16", "int8"]))) \
        if uses_tokens or draw(st.booleans()) else None
    pos = draw(st.permutations(range(n_ctx)))[:T]
    positions = Ints(tuple(pos), draw(st.sampled_from(["int32", "int32", "int64", "uint8"])))
    kv = KV((ctx["L"], n_ctx, ctx["kvh"], ctx["hd"]), seed + 7)
    take = None
    if "take" in ctx:                        # take_rows: the run's rows, each below its x rows
        n_out, r = ctx["take"]
        take = Ints(tuple(draw(st.lists(st.integers(0, r - 1), min_size=n_out, max_size=n_out))))
    run = [tokens, positions, kv] + ([{"rows": take}] if take else []) if draw(st.integers(0, 9)) else None
    # the lies
    mutations = []
    n_mut = draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3, 4]))
    for _ in range(n_mut):
        target = draw(st.sampled_from(["op"] * 6 + ["plan", "run"]))
        if target == "op":
            j = draw(st.integers(0, len(ops) - 1))
            name, args = ops[j]
            key, kind = draw(st.sampled_from(SIGS[name]))
            args[key] = mutate_arg(draw, name, key, kind, valid[j][key], arena, lay, seed + 5, T)
            mutations.append(f"{name}.{key}")
        elif target == "plan":
            i = draw(st.integers(0, 2))
            base = (arena, threads, T)[i]
            if i == 0:
                plan[0] = draw(st.sampled_from([0, -1, 4, max(4, base - 4), base - 64, 2 ** 40 + 1, 2 ** 63,
                                                2 ** 64, 10 ** 30, str(base), float(base), None, np.int64(base)]))
            elif i == 1:
                plan[1] = draw(st.sampled_from([0, -1, 2 ** 31, 10 ** 5, 2 ** 63, "2", 2.0, None, np.int8(2),
                                                True, 4]))
            else:
                plan[2] = draw(st.sampled_from([0, -1, T + 1, max(1, T - 1), 2 ** 20 + 1, 2 ** 40, 2 ** 63, "1",
                                                None, 1.0, np.int64(T)]))
            mutations.append(f"plan[{i}]")
        elif run is not None:
            i = draw(st.integers(0, 3 if take else 2))
            mutations.append(f"run[{i}]")
            if i == 3:
                run[3] = {"rows": bad_ints(draw, take, len(take.values), ctx["take"][1], ctx["take"][1])}
            elif i == 2:
                run[2] = bad_kv(draw, kv, n_ctx, T)
            else:
                run[i] = bad_ints(draw, (tokens or positions, positions)[i], T, n_ctx, vocab)
    return Case(plan=tuple(plan), fill=lay.top, ops=[(name, [args[key] for key, _ in SIGS[name]])
                                                       for name, args in ops],
                run=tuple(run) if run is not None else None, seed=seed, mutations=mutations)


def bad_ints(draw, spec: Ints, T, n_ctx, vocab):
    v = list(spec.values)
    choice = draw(st.sampled_from(["wrap", "float", "str", "obj", "empty", "2d", "0d", "neg", "len", "big",
                                   "list", "listfloat", "none", "range", "uint64", "bool", "dup", "huge32"]))
    if choice == "wrap":             # 2^32 + x: a silent wrap to x before the checks
        return Ints(tuple(x + 2 ** 32 for x in v), "int64")
    if choice == "float":
        return Ints(tuple(float(x) for x in v), draw(st.sampled_from(["float32", "float64"])))
    if choice == "str":
        return Ints(tuple(str(x) for x in v), "U4")
    if choice == "obj":
        return Ints(tuple([2 ** 70] + v[1:]), "object")
    if choice == "empty":
        return Ints((), "int32")
    if choice == "2d":
        return Ints(tuple(v), "int32", (1, T))
    if choice == "0d":
        return Ints(v[0], "int32")
    if choice == "neg":
        return Ints(tuple([-1] + v[1:]), "int32")
    if choice == "len":
        return Ints(tuple(v + [0]) if draw(st.booleans()) or T == 1 else tuple(v[:-1]), "int32")
    if choice == "big":
        return Ints(tuple([2 ** 31 - 1] + v[1:]), "int64")
    if choice == "list":
        return Ints(tuple(v), form="list")
    if choice == "listfloat":
        return [float(x) for x in v]
    if choice == "none":
        return draw(st.sampled_from([None, "0123", Opaque(), 3]))
    if choice == "range":
        return Ints(tuple([max(n_ctx, vocab)] + v[1:]), "int32")
    if choice == "uint64":
        return Ints(tuple([2 ** 64 - 1] + v[1:]), "uint64")
    if choice == "bool":
        return Ints(tuple(bool(x) for x in v), "bool")
    if choice == "dup":
        return Ints(tuple([v[0]] * T), "int32")
    return Ints(tuple([2 ** 31] + v[1:]), "int64")


def bad_kv(draw, kv: KV, n_ctx, T):
    L, c, h, d = kv.shape
    choice = draw(st.sampled_from(["none", "how", "dtype", "shape", "form", "vshape", "short"]))
    if choice == "none":
        return draw(st.sampled_from([None, "kv", 3, Opaque(), (None, None), ()]))
    if choice == "how":
        return KV(kv.shape, kv.seed, how=draw(st.sampled_from(["tuple", "tuple3", "tuple1", "k_only", "dict",
                                                               "same", "list"])))
    if choice == "dtype":
        return KV(kv.shape, kv.seed, dtype=draw(st.sampled_from(["float32", "uint16", "float64", ">f2"])))
    if choice == "shape":
        return KV(draw(st.sampled_from([(1, c, h, d), (L, c, h + 1, d), (L, c, h, d + 2), (L, c, h * d),
                                        (L, c, h, d, 1), (0, c, h, d), (L, 0, h, d)])), kv.seed)
    if choice == "form":
        return KV(kv.shape, kv.seed, form=draw(st.sampled_from(["readonly", "strided", "fortran", "sub"])))
    if choice == "vshape":
        return KV(kv.shape, kv.seed, vshape=(L, max(1, c - 1), h, d))
    return KV((L, max(1, c - draw(st.integers(1, c))), h, d), kv.seed)


# ------------------------------------------------------------------ runner

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.plan_api", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="number of cases (each in a child process)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (reproduce a run)")
    args = parser.parse_args(argv)
    settings.register_profile("fuzz", deadline=None, print_blob=True, database=None,
                              suppress_health_check=list(HealthCheck))
    stats = {}

    def count(key, n=1):
        stats[key] = stats.get(key, 0) + n

    def check(case):
        note(repr(case))
        out = check_case(case)
        count("cases")
        count("cases without any error" if out["status"] == "ok" else "cases with a refused call")
        count("runs completed (results checked)" if out["ran"] else "cases not run to the end")
        count("instructions value-checked against the reference", out["checked"])
        count("add_* accepted", out["adds_ok"])
        count("add_* refused (IgnisError)", out["adds_failed"])
        for call, kind, _ in out["errors"]:
            if not call.startswith("add_"):
                count(f"{call} refused ({kind})")

    test = settings(settings.get_profile("fuzz"), max_examples=args.cases)(given(cases())(check))
    if args.seed is not None:
        from hypothesis import seed
        test = seed(args.seed)(test)
    t = time.time()
    try:
        test()
        ok = True
    except Exception as e:          # hypothesis has printed the falsifying example
        ok = False
        print(f"FAILED: {type(e).__name__}: {e}", flush=True)
    dt = time.time() - t
    total = stats.get("cases", 0)
    print(f"{total} cases in {dt:.0f}s ({total / max(dt, 1e-9):.1f}/s): {'no failure' if ok else 'FAILED'}")
    for key in sorted(stats):
        if key != "cases":
            print(f"  {key}: {stats[key]}")
    return 0 if ok else 1


if __name__ == "__main__":
    # run the module under its import name, so that the cases pickle as fuzz.plan_api.*
    # (the case server imports that, not this __main__)
    from fuzz.plan_api import main as _main
    sys.exit(_main())
