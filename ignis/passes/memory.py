"""The activation memory plan: every value with bytes gets an offset in one arena.

1. Live intervals over the schedule (ignis.passes.liveness).
2. In-place coalescing: a result that may overwrite a dying operand of the same size
   joins that operand's buffer (a residual stream updated by matmul_add is one buffer
   for a whole layer). Buffers are these chains; their interval is the union.
3. Offsets from the Cython allocator (ignis/passes/_alloc.pyx). A few placement
   orders are tried and the smallest arena kept: greedy by size (the classic), and
   two-ended placement under the lower bound with sides from a 2-colouring (exact
   whenever at most two buffers are live at once, e.g. straight chains).
4. `check_plan` proves, without trusting the allocator, that no two values live at
   the same program point share a byte (except an allowed in-place pair, which
   shares exactly), that offsets are aligned and that everything fits the arena.

Sizes are rounded up to `alignment` (64 bytes: a cache line, and enough for any
SIMD load); naive bytes, planned bytes and the lower bound all use rounded sizes.

The arena holds the activations: op results that are not graph outputs. Graph inputs
(tokens, pos) and outputs (logits) are the step's I/O: the runtime binds them to
buffers of their own (`plan.io`), so an output is never overwritten and an input is
never clobbered, and they count in neither naive nor planned bytes (`io_bytes` in
the report). KV tokens have no bytes; the KV cache is state outside the plan.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ignis.ir.graph import Graph
from ignis.passes._alloc import place, two_colouring
from ignis.passes.liveness import inplace_pairs, live_intervals

ALIGNMENT = 64


class PlanError(Exception):
    """A memory plan breaks an invariant (a compiler bug)."""


def _round_up(n: int, a: int) -> int:
    return -(-n // a) * a


@dataclass
class MemoryPlan:
    """Offsets of the graph's values in one arena, and how they were found.

    values: the activations (op results with bytes that are not graph outputs) in
    definition order; intervals/sizes/offsets: value -> (start, end) / rounded bytes /
    byte offset in the arena; inplace: result -> the operand whose bytes it overwrites;
    io: graph input/output name -> value, each in a buffer of its own."""
    graph: Graph
    values: tuple
    intervals: dict
    sizes: dict
    offsets: dict
    inplace: dict
    arena_bytes: int
    lower_bound_bytes: int
    naive_bytes: int
    io: dict = field(default_factory=dict)
    alignment: int = ALIGNMENT
    strategy: str = ""
    tried: dict = field(default_factory=dict)

    @property
    def planned_bytes(self) -> int:
        return self.arena_bytes

    @property
    def buffers(self) -> int:
        """Distinct regions the values were packed into (values at one offset share one)."""
        return len(set(self.offsets.values()))

    def report(self) -> dict:
        naive = self.naive_bytes
        return {
            "values": len(self.values),
            "naive_bytes": naive,
            "buffers": self.buffers,
            "planned_bytes": self.arena_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "reduction": round(1.0 - self.arena_bytes / naive, 6) if naive else 0.0,
            "io_bytes": sum(_round_up(v.nbytes, self.alignment) for v in set(self.io.values())),
            "inplace": len(self.inplace),
            "alignment": self.alignment,
            "strategy": self.strategy,
        }


def _buffers(values, intervals, sizes, inplace):
    """Group values into buffers along in-place chains -> (buffer id per value,
    start, end, size arrays per buffer)."""
    index = {v: i for i, v in enumerate(values)}
    group = list(range(len(values)))
    for v in values:                    # values come in definition order: donors first
        d = inplace.get(v)
        if d is not None:
            group[index[v]] = group[index[d]]
    roots = sorted(set(group))
    slot = {r: k for k, r in enumerate(roots)}
    start = np.full(len(roots), np.iinfo(np.int64).max, np.int64)
    end = np.zeros(len(roots), np.int64)
    size = np.zeros(len(roots), np.int64)
    of = np.array([slot[g] for g in group], np.int64)
    for v, b in zip(values, of):
        s, e = intervals[v]
        start[b] = min(start[b], s)
        end[b] = max(end[b], e)
        size[b] = max(size[b], sizes[v])
    return of, start, end, size


def peak_live_bytes(start, end, size) -> int:
    """max over program points of the bytes of the buffers live there (the lower bound)."""
    if len(start) == 0:
        return 0
    delta = np.zeros(int(np.max(end)) + 2, np.int64)
    np.add.at(delta, np.asarray(start), np.asarray(size))
    np.add.at(delta, np.asarray(end) + 1, -np.asarray(size))
    return int(np.cumsum(delta).max())


def _arena(offsets, size) -> int:
    return int((offsets + size).max()) if len(size) else 0


def assign_offsets(start, end, size) -> tuple:
    """Offsets for buffers live over [start, end] with `size` bytes each (sizes already
    aligned) -> (offsets, arena bytes, strategy name, {strategy: arena bytes tried}).
    Tries the placements below in turn, stops at the first that meets the lower bound
    and otherwise keeps the smallest arena."""
    start, end, size = (np.ascontiguousarray(a, dtype=np.int64) for a in (start, end, size))
    n = len(size)
    bound = peak_live_bytes(start, end, size)
    bottom = np.zeros(n, np.int8)
    colour = two_colouring(start, end) if n else bottom
    by_size = np.lexsort((start, -(end - start), -size)).astype(np.int64)
    by_start = np.lexsort((-size, start)).astype(np.int64)
    tried = {}
    for name, order, side, limit in (
            ("greedy-by-size", by_size, bottom, 0),
            ("two-ended-by-size", by_size, colour, bound),
            ("two-ended-by-start", by_start, colour, bound),
            ("best-fit-by-start", by_start, bottom, bound)):
        offsets = place(start, end, size, order, side, limit)
        tried[name] = (_arena(offsets, size), offsets)
        if tried[name][0] == bound:
            break
    strategy = min(tried, key=lambda k: tried[k][0])
    arena, offsets = tried[strategy]
    return offsets, arena, strategy, {k: a for k, (a, _) in tried.items()}


def find_overlap(start, end, size, offsets, shared=()):
    """The first pair (i, j) of buffers live at a common point whose byte ranges
    intersect, other than the pairs in `shared`; None if there is none."""
    s, e, z, o = (np.asarray(a, dtype=np.int64) for a in (start, end, size, offsets))
    shared = set(shared) | {(j, i) for i, j in shared}
    for i in range(len(s)):
        clash = np.nonzero((s <= e[i]) & (s[i] <= e) & (o < o[i] + z[i]) & (o[i] < o + z))[0]
        for j in clash[clash > i]:
            if (i, int(j)) not in shared:
                return i, int(j)
    return None


def plan_memory(graph: Graph, *, alignment: int = ALIGNMENT, inplace: bool = True) -> MemoryPlan:
    """Liveness + allocation of the activations of `graph` (normally the fused one)
    -> a checked MemoryPlan."""
    intervals = live_intervals(graph)
    io = {**graph.inputs, **graph.outputs}
    io_values = set(io.values())
    values = tuple(v for op in graph.ops for v in op.results if v.nbytes > 0 and v not in io_values)
    sizes = {v: _round_up(v.nbytes, alignment) for v in values}
    pairs = inplace_pairs(graph, intervals) if inplace else {}
    pairs = {r: d for r, d in pairs.items() if r in sizes and d in sizes}
    of, start, end, size = _buffers(values, intervals, sizes, pairs)
    buffer_offsets, arena, strategy, tried = assign_offsets(start, end, size)
    offsets = {v: int(buffer_offsets[b]) for v, b in zip(values, of)}
    plan = MemoryPlan(graph, values, {v: intervals[v] for v in values}, sizes, offsets, pairs, arena,
                      peak_live_bytes(start, end, size), sum(sizes.values()), io, alignment, strategy, tried)
    check_plan(plan)
    return plan


def check_plan(plan: MemoryPlan) -> MemoryPlan:
    """Raise PlanError unless: every value has an aligned offset inside the arena; the
    in-place pairs are ones the graph allows and share their offset; and no two values
    live at a common program point share a byte (other than such a pair)."""
    allowed = inplace_pairs(plan.graph, live_intervals(plan.graph))
    for r, d in plan.inplace.items():
        if allowed.get(r) is not d:
            raise PlanError(f"%{r.id} is planned over %{d.id}, which its op may not overwrite")
        if plan.offsets[r] != plan.offsets[d]:
            raise PlanError(f"in-place pair %{r.id} over %{d.id} has offsets {plan.offsets[r]} != {plan.offsets[d]}")
    values = list(plan.values)
    io_values = set(plan.graph.inputs.values()) | set(plan.graph.outputs.values())
    if io_values & set(values):
        raise PlanError("a graph input or output was planned into the arena")
    if len(values) != len(plan.offsets) or any(v not in plan.offsets for v in values):
        raise PlanError("the plan does not give every value with bytes an offset")
    s = np.array([plan.intervals[v][0] for v in values], np.int64)
    e = np.array([plan.intervals[v][1] for v in values], np.int64)
    o = np.array([plan.offsets[v] for v in values], np.int64)
    z = np.array([plan.sizes[v] for v in values], np.int64)
    if len(values):
        if (z < np.array([v.nbytes for v in values])).any():
            raise PlanError("a value was given fewer bytes than it holds")
        if (o % plan.alignment).any() or (o < 0).any():
            raise PlanError(f"an offset is negative or not a multiple of {plan.alignment}")
        if (o + z).max() > plan.arena_bytes:
            raise PlanError(f"a value ends past the arena of {plan.arena_bytes} bytes")
    if plan.arena_bytes < plan.lower_bound_bytes:
        raise PlanError(f"arena {plan.arena_bytes} is below the lower bound {plan.lower_bound_bytes}")
    index = {v: i for i, v in enumerate(values)}
    clash = find_overlap(s, e, z, o, [(index[r], index[d]) for r, d in plan.inplace.items()])
    if clash is not None:
        i, j = clash
        raise PlanError(f"%{values[i].id} and %{values[j].id} are both live at point {max(s[i], s[j])} and "
                        f"overlap: [{o[i]}, {o[i] + z[i]}) vs [{o[j]}, {o[j] + z[j]})")
    return plan
