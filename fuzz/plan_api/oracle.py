"""The numpy reference: what each instruction must compute, from the inputs it read. Kept
independent of ignis (weights are dequantized by the `gguf` package): it imports no ignis
code, so a bug there cannot agree with itself."""
from __future__ import annotations

import math
import operator

import numpy as np

from fuzz.plan_api.specs import FLOAT_TYPES, SIGS

class CaseFailure(Exception):
    """The case broke a property (reported to the parent)."""


def _ints(v) -> int:
    return operator.index(v)


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


def _pairs(hd, mode):
    """The two halves of each rotated pair: (i, i + hd/2) for "neox", (2i, 2i + 1) for "normal"."""
    half = hd // 2
    return (slice(0, half), slice(half, None)) if mode == "neox" else (slice(0, None, 2), slice(1, None, 2))


def rope_ref(x, pos, n_heads, hd, theta, mode="neox"):
    """float64 rope of x [T, n_heads*hd] (pair i turns by pos * theta^(-2i/hd)); None when the
    angles are too large to compare."""
    half = hd // 2
    ang = pos[:, None].astype(np.float64) * theta ** (-2.0 * np.arange(half) / hd)
    if not np.all(np.isfinite(ang)) or np.abs(ang).max(initial=0) > 1e5:
        return None
    x = x.reshape(len(x), n_heads, hd)
    first, second = _pairs(hd, mode)
    x0, x1 = x[..., first], x[..., second]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = np.empty_like(x)
    out[..., first], out[..., second] = x0 * c - x1 * s, x0 * s + x1 * c
    return out.reshape(len(x), -1)


def rope_bound(b, n_heads, hd, mode="neox"):
    """A per-element bound through a rotation: |d(out)| <= |d x0| + |d x1| of its pair."""
    b = b.reshape(len(b), n_heads, hd)
    first, second = _pairs(hd, mode)
    pair = b[..., first] + b[..., second]
    out = np.empty_like(b)
    out[..., first], out[..., second] = pair, pair
    return out.reshape(len(b), -1)


class Paging:
    """Where a KV pool keeps each sequence's positions: with tables, position p of token t's
    sequence is row tables[seqs[t], p // block_size] * block_size + p % block_size; without,
    there is one sequence and position p is row p."""

    def __init__(self, seqs=None, tables=None, block_size=None):
        self.seqs = None if seqs is None else np.asarray(seqs, np.int64).reshape(-1)
        self.tables = None if tables is None else np.asarray(tables, np.int64)
        self.bs = None if block_size is None else int(block_size)

    def row(self, t: int, p: int) -> int:
        if self.tables is None:
            return p
        return int(self.tables[self.seqs[t], p // self.bs]) * self.bs + p % self.bs

    def rows(self, pos) -> np.ndarray:
        """The row each token's own position is written to."""
        return np.array([self.row(t, int(p)) for t, p in enumerate(pos)], np.int64)

    def history(self, t: int, p: int, window: int) -> np.ndarray:
        """The rows token t at position p attends to: positions 0..p of its sequence, or with a
        window only the last `window` of them (p - window < q <= p)."""
        lo = max(0, p - window + 1) if window else 0
        return np.array([self.row(t, q) for q in range(lo, p + 1)], np.int64)


class Oracle:
    """Reference values of one successful instruction from the inputs it read."""

    def __init__(self, T, pos, tokens, kv_before, take=None, paging=None):
        """kv_before: {pool: (K, V)} as the instruction found them; paging: {pool: Paging}."""
        self.T, self.pos, self.tokens, self.kv, self.take = T, pos, tokens, kv_before, take
        self.paging = paging or {0: Paging(), 1: Paging()}

    def check(self, name, a, read, out_now, kv_after):
        """read(offset, n_floats) -> float64 input values; out_now(offset, n) -> result;
        kv_after: {pool: (K, V)} after the run."""
        i = {key: a[key] for key, _ in SIGS[name] if key in a}
        mode, pool, window = i.get("mode", "neox"), _ints(i.get("pool", 0)), _ints(i.get("window", 0))
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
            ref = rope_ref(x, self.pos, nh, hd, float(i["theta"]), mode)
            if ref is not None:
                _close(name, out_now(n_("out"), T * nh * hd).reshape(T, -1), ref, tol(ref, 1e-5))
        elif name == "attention":
            nh, kvh, hd, layer = n_("n_heads"), n_("n_kv_heads"), n_("head_dim"), n_("layer")
            q = read(n_("q"), T * nh * hd).reshape(T, nh, hd)
            K = self.kv[pool][0][layer].astype(np.float64)
            V = self.kv[pool][1][layer].astype(np.float64)
            G = nh // kvh
            ref = np.empty((T, nh, hd))
            for t in range(T):
                rows = self.paging[pool].history(t, int(self.pos[t]), window)
                for h in range(nh):
                    s = K[rows, h // G] @ q[t, h] / math.sqrt(hd)
                    e = np.exp(s - s.max())
                    ref[t, h] = (e / e.sum()) @ V[rows, h // G]
            got = out_now(n_("out"), T * nh * hd).reshape(T, nh, hd)
            _close(name, got, ref, 1e-4 * (np.abs(V).max(initial=0) + 1.0))
        elif name == "kv_write":
            kvh, hd, layer = n_("n_kv_heads"), n_("head_dim"), n_("layer")
            rows = self.paging[pool].rows(self.pos)
            for key, cache in (("k", kv_after[pool][0]), ("v", kv_after[pool][1])):
                want = read(n_(key), T * kvh * hd).reshape(T, kvh, hd).astype(np.float16)
                got = cache[layer][rows]
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
            q = rope_ref(y[:, :nq], self.pos, nh, hd, theta, mode)
            kk = rope_ref(y[:, nq:nq + nkv], self.pos, kvh, hd, theta, mode)
            if q is None:
                return
            _close("qkv q", out_now(n_("q_out"), T * nq).reshape(T, nq), q, rope_bound(b[:, :nq], nh, hd, mode))
            vv = y[:, nq + nkv:]
            rows = self.paging[pool].rows(self.pos)
            for what, want, bound, cache in (("k", kk, rope_bound(b[:, nq:nq + nkv], kvh, hd, mode), kv_after[pool][0]),
                                             ("v", vv, b[:, nq + nkv:], kv_after[pool][1])):
                got = cache[layer][rows].reshape(T, nkv).astype(np.float64)
                _close(f"qkv {what} cache", got, want, bound * 1.01 + 1e-3 * np.abs(want) + 1e-7)
