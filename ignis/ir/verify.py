"""The verifier: a graph is well formed when

1. every value has exactly one definition (a graph input or one op result);
2. every operand is defined before the op that reads it, and every output is defined;
3. each op matches its row of the op table: operand count, weights that exist,
   attributes, and result shapes/dtypes equal to what the table infers;
4. the KV cache is written at most once per layer per graph, and every cache reader
   takes the kv token of the write to its own layer, at the same positions of the
   same sequences; the token is an operand, so rule 2 orders the write before its
   readers.
"""
from __future__ import annotations

from ignis.ir.graph import Graph
from ignis.ir.ops import OPS, ShapeError, infer_results


class VerifyError(Exception):
    """A graph breaks an IR invariant (a compiler bug, not a user error)."""


def _where(i, op) -> str:
    return f"op {i} ({op.kind} -> {', '.join('%' + str(v.id) for v in op.results)})"


def verify(graph: Graph) -> Graph:
    """Raise VerifyError naming the first broken invariant; return the graph if none."""
    defined = set()
    for name, v in graph.inputs.items():
        if v in defined:
            raise VerifyError(f"graph input {name!r} reuses value %{v.id}")
        defined.add(v)
    later = {v for op in graph.ops for v in op.results}
    writers = {}        # kv token -> writer op
    written_layers = {}
    for i, op in enumerate(graph.ops):
        spec = OPS.get(op.kind)
        if spec is None:
            raise VerifyError(f"{_where(i, op)}: unknown op kind")
        for v in op.inputs:
            if v not in defined:
                if v in later:
                    raise VerifyError(f"{_where(i, op)}: reads %{v.id} before its definition")
                raise VerifyError(f"{_where(i, op)}: reads %{v.id}, which is never defined")
        for v in op.results:
            if v in defined:
                raise VerifyError(f"{_where(i, op)}: defines %{v.id} a second time")
            defined.add(v)
        try:
            weight_shapes = [graph.weight_shape(w) for w in op.weights]
        except KeyError as e:
            raise VerifyError(f"{_where(i, op)}: weight {e.args[0]!r} is not a tensor of the graph") from None
        except ValueError as e:
            raise VerifyError(f"{_where(i, op)}: {e}") from None
        try:
            expected = infer_results(op.kind, op.inputs, weight_shapes, op.attrs)
        except ShapeError as e:
            raise VerifyError(f"{_where(i, op)}: {e}") from None
        got = [(tuple(v.shape), v.dtype) for v in op.results]
        if got != [(tuple(s), d) for s, d in expected]:
            raise VerifyError(f"{_where(i, op)}: results are {got}, the op table says {expected}")
        if spec.side_effect:
            layer = op.attrs["layer"]
            if "n_layers" in graph.meta and layer >= graph.meta["n_layers"]:
                raise VerifyError(f"{_where(i, op)}: writes layer {layer} of a {graph.meta['n_layers']}-layer cache")
            if layer in written_layers:
                raise VerifyError(f"{_where(i, op)}: writes the KV cache of layer {layer} again "
                                  f"(first written by op {written_layers[layer]})")
            written_layers[layer] = i
            writers[op.results[-1]] = op
        if op.kind == "attention":
            q, token, pos, seq = op.inputs
            writer = writers.get(token)
            if writer is None:
                raise VerifyError(f"{_where(i, op)}: kv operand %{token.id} is not the token of a KV-cache write")
            if writer.attrs["layer"] != op.attrs["layer"]:
                raise VerifyError(f"{_where(i, op)}: reads layer {op.attrs['layer']} but its kv token comes from "
                                  f"the write of layer {writer.attrs['layer']}")
            places = OPS[writer.kind].inputs
            w_pos, w_seq = writer.inputs[places.index("pos")], writer.inputs[places.index("seq")]
            if w_pos is not pos or w_seq is not seq:
                raise VerifyError(f"{_where(i, op)}: reads positions %{pos.id} of sequences %{seq.id} but the cache "
                                  f"was written at %{w_pos.id} of %{w_seq.id}")
            for attr in ("n_kv_heads", "head_dim"):
                if writer.attrs[attr] != op.attrs[attr]:
                    raise VerifyError(f"{_where(i, op)}: {attr} {op.attrs[attr]} differs from the write's "
                                      f"{writer.attrs[attr]}")
    for name, v in graph.outputs.items():
        if v not in defined:
            raise VerifyError(f"output {name!r} (%{v.id}) is never defined")
    return graph
