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
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39


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
    # types ignis reads (inspect, the typed error that names them) but whose dot products it
    # does not define: their sizes only, so that a file holding them still parses
    TensorType.IQ2_XXS: BlockLayout(QK_K, 2 + QK_K // 4),
    TensorType.IQ2_XS: BlockLayout(QK_K, 2 + QK_K // 4 + QK_K // 32),
    TensorType.IQ3_XXS: BlockLayout(QK_K, 2 + 3 * QK_K // 8),
    TensorType.IQ1_S: BlockLayout(QK_K, 2 + QK_K // 8 + QK_K // 16),
    TensorType.IQ4_NL: BlockLayout(32, 2 + 16),
    TensorType.IQ3_S: BlockLayout(QK_K, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
    TensorType.IQ2_S: BlockLayout(QK_K, 2 + QK_K // 4 + QK_K // 16),
    TensorType.IQ4_XS: BlockLayout(QK_K, 2 + 2 + QK_K // 64 + QK_K // 2),
    TensorType.I8: BlockLayout(1, 1),
    TensorType.I16: BlockLayout(1, 2),
    TensorType.I32: BlockLayout(1, 4),
    TensorType.I64: BlockLayout(1, 8),
    TensorType.F64: BlockLayout(1, 8),
    TensorType.IQ1_M: BlockLayout(QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32),
    TensorType.TQ1_0: BlockLayout(QK_K, 2 + (QK_K - 4 * QK_K // 64) // 5 + QK_K // 64),
    TensorType.TQ2_0: BlockLayout(QK_K, 2 + QK_K // 4),
    TensorType.MXFP4: BlockLayout(32, 1 + 16),
}


def type_label(ttype) -> str:
    """A tensor type as a person reads it: "IQ2_XXS (type 16)", or "type 99" for an id GGML
    does not define."""
    try:
        return f"{TensorType(int(ttype)).name} (type {int(ttype)})"
    except ValueError:
        return f"type {int(ttype)}"


def tensor_nbytes(ttype: TensorType, n_elements: int) -> int:
    """Bytes that n_elements of ttype occupy (n_elements must be a whole number of blocks)."""
    layout = BLOCK_LAYOUTS[ttype]
    return (n_elements // layout.elements) * layout.nbytes
