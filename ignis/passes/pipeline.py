"""The pass pipeline: named passes, run in the default order or a chosen list, each
output verified (a pass that breaks an invariant is a bug caught where it happens)."""
from __future__ import annotations

from ignis.ir.graph import Graph
from ignis.ir.verify import verify
from ignis.passes.dce import dce
from ignis.passes.fusion import (fuse_gate_up, fuse_matmul_bias, fuse_norm_add, fuse_qkv, fuse_residual,
                                 fuse_rmsnorm, fuse_swiglu)

PASSES = {
    "fuse_rmsnorm": fuse_rmsnorm,
    "fuse_swiglu": fuse_swiglu,
    "fuse_matmul_bias": fuse_matmul_bias,
    "fuse_qkv": fuse_qkv,
    "fuse_residual": fuse_residual,
    "fuse_gate_up": fuse_gate_up,
    "fuse_norm_add": fuse_norm_add,
    "dce": dce,
}
DEFAULT_PIPELINE = tuple(PASSES)
ARTICLE_PASSES = ("fuse_rmsnorm", "fuse_swiglu")   # the two fusions of the article


def resolve_passes(passes) -> tuple:
    """None -> the default pipeline; a list or a comma-separated string of names ->
    those passes in that order. ValueError names an unknown pass and lists the known ones."""
    if passes is None:
        return DEFAULT_PIPELINE
    if isinstance(passes, str):
        passes = [p.strip() for p in passes.split(",") if p.strip()]
    for name in passes:
        if name not in PASSES:
            raise ValueError(f"unknown pass {name!r}; known passes: {', '.join(PASSES)}")
    return tuple(passes)


def run_pipeline(graph: Graph, passes=None, *, check: bool = True) -> tuple:
    """Run passes over graph -> (final graph, [PassReport, one per pass]).
    check: verify the input and every pass output."""
    if check:
        verify(graph)
    reports = []
    for name in resolve_passes(passes):
        graph, report = PASSES[name](graph)
        if check:
            verify(graph)
        reports.append(report)
    return graph, reports
