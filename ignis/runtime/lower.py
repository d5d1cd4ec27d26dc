"""Lowering: a fused graph and its memory plan -> a kernel Plan (one instruction per op).

Activations live at the byte offsets the liveness allocator chose; graph outputs (the
logits) get their own region after the planned arena, so nothing overwrites them."""
from dataclasses import dataclass

import numpy as np

from ignis import _kernels
from ignis.errors import ModelError
from ignis.gguf import TensorType
from ignis.runtime.weights import NATIVE_EMBED, WeightStore


@dataclass
class LoweredPlan:
    plan: "_kernels.Plan"
    logits_offset: int
    logits_shape: tuple
    n_tokens: int


def _align(n: int, a: int = 64) -> int:
    return -(-n // a) * a


def lower(graph, memory, weights: WeightStore, n_threads: int, kv_layers=None, workspace=None) -> LoweredPlan:
    """kv_layers: model layer -> (KV pool, layer within the pool) when the engine keeps some
    layers in a second cache (sliding-window layers); None: every layer in pool 0 as itself.
    workspace: the _kernels.Workspace the plan runs in (shared by plans that never run at
    once); None: its own."""
    # the one output: logits, or the normed hidden states of an embedding plan
    logits = graph.outputs["hidden" if graph.meta.get("hidden") else "logits"]
    logits_offset = _align(memory.arena_bytes)
    arena = logits_offset + _align(logits.nbytes)
    T = graph.meta["T"]
    plan = _kernels.Plan(arena, n_threads, T, workspace)
    at = dict(memory.offsets)
    at[logits] = logits_offset

    def off(v):
        return at[v]

    for op in graph.ops:
        _emit(plan, op, off, weights, (logits,), kv_layers)
    return LoweredPlan(plan, logits_offset, logits.shape, T)


def _emit(plan, op, off, weights: WeightStore, logits_values=(), kv_layers=None) -> None:
    """Append the kernel instruction of one IR op."""
    kind, a = op.kind, op.attrs
    if "layer" in a:
        pool, layer = kv_layers[a["layer"]] if kv_layers else (0, a["layer"])
    ins, out = op.inputs, op.result

    def mat(i=0, rows=None):
        arr, ttype = weights.matrix(op.weights[i], rows=rows)
        return arr, (ttype if isinstance(ttype, list) else int(ttype))

    def vec(i):
        return weights.vector(op.weights[i])

    rows = out.shape[0] if out.shape else 0
    if kind == "embed":
        arr, ttype = weights.matrix(op.weights[0], NATIVE_EMBED)
        plan.add_embed(off(out), arr, out.shape[1], int(ttype))
    elif kind == "rms_inv":
        plan.add_rms_inv(off(ins[0]), off(out), rows, ins[0].shape[1], a["eps"])
    elif kind == "scale_rows":
        plan.add_scale_rows(off(ins[0]), off(ins[1]), off(out), vec(0), rows, out.shape[1])
    elif kind == "rmsnorm":
        plan.add_rmsnorm(off(ins[0]), off(out), vec(0), rows, out.shape[1], a["eps"])
    elif kind == "matmul":
        w, t = mat(rows=out.shape[1])          # the weight's first rows (all of them but with output_rows)
        # the output projection decides the next token: its activations get 16-bit blocks
        # (256x finer than Q8_0) where the kernels support it, for top-1 agreement
        act = "q16" if out in logits_values and t == int(TensorType.Q8_0) else "q8_0"
        plan.add_matmul(off(ins[0]), off(out), w, rows, ins[0].shape[1], out.shape[1], t, act)
    elif kind == "matmul_bias":
        w, t = mat()
        plan.add_matmul_bias(off(ins[0]), off(out), w, vec(1), rows, ins[0].shape[1], out.shape[1], t)
    elif kind == "matmul_add":
        w, t = mat()
        plan.add_matmul_add(off(ins[0]), off(ins[1]), off(out), w, rows, ins[0].shape[1], out.shape[1], t)
    elif kind == "add_bias":
        plan.add_add_bias(off(ins[0]), off(out), vec(0), rows, out.shape[1])
    elif kind == "rope":
        plan.add_rope(off(ins[0]), off(out), a["n_heads"], a["head_dim"], a["theta"], a.get("mode", "neox"))
    elif kind == "kv_write":
        plan.add_kv_write(off(ins[0]), off(ins[1]), layer, a["n_kv_heads"], a["head_dim"], pool)
    elif kind == "attention":
        plan.add_attention(off(ins[0]), off(out), layer, a["n_heads"], a["n_kv_heads"], a["head_dim"],
                           a.get("window", 0), pool)
    elif kind in ("add", "mul", "swiglu"):
        getattr(plan, "add_" + kind)(off(ins[0]), off(ins[1]), off(out), int(np.prod(out.shape)))
    elif kind == "silu":
        plan.add_silu(off(ins[0]), off(out), int(np.prod(out.shape)))
    elif kind == "gelu":
        plan.add_gelu(off(ins[0]), off(out), int(np.prod(out.shape)))
    elif kind == "scale":
        plan.add_scale(off(ins[0]), off(out), int(np.prod(out.shape)), a["factor"])
    elif kind == "head_rmsnorm":
        plan.add_head_rmsnorm(off(ins[0]), off(out), vec(0), rows, a["n_heads"], a["head_dim"], a["eps"])
    elif kind == "rmsnorm_add":
        plan.add_rmsnorm_add(off(ins[0]), off(ins[1]), off(out), vec(0), rows, out.shape[1], a["eps"])
    elif kind == "take_last":
        plan.add_take_last(off(ins[0]), off(out), ins[0].shape[0], out.shape[1])
    elif kind == "take_rows":
        plan.add_take_rows(off(ins[0]), off(out), ins[0].shape[0], out.shape[1], out.shape[0])
    elif kind in ("gate_up_swiglu", "gate_up_geglu"):
        w, t = mat()
        getattr(plan, "add_" + kind)(off(ins[0]), off(out), w, rows, ins[0].shape[1], out.shape[1], t)
    elif kind == "qkv_rope_kv":
        w, t = mat()
        b = vec(1) if len(op.weights) > 1 else None
        plan.add_qkv_rope_kv(off(ins[0]), off(out), w, b, layer, a["n_heads"], a["n_kv_heads"],
                             a["head_dim"], a["theta"], ins[0].shape[1], t, a.get("mode", "neox"), pool)
    elif kind == "qkv_norm_rope_kv":
        w, t = mat()
        plan.add_qkv_norm_rope_kv(off(ins[0]), off(out), w, vec(1), vec(2), layer, a["n_heads"],
                                  a["n_kv_heads"], a["head_dim"], a["theta"], a["eps"], ins[0].shape[1], t,
                                  a.get("mode", "neox"), pool)
    else:
        raise ModelError(f"no kernel for op kind {kind!r}")
