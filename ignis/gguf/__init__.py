"""GGUF: read (mmap, validated, zero-copy) and write, tensor types and block layouts."""
from ignis.gguf.reader import GGUFFile, TensorInfo
from ignis.gguf.types import BLOCK_LAYOUTS, TensorType, ValueType
from ignis.gguf.writer import write_gguf

__all__ = ["GGUFFile", "TensorInfo", "TensorType", "ValueType", "BLOCK_LAYOUTS", "write_gguf"]
