"""Hypothesis strategies for Plan API cases: a valid call per op (a small random layout in the
arena, random weights of every kernel type), then 0-4 arguments made wrong."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from fuzz.plan_api.specs import (BF16, BLOCK, F16, F32, IQ4_NL, IQ4_XS, KV, MATMULS, Q2_K, Q3_K, Q4_0, Q4_1, Q4_K,
                                 Q5_0, Q5_1, Q5_K, Q6_K, Q8_0, SIGS, Case, Ints, Opaque, Vec, Wt, plan_ops)

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
BAD_MODE = ["NEOX", "", None, 0, 1, "gptj", b"neox", ["neox"], Opaque(), "normal ", np.str_("glm")]
BAD_POOL = [-1, 2, 3, 2 ** 31, 2 ** 63, "0", None, 0.5, True, [0], Opaque(), np.int64(2)]
BAD_WINDOW = [-1, -2 ** 31, 2 ** 24 + 1, 2 ** 63, "2", None, 2.0, True, [1], Opaque()]
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
        return 256, [Q8_0, Q5_0, Q4_1, Q4_K, Q6_K, F32, F16, Q4_0, Q5_1, IQ4_NL, BF16, Q2_K, Q3_K, Q5_K, IQ4_XS]
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
            d["act"] = "q16" if all(t in (Q8_0, F32, F16) for t in tl) and draw(st.booleans()) else "q8_0"
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
    mode = draw(st.sampled_from(["neox", "normal"]))
    pool = draw(st.sampled_from(ctx["pools"]))
    if name in ("kv_write", "attention", "qkv_rope_kv", "qkv_norm_rope_kv"):
        ctx["used_pools"].add(pool)
    if name == "rope":
        heads = draw(st.sampled_from([nh, kvh]))
        x = lay(T * heads * hd)
        return dict(x=x, out=x if draw(st.booleans()) else lay(T * heads * hd), n_heads=heads, head_dim=hd,
                    theta=theta, mode=mode)
    if name == "kv_write":
        return dict(k=lay(T * kvh * hd), v=lay(T * kvh * hd), layer=layer, n_kv_heads=kvh, head_dim=hd, pool=pool)
    if name == "attention":
        q = lay(T * nh * hd)
        return dict(q=q, out=q if draw(st.booleans()) else lay(T * nh * hd), layer=layer, n_heads=nh,
                    n_kv_heads=kvh, head_dim=hd, window=draw(st.sampled_from([0, 0, 1, 2, 3])), pool=pool)
    if name == "qkv_norm_rope_kv":
        k, types = draw(k_and_types())
        nq, nkv = nh * hd, kvh * hd
        w, wt = draw(weight_spec(nq + 2 * nkv, k, types, seed,
                                 splits=[nq, nq + nkv] if draw(st.booleans()) else None))
        return dict(x=lay(T * k), q_out=lay(T * nq), w=w, gq=Vec(hd, seed), gk=Vec(hd, seed + 1), layer=layer,
                    n_heads=nh, n_kv_heads=kvh, head_dim=hd, theta=theta, eps=draw(st.sampled_from([1e-6, 1e-5])),
                    k=k, wtype=wt, mode=mode, pool=pool)
    if name == "qkv_rope_kv":
        k, types = draw(k_and_types())
        nq, nkv = nh * hd, kvh * hd
        w, wt = draw(weight_spec(nq + 2 * nkv, k, types, seed,
                                 splits=[nq, nq + nkv] if draw(st.booleans()) else None))
        return dict(x=lay(T * k), q_out=lay(T * nq), w=w, b=Vec(nq + 2 * nkv, seed) if draw(st.booleans()) else None,
                    layer=layer, n_heads=nh, n_kv_heads=kvh, head_dim=hd, theta=theta, k=k, wtype=wt, mode=mode,
                    pool=pool)
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
    if kind == "mode":
        return draw(st.sampled_from(BAD_MODE))
    if kind == "pool":
        return draw(st.sampled_from(BAD_POOL))
    if kind == "window":
        return draw(st.sampled_from(BAD_WINDOW))
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
           "theta": draw(st.sampled_from([10000.0, 1e6, 500.0])),
           "pools": [1, 0] if draw(st.booleans()) else [0], "used_pools": set()}    # 1: the kv_local pool
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
    pos_dtype = draw(st.sampled_from(["int32", "int32", "int64", "uint8"]))
    paging = None
    if 1 in ctx["used_pools"] or ctx["used_pools"] and draw(st.booleans()):   # block tables (pool 1 needs them)
        pos, kv, kw, paging = draw(paged_run(T, ctx, seed, 1 in ctx["used_pools"]))
        positions = Ints(pos, pos_dtype)
    else:
        positions = Ints(tuple(draw(st.permutations(range(n_ctx)))[:T]), pos_dtype)
        kv, kw = KV((ctx["L"], n_ctx, ctx["kvh"], ctx["hd"]), seed + 7), {}
    take = None
    if "take" in ctx:                        # take_rows: the run's rows, each below its x rows
        n_out, r = ctx["take"]
        take = Ints(tuple(draw(st.lists(st.integers(0, r - 1), min_size=n_out, max_size=n_out))))
        kw["rows"] = take
    run = [tokens, positions, kv, kw] if draw(st.integers(0, 9)) else None
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
            i = draw(st.sampled_from([0, 1, 2, 4, 4] + ([3] if take else [])))
            mutations.append(f"run[{i}]" if i < 4 else "run.paging")
            if i == 4:
                run[3] = {**run[3], **draw(bad_paging(paging, T))}
            elif i == 3:
                run[3] = {**run[3], "rows": bad_ints(draw, take, len(take.values), ctx["take"][1], ctx["take"][1])}
            elif i == 2:
                run[2] = bad_kv(draw, kv, n_ctx, T)
            else:
                run[i] = bad_ints(draw, (tokens or positions, positions)[i], T, n_ctx, vocab)
    return Case(plan=tuple(plan), fill=lay.top, ops=[(name, [args[key] for key, _ in SIGS[name]])
                                                       for name, args in ops],
                run=tuple(run) if run is not None else None, seed=seed, mutations=mutations)


def _table(rows) -> Ints:
    return Ints(tuple(v for row in rows for v in row), "int32", (len(rows), len(rows[0])))


@st.composite
def paged_run(draw, T, ctx, seed, local):
    """(positions, kv, run keywords, what was drawn) of a valid run over block tables: the T
    tokens belong to 1..T sequences, each position once per sequence, and every (sequence,
    block) has its own physical block of pool 0. With `local`, pool 1 is a windowed pool: each
    sequence cycles through a ring of its own few blocks (as a sliding-window cache keeps only
    its window), so tokens far apart may write one row (then the run must refuse)."""
    bs = draw(st.sampled_from([1, 2, 4]))
    n_seq = draw(st.integers(1, T))
    seqs = [draw(st.integers(0, n_seq - 1)) for _ in range(T)]
    order = {s: draw(st.permutations(range(T + 6))) for s in sorted(set(seqs))}
    pos = [order[s][seqs[:t].count(s)] for t, s in enumerate(seqs)]
    width = max(pos) // bs + 1 + draw(st.integers(0, 1))
    n_blocks = n_seq * width + draw(st.integers(0, 2))
    perm = draw(st.permutations(range(n_blocks)))
    tab = [[perm[s * width + b] for b in range(width)] for s in range(n_seq)]
    L, kvh, hd = ctx["L"], ctx["kvh"], ctx["hd"]
    kw = {"seqs": Ints(tuple(seqs)), "tables": _table(tab), "block_size": bs}
    drawn = {"bs": bs, "n_seq": n_seq, "tab": tab, "n_blocks": n_blocks, "local": local}
    if local:
        ring = draw(st.integers(1, width))
        n_local = n_seq * ring + draw(st.integers(0, 1))
        tab1 = [[s * ring + b % ring for b in range(width)] for s in range(n_seq)]
        kw.update(kv_local=KV((L, n_local * bs, kvh, hd), seed + 11), tables_local=_table(tab1))
        drawn.update(tab1=tab1, n_local=n_local)
    return tuple(pos), KV((L, n_blocks * bs, kvh, hd), seed + 7), kw, drawn


@st.composite
def bad_paging(draw, drawn, T):
    """Run keywords that break one rule of block tables (or, without tables, stray ones)."""
    if drawn is None:
        return draw(st.sampled_from([{"seqs": Ints((0,) * T)}, {"block_size": 1}, {"tables": _table([[0]])},
                                     {"seqs": Ints((0,) * T), "tables": _table([[0]]), "block_size": 1},
                                     {"tables_local": _table([[0]])},
                                     {"kv_local": KV((1, 4, 1, 2), 3), "tables_local": _table([[0]])}]))
    bs, n_seq, n_blocks = drawn["bs"], drawn["n_seq"], drawn["n_blocks"]
    tab = [list(row) for row in drawn["tab"]]
    choice = draw(st.sampled_from(["entry", "bs", "seq", "noseqs", "notables", "nobs", "share", "narrow", "shape",
                                   "local"]))
    s, b = draw(st.integers(0, n_seq - 1)), draw(st.integers(0, len(tab[0]) - 1))
    if choice == "entry":           # a block past the cache (or negative)
        tab[s][b] = draw(st.sampled_from([n_blocks, n_blocks + 3, -1, 2 ** 31 - 1]))
        return {"tables": _table(tab)}
    if choice == "bs":              # a block size that does not divide the cache, or not a size
        return {"block_size": draw(st.sampled_from([0, -bs, bs + 1, 3 * bs, "2", None, 2.0, 2 ** 63, Opaque()]))}
    if choice == "seq":             # a token whose table row does not exist
        return {"seqs": Ints(tuple([draw(st.sampled_from([n_seq, -1, 2 ** 31 - 1]))] + [0] * (T - 1)))}
    if choice == "noseqs":
        return {"seqs": None}
    if choice == "notables":
        return {"tables": None}
    if choice == "nobs":
        return {"block_size": None}
    if choice == "share":           # two sequences on one block: a collision if both write it
        other = draw(st.integers(0, n_seq - 1))
        tab[s][b] = tab[other][b]
        return {"tables": _table(tab)}
    if choice == "narrow":          # a table too short for its positions (a context overflow)
        return {"tables": _table([row[:max(1, len(row) - 1)] for row in tab])}
    if choice == "shape":
        flat = tuple(v for row in tab for v in row)
        return {"tables": draw(st.sampled_from([Ints(flat), Ints(tuple(map(float, flat)), "float32",
                                                                     (n_seq, len(tab[0]))), "tables", None]))}
    if drawn["local"]:              # kv_local without tables_local, or the reverse
        return draw(st.sampled_from([{"kv_local": None}, {"tables_local": None}]))
    return {"kv_local": KV((2, 4 * bs, 1, 2), 5), "tables_local": _table(tab)}


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
