"""The Plan API fuzzer's vocabulary: the kernel weight types, every add_* signature, and the
picklable specs a case is made of (arrays are described here and built in the child)."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

# GGUF type numbers the kernels take, with (elements, bytes) per block
F32, F16, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K = 0, 1, 3, 6, 8, 12, 14
Q4_0, Q5_1, IQ4_NL, BF16 = 2, 7, 20, 30
Q2_K, Q3_K, Q5_K, IQ4_XS = 10, 11, 13, 23
BLOCK = {F32: (1, 4), F16: (1, 2), Q4_1: (32, 20), Q5_0: (32, 22), Q8_0: (32, 34), Q4_K: (256, 144),
         Q6_K: (256, 210)}
BLOCK.update({Q4_0: (32, 18), Q5_1: (32, 24), IQ4_NL: (32, 18), BF16: (1, 2)})
BLOCK.update({Q2_K: (256, 84), Q3_K: (256, 110), Q5_K: (256, 176), IQ4_XS: (256, 136)})
FLOAT_TYPES = (F32, F16, BF16)

# every public add_* method: (parameter, kind), in order
SIGS = {
    "embed": [("out", "off"), ("w", "w"), ("dim", "dim"), ("wtype", "wtype")],
    "rms_inv": [("x", "off"), ("out", "off"), ("rows", "rows"), ("dim", "dim"), ("eps", "eps")],
    "scale_rows": [("x", "off"), ("r", "off"), ("out", "off"), ("g", "vec"), ("rows", "rows"), ("dim", "dim")],
    "matmul": [("x", "off"), ("out", "off"), ("w", "w"), ("rows", "rows"), ("k", "dim"), ("n", "dim"),
               ("wtype", "wtype"), ("act", "act")],
    "add_bias": [("y", "off"), ("out", "off"), ("b", "vec"), ("rows", "rows"), ("n", "dim")],
    "rope": [("x", "off"), ("out", "off"), ("n_heads", "heads"), ("head_dim", "heads"), ("theta", "theta"),
             ("mode", "mode")],
    "kv_write": [("k", "off"), ("v", "off"), ("layer", "layer"), ("n_kv_heads", "heads"), ("head_dim", "heads"),
                 ("pool", "pool")],
    "attention": [("q", "off"), ("out", "off"), ("layer", "layer"), ("n_heads", "heads"),
                  ("n_kv_heads", "heads"), ("head_dim", "heads"), ("window", "window"), ("pool", "pool")],
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
                    ("k", "dim"), ("wtype", "wtype"), ("mode", "mode"), ("pool", "pool")],
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
                         ("theta", "theta"), ("eps", "eps"), ("k", "dim"), ("wtype", "wtype"), ("mode", "mode"),
                         ("pool", "pool")],
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
