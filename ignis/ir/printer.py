"""Text and Graphviz DOT forms of a graph.

Text: one op per line, values numbered in definition order:

    %12 = rmsnorm %11, @blk.3.attn_norm.weight {eps=1e-06}  : f32[1,896]
    %20, %21 = qkv_rope_kv %12, %1, @cat(blk.3.attn_q.weight, ...), ... : f32[1,896], kv
"""
from __future__ import annotations

from ignis.ir.graph import Graph, Value
from ignis.ir.ops import OPS


def _type(v: Value) -> str:
    return "kv" if v.dtype == "kv" else f"{v.dtype}[{','.join(str(d) for d in v.shape)}]"


def _attr(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def numbering(graph: Graph) -> dict:
    """Value -> its printed number: inputs first, then results in schedule order."""
    names = {}
    for v in graph.values():
        names.setdefault(v, len(names))
    return names


def format_op(op, names: dict | None = None) -> str:
    name = (lambda v: f"%{names[v]}" if v in names else f"%?{v.id}") if names else (lambda v: f"%{v.id}")
    lhs = ", ".join(name(v) for v in op.results)
    operands = [name(v) for v in op.inputs] + [str(w) for w in op.weights]
    order = OPS[op.kind].attrs if op.kind in OPS else ()
    keys = list(order) + sorted(k for k in op.attrs if k not in order)
    attrs = " {" + ", ".join(f"{k}={_attr(op.attrs[k])}" for k in keys if k in op.attrs) + "}" if op.attrs else ""
    types = ", ".join(_type(v) for v in op.results)
    return f"{lhs} = {op.kind} {', '.join(operands)}{attrs}  : {types}"


def format_graph(graph: Graph, *, ids: bool = False) -> str:
    """The whole graph as text (ids=True prints the values' global ids instead)."""
    names = None if ids else numbering(graph)
    name = (lambda v: f"%{v.id}") if ids else (lambda v: f"%{names[v]}")
    head = ", ".join(f"{name(v)} {k}: {_type(v)}" for k, v in graph.inputs.items())
    meta = " ".join(f"{k}={_attr(v)}" for k, v in graph.meta.items())
    lines = [f"graph({head})  # {len(graph.ops)} ops {meta}".rstrip()]
    lines += ["  " + format_op(op, names) for op in graph.ops]
    lines.append("  return " + ", ".join(f"{k}={name(v)}" for k, v in graph.outputs.items()))
    return "\n".join(lines) + "\n"


_FUSED_COLOR, _PRIM_COLOR, _KV_COLOR = "#ffd8a8", "#dbe4ff", "#ffc9c9"


def _quote(s: str) -> str:
    """A DOT string literal (backslashes and quotes escaped, newlines as \\n)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph, name: str = "ignis") -> str:
    """Graphviz DOT: one box per op (fused ops orange, KV-cache writers red), an
    ellipse per graph input and output, edges labelled with the value's type."""
    names = numbering(graph)
    out = [f"digraph {_quote(name)} {{", "  rankdir=TB;", '  node [fontname="monospace", fontsize=10];',
           '  edge [fontname="monospace", fontsize=8];']
    source = {}
    for k, v in graph.inputs.items():
        out.append(f"  in_{names[v]} [shape=ellipse, label={_quote(k + ': ' + _type(v))}];")
        source[v] = f"in_{names[v]}"
    for i, op in enumerate(graph.ops):
        spec = OPS.get(op.kind)
        color = _KV_COLOR if spec and spec.side_effect else _FUSED_COLOR if spec and spec.fused else _PRIM_COLOR
        label = "\n".join([op.kind] + [str(w) for w in op.weights])
        out.append(f'  op{i} [shape=box, style=filled, fillcolor="{color}", label={_quote(label)}];')
        for v in op.inputs:
            if v in source:
                out.append(f"  {source[v]} -> op{i} [label={_quote('%' + str(names[v]) + ' ' + _type(v))}];")
        for v in op.results:
            source[v] = f"op{i}"
    for k, v in graph.outputs.items():
        out.append(f"  out_{k} [shape=ellipse, label={_quote(k)}];")
        if v in source:
            out.append(f"  {source[v]} -> out_{k} [label={_quote('%' + str(names[v]) + ' ' + _type(v))}];")
    out.append("}")
    return "\n".join(out) + "\n"
