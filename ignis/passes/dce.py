"""Dead-code elimination: keep the ops a graph output or a KV-cache write needs.

Roots are the graph outputs and every op with a side effect (the cache outlives the
graph: the next step reads what this one writes). An op is live when it is a root
or one of its results is read by a live op; every other op is removed."""
from __future__ import annotations

from ignis.ir.graph import Graph
from ignis.ir.ops import OPS
from ignis.passes.rewrite import PassReport


def live_ops(graph: Graph) -> set:
    """The ops the outputs and the side effects depend on."""
    needed = set(graph.outputs.values())
    live = set()
    for op in reversed(graph.ops):
        spec = OPS.get(op.kind)
        if (spec is not None and spec.side_effect) or any(v in needed for v in op.results):
            live.add(op)
            needed.update(op.inputs)
    return live


def dce(graph: Graph):
    live = live_ops(graph)
    out = graph.with_ops(op for op in graph.ops if op in live)
    return out, PassReport("dce", len(graph.ops), len(out.ops), len(graph.ops) - len(out.ops), out.op_counts())
