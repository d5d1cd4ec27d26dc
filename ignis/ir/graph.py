"""SSA values, ops, weight references and the graph that holds them in schedule order.

Values and ops are immutable. A value knows its shape and dtype; the graph knows
who defines it (`graph.producer(v)`) and who reads it (`graph.users(v)`), so a pass
can reuse values and ops of its input graph in the graph it returns without
disturbing the input: passes are Graph -> Graph and the input stays valid.

dtypes: "f32" activations, "i32" token ids and positions, "kv" the zero-byte token a
KV-cache write returns; readers of the cache take it as an input, which orders the
write before them.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

from ignis.ir.ops import infer_results

DTYPE_BYTES = {"f32": 4, "i32": 4, "kv": 0}

_value_ids = itertools.count()


@dataclass(frozen=True, eq=False)
class Value:
    """One SSA value: defined once (by a graph input or one op result), read any number of times."""
    shape: tuple
    dtype: str
    hint: str = ""                      # what it holds, e.g. "blk.3.q" (printing only)
    id: int = field(default_factory=lambda: next(_value_ids))

    @property
    def nbytes(self) -> int:
        n = DTYPE_BYTES[self.dtype]
        for d in self.shape:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"Value(%{self.id} {self.dtype}{list(self.shape)} {self.hint})"


@dataclass(frozen=True)
class Weight:
    """A weight operand: one GGUF tensor by name, or the row-concatenation of several
    (planned by a pass). A concatenated matrix is never copied: the kernels read its parts
    in place; a concatenated vector is copied once at load. Rows of every part are
    independent, so a concatenation of quantized rows reads like a byte concatenation."""
    parts: tuple

    @classmethod
    def of(cls, *names: str) -> "Weight":
        return cls(tuple(names))

    @property
    def name(self) -> str:
        """The tensor name, or a stable name for a concatenation ("a+b+c")."""
        return "+".join(self.parts)

    def shape(self, tensor_shapes: Mapping) -> tuple:
        """numpy shape of the (concatenated) weight; KeyError if a part is unknown."""
        shapes = [tuple(tensor_shapes[p]) for p in self.parts]
        first = shapes[0]
        if len(shapes) == 1:
            return first
        if any(len(s) != len(first) or s[1:] != first[1:] for s in shapes):
            raise ValueError(f"cannot row-concatenate {self}: part shapes {shapes}")
        return (sum(s[0] for s in shapes),) + first[1:]

    def __str__(self) -> str:
        if len(self.parts) == 1:
            return "@" + self.parts[0]
        return "@cat(" + ", ".join(self.parts) + ")"


@dataclass(frozen=True, eq=False)
class Op:
    """One op: kind (a row of docs/ops.md), value inputs, weight operands, attributes
    and one or more result values (multi-result ops return e.g. (q, kv token))."""
    kind: str
    inputs: tuple
    results: tuple
    weights: tuple = ()
    attrs: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "results", tuple(self.results))
        object.__setattr__(self, "weights", tuple(self.weights))
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    @property
    def result(self) -> Value:
        """The first (for most ops the only) result."""
        return self.results[0]

    def __repr__(self) -> str:
        return f"Op({self.kind} {[v.id for v in self.inputs]} -> {[v.id for v in self.results]})"


@dataclass(frozen=True)
class WeightInfo:
    """What the graph knows of a GGUF tensor: numpy shape and storage type name."""
    shape: tuple
    type: str = "F32"


class _TensorShapes:
    """tensor name -> numpy shape, read through to a weights table (name -> WeightInfo) without
    copying it: what Weight.shape looks parts up in, once per op, for graphs of thousands."""

    def __init__(self, weights: Mapping):
        self._weights = weights

    def __getitem__(self, name: str) -> tuple:
        return self._weights[name].shape


class Graph:
    """A schedule of ops with named inputs and outputs.

    inputs: name -> Value (e.g. tokens, pos: i32 [T]); outputs: name -> Value (logits).
    weights: tensor name -> WeightInfo for every tensor an op may reference.
    meta: facts about the model and the step (architecture, n_layers, n_kv_heads,
    head_dim, T, ...). The KV cache is state outside the graph: kv writers name the
    layer they write, readers take the writer's kv token.
    Construction does not check anything; `ignis.ir.verify` does."""

    def __init__(self, inputs: Mapping, ops: Iterable, outputs: Mapping,
                 weights: Mapping, meta: Mapping | None = None):
        self.inputs = dict(inputs)
        self.ops = tuple(ops)
        self.outputs = dict(outputs)
        self.weights = dict(weights)
        self.meta = dict(meta or {})
        self._producers = None
        self._users = None

    def with_ops(self, ops: Iterable) -> "Graph":
        """The same graph (inputs, outputs, weights, meta) over another schedule."""
        return Graph(self.inputs, ops, self.outputs, self.weights, self.meta)

    # --- derived indexes (built on first use; the graph is never mutated) ---
    def _index(self):
        producers, users = {}, {}
        for op in self.ops:
            for v in op.results:
                producers.setdefault(v, op)
            for v in op.inputs:
                users.setdefault(v, []).append(op)
        self._producers, self._users = producers, users

    def producer(self, v: Value) -> Op | None:
        """The op defining v (None for graph inputs and undefined values)."""
        if self._producers is None:
            self._index()
        return self._producers.get(v)

    def users(self, v: Value) -> list:
        """Ops reading v, in schedule order (an op reading v twice appears twice)."""
        if self._users is None:
            self._index()
        return self._users.get(v, [])

    def n_uses(self, v: Value) -> int:
        """Reads of v by ops plus one per graph output naming it."""
        return len(self.users(v)) + sum(1 for o in self.outputs.values() if o is v)

    def values(self) -> list:
        """Every value once: graph inputs, then op results in schedule order."""
        return list(self.inputs.values()) + [v for op in self.ops for v in op.results]

    def weight_shape(self, w: Weight) -> tuple:
        return w.shape(_TensorShapes(self.weights))

    def op_counts(self) -> dict:
        """kind -> number of ops of that kind."""
        counts = {}
        for op in self.ops:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"<Graph {len(self.ops)} ops, inputs {list(self.inputs)}, outputs {list(self.outputs)}>"


class GraphBuilder:
    """Appends ops in schedule order, inferring result shapes from the op table.

        b = GraphBuilder(weights={name: WeightInfo(...)}, meta={...})
        tokens = b.input("tokens", (T,), "i32")
        h = b.emit("embed", [tokens], weights=[Weight.of("token_embd.weight")])
        b.output("logits", h)
        graph = b.finish()
    """

    def __init__(self, weights: Mapping | None = None, meta: Mapping | None = None):
        self.weights = {k: (v if isinstance(v, WeightInfo) else WeightInfo(tuple(v)))
                        for k, v in (weights or {}).items()}
        self.meta = dict(meta or {})
        self.inputs, self.outputs, self.ops = {}, {}, []

    def input(self, name: str, shape, dtype: str) -> Value:
        v = Value(tuple(shape), dtype, hint=name)
        self.inputs[name] = v
        return v

    def emit_op(self, kind: str, inputs, weights=(), hints=(), **attrs) -> Op:
        """Append one op; returns it (use .results for multi-result ops)."""
        weights = tuple(w if isinstance(w, Weight) else Weight.of(w) for w in weights)
        inputs = tuple(inputs)
        shapes = _TensorShapes(self.weights)
        kinds = infer_results(kind, inputs, [w.shape(shapes) for w in weights], attrs)
        hints = tuple(hints) + ("",) * (len(kinds) - len(tuple(hints)))
        results = tuple(Value(tuple(s), dt, hint=h) for (s, dt), h in zip(kinds, hints))
        op = Op(kind, inputs, results, weights, attrs)
        self.ops.append(op)
        return op

    def emit(self, kind: str, inputs, weights=(), hint: str = "", **attrs) -> Value:
        """Append a single-result op and return its result."""
        return self.emit_op(kind, inputs, weights, (hint,), **attrs).result

    def output(self, name: str, v: Value) -> None:
        self.outputs[name] = v

    def finish(self) -> Graph:
        return Graph(self.inputs, self.ops, self.outputs, self.weights, self.meta)
