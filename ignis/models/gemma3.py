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
from ignis.ir.graph import Graph, GraphBuilder, WeightInfo
from ignis.models.common import (MAX_CONTEXT, Hyper, check_architecture, check_positive, check_positive_number,
                                 check_tensors, vocab_size, weight_type_names)

ARCH = "gemma3"
LOCAL_ROPE_THETA = 10000.0     # the sliding-window layers' RoPE base: fixed by the architecture
GLOBAL_EVERY = 6               # layer L attends globally when (L + 1) % 6 == 0


@dataclass(frozen=True)
class Gemma3Config:
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
    weight_types: Mapping | None = field(default=None, repr=False, compare=False)

    ARCH = ARCH

    def __post_init__(self):
        check_positive(ARCH, self, ("n_layers", "width", "ffn", "n_heads", "n_kv_heads", "head_dim", "vocab",
                                    "window", "global_every", "context_length"))
        if self.n_heads % self.n_kv_heads:
            raise ModelError(f"{ARCH} config: n_heads {self.n_heads} is not a multiple of "
                             f"n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ModelError(f"{ARCH} config: head_dim {self.head_dim} must be even for RoPE")
        if self.context_length > MAX_CONTEXT:
            raise ModelError(f"{ARCH} config: context_length {self.context_length} exceeds {MAX_CONTEXT}")
        for key in ("rope_theta", "rope_theta_local", "rms_eps"):
            check_positive_number(ARCH, key, getattr(self, key))

    def is_global(self, layer: int) -> bool:
        """Whether layer attends to every position (else to the sliding window)."""
        return (layer + 1) % self.global_every == 0

    def layer_window(self, layer: int) -> int | None:
        return None if self.is_global(layer) else self.window

    def layer_theta(self, layer: int) -> float:
        return self.rope_theta if self.is_global(layer) else self.rope_theta_local

    @property
    def output_tensor(self) -> str:
        return "token_embd.weight" if self.tied_output else "output.weight"

    def tensor_shapes(self) -> dict:
        D, F, V, hd = self.width, self.ffn, self.vocab, self.head_dim
        q, kv = self.n_heads * hd, self.n_kv_heads * hd
        shapes = {"token_embd.weight": (V, D), "output_norm.weight": (D,)}
        if not self.tied_output:
            shapes["output.weight"] = (V, D)
        per_layer = {"attn_norm.weight": (D,), "attn_q.weight": (q, D), "attn_k.weight": (kv, D),
                     "attn_v.weight": (kv, D), "attn_q_norm.weight": (hd,), "attn_k_norm.weight": (hd,),
                     "attn_output.weight": (D, q), "post_attention_norm.weight": (D,), "ffn_norm.weight": (D,),
                     "ffn_gate.weight": (F, D), "ffn_up.weight": (F, D), "ffn_down.weight": (D, F),
                     "post_ffw_norm.weight": (D,)}
        for L in range(self.n_layers):
            for name, shape in per_layer.items():
                shapes[f"blk.{L}.{name}"] = shape
        return shapes

    def weight_infos(self) -> dict:
        types = self.weight_types or {}
        return {name: WeightInfo(shape, types.get(name, "F32")) for name, shape in self.tensor_shapes().items()}

    def build_graph(self, T: int, all_logits: bool = False, n_out: int | None = None) -> Graph:
        return build_graph(self, T, all_logits, n_out)

    @classmethod
    def from_gguf(cls, metadata: Mapping, tensors: Mapping, source: str = "model") -> "Gemma3Config":
        """From a GGUF file's metadata and tensor infos; ModelError names the key or tensor."""
        check_architecture(metadata, source, ARCH)
        hp = Hyper(metadata, source, ARCH)
        p = hp.prefix
        n_layers = hp.integer("block_count")
        width = hp.integer("embedding_length")
        ffn = hp.integer("feed_forward_length")
        n_heads = hp.integer("attention.head_count")
        n_kv_heads = hp.integer("attention.head_count_kv")
        context = hp.integer("context_length")
        head_dim = hp.integer("attention.key_length", width // n_heads if width % n_heads == 0 else None)
        if hp.integer("attention.value_length", head_dim) != head_dim:
            raise ModelError(f"{source}: {p}attention.value_length = {metadata[p + 'attention.value_length']!r}, "
                             f"expected {head_dim} ({p}attention.key_length)")
        window = hp.integer("attention.sliding_window")
        every = hp.integer("attention.sliding_window_pattern", GLOBAL_EVERY)
        theta = hp.number("rope.freq_base", 1_000_000.0)
        eps = hp.number("attention.layer_norm_rms_epsilon")
        if n_heads % n_kv_heads:
            raise ModelError(f"{source}: {p}attention.head_count {n_heads} is not a multiple of "
                             f"{p}attention.head_count_kv {n_kv_heads}")
        if head_dim % 2:
            raise ModelError(f"{source}: {p}attention.key_length = {head_dim} must be even for RoPE")
        if p + "rope.dimension_count" in metadata and metadata[p + "rope.dimension_count"] != head_dim:
            raise ModelError(f"{source}: {p}rope.dimension_count = {metadata[p + 'rope.dimension_count']!r}, "
                             f"expected {head_dim} ({p}attention.key_length)")
        for key in ("rope.scaling.type", "final_logit_softcapping", "attn_logit_softcapping"):
            if p + key in metadata:
                raise ModelError(f"{source}: {p}{key} is set: ignis' gemma3 builder has no "
                                 f"{key.split('.')[0].replace('_', ' ')} (a larger Gemma 3 than it was written for)")
        hp.bounded(n_layers, context)
        vocab = vocab_size(metadata, tensors, source, width, p + "embedding_length")
        config = cls(n_layers=n_layers, width=width, ffn=ffn, n_heads=n_heads, n_kv_heads=n_kv_heads,
                     head_dim=head_dim, vocab=vocab, window=window, rope_theta=theta, global_every=every,
                     rms_eps=eps, context_length=context, tied_output="output.weight" not in tensors,
                     weight_types=weight_type_names(tensors))
        check_tensors(config.tensor_shapes(), tensors, source)
        return config

    @classmethod
    def from_file(cls, gguf) -> "Gemma3Config":
        return cls.from_gguf(gguf.metadata, gguf.tensors, getattr(gguf, "path", "model"))


def build_graph(config: Gemma3Config, T: int, all_logits: bool = False, n_out: int | None = None) -> Graph:
    """The unfused forward graph for a batch of T new tokens (inputs and output as
    ignis.models.qwen2.build_graph)."""
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise ModelError(f"{ARCH} graph: T must be a positive number of tokens, got {T!r}")
    if n_out is not None and (not isinstance(n_out, (int, np.integer)) or not 1 <= n_out <= T):
        raise ModelError(f"{ARCH} graph: n_out must be a number of rows in [1, {T}], got {n_out!r}")
    c = config
    D, H, KVH, hd = c.width, c.n_heads, c.n_kv_heads, c.head_dim
    eps = float(c.rms_eps)
    every = n_out is None and (all_logits or T == 1)
    b = GraphBuilder(weights=c.weight_infos(), meta={
        "arch": ARCH, "T": int(T), "all_logits": bool(every), "n_out": None if n_out is None else int(n_out),
        "n_layers": c.n_layers, "width": D, "n_heads": H, "n_kv_heads": KVH, "head_dim": hd, "ffn": c.ffn,
        "vocab": c.vocab})
    tokens = b.input("tokens", (T,), "i32")
    pos = b.input("pos", (T,), "i32")
    seq = b.input("seq", (T,), "i32")
    rows = b.input("rows", (n_out,), "i32") if n_out is not None else None

    def rmsnorm(x, g, hint):
        r = b.emit("rms_inv", [x], hint=hint + ".rinv", eps=eps)
        return b.emit("scale_rows", [x, r], [g], hint=hint)

    def linear(x, blk, name, hint):
        return b.emit("matmul", [x], [f"{blk}.{name}.weight"], hint=hint)

    def normed_rope(y, blk, which, heads, theta, hint):
        n = b.emit("head_rmsnorm", [y], [f"{blk}.attn_{which}_norm.weight"], hint=hint + "_norm",
                   n_heads=heads, head_dim=hd, eps=eps)
        return b.emit("rope", [n, pos], hint=hint + "_rope", n_heads=heads, head_dim=hd, theta=theta)

    h = b.emit("embed", [tokens], ["token_embd.weight"], hint="embd")
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
        g = b.emit("mul", [gate, linear(f, blk, "ffn_up", f"{blk}.up")], hint=f"{blk}.glu")
        d = rmsnorm(linear(g, blk, "ffn_down", f"{blk}.down"), f"{blk}.post_ffw_norm.weight", f"{blk}.ffn_post")
        h = b.emit("add", [h, d], hint=f"{blk}.h")
    if rows is not None:
        h = b.emit("take_rows", [h, rows], hint="rows")
    elif not every:
        h = b.emit("take_last", [h], hint="last")
    n = rmsnorm(h, "output_norm.weight", "out_norm")
    b.output("logits", b.emit("matmul", [n], [c.output_tensor], hint="logits"))
    return b.finish()
