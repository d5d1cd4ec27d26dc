"""Structured GGUF fuzzing with Hypothesis: `python -m fuzz.gguf_mutator --examples 100000`.

A GGUF file is held as data that is free to lie (`Doc`: header counts, metadata entries as
key / type tag / payload bytes, tensor infos, padding, data, trailing bytes), built valid
and then mutated where parsers go wrong: the header (magic, version, counts), metadata of
every value type (type tags, type confusion, string lengths, array item types and counts,
nesting depth, invalid UTF-8, duplicate keys), `general.alignment`, tensor infos (n_dims,
dims, types, offsets, names), the data offset and the data itself (the file model: fuzz/gguf_doc.py).

Properties (tests/test_hardening_fuzz.py runs each with a few hundred examples):
  raw       any mutated file: GGUFFile either raises GGUFError (one line) or yields a file
            whose every tensor lies inside the buffer, aligned, sized by its type and shape,
            with no two tensors overlapping; `ignis inspect` (text and JSON) works on it;
            an unmutated document reads back exactly as generated
  model     a micro Qwen2 model (1 layer, width 32, vocab 16) with well-formed GGUF but lying
            content (hyper-parameters, tensors missing / reshaped / retyped / renamed,
            NaN and Inf, tokenizer keys): `ignis.load` raises an IgnisError (one line) or
            gives a Model that generates
  tokenizer malformed tokenizer.ggml.* metadata: Tokenizer raises TokenizerError or encodes
            and decodes arbitrary text
Any other exception is a bug. fuzz/gguf_atheris.py reuses the checks and the seeds.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np

from ignis.errors import GGUFError, IgnisError, ModelError, TokenizerError
from ignis.gguf import GGUFFile, TensorType, ValueType
from ignis.gguf.types import BLOCK_LAYOUTS, SCALAR_FORMATS, tensor_nbytes

# the file model, tensor bytes, the micro model and the seeds (re-exported: the tests and
# fuzz/gguf_atheris.py import them from here)
from fuzz.gguf_doc import (ARRAY, MICRO, VARIANTS, Doc, Entry, Info, _scale_fields, _u64,  # noqa: F401
                           _write_with_ignis, build_doc, encode_value, entry, every_type_metadata,
                           every_type_tensors, micro_metadata, micro_model_bytes, micro_model_doc, micro_tensors,
                           micro_vocab, random_tensor_bytes, seeds, type_tag)

# --- the checks --------------------------------------------------------------------------

def _one_line(exc: Exception) -> None:
    message = str(exc)
    assert message and "\n" not in message, f"{type(exc).__name__} message is not one line: {message!r}"


def check_reader(blob: bytes, expect: dict | None = None, strict: bool = True):
    """Parse a buffer; GGUFError or a file whose invariants hold (then `ignis inspect` runs
    on it). expect: {"metadata": ..., "tensors": {name: (type, shape, bytes)}} for an
    unmutated document. Returns the open GGUFFile or None."""
    from ignis.inspect import describe, format_report
    try:
        g = GGUFFile.from_bytes(blob, "fuzz.gguf")
    except GGUFError as exc:
        _one_line(exc)
        return None
    except IgnisError as exc:
        if strict:
            raise AssertionError(f"reader raised {type(exc).__name__}, not GGUFError: {exc}") from None
        return None
    assert g.version in (2, 3)
    a = g.alignment
    assert a > 0 and a & (a - 1) == 0, a
    spans = []
    for name, t in g.tensors.items():
        assert t.offset >= g.data_offset and (t.offset - g.data_offset) % a == 0, (name, t.offset)
        assert t.offset + t.nbytes <= len(blob), (name, t.offset, t.nbytes, len(blob))
        assert t.nbytes == tensor_nbytes(t.type, t.n_elements) and t.data.size == t.nbytes, name
        assert all(d >= 1 for d in t.shape) and 1 <= len(t.shape) <= 4, (name, t.shape)
        assert t.shape[-1] % BLOCK_LAYOUTS[t.type].elements == 0, (name, t.shape)
        spans.append((t.offset, t.offset + t.nbytes))
    spans.sort()
    assert all(s1 >= e0 for (_, e0), (s1, _) in zip(spans, spans[1:])), "tensors overlap"
    json.dumps(describe(g), ensure_ascii=False)
    format_report(g)
    if expect is not None:
        assert g.metadata == expect["metadata"], (g.metadata, expect["metadata"])
        got = {n: (int(t.type), tuple(t.shape), t.data.tobytes()) for n, t in g.tensors.items()}
        assert got == expect["tensors"]
    return g


def _shm_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def check_load(blob: bytes, generate: bool = True) -> str:
    """ignis.load on the bytes (as a file): a one-line IgnisError, or a Model that generates.
    Returns "rejected: <error type>: <message>" or "loaded"."""
    import ignis
    fd, path = tempfile.mkstemp(suffix=".gguf", dir=_shm_dir())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        try:
            model = ignis.load(path, n_ctx=8, threads=1)
        except IgnisError as exc:
            _one_line(exc)
            return f"rejected: {type(exc).__name__}: {exc}"
        try:
            if generate:
                try:
                    model.generate([0], max_tokens=2, temperature=0.0)
                except ModelError as exc:   # finite weights can still overflow float32
                    _one_line(exc)
                    assert "non-finite" in str(exc), exc
                    return "rejected at run: non-finite logits"
            return "loaded"
        finally:
            model.close()
    finally:
        os.unlink(path)


SAMPLE_TEXTS = ("", "abcd", " ab cd\n", "h\u00e9llo <|im_end|> \U0001f30d", "<|endoftext|><|endoftext|>",
                "\x00\xff", "a" * 50)


def check_tokenizer_metadata(metadata: dict) -> str:
    """Tokenizer from metadata: TokenizerError, or it encodes/decodes/streams sample texts."""
    from ignis.tokenizer import Tokenizer
    try:
        tok = Tokenizer.from_metadata(metadata)
    except TokenizerError as exc:
        _one_line(exc)
        return "rejected"
    for text in SAMPLE_TEXTS:
        for special in (True, False):
            try:
                ids = tok.encode(text, parse_special=special)
            except TokenizerError as exc:
                _one_line(exc)
                continue
            assert all(0 <= i < tok.n_vocab for i in ids), ids
            text_back = tok.decode(ids)
            stream = tok.stream()
            streamed = "".join(stream.push(i) for i in ids) + stream.flush()
            assert streamed == text_back, (ids, streamed, text_back)
    try:
        tok.decode([tok.n_vocab])
        raise AssertionError("decode of an id outside the vocabulary did not fail")
    except TokenizerError:
        pass
    return "accepted"


# --- Hypothesis strategies --------------------------------------------------------------

def _strategies():
    """Built on first use so that importing this module does not need hypothesis."""
    from hypothesis import strategies as st
    V = ValueType
    int_ranges = {V.UINT8: (0, 255), V.INT8: (-128, 127), V.UINT16: (0, 65535), V.INT16: (-32768, 32767),
                  V.UINT32: (0, 2**32 - 1), V.INT32: (-2**31, 2**31 - 1), V.UINT64: (0, 2**64 - 1),
                  V.INT64: (-2**63, 2**63 - 1)}

    def scalar(vtype):
        if vtype in int_ranges:
            lo, hi = int_ranges[vtype]
            return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, 1] if lo < 0 else [lo, hi, 1]))
        if vtype == V.FLOAT32:
            return st.floats(width=32, allow_nan=False)
        if vtype == V.FLOAT64:
            return st.floats(allow_nan=False)
        if vtype == V.BOOL:
            return st.booleans()
        return st.text(max_size=12)

    scalar_types = [t for t in V if t != ARRAY]

    @st.composite
    def typed_value(draw, depth=0):
        """(vtype, value) of any type, arrays of any item type, nested up to 3 deep."""
        kind = draw(st.sampled_from(scalar_types + [ARRAY] * 3))
        if kind != ARRAY:
            return kind, draw(scalar(kind))
        if depth < 2 and draw(st.booleans()):
            inner = draw(st.lists(typed_value(depth + 1), max_size=3))
            item = draw(st.sampled_from(scalar_types))
            # an array of arrays: every inner array of one item type
            values = [draw(st.lists(scalar(item), max_size=3)) for _ in inner]
            return (ARRAY, (ARRAY, item)), values
        item = draw(st.sampled_from(scalar_types))
        return (ARRAY, item), draw(st.lists(scalar(item), max_size=8))

    keys = st.one_of(st.sampled_from(["general.name", "general.architecture", "general.file_type",
                                      "qwen2.block_count", "tokenizer.ggml.tokens", "x"]),
                     st.text(min_size=1, max_size=16))

    @st.composite
    def valid_doc(draw):
        """(Doc, expected) with random metadata of every type and small tensors of every type."""
        meta = draw(st.lists(st.tuples(keys, typed_value()), max_size=6, unique_by=lambda kv: kv[0]))
        alignment = draw(st.sampled_from([32, 32, 1, 8, 64, 256, 4096]))
        metadata = [(k, t, v) for k, (t, v) in meta if k != "general.alignment"]
        if alignment != 32 or draw(st.booleans()):
            metadata.append(("general.alignment", draw(st.sampled_from([V.UINT32, V.UINT64, V.INT32])), alignment))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        tensors = []
        for i, ttype in enumerate(draw(st.lists(st.sampled_from(list(BLOCK_LAYOUTS)), max_size=4))):
            layout = BLOCK_LAYOUTS[ttype]
            n_dims = draw(st.integers(1, 4))
            shape = [draw(st.integers(1, 3)) for _ in range(n_dims - 1)] + [layout.elements * draw(st.integers(1, 2))]
            name = draw(st.sampled_from([f"t{i}", f"blk.{i}.attn_q.weight", f"\u00fc{i}"]))
            tensors.append((name, ttype, tuple(shape), random_tensor_bytes(ttype, tuple(shape), rng)))
        doc = build_doc(metadata, tensors, alignment)
        doc.version = draw(st.sampled_from([3, 3, 2]))
        expected = {"metadata": {k: _as_read(t, v) for k, t, v in metadata},
                    "tensors": {n: (int(t), tuple(s), raw) for n, t, s, raw in tensors}}
        return doc, expected

    huge = st.sampled_from([2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1])
    small = st.integers(0, 64)

    @st.composite
    def mutate(draw, doc: Doc) -> Doc:
        """Apply 1-4 lies to a copy of doc."""
        doc = replace(doc, entries=[replace(e) for e in doc.entries],
                      infos=[replace(t, ne=list(t.ne)) for t in doc.infos])
        for _ in range(draw(st.integers(1, 4))):
            where = draw(st.sampled_from(["magic", "version", "counts", "entry", "entry", "entry", "alignment",
                                          "info", "info", "info", "data", "depth"]))
            if where == "magic":
                doc.magic = draw(st.one_of(st.binary(min_size=0, max_size=5),
                                           st.sampled_from([b"GGML", b"GGJT", b"FUGG", b"gguf"])))
            elif where == "version":
                doc.version = draw(st.one_of(st.sampled_from([0, 1, 4, 2**31, 2**32 - 1]), small))
            elif where == "counts":
                which = draw(st.sampled_from(["tensor_count", "kv_count"]))
                real = len(doc.infos if which == "tensor_count" else doc.entries)
                setattr(doc, which, draw(st.one_of(huge, st.integers(0, real + 3), st.just(max(0, real - 1)))))
            elif where == "entry":
                _mutate_entry(draw, doc, typed_value, huge)
            elif where == "alignment":
                vtype, value = draw(st.one_of(
                    st.tuples(st.sampled_from([V.UINT32, V.UINT64, V.UINT8]),
                              st.sampled_from([0, 1, 2, 3, 7, 16, 48, 64, 4096, 2**20, 2**21, 2**31, 2**32 - 1])
                              ).map(lambda tv: (tv[0], _fit(tv[0], tv[1]))),
                    st.tuples(st.just(V.INT32), st.sampled_from([-1, -32, 0, 32])),
                    st.tuples(st.just(V.FLOAT32), st.sampled_from([32.0, 0.5, float("nan")])),
                    st.tuples(st.just(V.STRING), st.just("32")), st.tuples(st.just(V.BOOL), st.booleans()),
                    st.tuples(st.just((ARRAY, V.UINT32)), st.just([32]))))
                doc.entries = [e for e in doc.entries if e.key != b"general.alignment"]
                doc.entries.append(entry("general.alignment", vtype, value))
                if draw(st.booleans()) and isinstance(value, int) and 0 < value <= 4096:
                    doc.alignment = value      # pad the data consistently with the claim
            elif where == "info" and doc.infos:
                _mutate_info(draw, doc, huge)
            elif where == "data":
                how = draw(st.sampled_from(["truncate", "tail", "pad", "nan"]))
                blob_len = len(doc.data)
                if how == "truncate":
                    doc.data = doc.data[:draw(st.integers(0, blob_len))]
                elif how == "tail":
                    doc.tail = draw(st.binary(max_size=64))
                elif how == "pad":
                    doc.pad = draw(st.integers(0, 300))
                elif blob_len >= 4:
                    at = draw(st.integers(0, blob_len - 4))
                    bad = draw(st.sampled_from([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x7c\x00\x7c",
                                                b"\xff\xff\xff\xff"]))
                    doc.data = doc.data[:at] + bad + doc.data[at + 4:]
            elif where == "depth":
                depth = draw(st.integers(7, 12))
                payload = struct.pack("<IQ", int(V.UINT8), 1) + b"\x01"
                for _ in range(depth):
                    payload = struct.pack("<IQ", int(ARRAY), 1) + payload
                doc.entries.insert(draw(st.integers(0, len(doc.entries))), Entry(b"deep", int(ARRAY), payload))
        return doc

    @st.composite
    def raw_blobs(draw):
        """(bytes, expected or None): a valid document, most often mutated, sometimes with
        byte flips on top."""
        if draw(st.integers(0, 3)) == 0:
            doc, expected = _cached_micro_doc(draw(st.sampled_from(["q8_0", "mixed", "f32"]))), None
        else:
            doc, expected = draw(valid_doc())
        if draw(st.integers(0, 9)) > 0:
            doc = draw(mutate(doc))
            expected = None
        blob = bytearray(doc.encode())
        if blob and draw(st.integers(0, 4)) == 0:
            for _ in range(draw(st.integers(1, 8))):
                blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
            expected = None
        return bytes(blob), expected

    # -- semantic lies on the micro model -----------------------------------------------

    META_KEYS = [k for k, _, _ in micro_metadata()] + [
        "qwen2.attention.key_length", "qwen2.attention.value_length", "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.chat_template", "general.alignment"]
    boundary = st.sampled_from([0, 1, 2, 3, 7, 16, 31, 32, 33, 48, 64, 2**24, 2**24 + 1, 2**31, 2**32 - 1])

    @st.composite
    def lying_value(draw):
        return draw(st.one_of(
            st.tuples(st.sampled_from([V.UINT32, V.UINT64, V.INT32, V.UINT8]), boundary).map(
                lambda tv: (tv[0], _fit(tv[0], tv[1]))),
            st.tuples(st.just(V.INT32), st.sampled_from([-1, -32, -2**31])),
            st.tuples(st.sampled_from([V.FLOAT32, V.FLOAT64]),
                      st.sampled_from([0.0, -1.0, 1e-6, 1e30, float("inf"), float("nan")])),
            typed_value()))

    @st.composite
    def model_lies(draw):
        """(bytes, list of the lies told): the micro model with 1-3 semantic lies."""
        variant = draw(st.sampled_from(["q8_0", "mixed", "f32"]))
        tied = draw(st.booleans())
        metadata = list(micro_metadata(tied))
        tensors = list(micro_tensors(variant, tied, seed=draw(st.integers(0, 3))))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        told = []
        for _ in range(draw(st.integers(1, 3))):
            what = draw(st.sampled_from(["set", "set", "drop_key", "drop_tensor", "reshape", "retype",
                                         "rename", "nonfinite", "tokenizer", "tokenizer"]))
            if what == "set":
                key = draw(st.sampled_from(META_KEYS))
                vtype, value = draw(lying_value())
                metadata = [m for m in metadata if m[0] != key] + [(key, vtype, value)]
                told.append(("set", key, value))
            elif what == "drop_key":
                key = draw(st.sampled_from([m[0] for m in metadata]))
                metadata = [m for m in metadata if m[0] != key]
                told.append(("drop_key", key))
            elif not tensors:
                continue
            elif what == "drop_tensor":
                i = draw(st.integers(0, len(tensors) - 1))
                told.append(("drop_tensor", tensors[i][0]))
                del tensors[i]
            elif what in ("reshape", "retype"):
                i = draw(st.integers(0, len(tensors) - 1))
                name, ttype, shape, _ = tensors[i]
                if what == "reshape":
                    shape = list(shape)
                    how = draw(st.sampled_from(["swap", "grow", "shrink", "add_dim", "drop_dim"]))
                    if how == "swap":
                        shape = shape[::-1]
                    elif how == "grow":
                        shape[0] += draw(st.sampled_from([1, 16, 32]))
                    elif how == "shrink" and shape[0] > 1:
                        shape[0] = max(1, shape[0] - draw(st.sampled_from([1, 16])))
                    elif how == "add_dim" and len(shape) < 4:
                        shape = [draw(st.integers(1, 2))] + shape
                    elif how == "drop_dim" and len(shape) > 1:
                        shape = shape[1:]
                else:
                    ttype = draw(st.sampled_from(list(BLOCK_LAYOUTS)))
                shape = tuple(shape)
                if shape[-1] % BLOCK_LAYOUTS[ttype].elements:
                    ttype = TensorType.F32
                tensors[i] = (name, ttype, shape, random_tensor_bytes(ttype, shape, rng))
                told.append((what, name, ttype.name, shape))
            elif what == "rename":
                i = draw(st.integers(0, len(tensors) - 1))
                new = draw(st.sampled_from(["blk.1.attn_q.weight", "output.weight", "token_embd.weight",
                                            "blk.0.attn_q.bias", "x"]))
                if new not in {t[0] for t in tensors}:
                    told.append(("rename", tensors[i][0], new))
                    tensors[i] = (new,) + tensors[i][1:]
            elif what == "nonfinite":
                i = draw(st.integers(0, len(tensors) - 1))
                name, ttype, shape, raw = tensors[i]
                tensors[i] = (name, ttype, shape, poison(raw, ttype, draw(st.integers(0, 2**31)),
                                                         draw(st.sampled_from(["nan", "inf", "-inf"]))))
                told.append(("nonfinite", name))
            elif what == "tokenizer":
                key, vtype, value = draw(tokenizer_lie())
                metadata = [m for m in metadata if m[0] != key] + [(key, vtype, value)]
                told.append(("tokenizer", key, value))
        metadata = [m for m in metadata if not (m[0] == "general.alignment" and m[2] != 32)]
        return build_doc(metadata, tensors).encode(), told

    @st.composite
    def tokenizer_lie(draw):
        """(key, vtype, value): a malformed tokenizer.ggml.* field."""
        tokens, types, merges = micro_vocab()
        S, I32 = V.STRING, V.INT32
        choice = draw(st.sampled_from(["tokens", "types", "merges", "ids", "model", "bool", "any"]))
        if choice == "tokens":
            value = draw(st.one_of(
                st.just([]), st.just(tokens[:-1]), st.just(tokens + ["extra"]), st.just(tokens[:5] * 3 + tokens[:1]),
                st.lists(st.text(max_size=4), min_size=16, max_size=16),
                st.just(["" for _ in tokens]), st.just([t.upper() for t in tokens])))
            return "tokenizer.ggml.tokens", (ARRAY, S), value
        if choice == "types":
            value = draw(st.one_of(st.lists(st.integers(-5, 10), max_size=20),
                                   st.just([3] * len(tokens)), st.just(types[:3])))
            return "tokenizer.ggml.token_type", (ARRAY, I32), value
        if choice == "merges":
            bad = draw(st.lists(st.one_of(st.sampled_from(["a b", "a  b", "ab", " a b", "a b ", "x y", "ab cd",
                                                           "\u0120 a", "", " ", "a b c", "<|im_end|> a"]),
                                          st.text(max_size=5)), max_size=8))
            return "tokenizer.ggml.merges", (ARRAY, S), bad
        if choice == "ids":
            key = draw(st.sampled_from(["bos_token_id", "eos_token_id", "padding_token_id", "eot_token_id",
                                        "eom_token_id"]))
            vtype, value = draw(st.one_of(st.tuples(st.just(V.UINT32), boundary.map(lambda v: v & 0xFFFFFFFF)),
                                          st.tuples(st.just(V.INT32), st.sampled_from([-1, -2])),
                                          st.tuples(st.just(V.STRING), st.just("1")),
                                          st.tuples(st.just(V.FLOAT32), st.just(1.0))))
            return "tokenizer.ggml." + key, vtype, value
        if choice == "model":
            key = draw(st.sampled_from(["model", "pre"]))
            return "tokenizer.ggml." + key, S, draw(st.sampled_from(["llama", "bert", "", "gpt2", "qwen2", "GPT2"]))
        if choice == "bool":
            vtype, value = draw(st.one_of(st.tuples(st.just(V.UINT8), st.integers(0, 255)),
                                          st.tuples(st.just(V.BOOL), st.booleans())))
            return "tokenizer.ggml.add_bos_token", vtype, value
        key = draw(st.sampled_from(["tokens", "token_type", "merges", "model", "pre", "bos_token_id"]))
        vtype, value = draw(typed_value())
        return "tokenizer.ggml." + key, vtype, value

    @st.composite
    def tokenizer_metadata(draw):
        metadata = {k: v for k, _, v in micro_metadata()}
        for _ in range(draw(st.integers(1, 3))):
            key, _, value = draw(tokenizer_lie())
            if draw(st.integers(0, 5)) == 0:
                metadata.pop(key, None)
            else:
                metadata[key] = value
        return metadata

    return {"raw": raw_blobs(), "model": model_lies(), "tokenizer": tokenizer_metadata()}


def _fit(vtype, value: int) -> int:
    """An integer wrapped into the range of an integer value type (as a C cast would)."""
    fmt = SCALAR_FORMATS[vtype]
    bits = struct.calcsize(fmt) * 8
    return struct.unpack("<" + fmt, struct.pack("<" + fmt.upper(), value & ((1 << bits) - 1)))[0]


def _as_read(vtype, value):
    """What the reader gives back for a value written as vtype (f32 rounding, bools)."""
    if isinstance(vtype, tuple):
        return [_as_read(vtype[1], v) for v in value]
    if vtype == ValueType.FLOAT32:
        return struct.unpack("<f", struct.pack("<f", value))[0]
    if vtype == ValueType.BOOL:
        return bool(value)
    return value


_MICRO_CACHE = {}


def _cached_micro_doc(variant: str) -> Doc:
    if variant not in _MICRO_CACHE:
        _MICRO_CACHE[variant] = micro_model_doc(variant)
    return _MICRO_CACHE[variant]


def _mutate_entry(draw, doc: Doc, typed_value, huge) -> None:
    from hypothesis import strategies as st
    V = ValueType
    if not doc.entries:
        doc.entries.append(entry("general.name", V.STRING, "x"))
    i = draw(st.integers(0, len(doc.entries) - 1))
    e = doc.entries[i]
    how = draw(st.sampled_from(["tag", "confuse", "cut", "grow", "strlen", "arrtype", "arrcount", "key_utf8",
                                "key_len", "duplicate", "delete", "value_utf8", "empty_key"]))
    if how == "tag":
        e.tag = draw(st.one_of(st.integers(0, 16), huge))
    elif how == "confuse":            # the value of one type under another type's tag
        _, value = draw(typed_value())
        vtype = draw(typed_value())[0]
        try:
            e.payload = encode_value(vtype, value)
        except (struct.error, TypeError, AttributeError, OverflowError):
            e.payload = draw(st.binary(max_size=24))
    elif how == "cut":
        e.payload = e.payload[:draw(st.integers(0, len(e.payload)))]
    elif how == "grow":
        e.payload = e.payload + draw(st.binary(min_size=1, max_size=16))
    elif how == "strlen" and len(e.payload) >= 8:
        e.payload = struct.pack("<Q", _u64(draw(st.one_of(huge, st.integers(0, 64))))) + e.payload[8:]
    elif how == "arrtype" and len(e.payload) >= 4:
        e.payload = struct.pack("<I", draw(st.one_of(st.integers(0, 16), huge)) & 0xFFFFFFFF) + e.payload[4:]
    elif how == "arrcount" and len(e.payload) >= 12:
        e.payload = e.payload[:4] + struct.pack("<Q", _u64(draw(st.one_of(huge, st.integers(0, 64))))) + e.payload[12:]
    elif how == "key_utf8":
        e.key = draw(st.sampled_from([b"\xff", b"a\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"k\x00ey"]))
    elif how == "key_len":
        e.key_len = draw(st.one_of(huge, st.integers(0, 80), st.just(65536)))
    elif how == "duplicate":
        doc.entries.insert(draw(st.integers(0, len(doc.entries))), replace(e))
    elif how == "delete":
        del doc.entries[i]
    elif how == "value_utf8":
        e.tag, e.payload = int(V.STRING), encode_value(V.STRING, draw(st.sampled_from([b"\xff\xfe", b"\xed\xb0\x80"])))
    elif how == "empty_key":
        e.key = b""


def _mutate_info(draw, doc: Doc, huge) -> None:
    from hypothesis import strategies as st
    i = draw(st.integers(0, len(doc.infos) - 1))
    t = doc.infos[i]
    how = draw(st.sampled_from(["n_dims", "dim", "type", "offset", "name", "duplicate", "overlap", "drop"]))
    if how == "n_dims":
        t.n_dims = draw(st.one_of(st.sampled_from([0, 5, 2**32 - 1]), st.just(len(t.ne) + 1), st.just(max(0, len(t.ne) - 1))))
    elif how == "dim":
        j = draw(st.integers(0, len(t.ne) - 1))
        t.ne[j] = draw(st.one_of(huge, st.sampled_from([0, 1, 2, 31, 33, 255, 257]), st.integers(0, 600)))
    elif how == "type":
        t.type = draw(st.one_of(st.sampled_from([4, 5, 16, 17, 20, 29, 31, 39, 255]), huge,
                                st.sampled_from([int(x) for x in BLOCK_LAYOUTS])))
    elif how == "offset":
        t.offset = draw(st.one_of(huge, st.sampled_from([t.offset + 1, t.offset + doc.alignment, len(doc.data),
                                                         len(doc.data) + 32, t.offset - doc.alignment]),
                                  st.integers(0, len(doc.data) + 64)))
    elif how == "name":
        t.name = draw(st.sampled_from([b"", b"\xff", b"\xc3", b"x" * 70000]))
    elif how == "duplicate":
        doc.infos.insert(draw(st.integers(0, len(doc.infos))), replace(t, ne=list(t.ne)))
    elif how == "overlap" and len(doc.infos) > 1:
        other = doc.infos[draw(st.integers(0, len(doc.infos) - 1))]
        t.offset = other.offset
    elif how == "drop":
        del doc.infos[i]


def poison(raw: bytes, ttype: TensorType, at: int, kind: str = "nan") -> bytes:
    """raw with one NaN/Inf put where it matters: a float element or a block's scale."""
    value = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}[kind]
    buf = bytearray(raw)
    if ttype in (TensorType.F32,):
        i = at % (len(buf) // 4) * 4
        buf[i:i + 4] = struct.pack("<f", value)
    elif ttype in (TensorType.F16,):
        i = at % (len(buf) // 2) * 2
        buf[i:i + 2] = np.float16(value).tobytes()
    elif ttype == TensorType.BF16:
        i = at % (len(buf) // 2) * 2
        buf[i:i + 2] = struct.pack("<f", value)[2:]
    else:
        dtype, fields = _scale_fields()[ttype]
        size = BLOCK_LAYOUTS[ttype].nbytes
        block = at % (len(buf) // size)
        item = np.dtype(dtype).itemsize
        i = block * size + fields[0] * item
        buf[i:i + item] = np.float16(value).tobytes() if item == 2 else struct.pack("<f", value)
    return bytes(buf)


# --- running -----------------------------------------------------------------------------

PROPERTIES = ("raw", "model", "tokenizer")


def make_checks(outcomes: dict | None = None):
    """name -> a function of one drawn example that asserts the property. outcomes, if
    given, counts what happened: (property, outcome) -> examples."""
    outcomes = {} if outcomes is None else outcomes

    def count(name, outcome):
        outcomes[(name, outcome)] = outcomes.get((name, outcome), 0) + 1

    def raw(example):
        blob, expected = example
        g = check_reader(blob, expected)
        count("raw", "rejected" if g is None else "parsed")
        if g is not None and g.metadata.get("general.architecture") == "qwen2":
            count("raw", "load " + check_load(blob, generate=False).split(": ")[0])

    def model(example):
        blob, told = example
        outcome = check_load(blob)
        count("model", ": ".join(outcome.split(": ")[:2]))
        if len(told) == 1 and told[0][0] in ("nonfinite", "drop_tensor") and told[0][1] != "output.weight":
            # one lie that must be caught, by an error that names the tensor
            assert outcome.startswith("rejected") and told[0][1] in outcome, (told, outcome)

    def tokenizer(metadata):
        count("tokenizer", check_tokenizer_metadata(metadata))

    return {"raw": raw, "model": model, "tokenizer": tokenizer}


def run(examples: int, only=None, seed=None, quiet=False) -> dict:
    """Run the properties with `examples` examples in all (shared out by weight); returns
    name -> (examples, seconds). Raises on the first failure (Hypothesis prints it)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    outcomes = {}
    strategies, checks = _strategies(), make_checks(outcomes)
    weights = {"raw": 6, "model": 3, "tokenizer": 1}
    names = [n for n in PROPERTIES if not only or n in only]
    total_w = sum(weights[n] for n in names)
    out = {}
    for name in names:
        n = max(1, examples * weights[name] // total_w)
        conf = settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                        print_blob=True)
        test = conf(given(strategies[name])(checks[name]))
        if seed is not None:
            test = hseed(seed)(test)
        start = time.perf_counter()
        test()
        out[name] = (n, time.perf_counter() - start)
        if not quiet:
            seen = ", ".join(f"{o} {c}" for (p, o), c in sorted(outcomes.items()) if p == name)
            print(f"{name}: {n} examples ok ({out[name][1]:.1f} s, {n / max(out[name][1], 1e-9):.0f}/s): {seen}",
                  flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.gguf_mutator", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples in all, shared out by weight")
    parser.add_argument("--only", default=None, help="comma-separated properties: " + ",".join(PROPERTIES))
    parser.add_argument("--seed", type=int, default=None, help="reproduce a run")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else None
    start = time.perf_counter()
    results = run(args.examples, only, args.seed)
    total = sum(n for n, _ in results.values())
    print(f"all: {total} examples, no failure ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
