"""The numpy reference interpreter: the definition of every op of docs/ops.md.

Activations are float32; weights come dequantized to float32 (a mapping tensor
name -> array, e.g. `ignis.models.qwen2.load_weights`); the KV cache holds float16.
Every fused op is computed by calling the primitive functions below in the order of
the ops it replaces, so a fused graph gives bit-for-bit the outputs of its unfused
original. Each op result is a fresh C-contiguous array (reductions over a strided
view could sum in another order).

A weight operand naming several tensors (a row-concatenation planned by a pass) is
multiplied part by part and the results are concatenated along the columns: the
same arithmetic, per output column, as one matmul per part.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ignis.errors import ContextOverflowError
from ignis.ir.graph import Graph

F32 = np.float32


class KVCache:
    """Per layer K and V, float16 [n_seq * n_ctx, n_kv_heads, head_dim]: sequence s holds
    rows [s * n_ctx, (s + 1) * n_ctx). Written by kv writers at (seq[t], pos[t]), read by
    attention at positions 0..pos[t] of sequence seq[t]."""

    def __init__(self, n_layers: int, n_ctx: int, n_kv_heads: int, head_dim: int, n_seq: int = 1):
        self.n_ctx = n_ctx
        self.n_seq = n_seq
        self.k = np.zeros((n_layers, n_seq * n_ctx, n_kv_heads, head_dim), np.float16)
        self.v = np.zeros((n_layers, n_seq * n_ctx, n_kv_heads, head_dim), np.float16)

    @classmethod
    def for_graph(cls, graph: Graph, n_ctx: int, n_seq: int = 1) -> "KVCache":
        m = graph.meta
        return cls(m["n_layers"], n_ctx, m["n_kv_heads"], m["head_dim"], n_seq)

    def rows(self, pos, seq, layer) -> np.ndarray:
        """Cache rows of tokens at positions pos of sequences seq (ContextOverflowError if
        a position does not fit, ValueError for an unknown sequence)."""
        if pos.size and (pos.min() < 0 or pos.max() >= self.n_ctx):
            raise ContextOverflowError(f"position {int(pos.max())} does not fit a KV cache of "
                                       f"{self.n_ctx} positions (layer {layer})")
        if seq.size and (seq.min() < 0 or seq.max() >= self.n_seq):
            raise ValueError(f"sequence {int(seq.max())} is not one of the cache's {self.n_seq}")
        return seq.astype(np.int64) * self.n_ctx + pos

    def copy(self) -> "KVCache":
        other = KVCache.__new__(KVCache)
        other.n_ctx, other.n_seq, other.k, other.v = self.n_ctx, self.n_seq, self.k.copy(), self.v.copy()
        return other


# ---------------------------------------------------------------- primitive ops

def embed(tokens, W):
    if tokens.size and (tokens.min() < 0 or tokens.max() >= W.shape[0]):
        bad = tokens[(tokens < 0) | (tokens >= W.shape[0])][0]
        raise ValueError(f"embed: token id {int(bad)} is outside the vocabulary [0, {W.shape[0]})")
    return np.ascontiguousarray(W[tokens], dtype=F32)


def rms_inv(x, eps):
    """1 / sqrt(mean(x^2) + eps) per row, float32 throughout."""
    ms = np.sum(x * x, axis=1, keepdims=True, dtype=F32) / F32(x.shape[1])
    return (F32(1.0) / np.sqrt(ms + F32(eps))).astype(F32)


def scale_rows(x, r, g):
    return (x * r) * g


def matmul(x, parts):
    """x @ W.T for W the row-concatenation of `parts` (one matmul per part)."""
    ys = [np.matmul(x, np.asarray(W, F32).T) for W in parts]
    return np.ascontiguousarray(ys[0] if len(ys) == 1 else np.concatenate(ys, axis=1), dtype=F32)


def add_bias(y, parts):
    b = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return y + np.asarray(b, F32)


def _rope_tables(pos, head_dim, theta):
    """cos, sin [T, hd/2]: angle pos * theta^(-2i/hd) in float64, rounded to float32."""
    half = head_dim // 2
    freq = np.power(np.float64(theta), -2.0 * np.arange(half, dtype=np.float64) / head_dim)
    angle = pos.astype(np.float64)[:, None] * freq[None, :]
    return np.cos(angle).astype(F32), np.sin(angle).astype(F32)


def rope(x, pos, n_heads, head_dim, theta, mode="neox"):
    """Rotation of each head's pairs: (i, i + hd/2) for mode "neox", (2i, 2i + 1) for
    "normal"; pair i turns by pos * theta^(-2i/hd) either way."""
    T, half = x.shape[0], head_dim // 2
    cos, sin = _rope_tables(pos, head_dim, theta)
    cos, sin = cos[:, None, :], sin[:, None, :]
    xh = x.reshape(T, n_heads, head_dim)
    first, second = (slice(0, half), slice(half, None)) if mode == "neox" else (slice(0, None, 2), slice(1, None, 2))
    x0, x1 = xh[..., first], xh[..., second]
    out = np.empty_like(xh)
    out[..., first] = x0 * cos - x1 * sin
    out[..., second] = x0 * sin + x1 * cos
    return out.reshape(T, n_heads * head_dim)


def kv_write(k, v, pos, seq, layer, n_kv_heads, head_dim, cache: KVCache):
    T = k.shape[0]
    rows = cache.rows(pos, seq, layer)
    cache.k[layer][rows] = k.reshape(T, n_kv_heads, head_dim).astype(np.float16)
    cache.v[layer][rows] = v.reshape(T, n_kv_heads, head_dim).astype(np.float16)
    return None


def attention(q, pos, seq, layer, n_heads, n_kv_heads, head_dim, cache: KVCache, window=None):
    """Causal GQA attention of each token over positions 0..pos[t] of its own sequence (the
    last `window` of them, pos[t] - window < p <= pos[t], with a window), float32 from the
    f16 cache."""
    out = np.empty_like(q, dtype=F32)
    cache.rows(pos, seq, layer)
    for s in np.unique(seq):
        mine = np.flatnonzero(seq == s)
        out[mine] = _attention_one(q[mine], pos[mine], cache.k[layer, s * cache.n_ctx:(s + 1) * cache.n_ctx],
                                   cache.v[layer, s * cache.n_ctx:(s + 1) * cache.n_ctx],
                                   n_heads, n_kv_heads, head_dim, window)
    return out


def _attention_one(q, pos, k_rows, v_rows, n_heads, n_kv_heads, head_dim, window=None):
    """Attention of tokens of one sequence over its cache rows."""
    T = q.shape[0]
    n = int(pos.max()) + 1 if T else 0
    group = n_heads // n_kv_heads
    K = k_rows[:n].astype(F32)                            # [n, kvh, hd]
    V = v_rows[:n].astype(F32)
    qh = q.reshape(T, n_kv_heads, group, head_dim).transpose(1, 2, 0, 3)   # [kvh, G, T, hd]
    scores = np.matmul(qh, K.transpose(1, 2, 0)[:, None])                  # [kvh, G, T, n]
    scores = scores / F32(np.sqrt(head_dim))
    future = np.arange(n)[None, :] > pos[:, None]                           # [T, n]
    if window is not None:
        future |= np.arange(n)[None, :] <= pos[:, None] - window          # out of the window
    scores[..., future] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    e = np.exp(scores)
    p = e / e.sum(axis=-1, keepdims=True, dtype=F32)
    out = np.matmul(p, V.transpose(1, 0, 2)[:, None])                      # [kvh, G, T, hd]
    return np.ascontiguousarray(out.transpose(2, 0, 1, 3).reshape(T, n_heads * head_dim), dtype=F32)


def add(a, b):
    return a + b


def silu(x):
    with np.errstate(over="ignore"):
        return x / (F32(1.0) + np.exp(-x))


def mul(a, b):
    return a * b


def gelu(x):
    """GELU, tanh approximation: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    inner = F32(np.sqrt(2.0 / np.pi)) * (x + F32(0.044715) * x * x * x)
    return (F32(0.5) * x * (F32(1.0) + np.tanh(inner))).astype(F32)


def scale(x, factor):
    return x * F32(factor)


def head_rmsnorm(x, g, n_heads, head_dim, eps):
    """rmsnorm over each head's head_dim values, with one gain vector g [head_dim] for all heads."""
    T = x.shape[0]
    heads = np.ascontiguousarray(x.reshape(T * n_heads, head_dim))
    return rmsnorm(heads, g, eps).reshape(T, n_heads * head_dim)


def take_last(x):
    return np.ascontiguousarray(x[-1:])


def take_rows(x, rows):
    if rows.size and (rows.min() < 0 or rows.max() >= x.shape[0]):
        raise ValueError(f"take_rows: row {int(rows.max())} is outside [0, {x.shape[0]})")
    return np.ascontiguousarray(x[rows])


# ------------------------------------------------- fused ops = their compositions

def rmsnorm(x, g, eps):
    return scale_rows(x, rms_inv(x, eps), g)


def swiglu(g, u):
    return mul(silu(g), u)


def matmul_bias(x, W_parts, b_parts):
    return add_bias(matmul(x, W_parts), b_parts)


def qkv_rope_kv(a, pos, seq, W_parts, b_parts, layer, n_heads, n_kv_heads, head_dim, theta, cache, mode="neox"):
    y = matmul(a, W_parts)
    if b_parts is not None:
        y = add_bias(y, b_parts)
    nq, nk = n_heads * head_dim, n_kv_heads * head_dim
    q = rope(np.ascontiguousarray(y[:, :nq]), pos, n_heads, head_dim, theta, mode)
    k = rope(np.ascontiguousarray(y[:, nq:nq + nk]), pos, n_kv_heads, head_dim, theta, mode)
    v = np.ascontiguousarray(y[:, nq + nk:])
    return q, kv_write(k, v, pos, seq, layer, n_kv_heads, head_dim, cache)


def rmsnorm_add(y, res, g, eps):
    return add(res, rmsnorm(y, g, eps))


def gate_up_geglu(f, W_parts):
    y = matmul(f, W_parts)
    n = y.shape[1] // 2
    return mul(gelu(np.ascontiguousarray(y[:, :n])), np.ascontiguousarray(y[:, n:]))


def qkv_norm_rope_kv(a, pos, seq, W_parts, gq, gk, layer, n_heads, n_kv_heads, head_dim, theta, eps, cache,
                     mode="neox"):
    y = matmul(a, W_parts)
    nq, nk = n_heads * head_dim, n_kv_heads * head_dim
    q = head_rmsnorm(np.ascontiguousarray(y[:, :nq]), gq, n_heads, head_dim, eps)
    k = head_rmsnorm(np.ascontiguousarray(y[:, nq:nq + nk]), gk, n_kv_heads, head_dim, eps)
    q = rope(q, pos, n_heads, head_dim, theta, mode)
    k = rope(k, pos, n_kv_heads, head_dim, theta, mode)
    v = np.ascontiguousarray(y[:, nq + nk:])
    return q, kv_write(k, v, pos, seq, layer, n_kv_heads, head_dim, cache)


def matmul_add(x, res, W_parts):
    return add(res, matmul(x, W_parts))


def gate_up_swiglu(f, W_parts):
    y = matmul(f, W_parts)
    n = y.shape[1] // 2
    return swiglu(np.ascontiguousarray(y[:, :n]), np.ascontiguousarray(y[:, n:]))


# ----------------------------------------------------------------- dispatch

def _run_op(op, args, ws, cache):
    a = op.attrs
    k = op.kind
    if k == "embed":
        return embed(args[0], ws[0][0] if len(ws[0]) == 1 else np.concatenate(ws[0]))
    if k == "rms_inv":
        return rms_inv(args[0], a["eps"])
    if k == "scale_rows":
        return scale_rows(args[0], args[1], np.concatenate(ws[0]))
    if k == "matmul":
        return matmul(args[0], ws[0])
    if k == "add_bias":
        return add_bias(args[0], ws[0])
    if k == "rope":
        return rope(args[0], args[1], a["n_heads"], a["head_dim"], a["theta"], a.get("mode", "neox"))
    if k == "kv_write":
        return kv_write(*args, a["layer"], a["n_kv_heads"], a["head_dim"], cache)
    if k == "attention":
        return attention(args[0], args[2], args[3], a["layer"], a["n_heads"], a["n_kv_heads"], a["head_dim"], cache,
                         a.get("window"))
    if k == "add":
        return add(*args)
    if k == "silu":
        return silu(args[0])
    if k == "mul":
        return mul(*args)
    if k == "gelu":
        return gelu(args[0])
    if k == "scale":
        return scale(args[0], a["factor"])
    if k == "head_rmsnorm":
        return head_rmsnorm(args[0], np.concatenate(ws[0]), a["n_heads"], a["head_dim"], a["eps"])
    if k == "take_last":
        return take_last(args[0])
    if k == "take_rows":
        return take_rows(args[0], args[1])
    if k == "rmsnorm":
        return rmsnorm(args[0], np.concatenate(ws[0]), a["eps"])
    if k == "swiglu":
        return swiglu(*args)
    if k == "matmul_bias":
        return matmul_bias(args[0], ws[0], ws[1])
    if k == "qkv_rope_kv":
        return qkv_rope_kv(args[0], args[1], args[2], ws[0], ws[1] if len(ws) > 1 else None, a["layer"],
                           a["n_heads"], a["n_kv_heads"], a["head_dim"], a["theta"], cache, a.get("mode", "neox"))
    if k == "qkv_norm_rope_kv":
        return qkv_norm_rope_kv(args[0], args[1], args[2], ws[0], np.concatenate(ws[1]), np.concatenate(ws[2]),
                                a["layer"], a["n_heads"], a["n_kv_heads"], a["head_dim"], a["theta"], a["eps"],
                                cache, a.get("mode", "neox"))
    if k == "matmul_add":
        return matmul_add(args[0], args[1], ws[0])
    if k == "gate_up_swiglu":
        return gate_up_swiglu(args[0], ws[0])
    if k == "rmsnorm_add":
        return rmsnorm_add(args[0], args[1], np.concatenate(ws[0]), a["eps"])
    if k == "gate_up_geglu":
        return gate_up_geglu(args[0], ws[0])
    raise ValueError(f"the reference interpreter has no definition of op kind {k!r}")


def run(graph: Graph, weights: Mapping, inputs: Mapping, cache: KVCache | None = None,
        *, keep: bool = False) -> dict:
    """Execute `graph` op by op. weights: tensor name -> float32 array (dequantized);
    inputs: graph input name -> array (seq may be left out: one sequence, 0); cache: the
    KV cache, updated in place.
    Returns output name -> array (with keep=True: every value -> array)."""
    if cache is None and any(op.kind in ("kv_write", "attention", "qkv_rope_kv", "qkv_norm_rope_kv")
                            for op in graph.ops):
        raise ValueError("this graph reads or writes the KV cache: pass cache=KVCache(...)")
    env = {}
    for name, v in graph.inputs.items():
        if name == "seq" and name not in inputs:    # one sequence: every token is sequence 0
            env[v] = np.zeros(v.shape, np.int32)
            continue
        if name not in inputs:
            raise ValueError(f"graph input {name!r} is missing")
        arr = np.ascontiguousarray(inputs[name], dtype=np.int32 if v.dtype == "i32" else F32)
        if arr.shape != tuple(v.shape):
            raise ValueError(f"graph input {name!r}: shape {arr.shape}, the graph expects {tuple(v.shape)}")
        env[v] = arr
    last_use = {}
    if not keep:
        for i, op in enumerate(graph.ops):
            for v in op.inputs:
                last_use[v] = i
        for v in graph.outputs.values():
            last_use[v] = len(graph.ops)
    resolved = {}
    for i, op in enumerate(graph.ops):
        ws = []
        for w in op.weights:
            if w not in resolved:
                resolved[w] = [np.asarray(weights[p]) for p in w.parts]
            ws.append(resolved[w])
        out = _run_op(op, [env[v] for v in op.inputs], ws, cache)
        outs = out if len(op.results) > 1 else (out,)
        for v, arr in zip(op.results, outs):
            env[v] = arr
        if not keep:
            for v in op.inputs:
                if last_use.get(v) == i:
                    env.pop(v, None)
    if keep:
        return env
    return {name: env[v] for name, v in graph.outputs.items()}
