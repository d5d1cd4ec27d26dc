"""GGUF reader/writer: round trips (Hypothesis) and every kind of malformed file."""
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ignis.errors import GGUFError
from ignis.gguf import GGUFFile, TensorType, ValueType, write_gguf
from ignis.gguf.quant import quantize_q8_0

INT_RANGES = {
    ValueType.UINT8: (0, 2**8 - 1), ValueType.INT8: (-2**7, 2**7 - 1),
    ValueType.UINT16: (0, 2**16 - 1), ValueType.INT16: (-2**15, 2**15 - 1),
    ValueType.UINT32: (0, 2**32 - 1), ValueType.INT32: (-2**31, 2**31 - 1),
    ValueType.UINT64: (0, 2**64 - 1), ValueType.INT64: (-2**63, 2**63 - 1),
}


def scalar_values(vtype):
    if vtype in INT_RANGES:
        return st.integers(*INT_RANGES[vtype])
    if vtype == ValueType.BOOL:
        return st.booleans()
    if vtype == ValueType.FLOAT32:
        return st.floats(width=32, allow_nan=False)
    if vtype == ValueType.FLOAT64:
        return st.floats(allow_nan=False)
    return st.text(max_size=20)


SCALAR_TYPES = [t for t in ValueType if t != ValueType.ARRAY]


@st.composite
def typed_values(draw, depth=0):
    """(value, type descriptor) of any GGUF type, arrays nested up to two levels."""
    if depth < 2 and draw(st.booleans()):
        item = draw(typed_values(depth=depth + 1))
        item_type = item[1]
        values = [item[0]] + [draw(_values_of(item_type)) for _ in range(draw(st.integers(0, 4)))]
        return values, (ValueType.ARRAY, item_type)
    vtype = draw(st.sampled_from(SCALAR_TYPES))
    return draw(scalar_values(vtype)), vtype


def _values_of(desc):
    if isinstance(desc, tuple):
        return st.lists(_values_of(desc[1]), max_size=3)
    return scalar_values(desc)


tensor_specs = st.lists(
    st.tuples(st.sampled_from(["f32", "q8_0", "f16"]), st.integers(1, 3), st.integers(1, 3)),
    max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meta=st.dictionaries(st.text(min_size=1, max_size=12), typed_values(), max_size=8),
       specs=tensor_specs, alignment=st.sampled_from([8, 32, 64]), seed=st.integers(0, 2**16))
def test_write_read_round_trip(tmp_path_factory, meta, specs, alignment, seed):
    rng = np.random.default_rng(seed)
    metadata = {k: v for k, (v, _) in meta.items()}
    types = {k: t for k, (_, t) in meta.items()}
    metadata["general.alignment"] = alignment
    types["general.alignment"] = ValueType.UINT32
    tensors = []
    for i, (kind, rows, blocks) in enumerate(specs):
        shape = (rows, 32 * blocks)
        x = rng.standard_normal(shape).astype(np.float32)
        if kind == "f32":
            tensors.append((f"t{i}", TensorType.F32, shape, x))
        elif kind == "f16":
            tensors.append((f"t{i}", TensorType.F16, shape, x.astype(np.float16)))
        else:
            tensors.append((f"t{i}", TensorType.Q8_0, shape, quantize_q8_0(x)))
    path = tmp_path_factory.mktemp("rt") / "m.gguf"
    write_gguf(path, metadata, tensors, types=types)
    with GGUFFile(path) as f:
        assert f.version == 3
        assert f.metadata_types == types
        for key, value in metadata.items():
            assert f.metadata[key] == value, key
        assert list(f.tensors) == [t[0] for t in tensors]
        for name, ttype, shape, data in tensors:
            info = f.tensors[name]
            assert info.type == ttype and info.shape == shape
            assert info.offset % alignment == 0
            assert np.array_equal(info.data, np.ascontiguousarray(data).reshape(-1).view(np.uint8))


def _valid_file(tmp_path) -> bytes:
    path = tmp_path / "ok.gguf"
    x = np.arange(64, dtype=np.float32).reshape(2, 32)
    write_gguf(path, {"general.architecture": "qwen2", "a.list": [1, 2, 3], "s": "hé"},
               [("w", TensorType.F32, (2, 32), x), ("q", TensorType.Q8_0, (2, 32), quantize_q8_0(x))])
    return path.read_bytes()


def _open_bytes(tmp_path, data: bytes):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    return GGUFFile(path)


def test_valid_file_reads(tmp_path):
    data = _valid_file(tmp_path)
    f = _open_bytes(tmp_path, data)
    assert f.metadata["s"] == "hé" and f.metadata["a.list"] == [1, 2, 3]
    assert np.array_equal(f.tensors["w"].data.view(np.float32).reshape(2, 32), np.arange(64, dtype=np.float32).reshape(2, 32))


@pytest.mark.parametrize("cut", [0, 3, 4, 8, 16, 24, 30, 60, 100, -40])
def test_truncated_file_is_a_clear_error(tmp_path, cut):
    data = _valid_file(tmp_path)
    with pytest.raises(GGUFError, match="bad.gguf"):
        _open_bytes(tmp_path, data[:cut])


def test_bad_magic_version_and_counts(tmp_path):
    data = bytearray(_valid_file(tmp_path))
    with pytest.raises(GGUFError, match="not a GGUF file"):
        _open_bytes(tmp_path, b"GGML" + bytes(data[4:]))
    with pytest.raises(GGUFError, match="version 7"):
        _open_bytes(tmp_path, bytes(data[:4]) + struct.pack("<I", 7) + bytes(data[8:]))
    with pytest.raises(GGUFError, match="tensor_count"):
        _open_bytes(tmp_path, bytes(data[:8]) + struct.pack("<Q", 2**62) + bytes(data[16:]))
    with pytest.raises(GGUFError, match="metadata_kv_count"):
        _open_bytes(tmp_path, bytes(data[:16]) + struct.pack("<Q", 2**40) + bytes(data[24:]))


def _header(n_tensors, kvs: bytes, n_kv, tensor_infos: bytes = b"") -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + kvs + tensor_infos


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def test_absurd_string_and_array_lengths(tmp_path):
    with pytest.raises(GGUFError, match="exceeds the limit"):
        _open_bytes(tmp_path, _header(0, struct.pack("<Q", 2**63) + b"key" + b"\0" * 64, 1))
    arr = _s("k") + struct.pack("<IIQ", ValueType.ARRAY, ValueType.UINT64, 2**61)
    with pytest.raises(GGUFError, match="cannot fit"):
        _open_bytes(tmp_path, _header(0, arr + b"\0" * 64, 1))
    bad_type = _s("k") + struct.pack("<I", 99)
    with pytest.raises(GGUFError, match="unknown metadata value type 99"):
        _open_bytes(tmp_path, _header(0, bad_type + b"\0" * 64, 1))


def test_string_arrays_read_whole_and_refuse_bad_items(tmp_path):
    """Arrays of strings (a vocabulary) take their own fast path: the items read back, and an
    item that is not valid UTF-8 or runs past the end is the per-item error naming its index."""
    def arr(*items: bytes) -> bytes:
        return _s("v") + struct.pack("<IIQ", ValueType.ARRAY, ValueType.STRING, len(items)) + b"".join(items)
    words = ["a", "", "hé", "日本", "x" * 300]
    f = _open_bytes(tmp_path, _header(0, arr(*(_s(w) for w in words)), 1))
    assert f.metadata["v"] == words
    with pytest.raises(GGUFError, match=r"'v'\[1\] at byte \d+: string is not valid UTF-8"):
        _open_bytes(tmp_path, _header(0, arr(_s("ok"), struct.pack("<Q", 2) + b"\xff\xfe"), 1))
    with pytest.raises(GGUFError, match=r"'v'\[1\] at byte \d+: needs 50 bytes"):
        _open_bytes(tmp_path, _header(0, arr(_s("ok"), struct.pack("<Q", 50) + b"short") + b"\0" * 8, 1))


def _tensor_info(name, ne, ttype, offset) -> bytes:
    return _s(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", ttype, offset)


def _file_with_tensors(infos, data_bytes=256) -> bytes:
    head = _header(len(infos), b"", 0, b"".join(infos))
    head += b"\0" * (-len(head) % 32)
    return head + b"\1" * data_bytes


@pytest.mark.parametrize("infos, message", [
    ([_tensor_info("t", [32], 77, 0)], "type 77 is not a GGML tensor type"),
    ([_tensor_info("t", [32, 2], 0, 8)], "not a multiple of the alignment"),
    ([_tensor_info("t", [32, 2**40], 0, 0)], "more than the whole file"),
    ([_tensor_info("t", [32, 1], 0, 0)], "past the end"),
    ([_tensor_info("t", [32], 0, 0), _tensor_info("u", [32], 0, 64)], "overlap"),
    ([_tensor_info("t", [32], 0, 0), _tensor_info("t", [8], 0, 128)], "duplicate tensor"),
    ([_tensor_info("t", [33], TensorType.Q8_0, 0)], "block size"),
    ([_tensor_info("t", [1, 1, 1, 1, 1], 0, 0)], "dimensions"),
    ([_tensor_info("t", [0], 0, 0)], "size 0"),
])
def test_malformed_tensor_infos(tmp_path, infos, message):
    with pytest.raises(GGUFError, match=message):
        _open_bytes(tmp_path, _file_with_tensors(infos, data_bytes=256 if message != "past the end" else 100))


def test_bad_alignment(tmp_path):
    kv = _s("general.alignment") + struct.pack("<II", ValueType.UINT32, 24)
    with pytest.raises(GGUFError, match="power of two"):
        _open_bytes(tmp_path, _header(0, kv, 1))


def test_not_a_file(tmp_path):
    with pytest.raises(GGUFError, match="directory"):
        GGUFFile(tmp_path)
    with pytest.raises(GGUFError, match="cannot open"):
        GGUFFile(tmp_path / "missing.gguf")
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(GGUFError, match="empty"):
        GGUFFile(tmp_path / "empty.gguf")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_corruption_never_crashes(tmp_path_factory, data):
    """Flipping bytes of a valid file either still parses or raises GGUFError, nothing else."""
    raw = bytearray(_valid_file(tmp_path_factory.mktemp("c")))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    path = tmp_path_factory.mktemp("c") / "x.gguf"
    path.write_bytes(bytes(raw[:cut]))
    try:
        GGUFFile(path).close()
    except GGUFError:
        pass


@pytest.mark.real
def test_real_model_header(real_model_path):
    with GGUFFile(real_model_path) as f:
        assert f.architecture == "qwen2" and f.version == 3
        assert len(f.tensors) == 291
        assert f.metadata["qwen2.block_count"] == 24
        assert {t.type.name for t in f.tensors.values()} == {"Q5_0", "Q8_0", "Q4_K", "Q6_K", "F32"}
        assert f.tensors["token_embd.weight"].shape == (151936, 896)
