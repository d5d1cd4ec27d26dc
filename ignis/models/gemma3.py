"""Gemma 3: hyper-parameters from GGUF metadata, validated against the tensors, and the
unfused forward graph for T new tokens.

What differs from the Qwen2/Llama block: the head dim is its own hyper-parameter (q is
n_heads x head_dim wide, not the model width), q and k are RMS-normed per head before
RoPE, attention and FFN outputs are RMS-normed again before the residual add (post-norms),
the FFN gate is GELU (tanh) instead of SiLU, embeddings are scaled by sqrt(width), and
five of every six layers attend to a sliding window of the last `window` positions with
RoPE base 10000 (not in the file); the sixth (layer L with (L + 1) % 6 == 0) attends
globally with `gemma3.rope.freq_base`. The file's norm gains already include Gemma's
"1 +" (the converter adds it), so every norm is the plain rmsnorm.

    h = scale(embed(tokens), sqrt(D))
    per layer L:
        a = rmsnorm(h) @attn_norm
        q = rope(head_rmsnorm(matmul(a) @Wq) @q_norm, theta_L)
        k = rope(head_rmsnorm(matmul(a) @Wk) @k_norm, theta_L)     v = matmul(a) @Wv
        kv = kv_write(k, v)       o = attention(q, kv {window on local layers})
        h = add(h, rmsnorm(matmul(o) @Wo) @post_attention_norm)
        f = rmsnorm(h) @ffn_norm
        h = add(h, rmsnorm(matmul(mul(gelu(matmul(f) @Wgate), matmul(f) @Wup)) @Wdown) @post_ffw_norm)
    logits = matmul(rmsnorm(h) @output_norm) @output (@token_embd when tied)
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ignis.errors import ModelError
from ignis.ir.graph import Graph
from ignis.models.common import (DecoderConfig, DecoderGraph, Hyper, check_architecture, check_head_groups,
                                 check_positive, config_from_fields, read_block_fields)

ARCH = "gemma3"
LOCAL_ROPE_THETA = 10000.0     # the sliding-window layers' RoPE base: fixed by the architecture
GLOBAL_EVERY = 6               # layer L attends globally when (L + 1) % 6 == 0


@dataclass(frozen=True)
class Gemma3Config(DecoderConfig):
    n_layers: int
    width: int
    ffn: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    window: int = 512
    rope_theta: float = 1_000_000.0           # global layers
    rope_theta_local: float = LOCAL_ROPE_THETA
    global_every: int = GLOBAL_EVERY
    rms_eps: float = 1e-6
    context_length: int = 32768
    tied_output: bool = True
    output_rows: int | None = None       # logits of the first ids only (see DecoderConfig)
    weight_types: Mapping | None = field(default=None, repr=False, compare=False)

    ARCH = ARCH

    def __post_init__(self):
        check_positive(ARCH, self, ("n_layers", "width", "ffn", "n_heads", "n_kv_heads", "head_dim", "vocab",
                                    "window", "global_every", "context_length"))
        self._check_layout("head_dim", ("rope_theta", "rope_theta_local", "rms_eps"))

    def is_global(self, layer: int) -> bool:
        """Whether layer attends to every position (else to the sliding window)."""
        return (layer + 1) % self.global_every == 0

    def layer_window(self, layer: int) -> int | None:
        return None if self.is_global(layer) else self.window

    def layer_theta(self, layer: int) -> float:
        return self.rope_theta if self.is_global(layer) else self.rope_theta_local

    def tensor_shapes(self) -> dict:
        D, F, hd = self.width, self.ffn, self.head_dim
        q, kv = self.n_heads * hd, self.n_kv_heads * hd
        return self._tensor_table({
            "attn_norm.weight": (D,), "attn_q.weight": (q, D), "attn_k.weight": (kv, D),
            "attn_v.weight": (kv, D), "attn_q_norm.weight": (hd,), "attn_k_norm.weight": (hd,),
            "attn_output.weight": (D, q), "post_attention_norm.weight": (D,), "ffn_norm.weight": (D,),
            "ffn_gate.weight": (F, D), "ffn_up.weight": (F, D), "ffn_down.weight": (D, F),
            "post_ffw_norm.weight": (D,)})

    def build_graph(self, T: int, all_logits: bool = False, n_out: int | None = None,
                    hidden: bool = False) -> Graph:
        return build_graph(self, T, all_logits, n_out, hidden)

    @classmethod
    def from_gguf(cls, metadata: Mapping, tensors: Mapping, source: str = "model") -> "Gemma3Config":
        """From a GGUF file's metadata and tensor infos; ModelError names the key or tensor."""
        check_architecture(metadata, source, ARCH)
        hp = Hyper(metadata, source, ARCH)
        p = hp.prefix
        fields = read_block_fields(hp)
        width, n_heads = fields["width"], fields["n_heads"]
        head_dim = hp.integer("attention.key_length", width // n_heads if width % n_heads == 0 else None)
        if hp.integer("attention.value_length", head_dim) != head_dim:
            raise ModelError(f"{source}: {p}attention.value_length = {metadata[p + 'attention.value_length']!r}, "
                             f"expected {head_dim} ({p}attention.key_length)")
        fields.update(head_dim=head_dim, window=hp.integer("attention.sliding_window"),
                      global_every=hp.integer("attention.sliding_window_pattern", GLOBAL_EVERY),
                      rope_theta=hp.number("rope.freq_base", 1_000_000.0),
                      rms_eps=hp.number("attention.layer_norm_rms_epsilon"))
        check_head_groups(hp, n_heads, fields["n_kv_heads"])
        if head_dim % 2:
            raise ModelError(f"{source}: {p}attention.key_length = {head_dim} must be even for RoPE")
        if p + "rope.dimension_count" in metadata and metadata[p + "rope.dimension_count"] != head_dim:
            raise ModelError(f"{source}: {p}rope.dimension_count = {metadata[p + 'rope.dimension_count']!r}, "
                             f"expected {head_dim} ({p}attention.key_length)")
        for key in ("rope.scaling.type", "final_logit_softcapping", "attn_logit_softcapping"):
            if p + key in metadata:
                raise ModelError(f"{source}: {p}{key} is set: ignis' gemma3 builder has no "
                                 f"{key.split('.')[0].replace('_', ' ')} (a larger Gemma 3 than it was written for)")
        return config_from_fields(cls, hp, tensors, fields)


def build_graph(config: Gemma3Config, T: int, all_logits: bool = False, n_out: int | None = None,
                hidden: bool = False) -> Graph:
    """The unfused forward graph for a batch of T new tokens (inputs and output as
    ignis.models.qwen2.build_graph)."""
    c = config
    g = DecoderGraph(c, T, all_logits, n_out, hidden)
    b, pos, seq, rmsnorm, linear = g.b, g.pos, g.seq, g.rmsnorm, g.linear
    D, H, KVH, hd = c.width, c.n_heads, c.n_kv_heads, c.head_dim

    def normed_rope(y, blk, which, heads, theta, hint):
        n = b.emit("head_rmsnorm", [y], [f"{blk}.attn_{which}_norm.weight"], hint=hint + "_norm",
                   n_heads=heads, head_dim=hd, eps=g.eps)
        return b.emit("rope", [n, pos], hint=hint + "_rope", n_heads=heads, head_dim=hd, theta=theta)

    h = b.emit("embed", [g.tokens], ["token_embd.weight"], hint="embd")
    # the float32 rounding of sqrt(D), as the reference multiplies by
    h = b.emit("scale", [h], hint="embd_scaled", factor=float(np.float32(np.sqrt(D))))
    for L in range(c.n_layers):
        blk = f"blk.{L}"
        theta = float(c.layer_theta(L))
        window = {} if c.is_global(L) else {"window": int(c.window)}
        a = rmsnorm(h, f"{blk}.attn_norm.weight", f"{blk}.attn_in")
        q = normed_rope(linear(a, blk, "attn_q", f"{blk}.q"), blk, "q", H, theta, f"{blk}.q")
        k = normed_rope(linear(a, blk, "attn_k", f"{blk}.k"), blk, "k", KVH, theta, f"{blk}.k")
        v = linear(a, blk, "attn_v", f"{blk}.v")
        kv = b.emit("kv_write", [k, v, pos, seq], hint=f"{blk}.kv", layer=L, n_kv_heads=KVH, head_dim=hd)
        o = b.emit("attention", [q, kv, pos, seq], hint=f"{blk}.attn", layer=L, n_heads=H, n_kv_heads=KVH,
                   head_dim=hd, **window)
        o = rmsnorm(linear(o, blk, "attn_output", f"{blk}.attn_out"), f"{blk}.post_attention_norm.weight",
                    f"{blk}.attn_post")
        h = b.emit("add", [h, o], hint=f"{blk}.h_attn")
        f = rmsnorm(h, f"{blk}.ffn_norm.weight", f"{blk}.ffn_in")
        gate = b.emit("gelu", [linear(f, blk, "ffn_gate", f"{blk}.gate")], hint=f"{blk}.gate_act")
        u = b.emit("mul", [gate, linear(f, blk, "ffn_up", f"{blk}.up")], hint=f"{blk}.glu")
        d = rmsnorm(linear(u, blk, "ffn_down", f"{blk}.down"), f"{blk}.post_ffw_norm.weight", f"{blk}.ffn_post")
        h = b.emit("add", [h, d], hint=f"{blk}.h")
    return g.logits(h, c.output_tensor)
