"""Passes over the IR: fusions, dead-code elimination, liveness and the memory plan."""
from ignis.passes.dce import dce, live_ops
from ignis.passes.fusion import (fuse_gate_up, fuse_matmul_bias, fuse_qkv, fuse_residual, fuse_rmsnorm,
                                 fuse_swiglu)
from ignis.passes.pipeline import ARTICLE_PASSES, DEFAULT_PIPELINE, PASSES, resolve_passes, run_pipeline
from ignis.passes.liveness import inplace_pairs, live_intervals
from ignis.passes.memory import (ALIGNMENT, MemoryPlan, PlanError, assign_offsets, check_plan, find_overlap,
                                 peak_live_bytes, plan_memory)
from ignis.passes.rewrite import PassReport
from ignis.passes.svg import plan_svg

__all__ = ["run_pipeline", "resolve_passes", "PASSES", "DEFAULT_PIPELINE", "ARTICLE_PASSES", "PassReport",
           "fuse_rmsnorm", "fuse_swiglu", "fuse_matmul_bias", "fuse_qkv", "fuse_residual", "fuse_gate_up",
           "dce", "live_ops", "live_intervals", "inplace_pairs", "plan_memory", "MemoryPlan", "PlanError",
           "check_plan", "peak_live_bytes", "assign_offsets", "find_overlap", "plan_svg", "ALIGNMENT"]
