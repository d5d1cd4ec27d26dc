"""Liveness, in-place reuse, the Cython allocator, the plan checker, the SVG drawing,
and the real model's memory numbers."""
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.passes import chains, check_chain, check_intervals, interval_sets
from ignis.gguf import GGUFFile
from ignis.ir import GraphBuilder
from ignis.models import Qwen2Config, build_graph
from ignis.passes import (PlanError, assign_offsets, check_plan, find_overlap, inplace_pairs, live_intervals,
                          peak_live_bytes, plan_memory, plan_svg, run_pipeline)
from ignis.passes._alloc import place, two_colouring
from ignis.testing import tiny_qwen2_config

FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_live_intervals_points():
    b = GraphBuilder(weights={"W": (8, 8)})
    x = b.input("x", (1, 8), "f32")
    y = b.emit("matmul", [x], ["W"])         # point 1
    z = b.emit("silu", [y])                  # point 2
    dead = b.emit("silu", [x])               # point 3, never read
    w = b.emit("add", [z, y])                # point 4
    b.output("w", w)
    iv = live_intervals(b.finish())
    assert iv[x] == (0, 3) and iv[y] == (1, 4) and iv[z] == (2, 4) and iv[dead] == (3, 3) and iv[w] == (4, 5)


def test_inplace_pairs_follow_the_op_table():
    b = GraphBuilder(weights={"W": (8, 8)})
    x = b.input("x", (1, 8), "f32")
    y = b.emit("matmul", [x], ["W"])
    s = b.emit("silu", [y])                  # y dies here: silu may overwrite it
    m = b.emit("matmul", [s], ["W"])         # matmul never writes in place
    a = b.emit("matmul_add", [m, m], ["W"])  # res is also read as x: not in place
    b.output("a", a)
    pairs = inplace_pairs(b.finish())
    assert pairs == {s: y}


def test_straight_chain_meets_the_lower_bound_where_greedy_by_size_does_not():
    # sizes 10, 9, 8, 10 (x 64 B): greedy by size puts the 9 above the first 10 and
    # then the 8 must go above both; the two-ended placement packs it at the bound.
    start = np.arange(4, dtype=np.int64)
    end = start + 1
    size = 64 * np.array([10, 9, 8, 10], np.int64)
    greedy = place(start, end, size, np.array([0, 3, 1, 2], np.int64), np.zeros(4, np.int8), 0)
    assert int((greedy + size).max()) > peak_live_bytes(start, end, size)
    offsets, arena, strategy, tried = assign_offsets(start, end, size)
    assert arena == peak_live_bytes(start, end, size) == 64 * 19 and strategy.startswith("two-ended")
    assert find_overlap(start, end, size, offsets) is None
    assert list(two_colouring(start, end)) == [0, 1, 0, 1]


def test_find_overlap_spots_a_clash():
    start, end = np.array([0, 1, 5]), np.array([2, 3, 6])
    size = np.array([64, 64, 64])
    assert find_overlap(start, end, size, np.array([0, 64, 0])) is None
    assert find_overlap(start, end, size, np.array([0, 0, 0])) == (0, 1)
    assert find_overlap(start, end, size, np.array([0, 0, 0]), shared=[(1, 0)]) is None


@FEW
@given(interval_sets())
def test_allocator_never_overlaps_live_buffers(case):
    check_intervals(case)


@FEW
@given(chains())
def test_allocator_meets_the_lower_bound_on_chains(case):
    check_chain(case)


def test_plan_of_a_tiny_model():
    g = run_pipeline(build_graph(tiny_qwen2_config(n_layers=2), 3))[0]
    plan = plan_memory(g)
    r = plan.report()
    assert set(r) >= {"values", "naive_bytes", "buffers", "planned_bytes", "lower_bound_bytes"}
    assert r["planned_bytes"] == r["lower_bound_bytes"] and r["naive_bytes"] == sum(plan.sizes.values())
    assert all(o % 64 == 0 for o in plan.offsets.values())
    assert g.outputs["logits"] not in plan.offsets and g.inputs["pos"] not in plan.offsets
    assert set(plan.io) == {"tokens", "pos", "seq", "logits"}
    kinds = {g.producer(r).kind for r in plan.inplace}
    assert "matmul_add" in kinds         # the residual stream is updated in place


def test_check_plan_rejects_a_corrupted_plan():
    plan = plan_memory(run_pipeline(build_graph(tiny_qwen2_config(n_layers=1), 2))[0])
    a, b = next((u, v) for u in plan.values for v in plan.values if u is not v
                and plan.intervals[u][0] <= plan.intervals[v][1] and plan.intervals[v][0] <= plan.intervals[u][1]
                and plan.inplace.get(u) is not v and plan.inplace.get(v) is not u)
    plan.offsets[b] = plan.offsets[a]
    with pytest.raises(PlanError, match="overlap"):
        check_plan(plan)
    plan = plan_memory(plan.graph)
    paired = set(plan.inplace) | set(plan.inplace.values())
    plan.offsets[next(v for v in plan.values if v not in paired)] += 32
    with pytest.raises(PlanError, match="multiple of 64"):
        check_plan(plan)


def test_plan_without_inplace_is_still_valid():
    g = run_pipeline(build_graph(tiny_qwen2_config(n_layers=2), 2))[0]
    with_inplace, without = plan_memory(g), plan_memory(g, inplace=False)
    assert not without.inplace and without.arena_bytes >= with_inplace.arena_bytes


def test_plan_svg_is_svg_with_one_bar_per_value():
    plan = plan_memory(run_pipeline(build_graph(tiny_qwen2_config(n_layers=1), 2))[0])
    svg = plan_svg(plan)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(ns + "rect") if r.find(ns + "title") is not None]
    assert len(bars) == len(plan.values)


# ---------------------------------------------------------------- the real model

@pytest.mark.real
@pytest.mark.parametrize("T", [1, 512])
def test_real_model_plan_meets_the_lower_bound(real_model_path, T):
    config = Qwen2Config.from_file(GGUFFile(real_model_path))
    fused = run_pipeline(build_graph(config, T))[0]
    r = plan_memory(fused).report()
    assert r["planned_bytes"] == r["lower_bound_bytes"]
    assert r["reduction"] > 0.76
    expected = {1: (170, 990208, 26624), 512: (171, 505158656, 13631488)}[T]
    assert (r["values"], r["naive_bytes"], r["planned_bytes"]) == expected
