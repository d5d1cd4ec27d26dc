"""The IR: SSA values and ops in a scheduled graph, the op table, the verifier,
the printers (text, Graphviz DOT) and the numpy reference interpreter."""
from ignis.ir.graph import DTYPE_BYTES, Graph, GraphBuilder, Op, Value, Weight, WeightInfo
from ignis.ir.interpret import KVCache, run
from ignis.ir.ops import FUSED_KINDS, KV_WRITERS, OPS, PRIMITIVE_KINDS, OpSpec, ShapeError, infer_results
from ignis.ir.printer import format_graph, format_op, to_dot
from ignis.ir.verify import VerifyError, verify

__all__ = ["Value", "Op", "Weight", "WeightInfo", "Graph", "GraphBuilder", "DTYPE_BYTES",
           "OPS", "OpSpec", "PRIMITIVE_KINDS", "FUSED_KINDS", "KV_WRITERS", "ShapeError", "infer_results",
           "verify", "VerifyError", "format_graph", "format_op", "to_dot", "run", "KVCache"]
