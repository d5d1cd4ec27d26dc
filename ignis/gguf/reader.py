"""GGUF reader: mmap the file read-only, parse and validate everything, hand out zero-copy views.

Every count, length, offset and size is checked against the file before it is used, so a
malformed file raises GGUFError (naming the file, the field and what was expected) and never
an IndexError, MemoryError, OverflowError or a crash."""
import mmap
import os
import stat
import struct
from dataclasses import dataclass

import numpy as np

from ignis.errors import GGUFError
from ignis.gguf._strings import read_strings
from ignis.gguf.types import BLOCK_LAYOUTS, SCALAR_FORMATS, TensorType, ValueType, type_label

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_ARRAY_DEPTH = 8          # nested arrays deeper than this are surely hostile
MAX_KEY_BYTES = 65535        # keys are short identifiers in every real file


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: its name, type, numpy-order shape, absolute file offset and a zero-copy view.
    `type` is a TensorType, or the raw id (an int) of a type GGML does not define when the file
    was opened with allow_unknown_types (its nbytes is then the gap to the next tensor)."""
    name: str
    type: TensorType
    shape: tuple
    offset: int
    nbytes: int
    data: np.ndarray  # uint8 view of the tensor's bytes in the mmap (read-only)

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def ne(self) -> tuple:
        """GGUF dimension order (fastest-varying first)."""
        return tuple(reversed(self.shape))


class _Cursor:
    """Bounds-checked little-endian reads from a buffer; errors name the field being read."""

    def __init__(self, buf, path: str):
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.path = path

    def fail(self, field: str, expected: str) -> GGUFError:
        return GGUFError(f"{self.path}: {field} at byte {self.pos}: {expected}")

    def need(self, n: int, field: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(field, f"needs {n} bytes but the file ends at byte {self.size} (truncated?)")

    def scalar(self, fmt: str, field: str):
        n = struct.calcsize("<" + fmt)
        self.need(n, field)
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self, field: str, limit: int | None = None) -> str:
        length = self.scalar("Q", field + " (string length)")
        if limit is not None and length > limit:
            raise self.fail(field, f"string length {length} exceeds the limit of {limit}")
        self.need(length, field)
        raw = bytes(self.buf[self.pos:self.pos + length])
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(field, "string is not valid UTF-8") from None

    def strings(self, count: int, field: str) -> list:
        """An array's count strings, read in C (a vocabulary has 150k of them). An item that is
        not a whole valid string goes through string(), which raises its usual error."""
        out, self.pos = read_strings(self.buf, self.pos, count)
        if len(out) < count:
            self.string(f"{field}[{len(out)}]")      # raises
        return out

    def array_of(self, dtype: str, count: int, field: str) -> np.ndarray:
        item = np.dtype(dtype).itemsize
        self.need(count * item, field)
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += count * item
        return out



_NUMPY_OF = {
    ValueType.UINT8: "<u1", ValueType.INT8: "<i1", ValueType.UINT16: "<u2", ValueType.INT16: "<i2",
    ValueType.UINT32: "<u4", ValueType.INT32: "<i4", ValueType.FLOAT32: "<f4", ValueType.BOOL: "<u1",
    ValueType.UINT64: "<u8", ValueType.INT64: "<i8", ValueType.FLOAT64: "<f8",
}


def _value_type(cur: _Cursor, field: str) -> ValueType:
    raw = cur.scalar("I", field)
    try:
        return ValueType(raw)
    except ValueError:
        raise cur.fail(field, f"unknown metadata value type {raw} (expected 0..12)") from None


def _read_value(cur: _Cursor, vtype: ValueType, field: str, depth: int = 0):
    """Read one metadata value; returns (python value, type descriptor)."""
    if vtype == ValueType.STRING:
        return cur.string(field), vtype
    if vtype != ValueType.ARRAY:
        value = cur.scalar(SCALAR_FORMATS[vtype], field)
        if vtype == ValueType.BOOL and not isinstance(value, bool):
            value = bool(value)
        return value, vtype
    if depth >= MAX_ARRAY_DEPTH:
        raise cur.fail(field, f"arrays nested deeper than {MAX_ARRAY_DEPTH}")
    item_type = _value_type(cur, field + " (array item type)")
    count = cur.scalar("Q", field + " (array length)")
    # every item takes at least one byte (strings and arrays at least eight), so a count
    # larger than the rest of the file is a lie we catch before allocating anything
    min_item = 8 if item_type in (ValueType.STRING, ValueType.ARRAY) else struct.calcsize(SCALAR_FORMATS[item_type])
    if count * min_item > cur.size - cur.pos:
        raise cur.fail(field, f"array of {count} items cannot fit in the {cur.size - cur.pos} bytes left")
    if item_type == ValueType.STRING:
        return cur.strings(count, field), (ValueType.ARRAY, item_type)
    if item_type in _NUMPY_OF:
        items = cur.array_of(_NUMPY_OF[item_type], count, field).tolist()
        if item_type == ValueType.BOOL:
            items = [bool(v) for v in items]
        return items, (ValueType.ARRAY, item_type)
    items, sub = [], item_type
    for i in range(count):
        value, sub = _read_value(cur, item_type, f"{field}[{i}]", depth + 1)
        items.append(value)
    return items, (ValueType.ARRAY, sub)


class GGUFFile:
    """A parsed GGUF file. `metadata` maps keys to Python values (arrays as lists),
    `metadata_types` to their GGUF value types, `tensors` names to TensorInfo (file order)."""

    def __init__(self, path, *, allow_unknown_types: bool = False):
        self.path = os.fspath(path)
        self._mmap = None
        self._allow_unknown = allow_unknown_types      # `ignis inspect` lists such tensors too
        if os.path.isdir(self.path):
            raise GGUFError(f"{self.path}: is a directory, expected a GGUF file")
        try:
            # a FIFO or a device would block open() or mmap(): only regular files are read
            if os.path.exists(self.path) and not stat.S_ISREG(os.stat(self.path).st_mode):
                raise GGUFError(f"{self.path}: is not a regular file, expected a GGUF file")
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    raise GGUFError(f"{self.path}: file is empty, expected a GGUF file")
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise GGUFError(f"{self.path}: cannot open: {e.strerror or e}") from None
        try:
            self._parse()
        except GGUFError:
            self.close()
            raise

    @classmethod
    def from_bytes(cls, data, name: str = "<bytes>") -> "GGUFFile":
        """Parse a GGUF image held in memory (bytes, bytearray or memoryview; copied once
        unless it is bytes). Same validation and errors as reading a file; `name` stands
        for the path in messages."""
        self = cls.__new__(cls)
        self.path = str(name)
        self._allow_unknown = False
        self._mmap = data if isinstance(data, bytes) else bytes(data)
        if not self._mmap:
            raise GGUFError(f"{self.path}: file is empty, expected a GGUF file")
        self._parse()
        return self

    # -- parsing ---------------------------------------------------------------------------

    def _parse(self) -> None:
        cur = _Cursor(self._mmap, self.path)
        cur.need(4, "magic")
        magic = bytes(self._mmap[0:4])
        if magic != GGUF_MAGIC:
            raise GGUFError(f"{self.path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
        cur.pos = 4
        self.version = cur.scalar("I", "version")
        if self.version not in SUPPORTED_VERSIONS:
            raise cur.fail("version", f"GGUF version {self.version} is not supported (expected 2 or 3)")
        n_tensors = cur.scalar("Q", "tensor_count")
        n_kv = cur.scalar("Q", "metadata_kv_count")
        # a key-value pair is at least 8+1+4+1 bytes, a tensor info at least 8+1+4+8+4+8
        if n_kv * 14 > cur.size - cur.pos:
            raise cur.fail("metadata_kv_count", f"{n_kv} pairs cannot fit in a {cur.size}-byte file")
        if n_tensors * 33 > cur.size - cur.pos:
            raise cur.fail("tensor_count", f"{n_tensors} tensors cannot fit in a {cur.size}-byte file")

        self.metadata, self.metadata_types = {}, {}
        for i in range(n_kv):
            key = cur.string(f"metadata key #{i}", limit=MAX_KEY_BYTES)
            if key in self.metadata:
                raise cur.fail(f"metadata key {key!r}", "duplicate key")
            vtype = _value_type(cur, f"metadata {key!r} (value type)")
            value, desc = _read_value(cur, vtype, f"metadata {key!r}")
            self.metadata[key] = value
            self.metadata_types[key] = desc

        self.alignment = self._alignment(cur)
        infos = [self._read_tensor_info(cur, i) for i in range(n_tensors)]
        self.data_offset = -(-cur.pos // self.alignment) * self.alignment
        self.tensors = self._place_tensors(infos)

    def _alignment(self, cur: _Cursor) -> int:
        alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if (not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0
                or alignment & (alignment - 1) or alignment > 1 << 20):
            raise GGUFError(f"{self.path}: general.alignment is {alignment!r}, expected a power of two")
        return alignment

    def _read_tensor_info(self, cur: _Cursor, index: int):
        name = cur.string(f"tensor #{index} name", limit=MAX_KEY_BYTES)
        field = f"tensor {name!r}"
        n_dims = cur.scalar("I", field + " n_dims")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(field + " n_dims", f"{n_dims} dimensions, expected 1..{MAX_DIMS}")
        ne = [int(d) for d in cur.array_of("<u8", n_dims, field + " dims")]
        raw_type = cur.scalar("I", field + " type")
        try:
            ttype = TensorType(raw_type)
        except ValueError:
            if not self._allow_unknown:
                known = ", ".join(t.name for t in BLOCK_LAYOUTS)
                raise cur.fail(field + " type", f"{type_label(raw_type)} is not a GGML tensor type ignis "
                                                f"knows (known: {known})") from None
            ttype = None
        if ttype is not None and ttype not in BLOCK_LAYOUTS:
            raise cur.fail(field + " type", f"{type_label(ttype)} has no known block layout")
        offset = cur.scalar("Q", field + " offset")
        if any(d == 0 for d in ne):
            raise cur.fail(field + " dims", f"dimension of size 0 in {ne}")
        if ttype is None:       # size unknown: the gap to the next tensor (set when placing)
            return name, raw_type, tuple(reversed(ne)), offset, None
        layout = BLOCK_LAYOUTS[ttype]
        if ne[0] % layout.elements:
            raise cur.fail(field + " dims", f"row length {ne[0]} is not a multiple of the {ttype.name} block size {layout.elements}")
        n_elements = 1
        for d in ne:
            n_elements *= d
        nbytes = n_elements // layout.elements * layout.nbytes
        if nbytes > cur.size:
            raise cur.fail(field + " dims", f"{ne} needs {nbytes} bytes, more than the whole file ({cur.size})")
        return name, ttype, tuple(reversed(ne)), offset, nbytes

    def _place_tensors(self, infos) -> dict:
        tensors, spans = {}, []
        ends = sorted(rel for _, _, _, rel, _ in infos)
        for name, ttype, shape, rel, nbytes in infos:
            if nbytes is None:      # a type of unknown size: up to the next tensor or the end
                later = [e for e in ends if e > rel]
                nbytes = (later[0] if later else len(self._mmap) - self.data_offset) - rel
            field = f"{self.path}: tensor {name!r}"
            if name in tensors:
                raise GGUFError(f"{field}: duplicate tensor name")
            if rel % self.alignment:
                raise GGUFError(f"{field}: offset {rel} is not a multiple of the alignment {self.alignment}")
            start = self.data_offset + rel
            if start + nbytes > len(self._mmap):
                raise GGUFError(f"{field}: data [{start}, {start + nbytes}) runs past the end of the file ({len(self._mmap)} bytes; truncated?)")
            view = np.frombuffer(self._mmap, dtype=np.uint8, count=nbytes, offset=start)
            tensors[name] = TensorInfo(name, ttype, shape, start, nbytes, view)
            spans.append((start, start + nbytes, name))
        spans.sort()
        for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
            if s1 < e0:
                raise GGUFError(f"{self.path}: tensors {n0!r} and {n1!r} overlap")
        return tensors

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Release the mapping (views handed out keep it alive until they are dropped)."""
        self.tensors = {}
        if self._mmap is not None:
            try:
                if isinstance(self._mmap, mmap.mmap):
                    self._mmap.close()
            except BufferError:
                pass  # numpy views still reference it; it closes when they go
            self._mmap = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def architecture(self) -> str:
        """general.architecture, or "" when it is missing or not a string."""
        arch = self.metadata.get("general.architecture", "")
        return arch if isinstance(arch, str) else ""

    @property
    def file_size(self) -> int:
        return len(self._mmap) if self._mmap is not None else os.path.getsize(self.path)

    def release(self, name: str) -> None:
        """Tell the kernel a tensor's pages are no longer needed (after it was repacked or
        concatenated into a copy): they leave the resident set and are re-read only if used."""
        info = self.tensors.get(name)
        if info is None or not isinstance(self._mmap, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        start = -(-info.offset // page) * page          # whole pages inside the tensor only
        end = (info.offset + info.nbytes) // page * page
        if end > start:
            self._mmap.madvise(mmap.MADV_DONTNEED, start, end - start)
