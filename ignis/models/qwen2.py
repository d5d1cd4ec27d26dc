"""Qwen2: hyper-parameters from GGUF metadata, validated against the tensors, and the
unfused forward graph for T new tokens (T=1 decode, T>1 prefill).

Per layer L (docs/ops.md):
    a = scale_rows(h, rms_inv(h)) @attn_norm
    q = rope(add_bias(matmul(a) @Wq) @bq)     k = rope(add_bias(matmul(a) @Wk) @bk)
    v = add_bias(matmul(a) @Wv) @bv           kv = kv_write(k, v, pos)
    h = add(h, matmul(attention(q, kv, pos)) @Wo)
    f = scale_rows(h, rms_inv(h)) @ffn_norm
    h = add(h, matmul(mul(silu(matmul(f) @Wgate), matmul(f) @Wup)) @Wdown)
then logits = matmul(scale_rows(h, rms_inv(h)) @output_norm) @output, on the last row
only (take_last before the norm) unless all_logits. @output is @token_embd when the
file ties them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ignis.errors import ModelError
from ignis.ir.graph import Graph
from ignis.models.common import (MAX_CONTEXT, DecoderConfig, DecoderGraph, GGUFWeights, Hyper, check_architecture,
                                 check_head_groups, check_positive, config_from_fields, load_weights,
                                 read_block_fields)

ARCH = "qwen2"

__all__ = ["Qwen2Config", "build_graph", "GGUFWeights", "load_weights", "MAX_CONTEXT"]


@dataclass(frozen=True)
class Qwen2Config(DecoderConfig):
    """Qwen2 hyper-parameters. `weight_types`: tensor name -> GGML type name (for
    reporting and for the loader; "F32" when the config was made by hand).

    The class attributes say what distinguishes the family members sharing this builder
    (ignis.models.llama overrides them): the architecture name, whether q/k/v carry
    biases and the RoPE pair layout."""
    n_layers: int
    width: int
    ffn: int
    n_heads: int
    n_kv_heads: int
    vocab: int
    rope_theta: float = 1_000_000.0
    rms_eps: float = 1e-6
    context_length: int = 32768
    tied_output: bool = False
    output_rows: int | None = None       # logits of the first ids only (see DecoderConfig)
    weight_types: Mapping | None = field(default=None, repr=False, compare=False)

    ARCH = ARCH
    QKV_BIAS = True
    ROPE_MODE = "neox"

    def __post_init__(self):
        arch = self.ARCH
        check_positive(arch, self, ("n_layers", "width", "ffn", "n_heads", "n_kv_heads", "vocab",
                                    "context_length"))
        if self.width % self.n_heads:
            raise ModelError(f"{arch} config: width {self.width} is not divisible by n_heads {self.n_heads}")
        self._check_layout("head dim", ("rope_theta", "rms_eps"))

    @property
    def head_dim(self) -> int:
        return self.width // self.n_heads

    def tensor_shapes(self) -> dict:
        """Every tensor the graph references -> numpy shape (rows, cols) / (n,)."""
        D, F, kv = self.width, self.ffn, self.n_kv_heads * self.head_dim
        per_layer = {"attn_norm.weight": (D,), "attn_q.weight": (D, D), "attn_q.bias": (D,),
                     "attn_k.weight": (kv, D), "attn_k.bias": (kv,), "attn_v.weight": (kv, D),
                     "attn_v.bias": (kv,), "attn_output.weight": (D, D), "ffn_norm.weight": (D,),
                     "ffn_gate.weight": (F, D), "ffn_up.weight": (F, D), "ffn_down.weight": (D, F)}
        if not self.QKV_BIAS:
            per_layer = {name: shape for name, shape in per_layer.items() if not name.endswith(".bias")}
        return self._tensor_table(per_layer)

    def build_graph(self, T: int, all_logits: bool = False, n_out: int | None = None,
                    hidden: bool = False) -> Graph:
        return build_graph(self, T, all_logits, n_out, hidden)

    @classmethod
    def from_gguf(cls, metadata: Mapping, tensors: Mapping, source: str = "model") -> "Qwen2Config":
        """From a GGUF file's metadata and tensor infos (objects with .shape, .type).
        Raises ModelError naming the key or tensor that is missing or inconsistent."""
        check_architecture(metadata, source, cls.ARCH)
        hp = Hyper(metadata, source, cls.ARCH)
        p = hp.prefix
        fields = read_block_fields(hp)
        fields["rope_theta"] = hp.number("rope.freq_base", 10000.0)
        fields["rms_eps"] = hp.number("attention.layer_norm_rms_epsilon")
        width, n_heads = fields["width"], fields["n_heads"]
        if width % n_heads:
            raise ModelError(f"{source}: {p}embedding_length {width} is not divisible by "
                             f"{p}attention.head_count {n_heads}")
        check_head_groups(hp, n_heads, fields["n_kv_heads"])
        head_dim = width // n_heads
        if head_dim % 2:
            raise ModelError(f"{source}: head dim {head_dim} ({p}embedding_length / "
                             f"{p}attention.head_count) must be even for RoPE")
        for key in (p + "attention.key_length", p + "attention.value_length", p + "rope.dimension_count"):
            if key in metadata and metadata[key] != head_dim:
                raise ModelError(f"{source}: {key} = {metadata[key]!r}, expected {head_dim} "
                                 f"({p}embedding_length / {p}attention.head_count)")
        return config_from_fields(cls, hp, tensors, fields)


def build_graph(config: Qwen2Config, T: int, all_logits: bool = False, n_out: int | None = None,
                hidden: bool = False) -> Graph:
    """The unfused forward graph for a batch of T new tokens: token t sits at position
    pos[t] of sequence seq[t] (its own keys and values, causally; several sequences may
    share one batch).

    inputs: tokens, pos, seq i32 [T] (and rows i32 [n_out] when n_out is given);
    output: logits f32 [T, V] if all_logits (or T == 1), [n_out, V] for the rows
    `rows` of the batch when n_out is given, else [1, V] for the last token; with hidden,
    instead: hidden f32 [.., D], the same rows' hidden states after the output norm."""
    c = config
    g = DecoderGraph(c, T, all_logits, n_out, hidden)
    b, pos, seq, rmsnorm = g.b, g.pos, g.seq, g.rmsnorm
    bias = c.QKV_BIAS
    rope_mode = {} if c.ROPE_MODE == "neox" else {"mode": c.ROPE_MODE}   # neox is the default
    H, KVH, hd = c.n_heads, c.n_kv_heads, c.head_dim
    theta = float(c.rope_theta)

    def linear(x, blk, name, hint, bias=False):
        y = g.linear(x, blk, name, hint)
        if bias:
            y = b.emit("add_bias", [y], [f"{blk}.{name}.bias"], hint=hint + "+b")
        return y

    h = b.emit("embed", [g.tokens], ["token_embd.weight"], hint="embd")
    for L in range(c.n_layers):
        blk = f"blk.{L}"
        a = rmsnorm(h, f"{blk}.attn_norm.weight", f"{blk}.attn_in")
        q = b.emit("rope", [linear(a, blk, "attn_q", f"{blk}.q", bias), pos], hint=f"{blk}.q_rope",
                   n_heads=H, head_dim=hd, theta=theta, **rope_mode)
        k = b.emit("rope", [linear(a, blk, "attn_k", f"{blk}.k", bias), pos], hint=f"{blk}.k_rope",
                   n_heads=KVH, head_dim=hd, theta=theta, **rope_mode)
        v = linear(a, blk, "attn_v", f"{blk}.v", bias)
        kv = b.emit("kv_write", [k, v, pos, seq], hint=f"{blk}.kv", layer=L, n_kv_heads=KVH, head_dim=hd)
        o = b.emit("attention", [q, kv, pos, seq], hint=f"{blk}.attn", layer=L, n_heads=H, n_kv_heads=KVH,
                   head_dim=hd)
        h = b.emit("add", [h, linear(o, blk, "attn_output", f"{blk}.attn_out")], hint=f"{blk}.h_attn")
        f = rmsnorm(h, f"{blk}.ffn_norm.weight", f"{blk}.ffn_in")
        gate = b.emit("silu", [linear(f, blk, "ffn_gate", f"{blk}.gate")], hint=f"{blk}.gate_act")
        u = b.emit("mul", [gate, linear(f, blk, "ffn_up", f"{blk}.up")], hint=f"{blk}.glu")
        h = b.emit("add", [h, linear(u, blk, "ffn_down", f"{blk}.down")], hint=f"{blk}.h")
    return g.logits(h, c.output_tensor)
