"""GGUF metadata value types and GGML tensor types with their block layouts."""
from dataclasses import dataclass
from enum import IntEnum


class ValueType(IntEnum):
    """Metadata value types (the GGUF spec's numbering)."""
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# struct format characters of the fixed-size scalar value types (little-endian)
SCALAR_FORMATS = {
    ValueType.UINT8: "B", ValueType.INT8: "b", ValueType.UINT16: "H", ValueType.INT16: "h",
    ValueType.UINT32: "I", ValueType.INT32: "i", ValueType.FLOAT32: "f", ValueType.BOOL: "?",
    ValueType.UINT64: "Q", ValueType.INT64: "q", ValueType.FLOAT64: "d",
}


class TensorType(IntEnum):
    """GGML tensor types (the numbering stored in GGUF tensor infos)."""
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ4_XS = 23
    BF16 = 30


@dataclass(frozen=True)
class BlockLayout:
    """A tensor type's storage unit: `elements` values packed in `nbytes` bytes."""
    elements: int
    nbytes: int


QK_K = 256  # super-block size of the K-quants

BLOCK_LAYOUTS = {
    TensorType.F32: BlockLayout(1, 4),
    TensorType.F16: BlockLayout(1, 2),
    TensorType.BF16: BlockLayout(1, 2),
    TensorType.Q4_0: BlockLayout(32, 2 + 16),
    TensorType.Q4_1: BlockLayout(32, 2 + 2 + 16),
    TensorType.Q5_0: BlockLayout(32, 2 + 4 + 16),
    TensorType.Q5_1: BlockLayout(32, 2 + 2 + 4 + 16),
    TensorType.Q8_0: BlockLayout(32, 2 + 32),
    TensorType.Q8_1: BlockLayout(32, 4 + 4 + 32),
    TensorType.Q2_K: BlockLayout(QK_K, QK_K // 16 + QK_K // 4 + 2 + 2),
    TensorType.Q3_K: BlockLayout(QK_K, QK_K // 8 + QK_K // 4 + 12 + 2),
    TensorType.Q4_K: BlockLayout(QK_K, 2 + 2 + 12 + QK_K // 2),
    TensorType.Q5_K: BlockLayout(QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2),
    TensorType.Q6_K: BlockLayout(QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),
    TensorType.Q8_K: BlockLayout(QK_K, 4 + QK_K + QK_K // 8),
    TensorType.IQ4_XS: BlockLayout(QK_K, 2 + 2 + QK_K // 64 + QK_K // 2),
}


def tensor_nbytes(ttype: TensorType, n_elements: int) -> int:
    """Bytes that n_elements of ttype occupy (n_elements must be a whole number of blocks)."""
    layout = BLOCK_LAYOUTS[ttype]
    return (n_elements // layout.elements) * layout.nbytes
