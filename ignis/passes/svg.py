"""An SVG drawing of a memory plan: x is the program point, y the arena offset, one
bar per value spanning its live interval and its bytes. Hand-written SVG, no deps."""
from __future__ import annotations

from html import escape

from ignis.passes.memory import MemoryPlan

_PALETTE = {"embed": "#868e96", "rmsnorm": "#74c0fc", "rms_inv": "#a5d8ff", "scale_rows": "#74c0fc",
            "qkv_rope_kv": "#ff8787", "matmul": "#b197fc", "matmul_bias": "#9775fa", "add_bias": "#d0bfff",
            "rope": "#ffa8a8", "attention": "#ffd43b", "matmul_add": "#69db7c", "add": "#8ce99a",
            "gate_up_swiglu": "#ffa94d", "swiglu": "#ffc078", "silu": "#ffd8a8", "mul": "#ffc078",
            "take_last": "#adb5bd", "input": "#495057"}


def _bytes(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def plan_svg(plan: MemoryPlan, width: int = 1200, height: int = 640) -> str:
    """The plan as an SVG document (str)."""
    g = plan.graph
    producer_kind = {v: "input" for v in g.inputs.values()}
    for op in g.ops:
        for v in op.results:
            producer_kind[v] = op.kind
    n_points = len(g.ops) + 2
    left, right, top, bottom = 70, 20, 50, 40
    w, h = width - left - right, height - top - bottom
    arena = max(plan.arena_bytes, 1)
    xs = w / n_points
    ys = h / arena
    r = plan.report()
    title = (f"{len(g.ops)} ops, {r['values']} values: naive {_bytes(r['naive_bytes'])}, planned "
             f"{_bytes(r['planned_bytes'])} (lower bound {_bytes(r['lower_bound_bytes'])}), "
             f"{r['buffers']} buffers, -{100 * r['reduction']:.1f} %")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="13">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#f8f9fa" stroke="#ced4da"/>']
    if plan.lower_bound_bytes:
        y_lb = top + h - plan.lower_bound_bytes * ys
        out.append(f'<line x1="{left}" y1="{y_lb:.2f}" x2="{left + w}" y2="{y_lb:.2f}" stroke="#e03131" '
                   f'stroke-dasharray="4 3"><title>lower bound</title></line>')
    for v in plan.values:
        s, e = plan.intervals[v]
        x0, x1 = left + s * xs, left + (e + 1) * xs
        y1 = top + h - plan.offsets[v] * ys
        y0 = y1 - plan.sizes[v] * ys
        kind = producer_kind.get(v, "input")
        tip = (f"%{v.id} {v.hint} {kind} {v.dtype}{list(v.shape)}: {plan.sizes[v]} B at offset "
               f"{plan.offsets[v]}, live {s}..{e}")
        out.append(f'<rect x="{x0:.2f}" y="{y0:.2f}" width="{max(x1 - x0, 0.5):.2f}" '
                   f'height="{max(y1 - y0, 0.5):.2f}" fill="{_PALETTE.get(kind, "#ced4da")}" '
                   f'stroke="#343a40" stroke-width="0.3"><title>{escape(tip)}</title></rect>')
    for k in range(5):
        frac = k / 4
        y = top + h - frac * h
        out.append(f'<text x="{left - 6}" y="{y + 4:.2f}" text-anchor="end">{_bytes(int(frac * arena))}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 10}" text-anchor="middle">program point '
               f'(0 = entry, {n_points - 1} = exit)</text>')
    out.append(f'<text x="14" y="{top + h / 2}" transform="rotate(-90 14 {top + h / 2})" '
               f'text-anchor="middle">arena offset</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
