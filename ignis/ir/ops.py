"""The op table: for each op kind of docs/ops.md its operands, attributes, result
shapes, whether it writes the KV cache and which operand its result may overwrite.

Conventions (docs/ops.md): activations f32 [T, N]; a weight of numpy shape (N, K)
maps [T, K] -> [T, N]; pos, seq and tokens are i32 [T] (token t is at position pos[t]
of sequence seq[t]); a KV-cache write returns a zero-byte "kv" token of shape ().
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


class ShapeError(ValueError):
    """Operands of an op do not fit together (message names the op and the operand)."""


@dataclass(frozen=True)
class OpSpec:
    kind: str
    inputs: tuple            # operand names, in order
    weights: tuple           # weight operand names, in order
    attrs: tuple             # required attribute names
    infer: Callable          # (kind, input values, weight shapes, attrs) -> [(shape, dtype)]
    optional_weights: int = 0   # how many trailing weight operands may be absent
    inplace: tuple = ()      # indices of inputs result 0 may overwrite (elementwise, read before write)
    side_effect: bool = False   # writes the KV cache: never dead, ordered by its kv token
    fused: bool = False      # produced by a pass, not by a model builder

    @property
    def n_results(self) -> int:
        return 2 if self.kind in ("qkv_rope_kv", "qkv_norm_rope_kv") else 1


def _fail(kind, msg):
    raise ShapeError(f"{kind}: {msg}")


def _act(kind, name, v, rank=2):
    """Check an f32 activation of the given rank; returns its shape."""
    if v.dtype != "f32" or len(v.shape) != rank:
        _fail(kind, f"{name} must be f32 of rank {rank}, got {v.dtype}{list(v.shape)}")
    return v.shape


def _ids(kind, name, v, T=None):
    if v.dtype != "i32" or len(v.shape) != 1 or (T is not None and v.shape[0] != T):
        want = f"[{T}]" if T is not None else "[T]"
        _fail(kind, f"{name} must be i32 {want}, got {v.dtype}{list(v.shape)}")
    return v.shape[0]


def _matrix(kind, name, shape, k=None):
    if len(shape) != 2 or (k is not None and shape[1] != k):
        _fail(kind, f"weight {name} must have shape (N, {k if k is not None else 'K'}), got {tuple(shape)}")
    return shape[0]


def _vector(kind, name, shape, n):
    if tuple(shape) != (n,):
        _fail(kind, f"weight {name} must have shape ({n},), got {tuple(shape)}")


def _int_attr(kind, attrs, name, minimum=1):
    v = attrs.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        _fail(kind, f"attribute {name} must be an int >= {minimum}, got {v!r}")
    return v


def _heads(kind, attrs, width, heads_attr="n_heads"):
    nh, hd = _int_attr(kind, attrs, heads_attr), _int_attr(kind, attrs, "head_dim")
    if hd % 2:
        _fail(kind, f"head_dim {hd} must be even")
    if nh * hd != width:
        _fail(kind, f"{heads_attr} {nh} x head_dim {hd} != width {width}")
    return nh, hd


def _same(kind, a, b):
    sa, sb = _act(kind, "a", a), _act(kind, "b", b)
    if sa != sb:
        _fail(kind, f"operand shapes differ: {list(sa)} vs {list(sb)}")
    return [(sa, "f32")]


# --- shape rules, one per kind ---

def _embed(kind, ins, ws, attrs):
    T = _ids(kind, "tokens", ins[0])
    if len(ws[0]) != 2:
        _fail(kind, f"weight W must have shape (V, D), got {tuple(ws[0])}")
    return [((T, ws[0][1]), "f32")]


def _rms_inv(kind, ins, ws, attrs):
    T, _ = _act(kind, "x", ins[0])
    if not isinstance(attrs.get("eps"), float) or not attrs["eps"] > 0:
        _fail(kind, f"attribute eps must be a positive float, got {attrs.get('eps')!r}")
    return [((T, 1), "f32")]


def _scale_rows(kind, ins, ws, attrs):
    T, D = _act(kind, "x", ins[0])
    if _act(kind, "r", ins[1]) != (T, 1):
        _fail(kind, f"r must be [{T}, 1], got {list(ins[1].shape)}")
    _vector(kind, "g", ws[0], D)
    return [((T, D), "f32")]


def _matmul(kind, ins, ws, attrs):
    T, K = _act(kind, "x", ins[0])
    return [((T, _matrix(kind, "W", ws[0], K)), "f32")]


def _add_bias(kind, ins, ws, attrs):
    T, N = _act(kind, "y", ins[0])
    _vector(kind, "b", ws[0], N)
    return [((T, N), "f32")]


ROPE_MODES = ("neox", "normal")   # pairs (i, i + hd/2) / adjacent pairs (2i, 2i + 1)


def _rope_mode(kind, attrs):
    """The optional rope layout attribute (absent: neox)."""
    mode = attrs.get("mode", "neox")
    if mode not in ROPE_MODES:
        _fail(kind, f"attribute mode must be one of {ROPE_MODES}, got {mode!r}")
    return mode


def _rope(kind, ins, ws, attrs):
    T, W = _act(kind, "x", ins[0])
    _ids(kind, "pos", ins[1], T)
    _heads(kind, attrs, W)
    if not isinstance(attrs.get("theta"), float) or not attrs["theta"] > 0:
        _fail(kind, f"attribute theta must be a positive float, got {attrs.get('theta')!r}")
    _rope_mode(kind, attrs)
    return [((T, W), "f32")]


def _kv_write(kind, ins, ws, attrs):
    T, W = _act(kind, "k", ins[0])
    if _act(kind, "v", ins[1]) != (T, W):
        _fail(kind, f"v must be [{T}, {W}] like k, got {list(ins[1].shape)}")
    _ids(kind, "pos", ins[2], T)
    _ids(kind, "seq", ins[3], T)
    _int_attr(kind, attrs, "layer", 0)
    _heads(kind, attrs, W, "n_kv_heads")
    return [((), "kv")]


def _attention(kind, ins, ws, attrs):
    T, W = _act(kind, "q", ins[0])
    if ins[1].dtype != "kv":
        _fail(kind, f"kv must be a kv token, got {ins[1].dtype}{list(ins[1].shape)}")
    _ids(kind, "pos", ins[2], T)
    _ids(kind, "seq", ins[3], T)
    _int_attr(kind, attrs, "layer", 0)
    nh, _ = _heads(kind, attrs, W)
    if nh % _int_attr(kind, attrs, "n_kv_heads"):
        _fail(kind, f"n_heads {nh} is not a multiple of n_kv_heads {attrs['n_kv_heads']}")
    if "window" in attrs:           # sliding-window attention: the last `window` positions
        _int_attr(kind, attrs, "window")
    return [((T, W), "f32")]


def _unary(kind, ins, ws, attrs):
    return [(_act(kind, "x", ins[0]), "f32")]


def _binary(kind, ins, ws, attrs):
    return _same(kind, ins[0], ins[1])


def _scale(kind, ins, ws, attrs):
    f = attrs.get("factor")
    if not isinstance(f, float) or not f == f or f in (float("inf"), float("-inf")):
        _fail(kind, f"attribute factor must be a finite float, got {f!r}")
    return [(_act(kind, "x", ins[0]), "f32")]


def _head_rmsnorm(kind, ins, ws, attrs):
    T, W = _act(kind, "x", ins[0])
    _, hd = _heads(kind, attrs, W)
    _vector(kind, "g", ws[0], hd)
    if not isinstance(attrs.get("eps"), float) or not attrs["eps"] > 0:
        _fail(kind, f"attribute eps must be a positive float, got {attrs.get('eps')!r}")
    return [((T, W), "f32")]


def _take_last(kind, ins, ws, attrs):
    return [((1, _act(kind, "x", ins[0])[1]), "f32")]


def _take_rows(kind, ins, ws, attrs):
    D = _act(kind, "x", ins[0])[1]
    return [((_ids(kind, "rows", ins[1]), D), "f32")]


def _rmsnorm(kind, ins, ws, attrs):
    T, D = _rms_inv(kind, ins, ws, attrs)[0][0][0], ins[0].shape[1]
    _vector(kind, "g", ws[0], D)
    return [((T, D), "f32")]


def _matmul_bias(kind, ins, ws, attrs):
    (T, N), _ = _matmul(kind, ins, ws, attrs)[0]
    _vector(kind, "b", ws[1], N)
    return [((T, N), "f32")]


def _qkv_rope_kv(kind, ins, ws, attrs):
    T, K = _act(kind, "a", ins[0])
    _ids(kind, "pos", ins[1], T)
    _ids(kind, "seq", ins[2], T)
    _int_attr(kind, attrs, "layer", 0)
    nh, kvh = _int_attr(kind, attrs, "n_heads"), _int_attr(kind, attrs, "n_kv_heads")
    hd = _int_attr(kind, attrs, "head_dim")
    if hd % 2 or nh % kvh:
        _fail(kind, f"head_dim {hd} must be even and n_heads {nh} a multiple of n_kv_heads {kvh}")
    if not isinstance(attrs.get("theta"), float) or not attrs["theta"] > 0:
        _fail(kind, f"attribute theta must be a positive float, got {attrs.get('theta')!r}")
    _rope_mode(kind, attrs)
    n = (nh + 2 * kvh) * hd
    if _matrix(kind, "Wqkv", ws[0], K) != n:
        _fail(kind, f"weight Wqkv must have (n_heads + 2 n_kv_heads) x head_dim = {n} rows, got {ws[0][0]}")
    if len(ws) > 1:
        _vector(kind, "bqkv", ws[1], n)
    return [((T, nh * hd), "f32"), ((), "kv")]


def _qkv_norm_rope_kv(kind, ins, ws, attrs):
    out = _qkv_rope_kv(kind, ins, ws[:1], attrs)
    hd = attrs["head_dim"]
    _vector(kind, "gq", ws[1], hd)
    _vector(kind, "gk", ws[2], hd)
    if not isinstance(attrs.get("eps"), float) or not attrs["eps"] > 0:
        _fail(kind, f"attribute eps must be a positive float, got {attrs.get('eps')!r}")
    return out


def _matmul_add(kind, ins, ws, attrs):
    (T, N), _ = _matmul(kind, ins, ws, attrs)[0]
    if _act(kind, "res", ins[1]) != (T, N):
        _fail(kind, f"res must be [{T}, {N}], got {list(ins[1].shape)}")
    return [((T, N), "f32")]


def _rmsnorm_add(kind, ins, ws, attrs):
    shape = _rmsnorm(kind, ins[:1], ws, attrs)[0][0]
    if _act(kind, "res", ins[1]) != shape:
        _fail(kind, f"res must be {list(shape)}, got {list(ins[1].shape)}")
    return [(shape, "f32")]


def _gate_up_swiglu(kind, ins, ws, attrs):
    (T, N2), _ = _matmul(kind, ins, ws, attrs)[0]
    if N2 % 2:
        _fail(kind, f"weight Wgu must have an even number of rows (gate; up), got {N2}")
    return [((T, N2 // 2), "f32")]


OPS = {spec.kind: spec for spec in [
    # primitive ops (the unfused builder)
    OpSpec("embed", ("tokens",), ("W",), (), _embed),
    OpSpec("rms_inv", ("x",), (), ("eps",), _rms_inv),
    OpSpec("scale_rows", ("x", "r"), ("g",), (), _scale_rows, inplace=(0,)),
    OpSpec("matmul", ("x",), ("W",), (), _matmul),
    OpSpec("add_bias", ("y",), ("b",), (), _add_bias, inplace=(0,)),
    OpSpec("rope", ("x", "pos"), (), ("n_heads", "head_dim", "theta"), _rope, inplace=(0,)),
    OpSpec("kv_write", ("k", "v", "pos", "seq"), (), ("layer", "n_kv_heads", "head_dim"), _kv_write,
           side_effect=True),
    OpSpec("attention", ("q", "kv", "pos", "seq"), (), ("layer", "n_heads", "n_kv_heads", "head_dim"),
           _attention),
    OpSpec("add", ("a", "b"), (), (), _binary, inplace=(0, 1)),
    OpSpec("silu", ("x",), (), (), _unary, inplace=(0,)),
    OpSpec("mul", ("a", "b"), (), (), _binary, inplace=(0, 1)),
    OpSpec("gelu", ("x",), (), (), _unary, inplace=(0,)),
    OpSpec("scale", ("x",), (), ("factor",), _scale, inplace=(0,)),
    OpSpec("head_rmsnorm", ("x",), ("g",), ("n_heads", "head_dim", "eps"), _head_rmsnorm, inplace=(0,)),
    OpSpec("take_last", ("x",), (), (), _take_last),
    OpSpec("take_rows", ("x", "rows"), (), (), _take_rows),
    # fused ops (the passes)
    OpSpec("rmsnorm", ("x",), ("g",), ("eps",), _rmsnorm, inplace=(0,), fused=True),
    OpSpec("swiglu", ("g", "u"), (), (), _binary, inplace=(0, 1), fused=True),
    OpSpec("matmul_bias", ("x",), ("W", "b"), (), _matmul_bias, fused=True),
    OpSpec("qkv_rope_kv", ("a", "pos", "seq"), ("Wqkv", "bqkv"),
           ("layer", "n_heads", "n_kv_heads", "head_dim", "theta"), _qkv_rope_kv,
           optional_weights=1, side_effect=True, fused=True),
    OpSpec("qkv_norm_rope_kv", ("a", "pos", "seq"), ("Wqkv", "gq", "gk"),
           ("layer", "n_heads", "n_kv_heads", "head_dim", "theta", "eps"), _qkv_norm_rope_kv,
           side_effect=True, fused=True),
    OpSpec("matmul_add", ("x", "res"), ("W",), (), _matmul_add, inplace=(1,), fused=True),
    OpSpec("gate_up_swiglu", ("f",), ("Wgu",), (), _gate_up_swiglu, fused=True),
    OpSpec("rmsnorm_add", ("y", "res"), ("g",), ("eps",), _rmsnorm_add, inplace=(1,), fused=True),
    OpSpec("gate_up_geglu", ("f",), ("Wgu",), (), _gate_up_swiglu, fused=True),
]}

PRIMITIVE_KINDS = tuple(k for k, s in OPS.items() if not s.fused)
FUSED_KINDS = tuple(k for k, s in OPS.items() if s.fused)
KV_WRITERS = tuple(k for k, s in OPS.items() if s.side_effect)


def infer_results(kind: str, inputs, weight_shapes, attrs) -> list:
    """[(shape, dtype)] of the op's results; ShapeError if the operands do not fit."""
    spec = OPS.get(kind)
    if spec is None:
        raise ShapeError(f"unknown op kind {kind!r}")
    if len(inputs) != len(spec.inputs):
        raise ShapeError(f"{kind}: takes {len(spec.inputs)} inputs {spec.inputs}, got {len(inputs)}")
    n_w = len(weight_shapes)
    if not len(spec.weights) - spec.optional_weights <= n_w <= len(spec.weights):
        raise ShapeError(f"{kind}: takes weights {spec.weights}, got {n_w}")
    for name in spec.attrs:
        if name not in attrs:
            raise ShapeError(f"{kind}: missing attribute {name}")
    return spec.infer(kind, tuple(inputs), [tuple(s) for s in weight_shapes], attrs)
