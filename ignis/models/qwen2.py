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

import numpy as np

from ignis.errors import ModelError
from ignis.ir.graph import Graph, GraphBuilder, WeightInfo

ARCH = "qwen2"
MAX_CONTEXT = 1 << 24      # longer than any real model's context: a corrupt field

_LAYER_TENSORS = ("attn_norm.weight", "attn_q.weight", "attn_q.bias", "attn_k.weight", "attn_k.bias",
                  "attn_v.weight", "attn_v.bias", "attn_output.weight", "ffn_norm.weight",
                  "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")


@dataclass(frozen=True)
class Qwen2Config:
    """Qwen2 hyper-parameters. `weight_types`: tensor name -> GGML type name (for
    reporting and for the loader; "F32" when the config was made by hand)."""
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
    weight_types: Mapping | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        for key in ("n_layers", "width", "ffn", "n_heads", "n_kv_heads", "vocab", "context_length"):
            value = getattr(self, key)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ModelError(f"qwen2 config: {key} must be a positive integer, got {value!r}")
        if self.width % self.n_heads:
            raise ModelError(f"qwen2 config: width {self.width} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ModelError(f"qwen2 config: n_heads {self.n_heads} is not a multiple of "
                             f"n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ModelError(f"qwen2 config: head dim {self.head_dim} must be even for RoPE")
        if self.context_length > MAX_CONTEXT:
            raise ModelError(f"qwen2 config: context_length {self.context_length} exceeds {MAX_CONTEXT}")
        if not (np.isfinite(self.rope_theta) and self.rope_theta > 0):
            raise ModelError(f"qwen2 config: rope_theta must be a positive number, got {self.rope_theta!r}")
        if not (np.isfinite(self.rms_eps) and self.rms_eps > 0):
            raise ModelError(f"qwen2 config: rms_eps must be a positive number, got {self.rms_eps!r}")

    @property
    def head_dim(self) -> int:
        return self.width // self.n_heads

    @property
    def output_tensor(self) -> str:
        return "token_embd.weight" if self.tied_output else "output.weight"

    def tensor_shapes(self) -> dict:
        """Every tensor the graph references -> numpy shape (rows, cols) / (n,)."""
        D, F, V, kv = self.width, self.ffn, self.vocab, self.n_kv_heads * self.head_dim
        shapes = {"token_embd.weight": (V, D), "output_norm.weight": (D,)}
        if not self.tied_output:
            shapes["output.weight"] = (V, D)
        per_layer = {"attn_norm.weight": (D,), "attn_q.weight": (D, D), "attn_q.bias": (D,),
                     "attn_k.weight": (kv, D), "attn_k.bias": (kv,), "attn_v.weight": (kv, D),
                     "attn_v.bias": (kv,), "attn_output.weight": (D, D), "ffn_norm.weight": (D,),
                     "ffn_gate.weight": (F, D), "ffn_up.weight": (F, D), "ffn_down.weight": (D, F)}
        for L in range(self.n_layers):
            for name, shape in per_layer.items():
                shapes[f"blk.{L}.{name}"] = shape
        return shapes

    def weight_infos(self) -> dict:
        types = self.weight_types or {}
        return {name: WeightInfo(shape, types.get(name, "F32")) for name, shape in self.tensor_shapes().items()}

    @classmethod
    def from_gguf(cls, metadata: Mapping, tensors: Mapping, source: str = "model") -> "Qwen2Config":
        """From a GGUF file's metadata and tensor infos (objects with .shape, .type).
        Raises ModelError naming the key or tensor that is missing or inconsistent."""
        arch = metadata.get("general.architecture")
        if arch != ARCH:
            raise ModelError(f"{source}: general.architecture is {arch!r}, expected {ARCH!r}: that architecture "
                             f"is not supported yet (ignis runs {ARCH} models only)")

        def integer(key):
            if key not in metadata:
                raise ModelError(f"{source}: metadata key {key} is missing")
            value = metadata[key]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ModelError(f"{source}: {key} = {value!r}, expected a positive integer")
            return int(value)

        def number(key, default=None):
            if key not in metadata:
                if default is None:
                    raise ModelError(f"{source}: metadata key {key} is missing")
                return default
            value = metadata[key]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not np.isfinite(value) or value <= 0:
                raise ModelError(f"{source}: {key} = {value!r}, expected a positive number")
            return float(value)

        p = ARCH + "."
        n_layers = integer(p + "block_count")
        width = integer(p + "embedding_length")
        ffn = integer(p + "feed_forward_length")
        n_heads = integer(p + "attention.head_count")
        n_kv_heads = integer(p + "attention.head_count_kv")
        context = integer(p + "context_length")
        theta = number(p + "rope.freq_base", 10000.0)
        eps = number(p + "attention.layer_norm_rms_epsilon")
        if width % n_heads:
            raise ModelError(f"{source}: {p}embedding_length {width} is not divisible by "
                             f"{p}attention.head_count {n_heads}")
        if n_heads % n_kv_heads:
            raise ModelError(f"{source}: {p}attention.head_count {n_heads} is not a multiple of "
                             f"{p}attention.head_count_kv {n_kv_heads}")
        if (width // n_heads) % 2:
            raise ModelError(f"{source}: head dim {width // n_heads} ({p}embedding_length / "
                             f"{p}attention.head_count) must be even for RoPE")
        for key in (p + "attention.key_length", p + "attention.value_length"):
            if key in metadata and metadata[key] != width // n_heads:
                raise ModelError(f"{source}: {key} = {metadata[key]!r}, expected {width // n_heads} "
                                 f"({p}embedding_length / {p}attention.head_count)")
        if context > MAX_CONTEXT:
            raise ModelError(f"{source}: {p}context_length = {context} is absurd (more than {MAX_CONTEXT})")
        if n_layers > 4096:
            raise ModelError(f"{source}: {p}block_count = {n_layers} is absurd (more than 4096)")
        embd = tensors.get("token_embd.weight")
        if embd is None:
            raise ModelError(f"{source}: tensor token_embd.weight is missing")
        if len(embd.shape) != 2 or embd.shape[1] != width:
            raise ModelError(f"{source}: tensor token_embd.weight has shape {tuple(embd.shape)}, "
                             f"expected (vocab, {width}) ({p}embedding_length)")
        vocab = int(embd.shape[0])
        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is not None and not isinstance(tokens, (list, tuple)):
            raise ModelError(f"{source}: tokenizer.ggml.tokens is a {type(tokens).__name__}, "
                             "expected an array of strings")
        if tokens is not None and len(tokens) != vocab:
            raise ModelError(f"{source}: tokenizer.ggml.tokens has {len(tokens)} entries but "
                             f"token_embd.weight has {vocab} rows")
        config = cls(n_layers=n_layers, width=width, ffn=ffn, n_heads=n_heads, n_kv_heads=n_kv_heads,
                     vocab=vocab, rope_theta=theta, rms_eps=eps, context_length=context,
                     tied_output="output.weight" not in tensors,
                     weight_types={name: getattr(t.type, "name", str(t.type)) for name, t in tensors.items()})
        for name, shape in config.tensor_shapes().items():
            info = tensors.get(name)
            if info is None:
                raise ModelError(f"{source}: tensor {name} is missing")
            if tuple(info.shape) != shape:
                raise ModelError(f"{source}: tensor {name} has shape {tuple(info.shape)}, expected {shape} "
                                 f"from the hyper-parameters")
            _check_weight_type(source, name, shape, info.type)
        return config

    @classmethod
    def from_file(cls, gguf) -> "Qwen2Config":
        """From an open ignis.gguf.GGUFFile."""
        return cls.from_gguf(gguf.metadata, gguf.tensors, getattr(gguf, "path", "model"))


# norms and biases are read as float vectors; a quantized one is a converter bug or a lie
_VECTOR_TYPES = ("F32", "F16", "BF16")


def _check_weight_type(source: str, name: str, shape: tuple, ttype) -> None:
    """A tensor's type must be one the loader can read for its role (ModelError otherwise)."""
    from ignis.gguf.quant import SUPPORTED_DEQUANT_TYPES
    type_name = getattr(ttype, "name", str(ttype))
    if len(shape) == 1:
        if type_name not in _VECTOR_TYPES:
            raise ModelError(f"{source}: tensor {name} is {type_name}, expected a float type "
                             f"({', '.join(_VECTOR_TYPES)}) for a norm or bias vector")
        return
    if type_name not in {t.name for t in SUPPORTED_DEQUANT_TYPES}:
        raise ModelError(f"{source}: tensor {name} is {type_name}, a type ignis cannot read "
                         f"(supported: {', '.join(sorted(t.name for t in SUPPORTED_DEQUANT_TYPES))})")
    if type_name not in ("F32", "F16") and shape[-1] % 32:
        raise ModelError(f"{source}: tensor {name} is {type_name} with rows of {shape[-1]}, "
                         "expected a multiple of 32 (it is repacked to Q8_0)")


def build_graph(config: Qwen2Config, T: int, all_logits: bool = False, n_out: int | None = None) -> Graph:
    """The unfused forward graph for a batch of T new tokens: token t sits at position
    pos[t] of sequence seq[t] (its own keys and values, causally; several sequences may
    share one batch).

    inputs: tokens, pos, seq i32 [T] (and rows i32 [n_out] when n_out is given);
    output: logits f32 [T, V] if all_logits (or T == 1), [n_out, V] for the rows
    `rows` of the batch when n_out is given, else [1, V] for the last token."""
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise ModelError(f"qwen2 graph: T must be a positive number of tokens, got {T!r}")
    if n_out is not None and (not isinstance(n_out, (int, np.integer)) or not 1 <= n_out <= T):
        raise ModelError(f"qwen2 graph: n_out must be a number of rows in [1, {T}], got {n_out!r}")
    c = config
    D, H, KVH, hd = c.width, c.n_heads, c.n_kv_heads, c.head_dim
    theta, eps = float(c.rope_theta), float(c.rms_eps)
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

    def linear(x, blk, name, hint, bias=False):
        y = b.emit("matmul", [x], [f"{blk}.{name}.weight"], hint=hint)
        if bias:
            y = b.emit("add_bias", [y], [f"{blk}.{name}.bias"], hint=hint + "+b")
        return y

    h = b.emit("embed", [tokens], ["token_embd.weight"], hint="embd")
    for L in range(c.n_layers):
        blk = f"blk.{L}"
        a = rmsnorm(h, f"{blk}.attn_norm.weight", f"{blk}.attn_in")
        q = b.emit("rope", [linear(a, blk, "attn_q", f"{blk}.q", True), pos], hint=f"{blk}.q_rope",
                   n_heads=H, head_dim=hd, theta=theta)
        k = b.emit("rope", [linear(a, blk, "attn_k", f"{blk}.k", True), pos], hint=f"{blk}.k_rope",
                   n_heads=KVH, head_dim=hd, theta=theta)
        v = linear(a, blk, "attn_v", f"{blk}.v", True)
        kv = b.emit("kv_write", [k, v, pos, seq], hint=f"{blk}.kv", layer=L, n_kv_heads=KVH, head_dim=hd)
        o = b.emit("attention", [q, kv, pos, seq], hint=f"{blk}.attn", layer=L, n_heads=H, n_kv_heads=KVH,
                   head_dim=hd)
        h = b.emit("add", [h, linear(o, blk, "attn_output", f"{blk}.attn_out")], hint=f"{blk}.h_attn")
        f = rmsnorm(h, f"{blk}.ffn_norm.weight", f"{blk}.ffn_in")
        gate = b.emit("silu", [linear(f, blk, "ffn_gate", f"{blk}.gate")], hint=f"{blk}.gate_act")
        g = b.emit("mul", [gate, linear(f, blk, "ffn_up", f"{blk}.up")], hint=f"{blk}.glu")
        h = b.emit("add", [h, linear(g, blk, "ffn_down", f"{blk}.down")], hint=f"{blk}.h")
    if rows is not None:
        h = b.emit("take_rows", [h, rows], hint="rows")
    elif not every:
        h = b.emit("take_last", [h], hint="last")
    n = rmsnorm(h, "output_norm.weight", "out_norm")
    b.output("logits", b.emit("matmul", [n], [c.output_tensor], hint="logits"))
    return b.finish()


class GGUFWeights(Mapping):
    """tensor name -> float32 array, dequantized from a GGUF file on first access and
    kept (the reference interpreter's weights). Names of the file's tensors only."""

    def __init__(self, gguf):
        self._tensors = gguf.tensors
        self._cache = {}

    def __getitem__(self, name):
        if name not in self._cache:
            from ignis.gguf.quant import dequantize
            info = self._tensors[name]
            self._cache[name] = dequantize(info.data, info.type, tuple(info.shape))
        return self._cache[name]

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self):
        return len(self._tensors)


def load_weights(gguf) -> GGUFWeights:
    """The weights mapping the reference interpreter takes, for an open GGUFFile."""
    return GGUFWeights(gguf)
