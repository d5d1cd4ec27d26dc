"""Kernels and the plan interpreter (ignis/_kernels.pyx) against numpy references.

Exact where the kernels promise bits (quantized bytes, dequantized embeddings,
elementwise ops, fused vs unfused plans, thread counts, batch size); within a
stated tolerance where float sums are reordered (dot products, softmax)."""
import os

import numpy as np
import pytest

from ignis import errors
from ignis.gguf import quant
from ignis.gguf.types import TensorType
from ignis.ir import interpret as ref
from ignis.testing import KVCache

K = pytest.importorskip("ignis._kernels")

Q8_0, Q5_0, Q4_K, Q6_K, F32, F16 = (int(TensorType.Q8_0), int(TensorType.Q5_0), int(TensorType.Q4_K),
                                     int(TensorType.Q6_K), int(TensorType.F32), int(TensorType.F16))
Q4_1 = int(TensorType.Q4_1)
BLOCK_BYTES = {Q8_0: (32, 34), Q5_0: (32, 22), Q4_1: (32, 20), Q4_K: (256, 144), Q6_K: (256, 210)}
Q5_K, Q3_K, Q2_K, IQ4_XS = (int(TensorType.Q5_K), int(TensorType.Q3_K), int(TensorType.Q2_K),
                            int(TensorType.IQ4_XS))
# the super-block types of ignis/simd/kquants.h: block bytes and their f16 fields' offsets
KX_F16 = {Q5_K: (0, 2), Q3_K: (108,), Q2_K: (80, 82), IQ4_XS: (0,)}
BLOCK_BYTES.update({Q5_K: (256, 176), Q3_K: (256, 110), Q2_K: (256, 84), IQ4_XS: (256, 136)})
KX = list(KX_F16)


def rng(seed=0):
    return np.random.default_rng(seed)


def random_quant_weight(r, wtype, n, k, scale=0.02):
    """Random block bytes of a quantized type with finite, modest f16 scales."""
    if wtype == F32:
        return (r.standard_normal((n, k)) * scale).astype(np.float32)
    if wtype == F16:
        return (r.standard_normal((n, k)) * scale).astype(np.float16)
    if wtype == Q8_0:
        return quant.quantize_q8_0((r.standard_normal((n, k)) * scale).astype(np.float32))
    elems, nbytes = BLOCK_BYTES[wtype]
    raw = r.integers(0, 256, size=(n, k // elems, nbytes), dtype=np.uint8)
    f16 = lambda shape: (r.uniform(0.2, 1.0, size=shape) * scale / 16).astype(np.float16).view(np.uint8)
    if wtype == Q5_0:
        raw[:, :, 0:2] = f16((n, k // elems)).reshape(n, k // elems, 2)
    elif wtype == Q4_1:      # d, then a minimum m of about -7.5 d (centred weights)
        d = r.uniform(0.2, 1.0, size=(n, k // elems)) * scale / 16
        m = -d * r.uniform(5.0, 10.0, size=d.shape)
        raw[:, :, 0:2] = d.astype(np.float16).view(np.uint8).reshape(n, k // elems, 2)
        raw[:, :, 2:4] = m.astype(np.float16).view(np.uint8).reshape(n, k // elems, 2)
    elif wtype == Q4_K:
        raw[:, :, 0:4] = f16((n, k // elems, 2)).reshape(n, k // elems, 4)
    elif wtype == Q6_K:
        raw[:, :, 208:210] = f16((n, k // elems)).reshape(n, k // elems, 2)
    elif wtype in KX_F16:
        for at in KX_F16[wtype]:
            raw[:, :, at:at + 2] = f16((n, k // elems)).reshape(n, k // elems, 2)
    return raw.reshape(n, -1)


def dequant(w, wtype, n, k):
    return quant.dequantize(w.reshape(-1).view(np.uint8), wtype, (n, k))


def q8_roundtrip(x):
    """What the kernels multiply: x quantized to Q8_0 and back."""
    return quant.dequantize(quant.quantize_q8_0(x).reshape(-1), Q8_0, x.shape)


def assert_dot_close(got, x_used, w_used):
    """|got - exact| <= 1e-5 * sum |terms| + tiny, per output element."""
    x64, w64 = x_used.astype(np.float64), w_used.astype(np.float64)
    exact = x64 @ w64.T
    mag = np.abs(x64) @ np.abs(w64).T
    assert np.all(np.abs(got - exact) <= 1e-5 * mag + 1e-30), np.max(np.abs(got - exact) / (mag + 1e-30))


# ---------------------------------------------------------------- quantization

def test_isa_is_a_runnable_level_of_this_build():
    levels = dict(K.isa_levels())
    assert levels[K.isa()]
    assert list(levels)[0] == "scalar" and levels["scalar"]
    expected = os.environ.get("IGNIS_ISA") or K.best_isa()
    assert K.isa() == expected


@pytest.mark.parametrize("scale", [1e-6, 1e-2, 1.0, 300.0])
def test_quantize_q8_0_matches_reference_bytes(scale):
    x = (rng(1).standard_normal((7, 32 * 9)) * scale).astype(np.float32)
    x[0, :32] = 0.0                                    # a zero block
    x[1, :32] = np.arange(32) - 15.5                   # ties at .5 after scaling
    x[1, 5] = 127.0
    assert np.array_equal(K.quantize_q8_0(x), quant.quantize_q8_0(x))


def test_quantize_q8_0_rejects_bad_shapes():
    with pytest.raises(errors.ModelError):
        K.quantize_q8_0(np.zeros((2, 33), np.float32))
    with pytest.raises(errors.ModelError):
        K.quantize_q8_0(np.zeros(64, np.float32))


# ---------------------------------------------------------------- matmul

@pytest.mark.parametrize("wtype", [Q8_0, Q5_0, Q4_1, Q4_K, Q6_K, F32, F16] + KX)
@pytest.mark.parametrize("T", [1, 3, 6])
def test_matmul_all_weight_types(wtype, T):
    r = rng(wtype * 10 + T)
    n, k = 13, 512
    w = random_quant_weight(r, wtype, n, k)
    x = r.standard_normal((T, k)).astype(np.float32)
    y = K.matmul(x, w, wtype)
    assert y.shape == (T, n) and y.dtype == np.float32
    x_used = x if wtype in (F32, F16) else q8_roundtrip(x)
    w_used = w.astype(np.float32) if wtype in (F32, F16) else dequant(w, wtype, n, k)
    assert_dot_close(y, x_used, w_used)
    # and close to the float matmul (activation quantization error only)
    y_f = x @ w_used.T
    assert np.max(np.abs(y - y_f)) <= 0.02 * np.max(np.abs(y_f)) + 1e-6


@pytest.mark.parametrize("wtype", [Q8_0, Q4_K] + KX)
def test_matmul_value_independent_of_batch_and_threads(wtype):
    r = rng(3)
    n, k, T = 37, 256, 9
    w = random_quant_weight(r, wtype, n, k)
    x = r.standard_normal((T, k)).astype(np.float32)
    y = K.matmul(x, w, wtype, threads=1)
    assert np.array_equal(y, K.matmul(x, w, wtype, threads=2))
    rows = np.concatenate([K.matmul(x[t:t + 1], w, wtype) for t in range(T)])
    assert np.array_equal(y, rows)


def test_matmul_q16_activations():
    """act="q16": 16-bit activation blocks, close to the float matmul; bits independent of the
    batch and thread count; only for Q8_0 (and float) weights."""
    r = rng(14)
    n, k, T = 21, 320, 5
    w = random_quant_weight(r, Q8_0, n, k)
    x = (r.standard_normal((T, k)) * 3).astype(np.float32)
    y = K.matmul(x, w, act="q16")
    assert_dot_close_rel(y, x, dequant(w, Q8_0, n, k), 1e-4)
    y8 = K.matmul(x, w)
    wd = dequant(w, Q8_0, n, k).astype(np.float64)
    exact = x.astype(np.float64) @ wd.T
    assert np.abs(y - exact).max() < np.abs(y8 - exact).max() / 20
    assert np.array_equal(y, K.matmul(x, w, threads=2, act="q16"))
    assert np.array_equal(y[2:3], K.matmul(x[2:3], w, act="q16"))
    with pytest.raises(errors.ModelError):
        K.matmul(x, random_quant_weight(r, Q5_0, n, k), Q5_0, act="q16")
    with pytest.raises(errors.ModelError):
        K.matmul(x, w, act="q4")


def assert_dot_close_rel(got, x, w, rel):
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    mag = np.abs(x64) @ np.abs(w64).T
    assert np.all(np.abs(got - x64 @ w64.T) <= rel * mag)


def test_matmul_bias():
    r = rng(4)
    w = random_quant_weight(r, Q8_0, 20, 64)
    b = r.standard_normal(20).astype(np.float32)
    x = r.standard_normal((3, 64)).astype(np.float32)
    assert np.array_equal(K.matmul_bias(x, w, b), K.add_bias(K.matmul(x, w), b))


# ---------------------------------------------------------------- row ops

def test_rms_inv_scale_rows_rmsnorm():
    r = rng(5)
    x = r.standard_normal((4, 96)).astype(np.float32)
    g = r.standard_normal(96).astype(np.float32)
    ri = K.rms_inv(x, 1e-6)
    np.testing.assert_allclose(ri, ref.rms_inv(x, 1e-6), rtol=2e-6)
    y = K.scale_rows(x, ri, g)
    assert np.array_equal(y, ref.scale_rows(x, ri, g))
    assert np.array_equal(K.rmsnorm(x, g, 1e-6), y)
    assert np.array_equal(K.rmsnorm(x, g, 1e-6, threads=2), y)


def test_rope_matches_reference():
    r = rng(6)
    x = r.standard_normal((5, 4 * 16)).astype(np.float32)
    pos = np.array([0, 1, 7, 100, 3000], np.int32)
    y = K.rope(x, pos, 4, 16, 10000.0)
    np.testing.assert_allclose(y, ref.rope(x, pos, 4, 16, 10000.0), rtol=1e-6, atol=1e-6)
    assert np.array_equal(y[0], x[0])  # position 0 is the identity


def test_elementwise():
    r = rng(7)
    a = (r.standard_normal((3, 70)) * 10).astype(np.float32)
    b = r.standard_normal((3, 70)).astype(np.float32)
    assert np.array_equal(K.add(a, b), a + b)
    assert np.array_equal(K.mul(a, b), a * b)
    s = K.silu(a)
    np.testing.assert_allclose(s, ref.silu(a), rtol=1e-6, atol=1e-30)
    assert np.array_equal(K.silu(a, threads=2), s)
    assert np.array_equal(K.swiglu(a, b), K.mul(s, b))
    assert np.array_equal(K.swiglu(a, b, threads=2), K.mul(s, b))
    big = np.array([[-1000.0, -90.0, 0.0, 90.0, 1000.0]], np.float32)
    assert np.all(np.isfinite(K.silu(big)))


def test_add_bias_take_last():
    r = rng(8)
    y = r.standard_normal((4, 12)).astype(np.float32)
    b = r.standard_normal(12).astype(np.float32)
    assert np.array_equal(K.add_bias(y, b), y + b)
    assert np.array_equal(K.take_last(y), y[-1:])


def test_softmax():
    x = (rng(9).standard_normal((3, 77)) * 20).astype(np.float32)
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(K.softmax(x), e / e.sum(axis=1, keepdims=True), rtol=2e-6, atol=1e-12)


@pytest.mark.parametrize("wtype", [Q8_0, Q5_0, Q4_1, Q4_K, Q6_K, F32, F16] + KX)
def test_embed_is_exact_dequantization(wtype):
    r = rng(10 + wtype)
    vocab, dim = 11, 256
    w = random_quant_weight(r, wtype, vocab, dim)
    tokens = np.array([3, 0, 10, 3], np.int32)
    got = K.embed(tokens, w, dim, wtype)
    want = quant.dequantize_rows(w.reshape(-1).view(np.uint8), wtype, (vocab, dim), tokens)
    assert np.array_equal(got, want)


def _fmaf(a, b, c):
    """float32 fused multiply-add, correctly rounded (exact rational, then the nearest float32,
    ties to even): numpy has no fma, and a float64 detour could round twice."""
    from fractions import Fraction
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    r = np.float32(float(exact))
    cands = [np.nextafter(r, np.float32(-np.inf)), r, np.nextafter(r, np.float32(np.inf))]
    err = [abs(Fraction(float(v)) - exact) for v in cands]
    best = min(err)
    ties = [v for v, e in zip(cands, err) if e == best]
    return min(ties, key=lambda v: int(np.array(v).view(np.uint32)) & 1)


def q4_1_dot_definition(wrow, xrow):
    """The definition in ignis/_neon.h of one Q4_1 weight row . Q8_0 activation row, from the
    integer fields (no dequantization): per block s = d*d_x, sm = m*d_x (float32 products),
    exact half sums of q*x and of x, then lo = fma(i_lo, s, lo), lo = fma(c_lo, sm, lo), hi
    likewise; the result is lo + hi."""
    wb, xb = wrow.reshape(-1, 20), xrow.reshape(-1, 34)
    lo = hi = np.float32(0)
    for b in range(len(wb)):
        d, m = wb[b, 0:4].view(np.float16).astype(np.float32)
        dx = xb[b, 0:2].view(np.float16).astype(np.float32)[0]
        qs = wb[b, 4:20].astype(np.int64)
        q = np.concatenate([qs & 15, qs >> 4])
        xq = xb[b, 2:34].view(np.int8).astype(np.int64)
        s, sm = np.float32(d * dx), np.float32(m * dx)
        lo = _fmaf(np.float32(q[:16] @ xq[:16]), s, lo)
        lo = _fmaf(np.float32(xq[:16].sum()), sm, lo)
        hi = _fmaf(np.float32(q[16:] @ xq[16:]), s, hi)
        hi = _fmaf(np.float32(xq[16:].sum()), sm, hi)
    return np.float32(lo + hi)


@pytest.mark.parametrize("T", [1, 2, 4, 5, 8, 11])
def test_matmul_q4_1_is_the_definition(T):
    """Q4_1 weights (quantized from random data, plus random blocks with extreme fields)
    give the definition's bits at the level in use, for decode and prefill tile shapes."""
    r = rng(40 + T)
    n, k = 11, 32 * 7
    w = quant.quantize_q4_1((r.standard_normal((n, k)) * 0.05 + 0.01).astype(np.float32))
    w[-3:] = random_quant_weight(r, Q4_1, 3, k)
    w[-1, 4:20] = 0xff                                  # every quant 15 in the first block
    x = r.standard_normal((T, k)).astype(np.float32)
    x[0, :32] *= 1000.0
    y = K.matmul(x, w, Q4_1)
    xq = K.quantize_q8_0(x)
    want = np.array([[q4_1_dot_definition(w[i], xq[t]) for i in range(n)] for t in range(T)], np.float32)
    assert np.array_equal(y.view(np.uint32), want.view(np.uint32)), np.abs(y - want).max()


IQ4_GRID = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int64)


def _k_scales_mins(sb):
    """Q5_K (packed as Q4_K's): the 6-bit scales and mins of the 8 blocks from the 12 packed bytes."""
    s = sb[4:16].astype(np.int64)
    sc, m = np.empty(8, np.int64), np.empty(8, np.int64)
    sc[:4], m[:4] = s[0:4] & 63, s[4:8] & 63
    sc[4:] = (s[8:12] & 15) | ((s[0:4] >> 6) << 4)
    m[4:] = (s[8:12] >> 4) | ((s[4:8] >> 6) << 4)
    return sc, m


def block_rule_fields(wtype, sb):
    """One super-block of Q5_K or IQ4_XS: (d, dmin, scales[8], mins[8], quants[8, 32])."""
    f16 = lambda at: np.float32(sb[at:at + 2].view(np.float16)[0])
    if wtype == IQ4_XS:
        hi = int(sb[2:4].view(np.uint16)[0])
        lo = sb[4:8].astype(np.int64)
        ls = np.array([((lo[j // 2] >> (4 * (j % 2))) & 15) | (((hi >> (2 * j)) & 3) << 4) for j in range(8)])
        qs = sb[8:136].astype(np.int64).reshape(8, 16)
        q = IQ4_GRID[np.concatenate([qs & 15, qs >> 4], axis=1)]
        return f16(0), np.float32(0), ls - 32, np.zeros(8, np.int64), q
    sc, m = _k_scales_mins(sb)
    pairs = sb[48:176].astype(np.int64).reshape(4, 32)
    q = np.stack([pairs[j // 2] >> 4 if j % 2 else pairs[j // 2] & 15 for j in range(8)])
    qh = sb[16:48].astype(np.int64)
    q = q | (np.stack([(qh >> j) & 1 for j in range(8)]) << 4)
    return f16(0), f16(2), sc, m, q


def block_rule_dot_definition(wtype, wrow, xrow):
    """The block rule of ignis/simd/kquants.h from the integer fields: per block A = sc * sum q*x,
    c = sum x (exact), u[j%2] = fma(A, dx, u), v[j%2] = fma(m, c*dx, v); per super-block
    acc[p] = fma(u[p], d, acc[p]), acc[p] = fma(-v[p], dmin, acc[p]); the result acc[0] + acc[1]."""
    nbytes = BLOCK_BYTES[wtype][1]
    wb, xb = wrow.reshape(-1, nbytes), xrow.reshape(-1, 34)
    has_min = wtype != IQ4_XS
    acc = [np.float32(0), np.float32(0)]
    for s in range(len(wb)):
        d, dmin, sc, m, q = block_rule_fields(wtype, wb[s])
        u, v = [np.float32(0), np.float32(0)], [np.float32(0), np.float32(0)]
        for j in range(8):
            blk = xb[s * 8 + j]
            dx = blk[0:2].view(np.float16).astype(np.float32)[0]
            xq = blk[2:34].view(np.int8).astype(np.int64)
            a, c = int(sc[j]) * int(q[j] @ xq), int(xq.sum())
            u[j % 2] = _fmaf(np.float32(a), dx, u[j % 2])
            if has_min:
                v[j % 2] = _fmaf(np.float32(m[j]), np.float32(np.float32(c) * dx), v[j % 2])
        for p in range(2):
            acc[p] = _fmaf(u[p], d, acc[p])
            if has_min:
                acc[p] = _fmaf(-v[p], dmin, acc[p])
    return np.float32(acc[0] + acc[1])


@pytest.mark.parametrize("wtype", [Q5_K, IQ4_XS])
@pytest.mark.parametrize("T", [1, 2, 4, 5, 8, 11])
def test_matmul_block_rule_is_the_definition(wtype, T):
    """Q5_K / IQ4_XS weights give the block rule's bits at the level in use, for the decode (1-4
    tokens) and prefill tile shapes; the oracle decodes the fields itself."""
    r = rng(60 + T + wtype)
    n, k = 11, 512
    w = random_quant_weight(r, wtype, n, k)
    w[-1, :BLOCK_BYTES[wtype][1]] = 0xff              # extreme fields: every scale, min and quant at its top
    w[-1, 0:2] = np.array([0x00, 0x20], np.uint8)     # d = 2^-7, finite
    if wtype != IQ4_XS:
        w[-1, 2:4] = np.array([0x00, 0x1c], np.uint8)  # dmin = 2^-8
    x = r.standard_normal((T, k)).astype(np.float32)
    x[0, :32] *= 1000.0
    y = K.matmul(x, w, wtype)
    xq = K.quantize_q8_0(x)
    want = np.array([[block_rule_dot_definition(wtype, w[i], xq[t]) for i in range(n)] for t in range(T)], np.float32)
    assert np.array_equal(y.view(np.uint32), want.view(np.uint32)), np.abs(y - want).max()


def test_quantize_q4_1_round_trip():
    r = rng(41)
    x = (r.standard_normal((5, 32 * 6)) * 3 + 1).astype(np.float32)
    x[0, :32] = 2.5                                      # a constant block: d = 0
    w = quant.quantize_q4_1(x)
    assert w.shape == (5, 6 * 20) and w.dtype == np.uint8
    assert np.array_equal(quant.quantize(x, TensorType.Q4_1), w)
    back = dequant(w, Q4_1, 5, 32 * 6)
    blocks = x.reshape(-1, 32)
    step = (blocks.max(axis=1) - blocks.min(axis=1)) / 15
    # half a step of rounding, plus the f16 rounding of d (x15) and m
    tol = step * 0.5 + np.abs(blocks).max(axis=1) * 2 ** -10 * 17
    assert np.all(np.abs(back.reshape(-1, 32) - blocks) <= tol[:, None] + 1e-6)
    assert np.array_equal(back[0, :32], np.full(32, np.float16(2.5), np.float32))


# ---------------------------------------------------------------- kv cache and attention

@pytest.mark.parametrize("threads", [1, 2])
def test_kv_write_and_attention_match_reference(threads):
    r = rng(11)
    L, n_ctx, H, KVH, hd = 2, 24, 6, 2, 16
    kv, kv_ref = KVCache(L, n_ctx, KVH, hd), ref.KVCache(L, n_ctx, KVH, hd)
    for start, T in ((0, 7), (7, 1), (8, 3)):
        pos = np.arange(start, start + T, dtype=np.int32)
        k = r.standard_normal((T, KVH * hd)).astype(np.float32)
        v = r.standard_normal((T, KVH * hd)).astype(np.float32)
        q = r.standard_normal((T, H * hd)).astype(np.float32)
        K.kv_write(k, v, pos, kv, 1, KVH, hd)
        ref.kv_write(k, v, pos, np.zeros_like(pos), 1, KVH, hd, kv_ref)
        assert np.array_equal(kv.k, kv_ref.k) and np.array_equal(kv.v, kv_ref.v)
        got = K.attention(q, pos, kv, 1, H, KVH, hd, threads=threads)
        want = ref.attention(q, pos, np.zeros_like(pos), 1, H, KVH, hd, kv_ref)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- whole plans

class Bump:
    """Bump allocator for arena offsets (bytes, 64-aligned)."""

    def __init__(self):
        self.top = 0

    def __call__(self, n_floats):
        off = self.top
        self.top += (n_floats * 4 + 63) // 64 * 64
        return off


def tiny_model(seed=0, wtype=Q8_0):
    """A 2-layer Qwen2-shaped model with random weights. wtype: one type for every matrix, or
    "mixed" (like the original Q4_K_M file: Q5_0, Q8_0 for v, Q4_K/Q6_K for down); K-quants
    need widths of 256."""
    cfg = dict(D=64, H=4, KVH=2, hd=16, F=96, V=50, L=2, theta=10000.0, eps=1e-6)
    if wtype in (Q4_K, Q6_K, "mixed"):
        cfg.update(D=256, F=256, hd=64)
    r = rng(seed)
    D, H, KVH, hd, F, V = (cfg[k] for k in ("D", "H", "KVH", "hd", "F", "V"))
    f32 = lambda *s: (r.standard_normal(s) * 0.5).astype(np.float32)
    layers = []
    for li in range(cfg["L"]):
        types = dict(wq=wtype, wk=wtype, wv=wtype, wo=wtype, wg=wtype, wu=wtype, wd=wtype)
        if wtype == "mixed":
            types = dict(wq=Q5_0, wk=Q5_0, wv=Q8_0 if li % 2 else Q5_0, wo=Q5_0, wg=Q5_0, wu=Q5_0,
                         wd=Q6_K if li % 2 else Q4_K)
        shapes = dict(wq=(H * hd, D), wk=(KVH * hd, D), wv=(KVH * hd, D), wo=(D, H * hd), wg=(F, D),
                      wu=(F, D), wd=(D, F))
        lw = {k: random_quant_weight(r, types[k], *shapes[k], scale=0.3) for k in shapes}
        lw["types"] = types
        lw.update(attn_norm=1 + f32(D), ffn_norm=1 + f32(D), bq=f32(H * hd), bk=f32(KVH * hd), bv=f32(KVH * hd))
        # concatenated weights are byte concatenations of the parts (rows are independent)
        if len({types["wq"], types["wk"], types["wv"]}) == 1:
            lw["wqkv"] = np.concatenate([lw["wq"], lw["wk"], lw["wv"]])
        if types["wg"] == types["wu"]:
            lw["wgu"] = np.concatenate([lw["wg"], lw["wu"]])
        lw["bqkv"] = np.concatenate([lw["bq"], lw["bk"], lw["bv"]])
        layers.append(lw)
    et = Q8_0 if wtype == "mixed" else wtype
    return cfg, dict(embd=random_quant_weight(r, et, V, D, scale=0.3), etype=et, out_norm=1 + f32(D),
                     out=random_quant_weight(r, et, V, D, scale=0.3), layers=layers)


def build_plan(cfg, W, T, fused, threads, inplace=False, parts=False):
    D, H, KVH, hd, F, V = (cfg[k] for k in ("D", "H", "KVH", "hd", "F", "V"))
    th, eps = cfg["theta"], cfg["eps"]
    a = Bump()
    h, x, q, k, v, o, m, f, g, u, p, r = (a(T * n) for n in (D, D, H * hd, KVH * hd, KVH * hd, H * hd, D,
                                                             D, F, F, F, 1))
    h2 = h if inplace else a(T * D)
    last, logits = a(D), a(V)
    plan = K.Plan(a.top, threads, T)
    plan.add_embed(h, W["embd"], D, W["etype"])
    cur = h
    for li, lw in enumerate(W["layers"]):
        ty = lw["types"]
        if fused:
            plan.add_rmsnorm(cur, x, lw["attn_norm"], T, D, eps)
            if parts or "wqkv" not in lw:
                wqkv, tqkv = [lw["wq"], lw["wk"], lw["wv"]], [ty["wq"], ty["wk"], ty["wv"]]
            else:
                wqkv, tqkv = lw["wqkv"], ty["wq"]
            plan.add_qkv_rope_kv(x, q, wqkv, lw["bqkv"], li, H, KVH, hd, th, D, tqkv)
            plan.add_attention(q, o, li, H, KVH, hd)
            plan.add_matmul_add(o, cur, h2, lw["wo"], T, H * hd, D, ty["wo"])
            plan.add_rmsnorm(h2, f, lw["ffn_norm"], T, D, eps)
            if parts or "wgu" not in lw:
                wgu, tgu = [lw["wg"], lw["wu"]], [ty["wg"], ty["wu"]]
            else:
                wgu, tgu = lw["wgu"], ty["wg"]
            plan.add_gate_up_swiglu(f, p, wgu, T, D, F, tgu)
            plan.add_matmul_add(p, h2, cur, lw["wd"], T, F, D, ty["wd"])
        else:
            plan.add_rms_inv(cur, r, T, D, eps)
            plan.add_scale_rows(cur, r, x, lw["attn_norm"], T, D)
            for name, b_, dst, nh in (("wq", lw["bq"], q, H), ("wk", lw["bk"], k, KVH), ("wv", lw["bv"], v, KVH)):
                plan.add_matmul(x, dst, lw[name], T, D, nh * hd, ty[name])
                plan.add_add_bias(dst, dst, b_, T, nh * hd)
            plan.add_rope(q, q, H, hd, th)
            plan.add_rope(k, k, KVH, hd, th)
            plan.add_kv_write(k, v, li, KVH, hd)
            plan.add_attention(q, o, li, H, KVH, hd)
            plan.add_matmul(o, m, lw["wo"], T, H * hd, D, ty["wo"])
            plan.add_add(cur, m, h2, T * D)
            plan.add_rms_inv(h2, r, T, D, eps)
            plan.add_scale_rows(h2, r, f, lw["ffn_norm"], T, D)
            plan.add_matmul(f, g, lw["wg"], T, D, F, ty["wg"])
            plan.add_matmul(f, u, lw["wu"], T, D, F, ty["wu"])
            plan.add_silu(g, g, T * F)
            plan.add_mul(g, u, p, T * F)
            plan.add_matmul(p, m, lw["wd"], T, F, D, ty["wd"])
            plan.add_add(h2, m, cur, T * D)
    if fused:
        plan.add_rmsnorm(cur, x, W["out_norm"], T, D, eps)
    else:
        plan.add_rms_inv(cur, r, T, D, eps)
        plan.add_scale_rows(cur, r, x, W["out_norm"], T, D)
    plan.add_take_last(x, last, T, D)
    plan.add_matmul(last, logits, W["out"], 1, D, V, W["etype"])
    return plan, logits


def run_steps(cfg, W, fused, threads, inplace=False, parts=False, steps=((0, 6), (6, 1), (7, 1))):
    kv = KVCache(cfg["L"], 16, cfg["KVH"], cfg["hd"])
    toks = rng(99).integers(0, cfg["V"], size=16).astype(np.int32)
    outs = []
    for start, T in steps:
        plan, logits = build_plan(cfg, W, T, fused, threads, inplace, parts)
        plan.run(toks[start:start + T], np.arange(start, start + T, dtype=np.int32), kv)
        outs.append(plan.f32(logits, (1, cfg["V"])).copy())
    return outs, kv


@pytest.mark.parametrize("wtype", [Q8_0, Q4_1, Q4_K, "mixed"])
def test_fused_plan_equals_unfused_plan(wtype):
    cfg, W = tiny_model(1, wtype)
    unfused, kv_u = run_steps(cfg, W, False, 1)
    variants = [(threads, inplace, parts) for threads in (1, 2) for inplace in (False, True)
                for parts in (False, True)]
    for threads, inplace, parts in variants:
        fused, kv_f = run_steps(cfg, W, True, threads, inplace, parts)
        for a, b in zip(unfused, fused):
            assert np.array_equal(a, b), (threads, inplace, parts)
        assert np.array_equal(kv_u.k, kv_f.k) and np.array_equal(kv_u.v, kv_f.v)
    unfused2, _ = run_steps(cfg, W, False, 2)
    for a, b in zip(unfused, unfused2):
        assert np.array_equal(a, b)
    assert all(np.all(np.isfinite(a)) for a in unfused)


@pytest.mark.parametrize("quantized_activations", [True, False])
def test_plan_matches_float_reference(quantized_activations):
    """The compiled plan against a float64 numpy forward of the same (dequantized) tiny model:
    tight when the reference also rounds matmul inputs to Q8_0 and K/V to f16 (what the kernels
    compute), loose against plain float64 (random weights amplify the rounding)."""
    cfg, W = tiny_model(5, "mixed")
    got, _ = run_steps(cfg, W, True, 2, steps=((0, 6),))
    D, H, KVH, hd, F, V = (cfg[k] for k in ("D", "H", "KVH", "hd", "F", "V"))
    deq_w = lambda w, t, n, k: dequant(w, t, n, k).astype(np.float64)

    def mm(x, w, t, n, k):
        if quantized_activations:
            x = q8_roundtrip(np.ascontiguousarray(x, dtype=np.float32)).astype(np.float64)
        return x @ deq_w(w, t, n, k).T

    def f16(x):
        return x.astype(np.float16).astype(np.float64) if quantized_activations else x
    deq = deq_w
    toks = rng(99).integers(0, V, size=16)[:6]
    pos = np.arange(6)
    h = deq(W["embd"], W["etype"], V, D)[toks]
    norm = lambda x, g: x / np.sqrt((x * x).mean(axis=1, keepdims=True) + cfg["eps"]) * g
    half = hd // 2
    ang = pos[:, None] * cfg["theta"] ** (-2.0 * np.arange(half) / hd)
    def rope(x, nh):
        x = x.reshape(len(x), nh, hd).copy()
        x0, x1 = x[..., :half].copy(), x[..., half:].copy()
        c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
        x[..., :half], x[..., half:] = x0 * c - x1 * s, x0 * s + x1 * c
        return x
    for lw in W["layers"]:
        ty = lw["types"]
        a = norm(h, lw["attn_norm"])
        q = rope(mm(a, lw["wq"], ty["wq"], H * hd, D) + lw["bq"], H)
        k = f16(rope(mm(a, lw["wk"], ty["wk"], KVH * hd, D) + lw["bk"], KVH))
        v = f16((mm(a, lw["wv"], ty["wv"], KVH * hd, D) + lw["bv"]).reshape(6, KVH, hd))
        o = np.empty((6, H, hd))
        for hh in range(H):
            g = hh // (H // KVH)
            sc = q[:, hh] @ k[:, g].T / np.sqrt(hd)
            sc[np.triu_indices(6, 1)] = -np.inf
            e = np.exp(sc - sc.max(axis=1, keepdims=True))
            o[:, hh] = (e / e.sum(axis=1, keepdims=True)) @ v[:, g]
        h = h + mm(o.reshape(6, -1), lw["wo"], ty["wo"], D, H * hd)
        f = norm(h, lw["ffn_norm"])
        gg = mm(f, lw["wg"], ty["wg"], F, D)
        uu = mm(f, lw["wu"], ty["wu"], F, D)
        h = h + mm(gg / (1 + np.exp(-gg)) * uu, lw["wd"], ty["wd"], D, F)
    logits = mm(norm(h, W["out_norm"])[-1:], W["out"], W["etype"], V, D)[0]
    err = np.max(np.abs(got[0][0] - logits)) / np.max(np.abs(logits))
    assert err <= (1e-5 if quantized_activations else 0.05), err


def test_prefill_then_decode_matches_one_long_prefill():
    """Logits at a position do not depend on how the tokens were batched."""
    cfg, W = tiny_model(2)
    split, _ = run_steps(cfg, W, True, 2, steps=((0, 5), (5, 1)))
    whole, _ = run_steps(cfg, W, True, 1, steps=((0, 6),))
    assert np.array_equal(split[1], whole[0])


def test_unfused_matmuls_share_one_quantization():
    cfg, W = tiny_model(3)
    plan, _ = build_plan(cfg, W, 2, fused=False, threads=1)
    text = plan.describe()
    n_quant = sum(line.startswith("quantize") or "(+ quantize" in line for line in text)
    n_merged = sum("(+ quantize" in line for line in text)
    n_matmul = sum(line.startswith("matmul") for line in text)
    # per layer: q/k/v share one, o (done by attention), gate/up share one, down; plus the output
    assert n_matmul == 7 * cfg["L"] + 1
    assert n_quant == 4 * cfg["L"] + 1
    assert n_merged == cfg["L"]
    fused, _ = build_plan(cfg, W, 2, fused=True, threads=1)
    # fused: both rmsnorms and the attention quantize their outputs; the down input is separate
    assert sum("(+ quantize" in line for line in fused.describe()) == 3 * cfg["L"]


def test_weights_are_used_in_place():
    r = rng(12)
    w = random_quant_weight(r, Q8_0, 8, 64)
    w.setflags(write=False)                       # like an mmapped file
    plan = K.Plan(64 * 4 + 8 * 4, 1, 1)
    plan.f32(0, (1, 64))[...] = 1.0
    plan.add_matmul(0, 256, w, 1, 64, 8)
    plan.run()
    y1 = plan.f32(256, (1, 8)).copy()
    w.setflags(write=True)
    w[:, 2:] = 0                                  # the plan sees the same memory
    plan.run()
    assert np.all(plan.f32(256, (1, 8)) == 0) and np.any(y1 != 0)


# ---------------------------------------------------------------- validation

def test_plan_validation_errors():
    w = random_quant_weight(rng(13), Q8_0, 8, 64)
    plan = K.Plan(1024, 1, 2)
    bad = [
        lambda: plan.add_matmul(2, 512, w, 2, 64, 8),                  # misaligned
        lambda: plan.add_matmul(0, 1000, w, 2, 64, 8),                 # out of the arena
        lambda: plan.add_matmul(0, 256, w, 2, 64, 8),                  # out overlaps x
        lambda: plan.add_matmul(0, 512, w, 2, 64, 9),                  # weight bytes
        lambda: plan.add_matmul(0, 512, w, 3, 64, 8),                  # rows > T
        lambda: plan.add_matmul(0, 512, w[:, ::2], 2, 64, 8),          # not contiguous
        lambda: plan.add_matmul(0, 512, w.view(np.float16), 2, 64, 8),  # dtype
        lambda: plan.add_matmul(0, 512, w, 2, 48, 8, Q5_0),            # k not a block multiple
        lambda: plan.add_matmul(0, 512, w, 2, 64, 8, 3),               # unsupported type
        lambda: plan.add_add(0, 64, 32, 16),                           # partial overlap
        lambda: plan.add_rope(0, 0, 3, 5, 1e4),                        # odd head_dim
        lambda: plan.add_attention(0, 512, 0, 5, 2, 8),                # heads not a multiple
        lambda: plan.add_rmsnorm(0, 256, np.ones(3, np.float32), 2, 64, 1e-6),  # gain length
        lambda: K.Plan(0, 1, 1),
        lambda: K.Plan(64, 0, 1),
    ]
    for i, f in enumerate(bad):
        with pytest.raises(errors.ModelError):
            f()
    assert plan.n_instructions == 0


def test_run_validation_errors():
    cfg, W = tiny_model(4)
    plan, _ = build_plan(cfg, W, 2, fused=True, threads=1)
    kv = KVCache(cfg["L"], 8, cfg["KVH"], cfg["hd"])
    pos = np.array([0, 1], np.int32)
    with pytest.raises(errors.ModelError):
        plan.run(np.array([0, cfg["V"]], np.int32), pos, kv)           # token id out of range
    with pytest.raises(errors.ModelError):
        plan.run(np.array([0, -1], np.int32), pos, kv)
    with pytest.raises(errors.ModelError):
        plan.run(np.array([0], np.int32), pos, kv)                     # wrong T
    with pytest.raises(errors.ContextOverflowError):
        plan.run(np.array([0, 1], np.int32), np.array([7, 8], np.int32), kv)
    with pytest.raises(errors.ModelError):
        plan.run(np.array([0, 1], np.int32), pos, None)                # no cache
    with pytest.raises(errors.ModelError):
        plan.run(np.array([0, 1], np.int32), pos, KVCache(1, 8, cfg["KVH"], cfg["hd"]))
    with pytest.raises(errors.ModelError):
        plan.run(np.array([0, 1], np.int32), pos, KVCache(cfg["L"], 8, 1, cfg["hd"]))
    bad_kv = KVCache(cfg["L"], 8, cfg["KVH"], cfg["hd"])
    bad_kv.k = bad_kv.k.astype(np.float32)
    with pytest.raises(errors.ModelError):
        plan.run(np.array([0, 1], np.int32), pos, bad_kv)
    plan.run(np.array([0, 1], np.int32), pos, kv)                      # and a good run works
    assert issubclass(errors.ContextOverflowError, errors.IgnisError)


# ---------------------------------------------------------------- properties (Hypothesis)

from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

BIG = float(np.float32(8e6))   # beyond ~8.3e6 a Q8_0 scale overflows float16
finite_f32 = st.floats(-BIG, BIG, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 6).map(lambda b: 32 * b)),
              elements=finite_f32))
def test_quantize_q8_0_property(x):
    # a block whose max |x| is below ~3.7e-37 overflows 1/d: the kernels define that case
    # (clamp, NaN -> 0), numpy's float->int8 cast does not; keep such values out
    x = np.where(np.abs(x) < 1e-30, np.float32(0), x)
    assert np.array_equal(K.quantize_q8_0(x), quant.quantize_q8_0(x))


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 11), kb=st.integers(1, 9), n=st.integers(1, 37), seed=st.integers(0, 2**16),
       wtype=st.sampled_from([Q8_0, Q5_0]))
def test_matmul_shapes_property(T, kb, n, seed, wtype):
    r = rng(seed)
    k = 32 * kb
    w = random_quant_weight(r, wtype, n, k)
    x = r.standard_normal((T, k)).astype(np.float32)
    y = K.matmul(x, w, wtype)
    assert_dot_close(y, q8_roundtrip(x), dequant(w, wtype, n, k))
    assert np.array_equal(y, K.matmul(x, w, wtype, threads=2))
    assert np.array_equal(y[-1:], K.matmul(x[-1:], w, wtype))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 3000), k=st.integers(1, 64), levels=st.integers(1, 50), seed=st.integers(0, 2 ** 32 - 1))
def test_top_k_is_the_k_largest_ties_to_the_lower_id(n, k, levels, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, size=n).astype(np.float32) * np.float32(0.25) - 3   # many ties
    k = min(k, n)
    want = np.lexsort((np.arange(n), -x.astype(np.float64)))[:k]    # value desc, then id asc
    assert np.array_equal(K.top_k(x, k), want)


def test_top_k_refuses_bad_input():
    with pytest.raises(errors.ModelError):
        K.top_k(np.array([1.0, np.nan], np.float32), 1)
    with pytest.raises(errors.ModelError):
        K.top_k(np.zeros(3, np.float32), 4)
    with pytest.raises(errors.ModelError):
        K.top_k(np.zeros((2, 2), np.float32), 1)
