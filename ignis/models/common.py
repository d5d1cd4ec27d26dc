"""What every architecture's config shares: reading hyper-parameters from GGUF metadata and
checking the file's tensors against the shapes they imply. Every problem is a one-line
ModelError naming the key or the tensor."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ignis.errors import ModelError

MAX_CONTEXT = 1 << 24      # longer than any real model's context: a corrupt field
MAX_LAYERS = 4096

# norms and biases are read as float vectors; a quantized one is a converter bug or a lie
VECTOR_TYPES = ("F32", "F16", "BF16")


def check_architecture(metadata: Mapping, source: str, arch: str) -> None:
    found = metadata.get("general.architecture")
    if found != arch:
        raise ModelError(f"{source}: general.architecture is {found!r}, expected {arch!r}")


class Hyper:
    """Typed reads of `<arch>.<key>` metadata fields."""

    def __init__(self, metadata: Mapping, source: str, arch: str):
        self.metadata, self.source, self.prefix = metadata, source, arch + "."

    def key(self, key: str) -> str:
        return self.prefix + key

    def integer(self, key: str, default: int | None = None) -> int:
        """A positive integer field (required unless a default is given)."""
        key = self.key(key)
        if key not in self.metadata:
            if default is None:
                raise ModelError(f"{self.source}: metadata key {key} is missing")
            return default
        value = self.metadata[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ModelError(f"{self.source}: {key} = {value!r}, expected a positive integer")
        return int(value)

    def number(self, key: str, default: float | None = None) -> float:
        """A positive finite number field (required unless a default is given)."""
        key = self.key(key)
        if key not in self.metadata:
            if default is None:
                raise ModelError(f"{self.source}: metadata key {key} is missing")
            return default
        value = self.metadata[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not np.isfinite(value) or value <= 0:
            raise ModelError(f"{self.source}: {key} = {value!r}, expected a positive number")
        return float(value)

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
    if type_name not in {t.name for t in SUPPORTED_DEQUANT_TYPES}:
        raise ModelError(f"{source}: tensor {name} is {type_name}, a type ignis cannot read "
                         f"(supported: {', '.join(sorted(t.name for t in SUPPORTED_DEQUANT_TYPES))})")
    if type_name not in ("F32", "F16") and shape[-1] % 32:
        raise ModelError(f"{source}: tensor {name} is {type_name} with rows of {shape[-1]}, "
                         "expected a multiple of 32 (it is repacked to Q8_0)")


def check_positive(arch: str, config, keys) -> None:
    """Config fields that must be positive integers (a config made by hand)."""
    for key in keys:
        value = getattr(config, key)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ModelError(f"{arch} config: {key} must be a positive integer, got {value!r}")


def check_positive_number(arch: str, key: str, value) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ModelError(f"{arch} config: {key} must be a positive number, got {value!r}")


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
