"""The prefill of quantized weights on prepared rows (simd/kq_prep.h at avx512, simd/prep_x86.h at
avx2 / avxvnni; matmul.pxi kp_prepared_rows: up to 8 row groups unpacked once, one token table per
8 tokens) against the scalar level, which is the definition: the bits must be equal for every
epilogue (store, bias, residual add, SwiGLU, GeGLU, the qkv split), 9..64 tokens (T not a multiple
of 8), rows not a multiple of 8, weights given as parts that mix the prepared types and others (so
prepared and plain tiles meet in one matmul), and 1 or 2 threads. The same cases at 1..10 tokens
check the decode token tables (simd/zt_decode.h: the Q4_K / Q6_K / Q2_K / Q3_K / Q8_0 / Q5_0 / Q4_0
/ IQ4_NL tiles of a decode or speculative verify step), also at a width that leaves a partial last
super-block."""
import numpy as np
import pytest

from ignis.testing import KVCache

K = pytest.importorskip("ignis._kernels")

LEVELS = [name for name, ok in K.isa_levels() if ok and name != "scalar"]
F32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL = 0, 2, 3, 6, 7, 8, 20
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS = 10, 11, 12, 13, 14, 23
BLOCK = {Q5_0: (32, 22), Q8_0: (32, 34), Q4_0: (32, 18), Q4_1: (32, 20), Q5_1: (32, 24), IQ4_NL: (32, 18),
         Q4_K: (256, 144), Q6_K: (256, 210), Q5_K: (256, 176), Q3_K: (256, 110), Q2_K: (256, 84),
         IQ4_XS: (256, 136)}
F16_AT = {Q5_0: (0,), Q8_0: (0,), Q4_0: (0,), Q4_1: (0, 2), Q5_1: (0, 2), IQ4_NL: (0,), Q4_K: (0, 2),
          Q6_K: (208,), Q5_K: (0, 2), Q3_K: (108,), Q2_K: (80, 82), IQ4_XS: (0,)}


def weight(r, wtype, n, k):
    """n random rows of wtype: random bytes, modest f16 scales (and mins); F32: normal floats."""
    if wtype == F32:
        return (r.standard_normal((n, k)) * 0.05).astype(np.float32)
    elems, nbytes = BLOCK[wtype]
    raw = r.integers(0, 256, size=(n, k // elems, nbytes), dtype=np.uint8)
    for at in F16_AT[wtype]:
        d = (r.uniform(0.2, 1.0, size=(n, k // elems)) * 0.002).astype(np.float16)
        raw[:, :, at:at + 2] = d.view(np.uint8).reshape(n, k // elems, 2)
    return raw.reshape(n, -1)


def run(level, epi, x, ws, types, n, threads, extra=None):
    """One matmul op with epilogue `epi` at `level`: its output (and the KV cache for qkv)."""
    K.use_isa(level)
    T, k = x.shape
    rows_out = n // 2 if epi in ("swiglu", "geglu") else n
    xb, ob = x.nbytes, T * max(n, rows_out) * 4
    plan = K.Plan(xb + 2 * ob + 64, threads, T)
    plan.f32(0, x.shape)[...] = x
    out = xb
    if epi == "store":
        plan.add_matmul(0, out, ws, T, k, n, types)
    elif epi == "bias":
        plan.add_matmul_bias(0, out, ws, extra, T, k, n, types)
    elif epi == "add":
        res = xb + ob
        plan.f32(res, (T, n))[...] = extra
        plan.add_matmul_add(0, res, out, ws, T, k, n, types)
    elif epi == "swiglu":
        plan.add_gate_up_swiglu(0, out, ws, T, k, n // 2, types)
    elif epi == "geglu":
        plan.add_gate_up_geglu(0, out, ws, T, k, n // 2, types)
    else:   # qkv: 4 query heads and 2 kv heads of 16 (the q part 64 rows, k and v 32 each)
        kv = KVCache(1, T, 2, 16)
        plan.add_qkv_rope_kv(0, out, ws, extra, 0, 4, 2, 16, 10000.0, k, types)
        plan.run(positions=np.arange(T, dtype=np.int32), kv=kv)
        return [plan.f32(out, (T, 64)).copy(), kv.k.copy(), kv.v.copy()]
    plan.run()
    return [plan.f32(out, (T, rows_out)).copy()]


# (epilogue, row counts of the parts, their types); the gate/up halves mirror their splits
CASES = [
    ("store", [37], [Q4_K]),
    ("store", [29], [Q6_K]),
    ("store", [19, 21, 9], [Q4_K, Q5_0, Q6_K]),
    ("bias", [23, 18], [Q6_K, Q4_K]),
    ("add", [45], [Q4_K]),
    ("add", [16, 13], [Q8_0, Q6_K]),
    ("swiglu", [74], [Q4_K]),
    ("swiglu", [37, 37], [Q4_K, Q6_K]),
    ("geglu", [9, 28, 37], [Q6_K, Q4_K, Q6_K]),
    ("qkv", [64, 32, 32], [Q4_K, Q4_K, Q6_K]),
    ("qkv", [64, 32, 32], [Q4_K, Q5_0, Q6_K]),
    ("store", [21, 19, 13], [Q5_K, Q3_K, Q2_K]),
    ("store", [40], [IQ4_XS]),
    ("bias", [17, 20], [Q3_K, Q8_0]),
    ("add", [33], [Q2_K]),
    ("swiglu", [37, 37], [Q5_K, Q6_K]),         # the halves' prepared rows differ in size
    ("swiglu", [46], [Q3_K]),
    ("geglu", [7, 30, 37], [Q4_K, IQ4_XS, Q5_K]),
    ("qkv", [64, 32, 32], [Q5_K, Q4_K, Q6_K]),
    ("qkv", [64, 32, 32], [Q3_K, Q2_K, Q5_K]),
    ("store", [21, 19, 13], [Q8_0, Q4_0, IQ4_NL]),
    ("add", [25, 12], [Q4_1, Q5_1]),
    ("swiglu", [37, 37], [Q5_0, Q8_0]),
    ("swiglu", [37, 37], [Q4_K, Q5_0]),          # prepared halves of different row layouts
    ("geglu", [7, 30, 37], [Q4_0, Q5_1, Q6_K]),
    ("qkv", [64, 32, 32], [Q5_0, Q5_0, Q8_0]),
    ("bias", [20, 17], [F32, Q4_1]),             # float rows beside prepared ones
]


def check_levels(level, epi, sizes, types, token_counts, k=None):
    before = K.isa()
    try:
        r = np.random.default_rng(sum(sizes) * 31 + len(types))
        k = k or (512 if epi != "qkv" else 256)
        n = sum(sizes)
        ws = [weight(r, t, m, k) for t, m in zip(types, sizes)]
        for T in token_counts:
            x = r.standard_normal((T, k)).astype(np.float32)
            extra = None
            if epi in ("bias", "qkv"):
                extra = r.standard_normal(n).astype(np.float32)
            elif epi == "add":
                extra = r.standard_normal((T, n)).astype(np.float32)
            ref = run("scalar", epi, x, ws, types, n, 1, extra)
            for threads in (1, 2):
                got = run(level, epi, x, ws, types, n, threads, extra)
                for a, b in zip(ref, got):
                    assert np.array_equal(a.view(np.uint16 if a.dtype == np.float16 else np.uint32),
                                          b.view(np.uint16 if b.dtype == np.float16 else np.uint32)), \
                        (level, epi, T, threads)
    finally:
        K.use_isa(before)


IDS = [f"{c[0]}-{'+'.join(map(str, c[1]))}" for c in CASES]


@pytest.mark.parametrize("level", LEVELS or ["(none)"])
@pytest.mark.parametrize("epi,sizes,types", CASES, ids=IDS)
def test_prepared_rows_give_the_scalar_bits(level, epi, sizes, types):
    if level == "(none)":
        pytest.skip("this CPU runs no SIMD level of this build")
    check_levels(level, epi, sizes, types, (9, 16, 23, 64))


@pytest.mark.parametrize("level", LEVELS or ["(none)"])
@pytest.mark.parametrize("epi,sizes,types", CASES, ids=IDS)
def test_few_tokens_give_the_scalar_bits(level, epi, sizes, types):
    """Decode and verify steps (1..10 tokens): the parts of the types with decode token tiles
    on the tables where the level has them (the 32-element ones from 2 tokens), beside parts of
    other types on the plain tiles (9 and 10 tokens: on the tables only when every part can,
    else on prepared rows)."""
    if level == "(none)":
        pytest.skip("this CPU runs no SIMD level of this build")
    check_levels(level, epi, sizes, types, (1, 2, 3, 4, 5, 8, 9, 10))


@pytest.mark.parametrize("level", LEVELS or ["(none)"])
@pytest.mark.parametrize("epi,sizes,types", [("store", [21, 19, 13], [Q8_0, Q5_0, Q4_0]),
                                             ("add", [29], [IQ4_NL]),
                                             ("swiglu", [37, 37], [Q5_0, Q8_0])])
def test_few_tokens_on_a_partial_super_block(level, epi, sizes, types):
    """The 32-element types' token tables at a width of 11 blocks (352: two super-blocks, the
    second holding 3 blocks, as the default model's 896 holds 28)."""
    if level == "(none)":
        pytest.skip("this CPU runs no SIMD level of this build")
    check_levels(level, epi, sizes, types, (1, 2, 3, 5, 8, 10), k=352)


@pytest.mark.parametrize("level", LEVELS or ["(none)"])
def test_one_plan_runs_prepared_matmuls_of_two_widths_in_turn(level):
    """Two K-quant matmuls of different widths in one plan share the thread's scratch: the
    second must not see the first's rows or token tables (the down projection of a layer
    follows its gate/up)."""
    if level == "(none)":
        pytest.skip("this CPU runs no SIMD level of this build")
    before = K.isa()
    try:
        r = np.random.default_rng(7)
        T, d, f = 21, 256, 768
        wgu, wd = weight(r, Q4_K, 2 * f, d), weight(r, Q6_K, d, f)
        x = r.standard_normal((T, d)).astype(np.float32)
        outs = []
        for lvl in ("scalar", level):
            K.use_isa(lvl)
            plan = K.Plan(T * (d + f + d) * 4, 2, T)
            plan.f32(0, (T, d))[...] = x
            plan.add_gate_up_swiglu(0, T * d * 4, wgu, T, d, f, Q4_K)
            plan.add_matmul(T * d * 4, T * (d + f) * 4, wd, T, f, d, Q6_K)
            plan.run()
            outs.append(plan.f32(T * (d + f) * 4, (T, d)).copy())
        assert np.array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32))
    finally:
        K.use_isa(before)
