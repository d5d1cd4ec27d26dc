"""Property checks of the compiler, shared by tests/ (few examples) and this fuzzer
(many): `python -m fuzz.passes --examples 20000 [--only rewiring,dags,...] [--seed N]`.

Properties:
  rewiring every list of passes (any subset, any order) gives outputs and KV cache
           np.array_equal to the unfused graph under the reference interpreter, for
           generated small Qwen2 models over a prefill then a decode step. This checks
           how the passes rewire the graph, not the fused kernels' arithmetic (the
           interpreter defines a fused op as its primitives): fuzz/compiled.py runs
           the same comparison through the kernels;
  dags     the same on random DAGs of the op set (motifs that fuse, and the same
           motifs broken by extra readers, outputs and mismatched operands); every
           pass output verifies;
  broken   the verifier rejects broken graphs (use before definition, double
           definition, shape mismatch, undefined value, unknown weight, reordered
           or duplicated KV writes, a reader of the wrong layer's KV token);
  dce      dead-code elimination removes exactly the ops nothing needed reaches;
  alloc    on random interval sets no two live buffers overlap and planned >= lower
           bound; on straight chains planned == lower bound; every graph's plan checks.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ignis.ir import KVCache, Op, Value, Weight, WeightInfo, run, verify
from ignis.ir.graph import Graph, GraphBuilder
from ignis.ir.verify import VerifyError
from ignis.models import build_graph
from ignis.passes import (PASSES, assign_offsets, check_plan, find_overlap, live_ops, peak_live_bytes,
                          plan_memory, run_pipeline)
from ignis.testing import random_qwen2_weights, tiny_gemma3_config, tiny_llama_config, tiny_qwen2_config

PASS_NAMES = tuple(PASSES)

pass_lists = st.lists(st.sampled_from(PASS_NAMES), unique=True, max_size=len(PASS_NAMES))


def _same(a, b) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


# ------------------------------------------------------------------ graph rewiring on real-shaped models

@st.composite
def rewiring_cases(draw):
    """A small Qwen2, Llama or Gemma 3 config, its random weights, a batched prefill of 1-3 sequences of
    different lengths (their tokens interleaved at random) and a decode step of one
    token per sequence, a pass list."""
    n_kv = draw(st.sampled_from([1, 2, 4]))
    group = draw(st.sampled_from([1, 2, 3, 4]))
    n_heads = n_kv * group
    head_dims = [hd for hd in (8, 16, 32, 64) if (n_heads * hd) % 32 == 0 and n_heads * hd <= 256]
    head_dim = draw(st.sampled_from(head_dims))
    arch = draw(st.sampled_from(["qwen2", "llama", "gemma3"]))
    common = dict(n_layers=draw(st.integers(1, 3)), n_heads=n_heads, n_kv_heads=n_kv,
                  ffn=32 * draw(st.integers(1, 6)), vocab=draw(st.integers(259, 400)), n_ctx=32,
                  tied_output=draw(st.booleans()), rope_theta=draw(st.sampled_from([10000.0, 1e6])))
    if arch == "gemma3":
        config = tiny_gemma3_config(width=32 * draw(st.integers(1, 4)), head_dim=head_dim,
                                    window=draw(st.integers(1, 8)), global_every=draw(st.integers(1, 3)), **common)
    else:
        config = (tiny_qwen2_config if arch == "qwen2" else tiny_llama_config)(width=n_heads * head_dim, **common)
    lengths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    T = sum(lengths)
    seq = draw(st.permutations([s for s, n in enumerate(lengths) for _ in range(n)]))
    starts = [draw(st.integers(0, 32 - n - 1)) for n in lengths]
    tokens = draw(st.lists(st.integers(0, config.vocab - 1), min_size=T + len(lengths), max_size=T + len(lengths)))
    out = draw(st.sampled_from(["all", "last", "rows"]))
    rows = sorted(draw(st.sets(st.integers(0, T - 1), min_size=1, max_size=T))) if out == "rows" else None
    return {"config": config, "seed": draw(st.integers(0, 2 ** 16)), "lengths": lengths, "seq": list(seq),
            "starts": starts, "tokens": tokens, "out": out, "rows": rows, "passes": draw(pass_lists)}


def batch_places(seq, starts) -> np.ndarray:
    """Positions of a batch whose token t belongs to sequence seq[t]: each sequence's tokens
    take consecutive positions from its start, in batch order."""
    nxt = list(starts)
    pos = []
    for s in seq:
        pos.append(nxt[s])
        nxt[s] += 1
    return np.array(pos, np.int32)


def rewiring_steps(case) -> tuple:
    """(config, weights, [(unfused graph, inputs)] for the prefill and the decode step),
    for any executor to replay a case against the reference interpreter."""
    config, lengths, seq = case["config"], case["lengths"], case["seq"]
    T, S = len(seq), len(lengths)
    weights = random_qwen2_weights(config, case["seed"])
    prefill = {"tokens": np.array(case["tokens"][:T], np.int32), "pos": batch_places(seq, case["starts"]),
               "seq": np.array(seq, np.int32)}
    if case["out"] == "rows":
        prefill["rows"] = np.array(case["rows"], np.int32)
    graph = build_graph(config, T, case["out"] == "all", len(case["rows"]) if case["out"] == "rows" else None)
    decode = {"tokens": np.array(case["tokens"][T:], np.int32),
              "pos": np.array([b + n for b, n in zip(case["starts"], lengths)], np.int32),
              "seq": np.arange(S, dtype=np.int32)}
    return config, weights, [(graph, prefill), (build_graph(config, S, True), decode)]


def check_rewiring(case) -> None:
    config, weights, steps = rewiring_steps(case)
    caches = [KVCache(config.n_layers, 32, config.n_kv_heads, config.head_dim, len(case["lengths"]))
              for _ in range(2)]
    for graph, inputs in steps:
        fused, _ = run_pipeline(graph, case["passes"])
        want = run(graph, weights, inputs, caches[0])
        got = run(fused, weights, inputs, caches[1])
        for name in want:
            assert _same(want[name], got[name]), f"output {name} differs after passes {case['passes']}"
        assert _same(caches[0].k, caches[1].k) and _same(caches[0].v, caches[1].v), "KV cache differs"
        check_plan(plan_memory(fused))


# ------------------------------------------------------------------ random DAGs

class _DagBuilder:
    """Random graphs over the primitive ops, built from motifs the passes look for.
    Every intermediate joins the pool, so later ops may read it again (which must stop
    a fusion) and any of it may become an output."""

    HEAD_DIM, N_KV = 8, 2
    N_LAYERS = 3

    def __init__(self, draw, T):
        self.draw, self.T = draw, T
        self.b = GraphBuilder(meta={"n_layers": self.N_LAYERS, "n_kv_heads": self.N_KV,
                                    "head_dim": self.HEAD_DIM, "T": T})
        self.pool = []
        self.tokens = self.b.input("tokens", (T,), "i32")
        self.pos = self.b.input("pos", (T,), "i32")
        self.seq = self.b.input("seq", (T,), "i32")
        self.next_layer = 0
        self.n_weights = 0

    def weight(self, shape) -> str:
        name = f"w{self.n_weights}"
        self.n_weights += 1
        self.b.weights[name] = WeightInfo(tuple(shape))
        return name

    def emit(self, kind, inputs, weights=(), **attrs):
        v = self.b.emit(kind, inputs, weights, **attrs)
        if v.dtype == "f32":
            self.pool.append(v)
        return v

    def pick(self, width=None, rows=None):
        """A pool value, recent ones more likely; of the given width/rows if asked."""
        fits = [v for v in self.pool if (width is None or v.shape[1] == width) and (rows is None or v.shape[0] == rows)]
        if not fits:
            return None
        back = self.draw(st.integers(0, min(len(fits), 6) - 1))
        return fits[-1 - back]

    def linear(self, x, n, bias):
        y = self.emit("matmul", [x], [self.weight((n, x.shape[1]))])
        return self.emit("add_bias", [y], [self.weight((n,))]) if bias else y

    def motif(self):
        d = self.draw
        kind = d(st.sampled_from(["rmsnorm", "rmsnorm_other", "linear", "swiglu", "gate_up", "residual",
                                  "attention", "attention", "elementwise", "take_last", "embed"]))
        x = self.pick()
        rows, width = x.shape
        if kind == "rmsnorm":
            r = self.emit("rms_inv", [x], eps=1e-6)
            self.emit("scale_rows", [x, r], [self.weight((width,))])
        elif kind == "rmsnorm_other":        # scale_rows of another value: not an rmsnorm
            y = self.pick(width=width, rows=rows)
            r = self.emit("rms_inv", [x], eps=1e-5)
            self.emit("scale_rows", [y, r], [self.weight((width,))])
        elif kind == "linear":
            self.linear(x, d(st.sampled_from([8, 16, 24, 32])), d(st.booleans()))
        elif kind == "swiglu":
            other = self.pick(width=width, rows=rows)
            s = self.emit("silu", [x])
            self.emit("mul", [s, other] if d(st.booleans()) else [other, s])
        elif kind == "gate_up":
            n = d(st.sampled_from([8, 16, 32]))
            g = self.emit("matmul", [x], [self.weight((n, width))])
            u = self.emit("matmul", [x], [self.weight((n, width))])
            s = self.emit("silu", [g])
            self.emit("mul", [s, u] if d(st.booleans()) else [u, s])
        elif kind == "residual":
            res = self.pick(rows=rows)
            y = self.emit("matmul", [x], [self.weight((res.shape[1], width))])
            self.emit("add", [res, y] if d(st.booleans()) else [y, res])
        elif kind == "attention":
            if self.next_layer >= self.N_LAYERS or rows != self.T:
                return
            layer, hd, kvh = self.next_layer, self.HEAD_DIM, self.N_KV
            self.next_layer += 1
            nh = kvh * d(st.sampled_from([1, 2]))
            bias = d(st.booleans())
            theta = d(st.sampled_from([10000.0, 1e6]))
            q = self.emit("rope", [self.linear(x, nh * hd, bias), self.pos], n_heads=nh, head_dim=hd, theta=theta)
            # k and v join the pool (where later ops may read them, which blocks fuse_qkv)
            # only now and then
            emit = self.emit if d(st.integers(0, 3)) == 0 else self.b.emit
            k = emit("rope", [self.linear(x, kvh * hd, bias), self.pos], n_heads=kvh, head_dim=hd, theta=theta)
            v = self.linear(x, kvh * hd, bias)
            if emit is self.b.emit and self.pool[-1] is v:
                self.pool.pop()
            kv = self.b.emit("kv_write", [k, v, self.pos, self.seq], layer=layer, n_kv_heads=kvh, head_dim=hd)
            self.emit("attention", [q, kv, self.pos, self.seq], layer=layer, n_heads=nh, n_kv_heads=kvh,
                      head_dim=hd)
        elif kind == "elementwise":
            op = d(st.sampled_from(["add", "mul", "silu"]))
            if op == "silu":
                self.emit("silu", [x])
            else:
                self.emit(op, [x, self.pick(width=width, rows=rows)])
        elif kind == "take_last":
            self.emit("take_last", [x])
        elif kind == "embed":
            self.emit("embed", [self.tokens], [self.weight((d(st.integers(4, 20)), width))])

    def finish(self):
        d = self.draw
        candidates = [v for v in self.pool]
        chosen = d(st.lists(st.integers(0, len(candidates) - 1), min_size=0, max_size=3, unique=True))
        outputs = {f"out{i}": candidates[k] for i, k in enumerate(sorted(set(chosen) | {len(candidates) - 1}))}
        for name, v in outputs.items():
            self.b.output(name, v)
        return self.b.finish()


@st.composite
def random_graphs(draw, max_motifs=12):
    """(graph, weights, inputs, n_ctx): a random verified DAG of primitive ops."""
    T = draw(st.integers(1, 4))
    dag = _DagBuilder(draw, T)
    width = draw(st.sampled_from([8, 16, 24, 32]))
    if draw(st.booleans()):
        dag.emit("embed", [dag.tokens], [dag.weight((draw(st.integers(4, 20)), width))])
    else:
        dag.pool.append(dag.b.input("x", (T, width), "f32"))
    for _ in range(draw(st.integers(1, max_motifs))):
        dag.motif()
    graph = dag.finish()
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    weights = {}
    for name, info in graph.weights.items():
        fan_in = info.shape[1] if len(info.shape) == 2 else 1
        weights[name] = (rng.standard_normal(info.shape) / np.sqrt(fan_in)).astype(np.float32)
    p0 = draw(st.integers(0, 8))
    n_seq = draw(st.integers(1, 2))
    inputs = {"tokens": rng.integers(0, 4, T).astype(np.int32), "pos": np.arange(p0, p0 + T, dtype=np.int32),
              "seq": rng.integers(0, n_seq, T).astype(np.int32)}
    if "x" in graph.inputs:
        inputs["x"] = rng.standard_normal((T, graph.inputs["x"].shape[1])).astype(np.float32)
    return graph, weights, inputs, p0 + T


def _n_seq(inputs) -> int:
    return int(inputs["seq"].max()) + 1


@st.composite
def dag_cases(draw):
    graph, weights, inputs, n_ctx = draw(random_graphs())
    return {"graph": graph, "weights": weights, "inputs": inputs, "n_ctx": n_ctx, "passes": draw(pass_lists)}


def _cache(graph, n_ctx, n_seq=1):
    return KVCache(graph.meta["n_layers"], n_ctx, graph.meta["n_kv_heads"], graph.meta["head_dim"], n_seq)


def check_dag(case) -> None:
    graph = verify(case["graph"])
    fused, reports = run_pipeline(graph, case["passes"])       # verifies every pass output
    for r in reports:
        assert r.ops_after <= r.ops_before
    n_seq = _n_seq(case["inputs"])
    c0, c1 = _cache(graph, case["n_ctx"], n_seq), _cache(graph, case["n_ctx"], n_seq)
    with np.errstate(all="ignore"):
        want = run(graph, case["weights"], case["inputs"], c0)
        got = run(fused, case["weights"], case["inputs"], c1)
    for name in want:
        assert _same(want[name], got[name]), f"output {name} differs after passes {case['passes']}"
    assert _same(c0.k, c1.k) and _same(c0.v, c1.v), "KV cache differs"
    plan = check_plan(plan_memory(fused))
    assert plan.arena_bytes >= plan.lower_bound_bytes


# ------------------------------------------------------------------ broken graphs

def _replace_op(graph, i, new_op):
    ops = list(graph.ops)
    ops[i] = new_op
    return graph.with_ops(ops)


@st.composite
def broken_graphs(draw):
    """(description, graph that must be rejected), from a random DAG or a Qwen2 graph."""
    if draw(st.booleans()):
        graph = draw(random_graphs())[0]
    else:
        config = tiny_qwen2_config(n_layers=draw(st.integers(1, 3)), width=32, n_heads=4, n_kv_heads=2,
                                   ffn=64, vocab=260)
        graph = build_graph(config, draw(st.integers(1, 4)))
        graph, _ = run_pipeline(graph, draw(pass_lists))
    ops = graph.ops
    produced = {v: i for i, op in enumerate(ops) for v in op.results}
    mutation = draw(st.sampled_from(["use_before_def", "double_def", "shape", "undefined", "weight",
                                     "kv_order", "kv_twice", "kv_layer"]))
    readers = [i for i, op in enumerate(ops) if any(v in produced for v in op.inputs)]
    if mutation == "use_before_def" and readers:
        i = draw(st.sampled_from(readers))
        first = min(produced[v] for v in ops[i].inputs if v in produced)
        moved = list(ops)
        op = moved.pop(i)
        moved.insert(draw(st.integers(0, first)), op)
        return mutation, graph.with_ops(moved)
    if mutation == "double_def" and len(ops) >= 2:
        i = draw(st.integers(1, len(ops) - 1))
        j = draw(st.integers(0, i - 1))
        op, earlier = ops[i], ops[j]
        results = (earlier.results[0],) + op.results[1:]
        return mutation, _replace_op(graph, i, Op(op.kind, op.inputs, results, op.weights, op.attrs))
    if mutation == "shape":
        # one result re-declared with a wrong shape, everywhere it is read: only the
        # producing op's shape rule can tell
        f32 = [i for i, op in enumerate(ops) if op.results[0].dtype == "f32"]
        if f32:
            i = draw(st.sampled_from(f32))
            r = ops[i].results[0]
            bad = Value((r.shape[0], r.shape[1] + draw(st.integers(1, 8))), r.dtype)
            swap = lambda vs: tuple(bad if v is r else v for v in vs)
            new_ops = [Op(op.kind, swap(op.inputs), swap(op.results), op.weights, op.attrs) for op in ops]
            outputs = {k: bad if v is r else v for k, v in graph.outputs.items()}
            return mutation, Graph(graph.inputs, new_ops, outputs, graph.weights, graph.meta)
    if mutation == "undefined" and ops:
        i = draw(st.integers(0, len(ops) - 1))
        op = ops[i]
        k = draw(st.integers(0, len(op.inputs) - 1))
        ghost = Value(op.inputs[k].shape, op.inputs[k].dtype)
        inputs = op.inputs[:k] + (ghost,) + op.inputs[k + 1:]
        return mutation, _replace_op(graph, i, Op(op.kind, inputs, op.results, op.weights, op.attrs))
    weighted = [i for i, op in enumerate(ops) if op.weights]
    if mutation == "weight" and weighted:
        i = draw(st.sampled_from(weighted))
        op = ops[i]
        return mutation, _replace_op(graph, i, Op(op.kind, op.inputs, op.results,
                                                  (Weight.of("no.such.tensor"),) + op.weights[1:], op.attrs))
    writes = [i for i, op in enumerate(ops) if op.kind in ("kv_write", "qkv_rope_kv")]
    reads = [i for i, op in enumerate(ops) if op.kind == "attention"]
    if mutation == "kv_order" and writes:
        # the write moved after the first reader of its token
        i = draw(st.sampled_from(writes))
        token = ops[i].results[-1]
        after = [j for j in reads if ops[j].inputs[1] is token]
        if after:
            moved = list(ops)
            op = moved.pop(i)
            moved.insert(after[0], op)
            return mutation, graph.with_ops(moved)
    if mutation == "kv_twice" and writes:
        i = draw(st.sampled_from(writes))
        op = ops[i]
        fresh = tuple(Value(v.shape, v.dtype) for v in op.results)
        moved = list(ops)
        moved.insert(draw(st.integers(i + 1, len(ops))), Op(op.kind, op.inputs, fresh, op.weights, op.attrs))
        return mutation, graph.with_ops(moved)
    if mutation == "kv_layer" and reads:
        i = draw(st.sampled_from(reads))
        op = ops[i]
        attrs = dict(op.attrs, layer=op.attrs["layer"] + draw(st.integers(1, 3)))
        return mutation, _replace_op(graph, i, Op(op.kind, op.inputs, op.results, op.weights, attrs))
    assume(False)


def check_broken(case) -> None:
    mutation, graph = case
    try:
        verify(graph)
    except VerifyError:
        return
    raise AssertionError(f"the verifier accepted a graph broken by {mutation}")


# ------------------------------------------------------------------ dce

def _reachable(graph) -> set:
    """Ops needed by the outputs or the KV writes, by depth-first search from those roots."""
    producer = {v: op for op in graph.ops for v in op.results}
    roots = [op for op in graph.ops if op.kind in ("kv_write", "qkv_rope_kv")]
    roots += [producer[v] for v in graph.outputs.values() if v in producer]
    seen, stack = set(), list(roots)
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(producer[v] for v in op.inputs if v in producer)
    return seen


def check_dce(graph) -> None:
    out, report = PASSES["dce"](graph)
    verify(out)
    kept = set(out.ops)
    assert kept == _reachable(graph) == live_ops(graph)
    assert [op for op in graph.ops if op in kept] == list(out.ops), "dce reordered ops"
    assert report.rewrites == len(graph.ops) - len(out.ops)


# ------------------------------------------------------------------ allocator

@st.composite
def interval_sets(draw):
    """(start, end, size): random closed live intervals with 64-byte-aligned sizes."""
    n = draw(st.integers(0, 40))
    horizon = draw(st.integers(1, 60))
    starts = draw(st.lists(st.integers(0, horizon), min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    sizes = draw(st.lists(st.integers(1, 64), min_size=n, max_size=n))
    return (np.array(starts, np.int64), np.array(starts, np.int64) + np.array(lengths, np.int64),
            64 * np.array(sizes, np.int64))


@st.composite
def chains(draw):
    """A straight chain: value i is defined at point i and read (only) at point i + 1."""
    sizes = draw(st.lists(st.integers(1, 100), min_size=1, max_size=40))
    n = len(sizes)
    start = np.arange(n, dtype=np.int64)
    return start, start + 1, 64 * np.array(sizes, np.int64)


def check_intervals(case) -> None:
    start, end, size = case
    offsets, arena, _, _ = assign_offsets(start, end, size)
    assert find_overlap(start, end, size, offsets) is None
    assert (offsets % 64 == 0).all() and (offsets >= 0).all()
    assert arena == (int((offsets + size).max()) if len(size) else 0)
    bound = peak_live_bytes(start, end, size)
    assert arena >= bound
    assert arena <= int(size.sum())


def check_chain(case) -> None:
    start, end, size = case
    offsets, arena, _, _ = assign_offsets(start, end, size)
    assert find_overlap(start, end, size, offsets) is None
    assert arena == peak_live_bytes(start, end, size)


# ------------------------------------------------------------------ runner

PROPERTIES = {
    "rewiring": (rewiring_cases(), check_rewiring, 0.2),      # share of --examples
    "dags": (dag_cases(), check_dag, 0.3),
    "broken": (broken_graphs(), check_broken, 0.15),
    "dce": (random_graphs().map(lambda c: c[0]), check_dce, 0.1),
    "alloc": (interval_sets(), check_intervals, 0.15),
    "chains": (chains(), check_chain, 0.1),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.passes", description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="total examples over all properties")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(PROPERTIES)}")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (reproduce a run)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(PROPERTIES)
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        parser.error(f"unknown properties {unknown}; known: {', '.join(PROPERTIES)}")
    share = sum(PROPERTIES[n][2] for n in names)
    settings.register_profile("fuzz", deadline=None, print_blob=True,
                              suppress_health_check=list(HealthCheck))
    failed = 0
    for name in names:
        strategy, check, weight = PROPERTIES[name]
        n = max(1, int(args.examples * weight / share))
        test = settings(settings.get_profile("fuzz"), max_examples=n)(given(strategy)(check))
        if args.seed is not None:
            from hypothesis import seed
            test = seed(args.seed)(test)
        t = time.time()
        try:
            test()
            print(f"{name}: {n} examples ok ({time.time() - t:.1f}s)", flush=True)
        except Exception as e:      # hypothesis has printed the falsifying example
            failed += 1
            print(f"{name}: FAILED ({type(e).__name__}: {e})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
