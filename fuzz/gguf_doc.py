"""A GGUF file as data that is free to lie (`Doc`: header counts, metadata entries as key /
type tag / payload bytes, tensor infos, padding, data, trailing bytes), random tensor bytes of
every type, the micro Qwen2 model the `model` property mutates, and the seeds (tiny valid
GGUFs written with ignis' writer). Used by fuzz/gguf_mutator.py and fuzz/gguf_atheris.py."""
from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass, field

import numpy as np

from ignis.gguf import TensorType, ValueType
from ignis.gguf.types import BLOCK_LAYOUTS, SCALAR_FORMATS, tensor_nbytes


# --- a GGUF file as data that may lie ---------------------------------------------------

ARRAY = ValueType.ARRAY


@dataclass
class Entry:
    """One metadata pair as written: key bytes, value type tag and encoded value."""
    key: bytes
    tag: int
    payload: bytes
    key_len: int | None = None       # a lie about the key's length, if set


@dataclass
class Info:
    """One tensor info as written (ne in GGUF order, fastest dimension first)."""
    name: bytes
    ne: list
    type: int
    offset: int
    n_dims: int | None = None        # a lie about the number of dimensions, if set


@dataclass
class Doc:
    entries: list = field(default_factory=list)
    infos: list = field(default_factory=list)
    data: bytes = b""                # tensor data, starting at the aligned data offset
    alignment: int = 32              # what the padding before the data is computed with
    magic: bytes = b"GGUF"
    version: int = 3
    tensor_count: int | None = None  # lies about the counts, if set
    kv_count: int | None = None
    pad: int | None = None           # padding bytes before the data (None: to `alignment`)
    tail: bytes = b""

    def encode(self) -> bytes:
        out = bytearray(self.magic)
        out += struct.pack("<I", self.version & 0xFFFFFFFF)
        out += struct.pack("<QQ", _u64(len(self.infos) if self.tensor_count is None else self.tensor_count),
                           _u64(len(self.entries) if self.kv_count is None else self.kv_count))
        for e in self.entries:
            out += struct.pack("<Q", _u64(len(e.key) if e.key_len is None else e.key_len)) + e.key
            out += struct.pack("<I", e.tag & 0xFFFFFFFF) + e.payload
        for t in self.infos:
            out += struct.pack("<Q", len(t.name)) + t.name
            out += struct.pack("<I", (len(t.ne) if t.n_dims is None else t.n_dims) & 0xFFFFFFFF)
            out += b"".join(struct.pack("<Q", _u64(d)) for d in t.ne)
            out += struct.pack("<IQ", t.type & 0xFFFFFFFF, _u64(t.offset))
        pad = -len(out) % max(1, self.alignment) if self.pad is None else self.pad
        out += b"\0" * pad
        return bytes(out + self.data + self.tail)


def _u64(v: int) -> int:
    return v & 0xFFFFFFFFFFFFFFFF


def encode_value(vtype, value) -> bytes:
    """A metadata value's bytes (without the type tag). vtype: ValueType or (ARRAY, item)."""
    if isinstance(vtype, tuple):
        item = vtype[1]
        head = struct.pack("<IQ", int(ARRAY if isinstance(item, tuple) else item), len(value))
        return head + b"".join(encode_value(item, v) for v in value)
    if vtype == ValueType.STRING:
        raw = value.encode("utf-8") if isinstance(value, str) else value
        return struct.pack("<Q", len(raw)) + raw
    return struct.pack("<" + SCALAR_FORMATS[vtype], value)


def type_tag(vtype) -> int:
    return int(ARRAY if isinstance(vtype, tuple) else vtype)


def entry(key: str, vtype, value) -> Entry:
    return Entry(key.encode("utf-8"), type_tag(vtype), encode_value(vtype, value))


def build_doc(metadata: list, tensors: list, alignment: int = 32) -> Doc:
    """A valid document: metadata [(key, vtype, value)], tensors [(name, TensorType, numpy
    shape, raw bytes)]; offsets and padding as ignis' writer lays them out."""
    entries = [entry(k, t, v) for k, t, v in metadata]
    infos, data = [], bytearray()
    for name, ttype, shape, raw in tensors:
        infos.append(Info(name.encode("utf-8"), list(reversed(shape)), int(ttype), len(data)))
        data += raw
        data += b"\0" * (-len(raw) % alignment)
    return Doc(entries, infos, bytes(data), alignment)


# --- tensor data ------------------------------------------------------------------------

# type -> (scale field dtype, their indexes in a block viewed as that dtype): see
# ignis/runtime/validate.py; random blocks get small finite scales there
def _scale_fields():
    from ignis.runtime.validate import _SCALES
    return _SCALES


def random_tensor_bytes(ttype: TensorType, shape: tuple, rng: np.random.Generator, scale: float = 0.05) -> bytes:
    """Plausible data of a type: floats N(0, scale^2), quantized blocks with random quants
    and small finite scales."""
    n = int(np.prod(shape))
    ttype = TensorType(ttype)
    if ttype == TensorType.F32:
        return (scale * rng.standard_normal(n)).astype("<f4").tobytes()
    if ttype == TensorType.F16:
        return (scale * rng.standard_normal(n)).astype("<f2").tobytes()
    if ttype == TensorType.BF16:
        return ((scale * rng.standard_normal(n)).astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
    if ttype == TensorType.Q8_0:
        from ignis.gguf.quant import quantize_q8_0
        return quantize_q8_0((scale * rng.standard_normal(shape)).astype(np.float32)).tobytes()
    nbytes = tensor_nbytes(ttype, n)
    raw = rng.integers(0, 256, nbytes, dtype=np.uint8)
    if ttype not in _scale_fields():      # a type ignis only names (to refuse it): any bytes
        return raw.tobytes()
    dtype, fields = _scale_fields()[ttype]
    per_block = BLOCK_LAYOUTS[ttype].nbytes // np.dtype(dtype).itemsize
    blocks = raw.view(dtype).reshape(-1, per_block)
    small = np.float16(scale / 8).view("<u2") if dtype == "<u2" else np.float32(scale / 8).view("<u4")
    for f in fields:
        blocks[:, f] = small
    return raw.tobytes()


# --- the micro Qwen2 model ----------------------------------------------------------------

MICRO = dict(n_layers=1, width=32, n_heads=2, n_kv_heads=1, ffn=32, n_ctx=64)

VARIANTS = {
    # tensor name suffix -> type for 2-D weights (1-D ones are F32)
    "q8_0": {},
    "mixed": {"attn_q.weight": TensorType.Q4_0, "attn_k.weight": TensorType.Q5_0,
              "attn_output.weight": TensorType.F16, "ffn_gate.weight": TensorType.Q4_1,
              "ffn_up.weight": TensorType.Q5_1, "token_embd.weight": TensorType.F16,
              "output.weight": TensorType.BF16},
    "f32": {"*": TensorType.F32},
}


def micro_vocab() -> tuple:
    """(tokens, types, merges): 9 byte symbols, 4 merges, 2 control tokens, one more byte."""
    from ignis.tokenizer._bytes import BYTE_TO_CHAR
    sym = [BYTE_TO_CHAR[b] for b in b"abcdefgh "]
    sp = sym[-1]
    merges = [("a", "b"), ("c", "d"), (sp, "a"), ("ab", "cd")]
    tokens = sym + [a + b for a, b in merges] + ["<|endoftext|>", "<|im_end|>", BYTE_TO_CHAR[ord("\n")]]
    types = [1] * 13 + [3, 3, 1]
    return tokens, types, [f"{a} {b}" for a, b in merges]


def micro_metadata(tied: bool = True) -> list:
    """[(key, vtype, value)] of the micro model (what make_tiny_qwen2 writes, scaled down)."""
    m = MICRO
    tokens, types, merges = micro_vocab()
    U32, F32, S = ValueType.UINT32, ValueType.FLOAT32, ValueType.STRING
    return [
        ("general.architecture", S, "qwen2"),
        ("general.name", S, "micro-qwen2"),
        ("qwen2.block_count", U32, m["n_layers"]),
        ("qwen2.context_length", U32, m["n_ctx"]),
        ("qwen2.embedding_length", U32, m["width"]),
        ("qwen2.feed_forward_length", U32, m["ffn"]),
        ("qwen2.attention.head_count", U32, m["n_heads"]),
        ("qwen2.attention.head_count_kv", U32, m["n_kv_heads"]),
        ("qwen2.rope.freq_base", F32, 10000.0),
        ("qwen2.attention.layer_norm_rms_epsilon", F32, 1e-6),
        ("tokenizer.ggml.model", S, "gpt2"),
        ("tokenizer.ggml.pre", S, "qwen2"),
        ("tokenizer.ggml.tokens", (ARRAY, S), tokens),
        ("tokenizer.ggml.token_type", (ARRAY, ValueType.INT32), types),
        ("tokenizer.ggml.merges", (ARRAY, S), merges),
        ("tokenizer.ggml.eos_token_id", U32, tokens.index("<|im_end|>")),
        ("tokenizer.ggml.bos_token_id", U32, tokens.index("<|endoftext|>")),
        ("tokenizer.ggml.add_bos_token", ValueType.BOOL, False),
    ]


def micro_tensors(variant: str = "q8_0", tied: bool = True, seed: int = 0) -> list:
    """[(name, TensorType, numpy shape, raw bytes)] of the micro model."""
    from ignis.testing import random_qwen2_weights, tiny_qwen2_config
    m = MICRO
    config = tiny_qwen2_config(n_layers=m["n_layers"], width=m["width"], n_heads=m["n_heads"],
                               n_kv_heads=m["n_kv_heads"], ffn=m["ffn"], vocab=len(micro_vocab()[0]),
                               n_ctx=m["n_ctx"], tied_output=tied)
    types = VARIANTS[variant]
    rng = np.random.default_rng(seed)
    out = []
    for name, w in random_qwen2_weights(config, seed).items():
        if w.ndim == 1:
            out.append((name, TensorType.F32, w.shape, w.astype("<f4").tobytes()))
            continue
        ttype = types.get("*", types.get(name.split(".", 2)[-1] if name.startswith("blk.") else name,
                                         TensorType.Q8_0))
        if ttype in (TensorType.F32, TensorType.F16, TensorType.Q8_0):
            from ignis.gguf.quant import quantize
            raw = np.asarray(quantize(w, ttype)).tobytes()
        else:
            raw = random_tensor_bytes(ttype, w.shape, rng)
        out.append((name, ttype, w.shape, raw))
    return out


def micro_model_doc(variant: str = "q8_0", tied: bool = True, seed: int = 0) -> Doc:
    return build_doc(micro_metadata(tied), micro_tensors(variant, tied, seed))


def micro_model_bytes(variant: str = "q8_0", tied: bool = True, seed: int = 0) -> bytes:
    return micro_model_doc(variant, tied, seed).encode()


# --- seeds (tiny valid GGUFs written with ignis' writer) ----------------------------------

def _write_with_ignis(metadata: list, tensors: list, alignment: int | None = None) -> bytes:
    from ignis.gguf import write_gguf
    md = {k: v for k, _, v in metadata}
    types = {k: t for k, t, _ in metadata}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "seed.gguf")
        write_gguf(path, md, [(n, t, s, np.frombuffer(raw, dtype=np.uint8)) for n, t, s, raw in tensors],
                   types=types, alignment=alignment)
        with open(path, "rb") as f:
            return f.read()


def every_type_metadata() -> list:
    V = ValueType
    return [
        ("general.architecture", V.STRING, "fuzz"),
        ("u8", V.UINT8, 200), ("i8", V.INT8, -5), ("u16", V.UINT16, 65535), ("i16", V.INT16, -300),
        ("u32", V.UINT32, 1 << 31), ("i32", V.INT32, -7), ("f32", V.FLOAT32, 0.5), ("bool", V.BOOL, True),
        ("str", V.STRING, "h\u00e9llo \U0001f30d"), ("u64", V.UINT64, 1 << 63), ("i64", V.INT64, -(1 << 40)),
        ("f64", V.FLOAT64, -2.25), ("arr.u8", (ARRAY, V.UINT8), [1, 2, 3]),
        ("arr.f32", (ARRAY, V.FLOAT32), [1.5, -0.25]), ("arr.str", (ARRAY, V.STRING), ["a", "", "bc"]),
        ("arr.bool", (ARRAY, V.BOOL), [True, False]), ("arr.empty", (ARRAY, V.INT64), []),
        ("arr.nested", (ARRAY, (ARRAY, V.INT16)), [[1, -2], [], [3]]),
    ]


def every_type_tensors(seed: int = 0) -> list:
    """One small tensor of each type ignis reads (a block layout, and a float type or known
    scale fields: the types it only names, to refuse them, are left out)."""
    rng = np.random.default_rng(seed)
    out = []
    for ttype, layout in BLOCK_LAYOUTS.items():
        if ttype not in _scale_fields() and ttype not in (TensorType.F32, TensorType.F16, TensorType.BF16):
            continue
        shape = (2, layout.elements) if layout.elements > 1 else (3, 4)
        out.append((f"t.{ttype.name.lower()}", ttype, shape, random_tensor_bytes(ttype, shape, rng)))
    return out


def seeds() -> dict:
    """name -> bytes of the seed files: tiny valid GGUFs written with ignis' writer."""
    out = {
        "empty.gguf": _write_with_ignis([], []),
        "metadata.gguf": _write_with_ignis(every_type_metadata(), []),
        "tensors.gguf": _write_with_ignis(every_type_metadata()[:1], every_type_tensors()),
        "align64.gguf": _write_with_ignis([("general.alignment", ValueType.UINT32, 64)],
                                          every_type_tensors(1)[:3], alignment=64),
        "align1.gguf": _write_with_ignis([("general.alignment", ValueType.UINT32, 1)],
                                         every_type_tensors(2)[:2], alignment=1),
    }
    for variant in VARIANTS:
        out[f"micro_{variant}.gguf"] = _write_with_ignis(micro_metadata(), micro_tensors(variant))
    out["micro_untied.gguf"] = _write_with_ignis(micro_metadata(False), micro_tensors("q8_0", tied=False))
    return out
