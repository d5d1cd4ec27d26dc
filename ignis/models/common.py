"""What every architecture's config shares: reading hyper-parameters from GGUF metadata and
checking the file's tensors against the shapes they imply. Every problem is a one-line
ModelError naming the key or the tensor."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ignis.errors import ModelError
from ignis.ir.graph import Graph, GraphBuilder, WeightInfo

MAX_CONTEXT = 1 << 24      # longer than any real model's context: a corrupt field
MAX_LAYERS = 4096

# norms and biases are read as float vectors; a quantized one is a converter bug or a lie
VECTOR_TYPES = ("F32", "F16", "BF16")


def check_architecture(metadata: Mapping, source: str, arch: str) -> None:
    found = metadata.get("general.architecture")
    if found != arch:
        raise ModelError(f"{source}: general.architecture is {found!r}, expected {arch!r}")


def _is_positive_integer(value) -> bool:
    # bool is an int subclass, but True is no count
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _is_positive_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) \
        and bool(np.isfinite(value)) and value > 0


class Hyper:
    """Typed reads of `<arch>.<key>` metadata fields."""

    def __init__(self, metadata: Mapping, source: str, arch: str):
        self.metadata, self.source, self.prefix = metadata, source, arch + "."

    def key(self, key: str) -> str:
        return self.prefix + key

    def _field(self, key: str, default, valid, expected: str):
        """The field's value if valid, the default if absent (required when the default is None)."""
        key = self.key(key)
        if key not in self.metadata:
            if default is None:
                raise ModelError(f"{self.source}: metadata key {key} is missing")
            return default
        value = self.metadata[key]
        if not valid(value):
            raise ModelError(f"{self.source}: {key} = {value!r}, expected {expected}")
        return value

    def integer(self, key: str, default: int | None = None) -> int:
        """A positive integer field (required unless a default is given)."""
        return int(self._field(key, default, _is_positive_integer, "a positive integer"))

    def number(self, key: str, default: float | None = None) -> float:
        """A positive finite number field (required unless a default is given)."""
        return float(self._field(key, default, _is_positive_number, "a positive number"))

    def bounded(self, n_layers: int, context: int) -> None:
        """Layer count and context length of a plausible model."""
        if context > MAX_CONTEXT:
            raise ModelError(f"{self.source}: {self.prefix}context_length = {context} is absurd "
                             f"(more than {MAX_CONTEXT})")
        if n_layers > MAX_LAYERS:
            raise ModelError(f"{self.source}: {self.prefix}block_count = {n_layers} is absurd "
                             f"(more than {MAX_LAYERS})")


def vocab_size(metadata: Mapping, tensors: Mapping, source: str, width: int, width_key: str) -> int:
    """Rows of token_embd.weight, checked against the width and the tokenizer's token list."""
    embd = tensors.get("token_embd.weight")
    if embd is None:
        raise ModelError(f"{source}: tensor token_embd.weight is missing")
    if len(embd.shape) != 2 or embd.shape[1] != width:
        raise ModelError(f"{source}: tensor token_embd.weight has shape {tuple(embd.shape)}, "
                         f"expected (vocab, {width}) ({width_key})")
    vocab = int(embd.shape[0])
    tokens = metadata.get("tokenizer.ggml.tokens")
    if tokens is not None and not isinstance(tokens, (list, tuple)):
        raise ModelError(f"{source}: tokenizer.ggml.tokens is a {type(tokens).__name__}, "
                         "expected an array of strings")
    if tokens is not None and len(tokens) != vocab:
        raise ModelError(f"{source}: tokenizer.ggml.tokens has {len(tokens)} entries but "
                         f"token_embd.weight has {vocab} rows")
    return vocab


def weight_type_names(tensors: Mapping) -> dict:
    return {name: getattr(t.type, "name", str(t.type)) for name, t in tensors.items()}


def check_tensors(shapes: Mapping, tensors: Mapping, source: str) -> None:
    """Every tensor the graph references exists with the expected shape and a readable type."""
    for name, shape in shapes.items():
        info = tensors.get(name)
        if info is None:
            raise ModelError(f"{source}: tensor {name} is missing")
        if tuple(info.shape) != shape:
            raise ModelError(f"{source}: tensor {name} has shape {tuple(info.shape)}, expected {shape} "
                             f"from the hyper-parameters")
        check_weight_type(source, name, shape, info.type)


def check_weight_type(source: str, name: str, shape: tuple, ttype) -> None:
    """A tensor's type must be one the loader can read for its role (ModelError otherwise)."""
    from ignis.gguf.quant import SUPPORTED_DEQUANT_TYPES
    type_name = getattr(ttype, "name", str(ttype))
    if len(shape) == 1:
        if type_name not in VECTOR_TYPES:
            raise ModelError(f"{source}: tensor {name} is {type_name}, expected a float type "
                             f"({', '.join(VECTOR_TYPES)}) for a norm or bias vector")
        return
    from ignis.gguf.types import type_label
    if type_name not in {t.name for t in SUPPORTED_DEQUANT_TYPES}:
        raise ModelError(f"{source}: tensor {name} is {type_label(ttype)}, a type ignis cannot run "
                         f"(supported: {', '.join(t.name for t in sorted(SUPPORTED_DEQUANT_TYPES))})")
    if type_name not in ("F32", "F16", "BF16") and shape[-1] % 32:
        raise ModelError(f"{source}: tensor {name} is {type_name} with rows of {shape[-1]}, "
                         "expected a multiple of 32 (the activations are quantized in blocks of 32)")


def check_positive(arch: str, config, keys) -> None:
    """Config fields that must be positive integers (a config made by hand)."""
    for key in keys:
        value = getattr(config, key)
        if not _is_positive_integer(value):
            raise ModelError(f"{arch} config: {key} must be a positive integer, got {value!r}")


def check_positive_number(arch: str, key: str, value) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ModelError(f"{arch} config: {key} must be a positive number, got {value!r}")


class DecoderConfig:
    """What every architecture's config (a frozen dataclass with at least n_layers, width,
    n_heads, n_kv_heads, head_dim, vocab, rms_eps, context_length, tied_output, output_rows
    and weight_types) does alike; mixed in, the fields stay the subclass'.

    output_rows: the output projection computes the logits of ids [0, output_rows) only (its
    weight's first rows; None: every id). A draft model's greedy proposals need no more than
    the ids text mostly uses, and its step then reads fewer weight bytes. An untied output
    only (a tied one is the embedding table too, which needs every row)."""
    ARCH: str

    def _check_layout(self, head_dim_name: str, numbers) -> None:
        """Head grouping, RoPE pairs, context bound and the positive float fields `numbers`
        of a config made by hand (`head_dim_name`: how this architecture's message says it)."""
        arch = self.ARCH
        if self.n_heads % self.n_kv_heads:
            raise ModelError(f"{arch} config: n_heads {self.n_heads} is not a multiple of "
                             f"n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ModelError(f"{arch} config: {head_dim_name} {self.head_dim} must be even for RoPE")
        if self.context_length > MAX_CONTEXT:
            raise ModelError(f"{arch} config: context_length {self.context_length} exceeds {MAX_CONTEXT}")
        for key in numbers:
            check_positive_number(arch, key, getattr(self, key))
        rows = self.output_rows
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= self.vocab
                                 or self.tied_output):
            raise ModelError(f"{arch} config: output_rows must be None or an int in [1, vocab {self.vocab}] with an "
                             f"untied output, got {rows!r} (tied_output {self.tied_output})")

    @property
    def output_tensor(self) -> str:
        return "token_embd.weight" if self.tied_output else "output.weight"

    def weight_infos(self) -> dict:
        types = self.weight_types or {}
        return {name: WeightInfo(shape, types.get(name, "F32")) for name, shape in self.tensor_shapes().items()}

    def _tensor_table(self, per_layer: Mapping) -> dict:
        """The embedding and output tensors, then `per_layer` (name -> shape) for every block."""
        D, V = self.width, self.vocab
        shapes = {"token_embd.weight": (V, D), "output_norm.weight": (D,)}
        if not self.tied_output:
            shapes["output.weight"] = (self.output_rows or V, D)
        for L in range(self.n_layers):
            for name, shape in per_layer.items():
                shapes[f"blk.{L}.{name}"] = shape
        return shapes

    @classmethod
    def from_file(cls, gguf):
        """From an open ignis.gguf.GGUFFile."""
        return cls.from_gguf(gguf.metadata, gguf.tensors, getattr(gguf, "path", "model"))


def read_block_fields(hp: Hyper) -> dict:
    """The sizes every decoder file has, as config fields (read in this order, so a file
    with several bad keys names the same one whatever the architecture)."""
    return {"n_layers": hp.integer("block_count"), "width": hp.integer("embedding_length"),
            "ffn": hp.integer("feed_forward_length"), "n_heads": hp.integer("attention.head_count"),
            "n_kv_heads": hp.integer("attention.head_count_kv"), "context_length": hp.integer("context_length")}


def check_head_groups(hp: Hyper, n_heads: int, n_kv_heads: int) -> None:
    """Grouped-query attention: every KV head serves the same number of query heads."""
    if n_heads % n_kv_heads:
        raise ModelError(f"{hp.source}: {hp.prefix}attention.head_count {n_heads} is not a multiple of "
                         f"{hp.prefix}attention.head_count_kv {n_kv_heads}")


def config_from_fields(cls, hp: Hyper, tensors: Mapping, fields: dict):
    """The config of `fields` read from a file, with the vocabulary, tied output and weight
    types its tensors give, checked against every tensor the graph references."""
    hp.bounded(fields["n_layers"], fields["context_length"])
    vocab = vocab_size(hp.metadata, tensors, hp.source, fields["width"], hp.key("embedding_length"))
    config = cls(**fields, vocab=vocab, tied_output="output.weight" not in tensors,
                 weight_types=weight_type_names(tensors))
    check_tensors(config.tensor_shapes(), tensors, hp.source)
    return config


class DecoderGraph:
    """The parts of the forward graph every architecture writes alike: the batch inputs,
    RMS norms, plain projections and the logits head (docs of ignis.models.qwen2.build_graph)."""

    def __init__(self, config: DecoderConfig, T: int, all_logits: bool, n_out: int | None,
                 hidden: bool = False):
        arch = config.ARCH
        if not isinstance(T, (int, np.integer)) or T < 1:
            raise ModelError(f"{arch} graph: T must be a positive number of tokens, got {T!r}")
        if n_out is not None and (not isinstance(n_out, (int, np.integer)) or not 1 <= n_out <= T):
            raise ModelError(f"{arch} graph: n_out must be a number of rows in [1, {T}], got {n_out!r}")
        c = config
        self.eps = float(c.rms_eps)
        # every row's logits, else only the last row's (or the rows `rows` names)
        self.every = n_out is None and (all_logits or T == 1)
        # hidden: the output is the normed hidden state of those rows (embeddings), not logits
        self.hidden = bool(hidden)
        self.b = b = GraphBuilder(weights=c.weight_infos(), meta={
            "arch": arch, "T": int(T), "all_logits": bool(self.every), "hidden": self.hidden,
            "n_out": None if n_out is None else int(n_out), "n_layers": c.n_layers, "width": c.width,
            "n_heads": c.n_heads, "n_kv_heads": c.n_kv_heads, "head_dim": c.head_dim, "ffn": c.ffn,
            "vocab": c.vocab})
        self.tokens = b.input("tokens", (T,), "i32")
        self.pos = b.input("pos", (T,), "i32")
        self.seq = b.input("seq", (T,), "i32")
        self.rows = b.input("rows", (n_out,), "i32") if n_out is not None else None

    def rmsnorm(self, x, g: str, hint: str):
        r = self.b.emit("rms_inv", [x], hint=hint + ".rinv", eps=self.eps)
        return self.b.emit("scale_rows", [x, r], [g], hint=hint)

    def linear(self, x, blk: str, name: str, hint: str):
        return self.b.emit("matmul", [x], [f"{blk}.{name}.weight"], hint=hint)

    def logits(self, h, output_tensor: str) -> Graph:
        """Output norm and projection of the rows asked for; the finished graph (with
        hidden: the output norm only, as output "hidden" [rows, width])."""
        b = self.b
        if self.rows is not None:
            h = b.emit("take_rows", [h, self.rows], hint="rows")
        elif not self.every:
            h = b.emit("take_last", [h], hint="last")
        n = self.rmsnorm(h, "output_norm.weight", "out_norm")
        if self.hidden:
            b.output("hidden", n)
            return b.finish()
        b.output("logits", b.emit("matmul", [n], [output_tensor], hint="logits"))
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
