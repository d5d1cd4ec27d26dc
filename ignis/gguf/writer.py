"""GGUF writer (version 3): metadata of every value type and aligned tensor data.

reader(writer(x)) == x. Tensor data may be given as arrays or as zero-argument callables
that produce them, so `quantize` can stream a large model through without holding it."""
import os
import struct
from typing import Callable, Iterable, Union

import numpy as np

from ignis.errors import GGUFError
from ignis.gguf.reader import DEFAULT_ALIGNMENT, GGUF_MAGIC
from ignis.gguf.types import BLOCK_LAYOUTS, SCALAR_FORMATS, TensorType, ValueType

TensorData = Union[np.ndarray, Callable[[], np.ndarray]]


def infer_value_type(value):
    """The GGUF type a plain Python value is written as when no type is given."""
    if isinstance(value, bool):
        return ValueType.BOOL
    if isinstance(value, (int, np.integer)):
        value = int(value)
        if 0 <= value < 1 << 32:
            return ValueType.UINT32
        if -(1 << 31) <= value < 0:
            return ValueType.INT32
        return ValueType.INT64 if value < 0 or value < 1 << 63 else ValueType.UINT64
    if isinstance(value, (float, np.floating)):
        return ValueType.FLOAT32
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        if not items:
            return (ValueType.ARRAY, ValueType.UINT32)
        kinds = [infer_value_type(v) for v in items]
        if any(isinstance(k, tuple) for k in kinds):
            return (ValueType.ARRAY, kinds[0])
        # one item type for the whole array: the widest of what the items need
        if ValueType.STRING in kinds:
            return (ValueType.ARRAY, ValueType.STRING)
        if ValueType.FLOAT32 in kinds:
            return (ValueType.ARRAY, ValueType.FLOAT32)
        if all(k == ValueType.BOOL for k in kinds):
            return (ValueType.ARRAY, ValueType.BOOL)
        for wide in (ValueType.INT64, ValueType.UINT64, ValueType.INT32):
            if wide in kinds:
                return (ValueType.ARRAY, wide)
        return (ValueType.ARRAY, ValueType.UINT32)
    raise GGUFError(f"cannot write metadata value of Python type {type(value).__name__}")


def _encode_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _encode_value(value, vtype) -> bytes:
    if isinstance(vtype, tuple):
        item_type = vtype[1]
        items = list(value)
        head = struct.pack("<IQ", int(item_type if not isinstance(item_type, tuple) else ValueType.ARRAY), len(items))
        if not isinstance(item_type, tuple) and item_type in SCALAR_FORMATS:
            fmt = "<%d%s" % (len(items), SCALAR_FORMATS[item_type])
            return head + struct.pack(fmt, *items)
        return head + b"".join(_encode_value(v, item_type) for v in items)
    if vtype == ValueType.STRING:
        return _encode_string(value)
    return struct.pack("<" + SCALAR_FORMATS[vtype], value)


def _type_tag(vtype) -> int:
    return int(ValueType.ARRAY if isinstance(vtype, tuple) else vtype)


def tensor_nbytes(ttype: TensorType, shape) -> int:
    layout = BLOCK_LAYOUTS[ttype]
    if shape[-1] % layout.elements:
        raise GGUFError(f"row length {shape[-1]} is not a multiple of the {ttype.name} block size {layout.elements}")
    return int(np.prod(shape, dtype=np.int64)) // layout.elements * layout.nbytes


def _tensor_bytes(name: str, ttype: TensorType, shape, data: np.ndarray) -> np.ndarray:
    """The raw little-endian bytes of one tensor, checked against its declared size."""
    if ttype == TensorType.F32 and data.dtype != np.uint8:
        data = np.ascontiguousarray(data, dtype="<f4")
    elif ttype == TensorType.F16 and data.dtype != np.uint8:
        data = np.ascontiguousarray(data, dtype="<f2")
    raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    expected = tensor_nbytes(ttype, shape)
    if raw.size != expected:
        raise GGUFError(f"tensor {name!r}: {raw.size} bytes given, {ttype.name} {tuple(shape)} needs {expected}")
    return raw


def write_gguf(path, metadata: dict, tensors: Iterable, *, types: dict | None = None,
               alignment: int | None = None, progress: Callable[[int, int], None] | None = None) -> None:
    """Write a GGUF v3 file atomically (a temp file renamed into place).

    metadata: key -> value; types: key -> ValueType (or (ARRAY, item type)) to force a type.
    tensors: (name, TensorType, numpy-order shape, data) with data an array or a callable.
    progress: called with (bytes written, total bytes) after each tensor."""
    path = os.fspath(path)
    types = dict(types or {})
    metadata = dict(metadata)
    if alignment is None:
        alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT))
    tensors = [(name, TensorType(t), tuple(int(d) for d in shape), data) for name, t, shape, data in tensors]

    header = bytearray(GGUF_MAGIC)
    header += struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, value in metadata.items():
        vtype = types[key] if key in types else infer_value_type(value)
        header += _encode_string(key) + struct.pack("<I", _type_tag(vtype)) + _encode_value(value, vtype)
    offsets, cursor = [], 0
    for name, ttype, shape, _ in tensors:
        offsets.append(cursor)
        header += _encode_string(name) + struct.pack("<I", len(shape))
        header += struct.pack("<%dQ" % len(shape), *reversed(shape))
        header += struct.pack("<IQ", int(ttype), cursor)
        cursor += -(-tensor_nbytes(ttype, shape) // alignment) * alignment
    header += b"\0" * (-len(header) % alignment)

    tmp = path + ".partial"
    try:
        with open(tmp, "wb") as out:
            out.write(header)
            written = 0
            for (name, ttype, shape, data), offset in zip(tensors, offsets):
                raw = _tensor_bytes(name, ttype, shape, data() if callable(data) else data)
                out.write(raw.tobytes() if not raw.flags.c_contiguous else memoryview(raw))
                pad = -raw.size % alignment
                out.write(b"\0" * pad)
                written += raw.size + pad
                if progress:
                    progress(written, cursor)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
