"""Fusion passes. Each is a small function Graph -> (Graph, PassReport) that finds a
pattern of primitive ops and replaces it by the fused op of docs/ops.md defined as
that pattern's composition. A value inside a pattern is fused away only when its
single reader is the next op of the pattern (the article's rule: B always and only
reads A's output); values read elsewhere or returned by the graph stay.

Each pass accepts the forms other passes may have left (e.g. fuse_qkv takes a
projection as matmul + add_bias or as matmul_bias), so any subset of passes, in
any order, gives a valid graph with the same outputs.
"""
from __future__ import annotations

from ignis.ir.graph import Graph, Op, Weight
from ignis.passes.rewrite import Fusion, run_fusion_pass, single_use


def _producer(graph: Graph, v, kind: str, claimed: set):
    """The unclaimed op of `kind` defining v, or None."""
    op = graph.producer(v)
    return op if op is not None and op.kind == kind and op not in claimed else None


def _cat(*weights: Weight) -> Weight:
    return Weight(tuple(p for w in weights for p in w.parts))


def _either_operand(graph: Graph, op: Op, sides, match):
    """A commutative binary op's operands tried in the orders `sides` (the side to match
    first): (match(v, other), other) for the first operand v that `match` accepts (not
    None) and that op alone reads, else None."""
    for side in sides:
        v, other = op.inputs[side], op.inputs[1 - side]
        found = match(v, other)
        if found is not None and single_use(graph, v):
            return found, other
    return None


def _linear(graph: Graph, v, claimed: set):
    """v = x @W (+ @b) as matmul, matmul + add_bias (matmul read only by the bias add)
    or matmul_bias. Returns (x, W, b or None, ops) or None."""
    op = graph.producer(v)
    if op is None or op in claimed:
        return None
    if op.kind == "matmul":
        return op.inputs[0], op.weights[0], None, (op,)
    if op.kind == "matmul_bias":
        return op.inputs[0], op.weights[0], op.weights[1], (op,)
    if op.kind == "add_bias":
        mm = _producer(graph, op.inputs[0], "matmul", claimed)
        if mm is not None and single_use(graph, op.inputs[0]):
            return mm.inputs[0], mm.weights[0], op.weights[0], (mm, op)
    return None


def fuse_rmsnorm(graph: Graph):
    """scale_rows(x, rms_inv(x)) @g -> rmsnorm x @g {eps}."""
    def find(graph, claimed):
        found = []
        for op in graph.ops:
            if op.kind != "scale_rows" or op in claimed:
                continue
            x, r = op.inputs
            inv = _producer(graph, r, "rms_inv", claimed)
            if inv is None or inv.inputs[0] is not x or not single_use(graph, r):
                continue
            claimed.update((inv, op))
            found.append(Fusion((inv, op), Op("rmsnorm", (x,), op.results, op.weights, {"eps": inv.attrs["eps"]})))
        return found
    return run_fusion_pass("fuse_rmsnorm", graph, find)


def fuse_swiglu(graph: Graph):
    """mul(silu(g), u) (either operand order) -> swiglu g, u."""
    def find(graph, claimed):
        found = []
        for op in graph.ops:
            if op.kind != "mul" or op in claimed:
                continue
            hit = _either_operand(graph, op, (0, 1), lambda v, _: _producer(graph, v, "silu", claimed))
            if hit is not None:
                silu, other = hit
                claimed.update((silu, op))
                found.append(Fusion((silu, op), Op("swiglu", (silu.inputs[0], other), op.results)))
        return found
    return run_fusion_pass("fuse_swiglu", graph, find)


def fuse_matmul_bias(graph: Graph):
    """add_bias(matmul(x) @W) @b -> matmul_bias x @W @b."""
    def find(graph, claimed):
        found = []
        for op in graph.ops:
            if op.kind != "add_bias" or op in claimed:
                continue
            mm = _producer(graph, op.inputs[0], "matmul", claimed)
            if mm is None or not single_use(graph, op.inputs[0]):
                continue
            claimed.update((mm, op))
            found.append(Fusion((mm, op), Op("matmul_bias", mm.inputs, op.results, mm.weights + op.weights)))
        return found
    return run_fusion_pass("fuse_matmul_bias", graph, find)


def fuse_qkv(graph: Graph):
    """The attention input projections, RoPE and the KV-cache write of one layer:

        q = rope(a @Wq + bq)   k = rope(a @Wk + bk)   v = a @Wv + bv   kv = kv_write(k, v, pos, seq)
        -> q, kv = qkv_rope_kv a, pos, seq @cat(Wq, Wk, Wv) @cat(bq, bk, bv)

    and with q and k normed per head before rope (Gemma 3), q = rope(head_rmsnorm(a @Wq) @gq)
    and k likewise -> qkv_norm_rope_kv a, pos, seq @cat(Wq, Wk, Wv) @gq @gk {eps}.

    q is the rope result some attention reads together with kv; k and v must be read
    only by the write, and the projections only by their rope / bias add."""
    def find(graph, claimed):
        found = []
        for op in graph.ops:
            if op.kind != "attention" or op in claimed:
                continue
            q_rope = _producer(graph, op.inputs[0], "rope", claimed)
            write = _producer(graph, op.inputs[1], "kv_write", claimed)
            if q_rope is None or write is None:
                continue
            k, v, pos, seq = write.inputs
            k_rope = _producer(graph, k, "rope", claimed)
            if k_rope is None or not single_use(graph, k) or not single_use(graph, v) or k is v:
                continue
            if q_rope.inputs[1] is not pos or k_rope.inputs[1] is not pos:
                continue
            rope_attrs = ("head_dim", "theta")
            if any(q_rope.attrs[a] != k_rope.attrs[a] for a in rope_attrs) \
                    or q_rope.attrs.get("mode", "neox") != k_rope.attrs.get("mode", "neox") \
                    or k_rope.attrs["n_heads"] != write.attrs["n_kv_heads"] \
                    or k_rope.attrs["head_dim"] != write.attrs["head_dim"]:
                continue
            # Gemma 3: q and k RMS-normed per head between the projection and rope
            q_in, k_in = q_rope.inputs[0], k_rope.inputs[0]
            q_norm = _producer(graph, q_in, "head_rmsnorm", claimed)
            k_norm = _producer(graph, k_in, "head_rmsnorm", claimed)
            norms = ()
            if q_norm is not None or k_norm is not None:
                if q_norm is None or k_norm is None or not single_use(graph, q_in) or not single_use(graph, k_in) \
                        or q_norm.attrs["eps"] != k_norm.attrs["eps"]:
                    continue
                norms = (q_norm, k_norm)
                q_in, k_in = q_norm.inputs[0], k_norm.inputs[0]
            parts = []
            for y in (q_in, k_in, v):
                lin = _linear(graph, y, claimed)
                if lin is None or not single_use(graph, y):
                    break
                parts.append(lin)
            if len(parts) != 3:
                continue
            xs, biases = {id(p[0]) for p in parts}, [p[2] for p in parts]
            ops = [o for p in parts for o in p[3]] + list(norms) + [q_rope, k_rope, write]
            if norms and any(b is not None for b in biases):
                continue        # no model has both; the normed form takes no bias
            if len(xs) != 1 or (None in biases and any(b is not None for b in biases)) \
                    or len(set(ops)) != len(ops) or q_rope.attrs["n_heads"] % write.attrs["n_kv_heads"]:
                continue
            weights = (_cat(*(p[1] for p in parts)),)
            if biases[0] is not None:
                weights += (_cat(*biases),)
            attrs = {"layer": write.attrs["layer"], "n_heads": q_rope.attrs["n_heads"],
                     "n_kv_heads": write.attrs["n_kv_heads"], "head_dim": write.attrs["head_dim"],
                     "theta": q_rope.attrs["theta"]}
            if "mode" in q_rope.attrs:
                attrs["mode"] = q_rope.attrs["mode"]
            kind = "qkv_rope_kv"
            if norms:
                kind = "qkv_norm_rope_kv"
                weights += (q_norm.weights[0], k_norm.weights[0])
                attrs["eps"] = q_norm.attrs["eps"]
            claimed.update(ops)
            found.append(Fusion(tuple(ops), Op(kind, (parts[0][0], pos, seq),
                                               (q_rope.result, write.result), weights, attrs)))
        return found
    return run_fusion_pass("fuse_qkv", graph, find)


def fuse_residual(graph: Graph):
    """add(res, matmul(x) @W) (either operand order) -> matmul_add x, res @W."""
    def find(graph, claimed):
        found = []
        for op in graph.ops:
            if op.kind != "add" or op in claimed:
                continue
            hit = _either_operand(graph, op, (1, 0), lambda v, _: _producer(graph, v, "matmul", claimed))
            if hit is not None:
                mm, res = hit
                claimed.update((mm, op))
                found.append(Fusion((mm, op), Op("matmul_add", (mm.inputs[0], res), op.results, mm.weights)))
        return found
    return run_fusion_pass("fuse_residual", graph, find)


def fuse_gate_up(graph: Graph):
    """swiglu(matmul(f) @Wgate, matmul(f) @Wup), or its unfused mul(silu(.), .) form
    -> gate_up_swiglu f @cat(Wgate, Wup); mul(gelu(matmul(f) @Wgate), matmul(f) @Wup)
    -> gate_up_geglu f @cat(Wgate, Wup)."""
    def find(graph, claimed):
        found = []
        for op in graph.ops:
            if op in claimed:
                continue
            if op.kind == "swiglu":
                candidates = [((), op.inputs[0], op.inputs[1], "gate_up_swiglu")]
            elif op.kind == "mul":
                candidates = []
                for act_side in (0, 1):
                    act = op.inputs[act_side]
                    for act_kind, fused in (("silu", "gate_up_swiglu"), ("gelu", "gate_up_geglu")):
                        a = _producer(graph, act, act_kind, claimed)
                        if a is not None and single_use(graph, act):
                            candidates.append(((a,), a.inputs[0], op.inputs[1 - act_side], fused))
            else:
                continue
            for extra, gate, up, fused in candidates:
                mm_g = _producer(graph, gate, "matmul", claimed)
                mm_u = _producer(graph, up, "matmul", claimed)
                if mm_g is None or mm_u is None or mm_g is mm_u or mm_g.inputs[0] is not mm_u.inputs[0]:
                    continue
                if not (single_use(graph, gate) and single_use(graph, up)) or gate.shape != up.shape:
                    continue
                ops = (mm_g, mm_u) + extra + (op,)
                claimed.update(ops)
                found.append(Fusion(ops, Op(fused, mm_g.inputs, op.results,
                                            (_cat(mm_g.weights[0], mm_u.weights[0]),))))
                break
        return found
    return run_fusion_pass("fuse_gate_up", graph, find)


def _norm(graph: Graph, v, claimed: set):
    """v = rmsnorm(y) @g as rmsnorm or as scale_rows(y, rms_inv(y)) (rms_inv read only there).
    Returns (y, g, eps, ops) or None."""
    op = graph.producer(v)
    if op is None or op in claimed:
        return None
    if op.kind == "rmsnorm":
        return op.inputs[0], op.weights[0], op.attrs["eps"], (op,)
    if op.kind == "scale_rows":
        y, r = op.inputs
        inv = _producer(graph, r, "rms_inv", claimed)
        if inv is not None and inv.inputs[0] is y and single_use(graph, r):
            return y, op.weights[0], inv.attrs["eps"], (inv, op)
    return None


def _norm_not_of(graph: Graph, v, res, claimed: set):
    """_norm of v unless it norms `res` itself (rmsnorm_add's two operands are distinct)."""
    norm = _norm(graph, v, claimed)
    return None if norm is None or norm[0] is res else norm


def fuse_norm_add(graph: Graph):
    """add(res, rmsnorm(y) @g) (either operand order; the norm fused or not) -> rmsnorm_add
    y, res @g: a post-norm and the residual add it feeds (Gemma 3)."""
    def find(graph, claimed):
        found = []
        for op in graph.ops:
            if op.kind != "add" or op in claimed:
                continue
            hit = _either_operand(graph, op, (1, 0), lambda v, res: _norm_not_of(graph, v, res, claimed))
            if hit is not None:
                (y, g, eps, ops), res = hit
                claimed.update(ops + (op,))
                found.append(Fusion(ops + (op,), Op("rmsnorm_add", (y, res), op.results, (g,), {"eps": eps})))
        return found
    return run_fusion_pass("fuse_norm_add", graph, find)
