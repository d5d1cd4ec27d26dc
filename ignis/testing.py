"""Tiny models for tests (Qwen2, Llama and Gemma 3 shaped): random weights with plausible
scales, a tiny byte-level BPE vocabulary, written with ignis' own GGUF writer.

    path = make_tiny_qwen2(tmp_path / "tiny.gguf", n_layers=2, width=64, n_heads=4,
                           n_kv_heads=2, ffn=128, vocab=300, seed=0)
    path = write_model(tmp_path / "g.gguf", tiny_gemma3_config(), {})   # any config, any weight types

The vocabulary: the 256 byte-level symbols (GPT-2's byte -> unicode map), then merges
(" x" and letter pairs, then " " + pair), then the control tokens <|endoftext|>,
<|im_start|>, <|im_end|>; tokenizer.ggml.model gpt2, pre qwen2.
"""
from __future__ import annotations

import os
import string

import numpy as np

from ignis.models.gemma3 import Gemma3Config
from ignis.models.llama import LlamaConfig
from ignis.models.qwen2 import Qwen2Config

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
                 " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def byte_symbols() -> list:
    """GPT-2's printable stand-in for each byte value 0..255, in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(256)]


def tiny_vocab(vocab: int) -> tuple:
    """(tokens, token_types, merges) with len(tokens) == vocab (>= 259)."""
    n_merges = vocab - 256 - len(SPECIAL_TOKENS)
    if n_merges < 0:
        raise ValueError(f"vocab must be at least {256 + len(SPECIAL_TOKENS)}, got {vocab}")
    space = byte_symbols()[ord(" ")]
    letters = string.ascii_lowercase
    candidates = [(space, c) for c in letters] + [(a, b) for a in letters for b in letters]
    candidates += [(space + a, b) for a in letters for b in letters]
    candidates += [(a + b, c) for a in letters for b in letters for c in letters]
    if n_merges > len(candidates):
        raise ValueError(f"tiny vocabularies go up to {256 + len(SPECIAL_TOKENS) + len(candidates)} tokens")
    pairs = candidates[:n_merges]
    tokens = byte_symbols() + [a + b for a, b in pairs] + list(SPECIAL_TOKENS)
    types = [1] * (len(tokens) - len(SPECIAL_TOKENS)) + [3] * len(SPECIAL_TOKENS)
    return tokens, types, [f"{a} {b}" for a, b in pairs]


def random_qwen2_weights(config: Qwen2Config, seed: int = 0) -> dict:
    """tensor name -> float32 array for every tensor of `config`: matmul weights
    N(0, 1/K), norm gains near 1, small biases, embeddings N(0, 0.1^2)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in config.tensor_shapes().items():
        if name.endswith("norm.weight"):
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            w = 0.1 * rng.standard_normal(shape)
        elif name == "token_embd.weight":
            w = 0.1 * rng.standard_normal(shape)
        else:
            w = rng.standard_normal(shape) / np.sqrt(shape[1])
        weights[name] = w.astype(np.float32)
    return weights


def tiny_qwen2_config(*, n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300,
                      n_ctx=256, tied_output=False, rope_theta=1_000_000.0, rms_eps=1e-6) -> Qwen2Config:
    return Qwen2Config(n_layers=n_layers, width=width, ffn=ffn, n_heads=n_heads, n_kv_heads=n_kv_heads,
                       vocab=vocab, rope_theta=float(rope_theta), rms_eps=float(rms_eps),
                       context_length=n_ctx, tied_output=tied_output)


def tiny_llama_config(*, n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300,
                      n_ctx=256, tied_output=True, rope_theta=100000.0, rms_eps=1e-5) -> LlamaConfig:
    return LlamaConfig(n_layers=n_layers, width=width, ffn=ffn, n_heads=n_heads, n_kv_heads=n_kv_heads,
                       vocab=vocab, rope_theta=float(rope_theta), rms_eps=float(rms_eps),
                       context_length=n_ctx, tied_output=tied_output)


def tiny_gemma3_config(*, n_layers=3, width=64, n_heads=2, n_kv_heads=1, head_dim=64, ffn=128, vocab=300,
                       n_ctx=256, window=8, global_every=3, tied_output=True, rope_theta=1_000_000.0,
                       rms_eps=1e-6) -> Gemma3Config:
    """A small Gemma 3: q wider than the model (n_heads x head_dim != width), a short window
    and a global layer every `global_every` (the real model: 512 and 6)."""
    return Gemma3Config(n_layers=n_layers, width=width, ffn=ffn, n_heads=n_heads, n_kv_heads=n_kv_heads,
                        head_dim=head_dim, vocab=vocab, window=window, global_every=global_every,
                        rope_theta=float(rope_theta), rms_eps=float(rms_eps), context_length=n_ctx,
                        tied_output=tied_output)


def _hyper_metadata(config) -> dict:
    """The `<arch>.*` hyper-parameter keys of a config of any architecture."""
    p = config.ARCH + "."
    meta = {
        p + "block_count": config.n_layers,
        p + "context_length": config.context_length,
        p + "embedding_length": config.width,
        p + "feed_forward_length": config.ffn,
        p + "attention.head_count": config.n_heads,
        p + "attention.head_count_kv": config.n_kv_heads,
        p + "rope.freq_base": float(config.rope_theta),
        p + "attention.layer_norm_rms_epsilon": float(config.rms_eps),
    }
    if isinstance(config, Gemma3Config):
        meta[p + "attention.key_length"] = meta[p + "attention.value_length"] = config.head_dim
        meta[p + "attention.sliding_window"] = config.window
        if config.global_every != 6:
            meta[p + "attention.sliding_window_pattern"] = config.global_every
    return meta


def qwen2_metadata(config, name: str, file_type: int) -> tuple:
    """(metadata, forced value types) of a GGUF for `config` (Qwen2, or any architecture's
    config) with the tiny vocabulary."""
    from ignis.gguf import ValueType

    tokens, token_types, merges = tiny_vocab(config.vocab)
    eot = tokens.index("<|endoftext|>")
    metadata = {
        "general.architecture": config.ARCH,
        "general.name": name,
        "general.file_type": file_type,
        **_hyper_metadata(config),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "qwen2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": token_types,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.eos_token_id": tokens.index("<|im_end|>"),
        "tokenizer.ggml.padding_token_id": eot,
        "tokenizer.ggml.bos_token_id": eot,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": CHAT_TEMPLATE,
    }
    return metadata, {"tokenizer.ggml.token_type": (ValueType.ARRAY, ValueType.INT32)}


def make_tiny_qwen2(path, *, n_layers: int = 2, width: int = 64, n_heads: int = 4, n_kv_heads: int = 2,
                    ffn: int = 128, vocab: int = 300, seed: int = 0, weight_type: str = "q8_0",
                    n_ctx: int = 256, tied_output: bool = False, rope_theta: float = 1_000_000.0,
                    rms_eps: float = 1e-6):
    """Write a small Qwen2-shaped GGUF at `path` and return the path.

    weight_type "q8_0": 2-D weights Q8_0 (width and ffn must be multiples of 32),
    norms and biases F32, as in real files; "f32": everything F32."""
    from ignis.gguf import TensorType, write_gguf
    from ignis.gguf.quant import quantize_q8_0

    if weight_type not in ("q8_0", "f32"):
        raise ValueError(f"weight_type must be 'q8_0' or 'f32', got {weight_type!r}")
    config = tiny_qwen2_config(n_layers=n_layers, width=width, n_heads=n_heads, n_kv_heads=n_kv_heads,
                               ffn=ffn, vocab=vocab, n_ctx=n_ctx, tied_output=tied_output,
                               rope_theta=rope_theta, rms_eps=rms_eps)
    metadata, types = qwen2_metadata(config, f"tiny-qwen2-{n_layers}x{width}", 7 if weight_type == "q8_0" else 0)
    tensors = []
    for name, w in random_qwen2_weights(config, seed).items():
        if weight_type == "q8_0" and w.ndim == 2:
            tensors.append((name, TensorType.Q8_0, w.shape, quantize_q8_0(w)))
        else:
            tensors.append((name, TensorType.F32, w.shape, w))
    write_gguf(path, metadata, tensors, types=types)
    return os.fspath(path) if isinstance(path, os.PathLike) else path


# -- models of every weight type the kernels read ----------------------------------------

# the weight types the matmul and embedding kernels read natively, and the block size each
# needs the row length k to be a multiple of
KERNEL_TYPES = {"F32": 1, "F16": 1, "Q8_0": 32, "Q5_0": 32, "Q4_1": 32, "Q4_K": 256, "Q6_K": 256}
KERNEL_TYPES.update({"BF16": 1, "Q4_0": 32, "Q5_1": 32, "IQ4_NL": 32})
KERNEL_TYPES.update({"Q5_K": 256, "Q3_K": 256, "Q2_K": 256, "IQ4_XS": 256})

# byte offset of each block's f16 scale fields (GGUF block layouts), and the largest
# magnitude of the integer factor they multiply: a scale of amp / factor gives weights
# of magnitude about amp
_BLOCK_SCALES = {"Q8_0": ((0,), 127), "Q5_0": ((0,), 16), "Q4_1": ((0, 2), 15), "Q4_K": ((0, 2), 63 * 15),
                 "Q6_K": ((208,), 127 * 32)}
_BLOCK_SCALES.update({"Q4_0": ((0,), 8), "Q5_1": ((0, 2), 31), "IQ4_NL": ((0,), 127)})
_BLOCK_SCALES.update({"Q5_K": ((0, 2), 63 * 31), "Q3_K": ((108,), 32 * 4), "Q2_K": ((80, 82), 15 * 3),
                      "IQ4_XS": ((0,), 32 * 127)})
# dmin over d that centres d*sc*q - dmin*m (random sc, m, q) at zero
_DMIN_CENTRE = {"Q4_K": 7.5, "Q5_K": 15.5, "Q2_K": 1.5}


def random_weight_bytes(type_name: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Raw GGUF data of a random [rows, k] weight of `type_name` with entries of magnitude
    about 1/sqrt(k): floats drawn N(0, 1/k), quantized types as random blocks (random
    integer fields, f16 scales set so the weights stay that size). Fast: no quantizer runs."""
    from ignis.gguf import TensorType
    from ignis.gguf.types import BLOCK_LAYOUTS

    rows, k = shape
    if k % KERNEL_TYPES[type_name]:
        raise ValueError(f"{type_name} rows need a multiple of {KERNEL_TYPES[type_name]} elements, got {k}")
    if type_name in ("F32", "F16"):
        w = rng.standard_normal((rows, k), dtype=np.float32) / np.float32(np.sqrt(k))
        return w.astype(np.float16 if type_name == "F16" else np.float32).view(np.uint8)
    if type_name == "BF16":     # the top halves of f32 values (truncated: any bits are valid)
        w = rng.standard_normal((rows, k), dtype=np.float32) / np.float32(np.sqrt(k))
        return (w.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    layout = BLOCK_LAYOUTS[TensorType[type_name]]
    blocks = rng.integers(0, 256, size=(rows * k // layout.elements, layout.nbytes), dtype=np.uint8)
    fields, factor = _BLOCK_SCALES[type_name]
    amp = 2.0 / np.sqrt(k)
    for at in fields:
        scale = (amp / factor * rng.uniform(0.5, 1.5, size=blocks.shape[0])).astype("<f2")
        if type_name in _DMIN_CENTRE and at == fields[1]:
            scale = (scale.astype(np.float32) * _DMIN_CENTRE[type_name]).astype("<f2")   # dmin: centres the weights
        if type_name == "Q4_1" and at == 2:
            scale = (scale.astype(np.float32) * -7.5).astype("<f2")  # m: centres d*q + m
        if type_name == "Q5_1" and at == 2:
            scale = (scale.astype(np.float32) * -15.5).astype("<f2")
        blocks[:, at:at + 2] = scale.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


def allowed_types(k: int) -> list:
    """Kernel weight types whose block size divides a row of k elements."""
    return [name for name, block in KERNEL_TYPES.items() if k % block == 0]


def write_model(path, config, weight_types: dict, seed: int = 0):
    """Write a GGUF for `config` (any architecture) whose 2-D tensors have the types
    `weight_types` (tensor name -> KERNEL_TYPES name; missing names are Q8_0), with random
    weights (random_weight_bytes); norms and biases F32. Returns the path."""
    from ignis.gguf import TensorType, write_gguf

    rng = np.random.default_rng(seed)
    metadata, types = qwen2_metadata(config, f"{config.ARCH}-{config.n_layers}x{config.width}", 1)
    tensors = []
    for name, shape in config.tensor_shapes().items():
        if len(shape) == 2:
            type_name = weight_types.get(name, "Q8_0")
            tensors.append((name, TensorType[type_name], shape, random_weight_bytes(type_name, shape, rng)))
        else:
            base = 1.0 if name.endswith("norm.weight") else 0.0
            w = (base + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            tensors.append((name, TensorType.F32, shape, w))
    write_gguf(path, metadata, tensors, types=types)
    return os.fspath(path) if isinstance(path, os.PathLike) else path


write_qwen2 = write_model     # the name the Qwen2-only tests knew it by


class EngineSequence:
    """One KV sequence of an Engine driven step by step, for tests and fuzzers of the engine
    itself (the runtime drives engines only through the scheduler): forward(ids, start) runs
    ids at positions start.. (what the sequence held past start is dropped) in steps of at
    most `chunk` tokens; the last position's logits, or every position's."""

    def __init__(self, engine, chunk: int = 64):
        self.engine, self.kv, self.chunk = engine, engine.kv, chunk
        self.kv_layers = engine.kv_layers
        self.seq = engine.kv.new_sequence()

    def forward(self, ids, start: int, all_logits: bool = False):
        kv = self.kv
        kv.truncate(self.seq, min(start, kv.length(self.seq)))
        if kv.length(self.seq) != start:
            raise ValueError(f"forward at position {start}, but the sequence holds {kv.length(self.seq)}")
        kv.reserve(self.seq, len(ids))
        rows = []
        for lo in range(0, len(ids), self.chunk):
            part = [int(t) for t in ids[lo:lo + self.chunk]]
            want = list(range(len(part))) if all_logits else [len(part) - 1]
            rows.append(self.engine.step(part, [self.seq] * len(part), range(start + lo, start + lo + len(part)), want))
        return np.concatenate(rows) if all_logits else rows[-1][-1]

    def step(self, *args):
        return self.engine.step(*args)

    def keepable(self, n: int) -> int:
        return self.kv.keepable(self.seq, min(n, self.kv.length(self.seq)))


class KVCache:
    """float16 K and V caches [n_layers, n_ctx, n_kv_heads, head_dim] (zeros) for Plan.run in
    tests: what the runtime's paged caches are, without the paging."""

    def __init__(self, n_layers, n_ctx, n_kv_heads, head_dim):
        import operator

        from ignis.errors import ModelError
        dims = []
        for name, v, hi in (("n_layers", n_layers, 1 << 16), ("n_ctx", n_ctx, 1 << 24),
                            ("n_kv_heads", n_kv_heads, 1 << 16), ("head_dim", head_dim, 1 << 16)):
            if isinstance(v, (bool, np.bool_)):
                raise ModelError(f"KVCache: {name} must be an integer, got bool {v!r}")
            try:
                v = operator.index(v)
            except TypeError:
                raise ModelError(f"KVCache: {name} must be an integer, got {type(v).__name__}") from None
            if not 1 <= v <= hi:
                raise ModelError(f"KVCache: {name} must be in [1, {hi}], got {v}")
            dims.append(v)
        shape = tuple(dims)
        try:
            self.k = np.zeros(shape, np.float16)
            self.v = np.zeros(shape, np.float16)
        except (MemoryError, ValueError):
            raise ModelError(f"KVCache: cannot allocate 2 x {int(np.prod(shape)) * 2} bytes for {shape}") from None
        self.n_ctx = dims[1]
