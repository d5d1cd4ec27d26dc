"""Requantize a GGUF model: every 2-D weight to the target type, 1-D tensors (norms, biases)
to F32, metadata copied. Tensors stream through one at a time, so memory stays small."""
import hashlib
import os
import struct

from ignis.errors import IgnisError
from ignis.gguf import GGUFFile, TensorType, ValueType, write_gguf
from ignis.gguf.quant import dequantize, quantize
from ignis.progress import Progress

# general.file_type values (llama.cpp's "mostly X" numbering) for the targets we write
FILE_TYPES = {TensorType.Q8_0: 7, TensorType.F16: 1, TensorType.F32: 0}
TARGETS = {"q8_0": TensorType.Q8_0, "f16": TensorType.F16, "f32": TensorType.F32}


def target_type(name: str) -> TensorType:
    try:
        return TARGETS[name.lower()]
    except KeyError:
        raise IgnisError(f"unsupported quantization type {name!r} (expected one of {', '.join(TARGETS)})") from None


def _convert(info, target: TensorType):
    """A callable producing the tensor's new bytes (called while writing: one tensor in memory)."""
    def produce():
        if info.type == target:
            return info.data
        values = dequantize(info.data, info.type, info.shape)
        return quantize(values, target)
    return produce


def plan_tensors(src: GGUFFile, target: TensorType):
    """(name, new type, shape, data producer) for every tensor of src."""
    planned = []
    for info in src.tensors.values():
        new_type = target if len(info.shape) == 2 else TensorType.F32
        if new_type == TensorType.Q8_0 and info.shape[-1] % 32:
            new_type = TensorType.F32   # rows that do not split into blocks stay exact
        if new_type == TensorType.F32 and info.type == TensorType.F32:
            planned.append((info.name, new_type, info.shape, info.data))
        else:
            planned.append((info.name, new_type, info.shape, _convert(info, new_type)))
    return planned


def quantize_file(src_path, dst_path, type_name: str = "q8_0", progress: bool = True) -> None:
    """Write dst_path as src_path requantized to type_name."""
    target = target_type(type_name)
    if os.path.abspath(src_path) == os.path.abspath(dst_path):
        raise IgnisError(f"{dst_path}: output would overwrite the input")
    with GGUFFile(src_path) as src:
        metadata = dict(src.metadata)
        types = dict(src.metadata_types)
        metadata["general.file_type"] = FILE_TYPES[target]
        types["general.file_type"] = ValueType.UINT32
        planned = plan_tensors(src, target)
        bar = Progress(1, f"quantize {type_name}", enabled=progress)

        def report(done, total_bytes):
            bar.total = total_bytes
            bar.update(done)
        write_gguf(dst_path, metadata, planned, types=types, alignment=src.alignment, progress=report)
        bar.close()


def tensor_data_sha256(path) -> str:
    """sha256 of a GGUF file's tensors, taken in name order: for each tensor its name
    (length-prefixed UTF-8), type id, number of dimensions, dimensions (GGUF order) and byte
    count as little-endian integers, then its bytes. Metadata, the order of the tensors in the
    file and alignment padding are left out: two files hold the same weights bit for bit
    exactly when this digest matches, whoever wrote them (llama.cpp's quantizer orders the
    tensors of the default model differently from ignis' and writes the same bytes)."""
    digest = hashlib.sha256()
    with GGUFFile(path) as f:
        for name in sorted(f.tensors):
            info = f.tensors[name]
            key = name.encode("utf-8")
            digest.update(struct.pack("<I", len(key)) + key)
            digest.update(struct.pack(f"<II{len(info.ne)}QQ", int(info.type), len(info.ne), *info.ne, info.nbytes))
            digest.update(info.data)
    return digest.hexdigest()
