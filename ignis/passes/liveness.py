"""Live intervals over the schedule.

Program points: 0 is the entry (graph inputs are defined there), op i runs at point
i + 1, point len(ops) + 1 is the exit (graph outputs are read there). A value is live
over the closed interval [definition point, last read point]; a value nobody reads
is live only at its definition point (its op still writes it). At an op's point
its operands and its results are all live, so they never share bytes unless the op
may write its result over a dying operand (see `inplace_pairs`).
"""
from __future__ import annotations

from ignis.ir.graph import Graph
from ignis.ir.ops import OPS


def live_intervals(graph: Graph) -> dict:
    """Value -> (start, end) for every value of the graph (kv tokens included)."""
    start, end = {}, {}
    for v in graph.inputs.values():
        start[v] = end[v] = 0
    for i, op in enumerate(graph.ops):
        point = i + 1
        for v in op.inputs:
            end[v] = point
        for v in op.results:
            start[v] = end[v] = point
    exit_point = len(graph.ops) + 1
    for v in graph.outputs.values():
        end[v] = exit_point
    return {v: (start[v], end[v]) for v in start}


def inplace_pairs(graph: Graph, intervals: dict | None = None) -> dict:
    """result -> operand it may overwrite: the op allows it (elementwise, each element
    read before it is written), the operand dies at this op, has the result's size,
    is not a graph input, is not also read through an operand that may not be
    overwritten, and has not been given to another result already."""
    intervals = intervals or live_intervals(graph)
    graph_inputs = set(graph.inputs.values())
    donated, pairs = set(), {}
    for i, op in enumerate(graph.ops):
        spec = OPS.get(op.kind)
        if spec is None or not spec.inplace:
            continue
        r = op.results[0]
        for idx in spec.inplace:
            d = op.inputs[idx]
            if d in graph_inputs or d in donated or d.dtype != r.dtype or d.nbytes != r.nbytes:
                continue
            if intervals[d][1] != i + 1:
                continue
            if any(v is d for j, v in enumerate(op.inputs) if j not in spec.inplace):
                continue        # also read whole rows at a time (matmul_add(x=d, res=d))
            pairs[r] = d
            donated.add(d)
            break
    return pairs
