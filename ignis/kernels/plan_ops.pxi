# ignis/kernels/plan_ops.pxi -- what each Plan.add_* op takes and checks, as data: the table
# Plan._build (plan.pxi) reads to convert, check and lower every op the same way.
#
# Included by ignis/_kernels.pyx before plan.pxi. An op's entry lists, in order:
#   args     (name, kind) of each parameter of add_<op> (kinds: see Plan._convert)
#   heads    the (n_heads, n_kv_heads) parameters checked together by _head_dims (even
#            head_dim, n_heads a multiple of n_kv_heads), or None
#   prepare  f(plan, name, a): checks and derived values before any region (may raise)
#   vectors  (name, length(a), optional): bias / gain vectors (optional: None is allowed)
#   regions  (name, role, bytes(a, T), label): arena regions; role "in" / "out" take part in
#            the aliasing check, "check" is only bounds-checked
#   alias    indices of the inputs an output may be exactly equal to
#   weight   (rows(a), k parameter) of the weight `w` with type `wtype`, or None
#   check    f(plan, name, a): checks that need the weight parts (a["parts"]), or None
#   lower    "one" (one instruction of `op`), "matmul" (a matmul with epilogue `epi`, after
#            quantizing x) or "qkv" (a qkv matmul, then rope + kv_write)
#   effects  what the op adds to the plan's run-time needs: kv (reads/writes a KV pool),
#            writes_kv, rope (a rope slot), embed (tokens), take (run's rows), attention
#   text     f(a): the describe() line;  fields  f(a): the Instr fields (region indices are
#            a["<name>_i"]; "vec"/"vec2" name a vector)


class _OpSpec:
    __slots__ = ("op", "args", "heads", "prepare", "vectors", "regions", "alias", "weight", "check",
                 "lower", "epi", "effects", "text", "fields", "io")

    def __init__(self, op, args, text, fields=None, heads=None, prepare=None, vectors=(), regions=(),
                 alias=(), weight=None, check=None, lower="one", epi=0, effects=(), io=True):
        self.op, self.args, self.text, self.fields = op, args, text, fields
        self.heads, self.prepare, self.vectors, self.regions = heads, prepare, vectors, regions
        self.alias, self.weight, self.check, self.lower = alias, weight, check, lower
        self.epi, self.effects, self.io = epi, frozenset(effects), io


def _f32_value(v) -> float:
    return float(np.float32(v))


def _prepare_embed(plan, name, a):
    wtype = a["wtype"] = _wtype("embed: weight type", a["wtype"])
    rb = row_nbytes(wtype, a["dim"])
    w = a["w"]
    if not isinstance(w, np.ndarray) or w.nbytes % rb or w.nbytes == 0:
        raise ModelError(f"embed: weight must be a numpy array of whole {_TYPE_NAMES[wtype]} rows "
                         f"of {a['dim']} ({rb} bytes each)")
    a["vocab"] = np.asarray(w).nbytes // rb


def _prepare_act(plan, name, a):
    act = a["act"]
    if not (isinstance(act, str) and act in ("q8_0", "q16")):
        raise ModelError(f"matmul: act must be 'q8_0' or 'q16', got {_short(act)}")


def _check_act(plan, name, a):
    parts = a["parts"]
    a["act16"] = act16 = a["act"] == "q16" and any(part[1] not in _FLOAT_WTYPES for part in parts)
    if act16 and any(part[1] not in _FLOAT_WTYPES + (T_Q8_0,) for part in parts):
        raise ModelError(f"matmul: act='q16' needs Q8_0 (or F32/F16) weights, got {_type_label(parts)}")


def _check_gate_up(plan, name, a):
    # The kernel computes gate rows [lo, hi) of one part and the up rows n_ff + [lo, hi)
    # together, reading the up rows from the part that holds row n_ff + lo: so the parts
    # must split at n_ff, and every boundary inside the up half must mirror one in the
    # gate half (e.g. [n_ff, a, n_ff - a] would read part 1 past its end).
    parts, n_ff = a["parts"], a["n_ff"]
    bounds = [0]
    for part in parts:
        bounds.append(bounds[len(bounds) - 1] + part[3])
    if len(parts) > 1 and (n_ff not in bounds or
                           any(n_ff < b < 2 * n_ff and b - n_ff not in bounds for b in bounds)):
        raise ModelError(f"{name}: the weight parts ({' + '.join(str(pp[3]) for pp in parts)} "
                         f"rows) must split at row {n_ff} (gate | up), with every split of the up "
                         f"half also a split of the gate half")


def _prepare_take_rows(plan, name, a):
    if plan._takes_rows():
        raise ModelError("take_rows: a plan takes rows once (one `rows` input per run)")


def _prepare_qkv(plan, name, a):
    a["nq"], a["nkv"] = a["n_heads"] * a["head_dim"], a["n_kv_heads"] * a["head_dim"]
    a["n"] = n = a["nq"] + 2 * a["nkv"]
    if n > _MAX_WIDTH:
        raise ModelError(f"{name}: {n} output rows, at most {_MAX_WIDTH}")


def _type_label(parts):
    names = [_TYPE_NAMES[part[1]] for part in parts]
    return names[0] if len(set(names)) == 1 else "+".join(names)


def _local(a):
    return "local " if a["pool"] else ""


def _rows_dim(a, T):
    return a["rows"] * a["dim"] * 4


def _elementwise(op, name, binary, scale=False):
    first = "a" if binary else "x"
    args = ((first, "off"),) + ((("b", "off"),) if binary else ()) + (("out", "off"), ("n", "width"))
    args += (("factor", "factor"),) if scale else ()
    regions = ((first, "in", lambda a, T: a["n"] * 4, f"{name} a"),)
    regions += ((("b", "in", lambda a, T: a["n"] * 4, f"{name} b"),) if binary else ())
    regions += (("out", "out", lambda a, T: a["n"] * 4, f"{name} out"),)

    def text(a):
        srcs = f"@{a[first]}" + (f", @{a['b']}" if binary else "")
        factor = f" x {_f32_value(a['factor'])}" if scale else ""
        return f"{name} {srcs} [{a['n']}]{factor} -> @{a['out']}"

    def fields(a):
        return dict(n=a["n"], x=a[first + "_i"], x2=a["b_i"] if binary else -1, out=a["out_i"],
                    factor=a["factor"] if scale else 0.0)
    return _OpSpec(op, args, text, fields, regions=regions, alias=(0, 1))


def _matmul_spec(name, epi, args, regions, text, alias=(), vectors=(), rows=lambda a: a["n"], check=None,
                 prepare=None):
    return _OpSpec(OP_MATMUL, args, text, regions=regions, alias=alias, vectors=vectors, prepare=prepare,
                   weight=(rows, "k"), check=check, lower="matmul", epi=epi)


def _qkv_spec(normed):
    name = "qkv_norm_rope_kv" if normed else "qkv_rope_kv"
    args = (("x", "off"), ("q_out", "off"), ("w", "raw"))
    args += (("gq", "raw"), ("gk", "raw")) if normed else (("b", "raw"),)
    args += (("layer", "layer"), ("n_heads", "raw"), ("n_kv_heads", "raw"), ("head_dim", "raw"),
             ("theta", "theta"))
    args += (("eps", "eps"),) if normed else ()
    args += (("k", "dim"), ("wtype", "raw"), ("mode", "mode"), ("pool", "pool"))
    vectors = ((("gq", lambda a: a["head_dim"], False), ("gk", lambda a: a["head_dim"], False)) if normed
               else (("b", lambda a: a["n"], True),))

    def text(a):
        return (f"rope q @{a['q_out']}, rope k, kv_write -> {_local(a)}cache[{a['layer']}] "
                f"theta={a['theta']}")

    def fields(a):
        f = dict(rows=a["T"], n_heads=a["n_heads"], n_kv_heads=a["n_kv_heads"], head_dim=a["head_dim"],
                 layer=a["layer"], out=a["q_out_i"], rope_mode=a["mode"], pool=a["pool"])
        if normed:      # the head norms before the rotation
            f.update(vec="gq", vec2="gk", eps=a["eps"])
        return f
    return _OpSpec(OP_ROPE_KV, args, text, fields, heads=("n_heads", "n_kv_heads"), prepare=_prepare_qkv,
                   vectors=vectors,
                   regions=(("x", "in", lambda a, T: T * a["k"] * 4, None),
                            ("q_out", "out", lambda a, T: T * a["nq"] * 4, None)),
                   weight=(lambda a: a["n"], "k"), lower="qkv", effects=("kv", "writes_kv", "rope"))


def _attention_text(a):
    window = f" window {a['window']}" if a["window"] else ""
    return (f"attention @{a['q']} {_local(a)}cache[{a['layer']}] {a['n_heads']}/{a['n_kv_heads']} heads x "
            f"{a['head_dim']}{window} -> @{a['out']}")


_MATMUL_X = ("x", "in", lambda a, T: a["rows"] * a["k"] * 4, None)
_MATMUL_OUT = ("out", "out", lambda a, T: a["rows"] * a["n"] * 4, None)
_GATE_UP_ARGS = (("x", "off"), ("out", "off"), ("w", "raw"), ("rows", "rows"), ("k", "dim"), ("n_ff", "dim"),
                 ("wtype", "raw"))
_GATE_UP_OUT = ("out", "out", lambda a, T: a["rows"] * a["n_ff"] * 4, None)


def _gate_up_text(name):
    return lambda a: (f"{name} @{a['x']} [{a['rows']},{a['k']}] x {_type_label(a['parts'])} "
                      f"[2x{a['n_ff']},{a['k']}] -> @{a['out']}")


_OPS = {
    "embed": _OpSpec(
        OP_EMBED, (("out", "off"), ("w", "raw"), ("dim", "dim"), ("wtype", "raw")),
        lambda a: f"embed {_TYPE_NAMES[a['wtype']]} [{a['vocab']},{a['dim']}] -> @{a['out']}",
        lambda a: dict(rows=a["T"], k=a["dim"], out=a["out_i"]),
        prepare=_prepare_embed, regions=(("out", "out", lambda a, T: T * a["dim"] * 4, None),),
        weight=(lambda a: a["vocab"], "dim"), effects=("embed",)),
    "rms_inv": _OpSpec(
        OP_RMS_INV, (("x", "off"), ("out", "off"), ("rows", "rows"), ("dim", "dim"), ("eps", "eps")),
        lambda a: f"rms_inv @{a['x']} [{a['rows']},{a['dim']}] eps={_f32_value(a['eps'])} -> @{a['out']}",
        lambda a: dict(rows=a["rows"], k=a["dim"], eps=a["eps"], x=a["x_i"], out=a["out_i"]),
        regions=(("x", "in", _rows_dim, None), ("out", "out", lambda a, T: a["rows"] * 4, None))),
    "scale_rows": _OpSpec(
        OP_SCALE_ROWS, (("x", "off"), ("r", "off"), ("out", "off"), ("g", "raw"), ("rows", "rows"), ("dim", "dim")),
        lambda a: f"scale_rows @{a['x']} * @{a['r']} * g [{a['rows']},{a['dim']}] -> @{a['out']}",
        lambda a: dict(rows=a["rows"], k=a["dim"], x=a["x_i"], x2=a["r_i"], out=a["out_i"], vec="g"),
        vectors=(("g", lambda a: a["dim"], False),),
        regions=(("x", "in", _rows_dim, None), ("r", "in", lambda a, T: a["rows"] * 4, None),
                 ("out", "out", _rows_dim, None)), alias=(0,)),
    "matmul": _matmul_spec(
        "matmul", EPI_STORE,
        (("x", "off"), ("out", "off"), ("w", "raw"), ("rows", "rows"), ("k", "dim"), ("n", "dim"), ("wtype", "raw"),
         ("act", "raw")),
        (_MATMUL_X, _MATMUL_OUT),
        lambda a: (f"matmul @{a['x']} [{a['rows']},{a['k']}] x {_type_label(a['parts'])} [{a['n']},{a['k']}]"
                   f"{' (q16 activations)' if a['act16'] else ''} -> @{a['out']}"),
        prepare=_prepare_act, check=_check_act),
    "add_bias": _OpSpec(
        OP_ADD_BIAS, (("y", "off"), ("out", "off"), ("b", "raw"), ("rows", "rows"), ("n", "dim")),
        lambda a: f"add_bias @{a['y']} [{a['rows']},{a['n']}] -> @{a['out']}",
        lambda a: dict(rows=a["rows"], n=a["n"], x=a["y_i"], out=a["out_i"], vec="b"),
        vectors=(("b", lambda a: a["n"], False),),
        regions=(("y", "in", lambda a, T: a["rows"] * a["n"] * 4, None),
                 ("out", "out", lambda a, T: a["rows"] * a["n"] * 4, None)), alias=(0,)),
    "rope": _OpSpec(
        OP_ROPE, (("x", "off"), ("out", "off"), ("n_heads", "raw"), ("head_dim", "raw"), ("theta", "theta"),
                  ("mode", "mode")),
        lambda a: (f"rope @{a['x']} [{a['T']},{a['n_heads']}x{a['head_dim']}] "
                   f"theta={a['theta']} -> @{a['out']}"),
        lambda a: dict(rows=a["T"], n_heads=a["n_heads"], head_dim=a["head_dim"], x=a["x_i"], out=a["out_i"],
                       rope_mode=a["mode"]),
        heads=("n_heads", None),
        regions=(("x", "in", lambda a, T: T * a["n_heads"] * a["head_dim"] * 4, None),
                 ("out", "out", lambda a, T: T * a["n_heads"] * a["head_dim"] * 4, None)),
        alias=(0,), effects=("rope",)),
    "kv_write": _OpSpec(
        OP_KV_WRITE, (("k", "off"), ("v", "off"), ("layer", "layer"), ("n_kv_heads", "raw"), ("head_dim", "raw"),
                      ("pool", "pool")),
        lambda a: f"kv_write @{a['k']} @{a['v']} -> {_local(a)}cache[{a['layer']}]",
        lambda a: dict(rows=a["T"], n_kv_heads=a["n_kv_heads"], head_dim=a["head_dim"], layer=a["layer"],
                       x=a["k_i"], x2=a["v_i"], pool=a["pool"]),
        heads=("n_kv_heads", None),
        regions=(("k", "check", lambda a, T: T * a["n_kv_heads"] * a["head_dim"] * 4, None),
                 ("v", "check", lambda a, T: T * a["n_kv_heads"] * a["head_dim"] * 4, None)),
        effects=("kv", "writes_kv")),
    "attention": _OpSpec(
        OP_ATTENTION, (("q", "off"), ("out", "off"), ("layer", "layer"), ("n_heads", "raw"), ("n_kv_heads", "raw"),
                       ("head_dim", "raw"), ("window", "window"), ("pool", "pool")),
        _attention_text,
        lambda a: dict(rows=a["T"], n_heads=a["n_heads"], n_kv_heads=a["n_kv_heads"], head_dim=a["head_dim"],
                       layer=a["layer"], x=a["q_i"], out=a["out_i"], window=a["window"], pool=a["pool"]),
        heads=("n_heads", "n_kv_heads"),
        regions=(("q", "in", lambda a, T: T * a["n_heads"] * a["head_dim"] * 4, None),
                 ("out", "out", lambda a, T: T * a["n_heads"] * a["head_dim"] * 4, None)),
        alias=(0,), effects=("kv", "attention")),
    "add": _elementwise(OP_ADD, "add", True),
    "mul": _elementwise(OP_MUL, "mul", True),
    "silu": _elementwise(OP_SILU, "silu", False),
    "gelu": _elementwise(OP_GELU, "gelu", False),
    "scale": _elementwise(OP_SCALE, "scale", False, scale=True),
    "swiglu": _elementwise(OP_SWIGLU, "swiglu", True),
    "head_rmsnorm": _OpSpec(
        OP_HEAD_RMSNORM, (("x", "off"), ("out", "off"), ("g", "raw"), ("rows", "rows"), ("n_heads", "heads"),
                          ("head_dim", "heads"), ("eps", "eps")),
        lambda a: (f"head_rmsnorm @{a['x']} [{a['rows']},{a['n_heads']}x{a['head_dim']}] "
                   f"eps={_f32_value(a['eps'])} -> @{a['out']}"),
        lambda a: dict(rows=a["rows"], n_heads=a["n_heads"], head_dim=a["head_dim"], eps=a["eps"], x=a["x_i"],
                       out=a["out_i"], vec="g"),
        vectors=(("g", lambda a: a["head_dim"], False),),
        regions=(("x", "in", lambda a, T: a["rows"] * a["n_heads"] * a["head_dim"] * 4, None),
                 ("out", "out", lambda a, T: a["rows"] * a["n_heads"] * a["head_dim"] * 4, None)), alias=(0,)),
    "take_last": _OpSpec(
        OP_TAKE_LAST, (("x", "off"), ("out", "off"), ("rows", "rows"), ("dim", "dim")),
        lambda a: f"take_last @{a['x']} [{a['rows']},{a['dim']}] -> @{a['out']}",
        lambda a: dict(rows=a["rows"], k=a["dim"], x=a["x_i"], out=a["out_i"]),
        regions=(("x", "in", _rows_dim, None), ("out", "out", lambda a, T: a["dim"] * 4, None)),
        io="unless_same"),
    "take_rows": _OpSpec(
        OP_TAKE_ROWS, (("x", "off"), ("out", "off"), ("rows", "rows"), ("dim", "dim"), ("n_out", "n_out")),
        lambda a: f"take_rows @{a['x']} [{a['rows']},{a['dim']}] -> @{a['out']} [{a['n_out']},{a['dim']}]",
        lambda a: dict(rows=a["rows"], k=a["dim"], n=a["n_out"], x=a["x_i"], out=a["out_i"]),
        prepare=_prepare_take_rows,
        regions=(("x", "in", _rows_dim, None), ("out", "out", lambda a, T: a["n_out"] * a["dim"] * 4, None)),
        effects=("take",)),
    "rmsnorm": _OpSpec(
        OP_RMSNORM, (("x", "off"), ("out", "off"), ("g", "raw"), ("rows", "rows"), ("dim", "dim"), ("eps", "eps")),
        lambda a: f"rmsnorm @{a['x']} [{a['rows']},{a['dim']}] eps={_f32_value(a['eps'])} -> @{a['out']}",
        lambda a: dict(rows=a["rows"], k=a["dim"], eps=a["eps"], x=a["x_i"], out=a["out_i"], vec="g"),
        vectors=(("g", lambda a: a["dim"], False),),
        regions=(("x", "in", _rows_dim, None), ("out", "out", _rows_dim, None)), alias=(0,)),
    "rmsnorm_add": _OpSpec(
        OP_RMSNORM_ADD, (("y", "off"), ("res", "off"), ("out", "off"), ("g", "raw"), ("rows", "rows"),
                         ("dim", "dim"), ("eps", "eps")),
        lambda a: (f"rmsnorm_add @{a['res']} + rmsnorm(@{a['y']}) [{a['rows']},{a['dim']}] "
                   f"eps={_f32_value(a['eps'])} -> @{a['out']}"),
        lambda a: dict(rows=a["rows"], k=a["dim"], eps=a["eps"], x=a["y_i"], x2=a["res_i"], out=a["out_i"],
                       vec="g"),
        vectors=(("g", lambda a: a["dim"], False),),
        regions=(("y", "in", _rows_dim, None), ("res", "in", _rows_dim, None), ("out", "out", _rows_dim, None)),
        alias=(1,)),
    "matmul_bias": _matmul_spec(
        "matmul_bias", EPI_BIAS,
        (("x", "off"), ("out", "off"), ("w", "raw"), ("b", "raw"), ("rows", "rows"), ("k", "dim"), ("n", "dim"),
         ("wtype", "raw")),
        (_MATMUL_X, _MATMUL_OUT),
        lambda a: (f"matmul_bias @{a['x']} [{a['rows']},{a['k']}] x {_type_label(a['parts'])} "
                   f"[{a['n']},{a['k']}] + b -> @{a['out']}"),
        vectors=(("b", lambda a: a["n"], False),)),
    "matmul_add": _matmul_spec(
        "matmul_add", EPI_ADD,
        (("x", "off"), ("res", "off"), ("out", "off"), ("w", "raw"), ("rows", "rows"), ("k", "dim"), ("n", "dim"),
         ("wtype", "raw")),
        (_MATMUL_X, ("res", "in", lambda a, T: a["rows"] * a["n"] * 4, None), _MATMUL_OUT),
        lambda a: (f"matmul_add @{a['res']} + @{a['x']} [{a['rows']},{a['k']}] x {_type_label(a['parts'])} "
                   f"[{a['n']},{a['k']}] -> @{a['out']}"),
        alias=(1,)),
    "gate_up_swiglu": _matmul_spec(
        "gate_up_swiglu", EPI_SWIGLU, _GATE_UP_ARGS, (_MATMUL_X, _GATE_UP_OUT), _gate_up_text("gate_up_swiglu"),
        rows=lambda a: 2 * a["n_ff"], check=_check_gate_up),
    "gate_up_geglu": _matmul_spec(
        "gate_up_geglu", EPI_GEGLU, _GATE_UP_ARGS, (_MATMUL_X, _GATE_UP_OUT), _gate_up_text("gate_up_geglu"),
        rows=lambda a: 2 * a["n_ff"], check=_check_gate_up),
    "qkv_rope_kv": _qkv_spec(False),
    "qkv_norm_rope_kv": _qkv_spec(True),
}
