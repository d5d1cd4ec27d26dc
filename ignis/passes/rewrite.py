"""What every pass shares: the report it returns and the one way it edits a graph.

A fusion names the ops it removes and the single op that replaces them; the new op's
results are values the removed ops defined (the ones read outside the group), so no
reader has to change. `apply_fusions` puts each new op where the last op of its
group was and restores a valid order with a stable topological sort (a no-op for
the Qwen2 patterns; random graphs can need it).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ignis.ir.graph import Graph, Op, Value


@dataclass
class PassReport:
    """What one pass did: op counts before/after, how many rewrites it made and the
    op count per kind of the graph it returned."""
    name: str
    ops_before: int
    ops_after: int
    rewrites: int
    kinds: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Fusion:
    removed: tuple      # ops of the old graph this fusion deletes
    op: Op              # the op that replaces them


def single_use(graph: Graph, v: Value) -> bool:
    """v is read by exactly one op and is not a graph output: fusing its producer into
    that reader leaves no one else needing it."""
    return graph.n_uses(v) == 1


def stable_toposort(ops, defined_before) -> list:
    """Ops in an order where each is after the producers of its inputs, keeping the
    given order wherever it is already valid (Kahn's algorithm, earliest position first)."""
    producer = {v: i for i, op in enumerate(ops) for v in op.results}
    waiting = [0] * len(ops)
    readers = [[] for _ in ops]
    for i, op in enumerate(ops):
        for dep in {producer[v] for v in op.inputs if v in producer and v not in defined_before}:
            waiting[i] += 1
            readers[dep].append(i)
    ready = [i for i in range(len(ops)) if waiting[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(ops[i])
        for j in readers[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(ops):
        raise ValueError("the graph has a cycle")
    return order


def apply_fusions(graph: Graph, fusions) -> Graph:
    """The graph with each fusion's group replaced by its op."""
    if not fusions:
        return graph
    position = {op: i for i, op in enumerate(graph.ops)}
    place = {}
    for fusion in fusions:
        last = max(fusion.removed, key=position.__getitem__)
        for op in fusion.removed:
            place[op] = fusion.op if op is last else None
    ops = []
    for op in graph.ops:
        if op in place:
            if place[op] is not None:
                ops.append(place[op])
        else:
            ops.append(op)
    ordered = stable_toposort(ops, set(graph.inputs.values()))
    return graph.with_ops(ordered)


def run_fusion_pass(name: str, graph: Graph, find) -> tuple:
    """Apply `find(graph, claimed) -> [Fusion]` and report. `claimed` is the set of ops
    already taken by an earlier match of the same pass (an op is fused at most once)."""
    claimed = set()
    fusions = find(graph, claimed)
    out = apply_fusions(graph, fusions)
    return out, PassReport(name, len(graph.ops), len(out.ops), len(fusions), out.op_counts())
