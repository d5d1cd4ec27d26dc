"""Weights as the kernels take them: zero-copy views of the mmapped file, in the file's own
types (every type llama.cpp's quantize presets write is read natively; a file holding another
type is refused at load, see ignis.models.common). The
row-concatenations the passes planned (e.g. [Wq; Wk; Wv]) are handed over as lists of
parts, which the kernels read in place."""
import numpy as np

from ignis.errors import ModelError
from ignis.gguf import GGUFFile, TensorType
from ignis.gguf.quant import dequantize
from ignis.ir import Weight

# weight types the matmul kernels read directly
NATIVE_MATMUL = {TensorType.Q8_0, TensorType.Q5_0, TensorType.Q4_1, TensorType.Q4_K, TensorType.Q6_K,
                 TensorType.F32, TensorType.F16}
NATIVE_MATMUL |= {TensorType.Q4_0, TensorType.Q5_1, TensorType.IQ4_NL, TensorType.BF16}
NATIVE_MATMUL |= {TensorType.Q5_K, TensorType.Q3_K, TensorType.Q2_K, TensorType.IQ4_XS}
NATIVE_EMBED = NATIVE_MATMUL     # the embed kernel dequantizes a row of any of these


class WeightStore:
    """name or Weight expression -> (array, TensorType) in the form the kernels want."""

    def __init__(self, gguf: GGUFFile):
        self.gguf = gguf
        self._matrices = {}
        self._vectors = {}

    def _info(self, name: str):
        try:
            return self.gguf.tensors[name]
        except KeyError:
            raise ModelError(f"{self.gguf.path}: tensor {name!r} is missing") from None

    def _raw(self, name: str, native: set):
        """One tensor's bytes as (array, type): a view of the mmapped file."""
        info = self._info(name)
        if info.type not in native:      # the load-time check refuses such a file first
            raise ModelError(f"{self.gguf.path}: tensor {name} is {info.type.name}, which the kernels do not read "
                             f"(supported: {', '.join(sorted(t.name for t in native))})")
        if info.type == TensorType.F32:
            return info.data.view(np.float32).reshape(info.shape), info.type
        if info.type == TensorType.F16:
            return info.data.view(np.float16).reshape(info.shape), info.type
        if info.type == TensorType.BF16:
            return info.data.view(np.uint16).reshape(info.shape), info.type
        return info.data, info.type

    def matrix(self, weight: Weight, native: set = NATIVE_MATMUL, rows: int | None = None):
        """A weight matrix -> (array, type); a row-concatenation planned by the passes ->
        (list of part arrays, list of types): the kernels read the parts in place, so the
        concatenation costs no copy and the weights stay in the mmap. rows: only the first
        `rows` rows of a single tensor (a view; a config's output_rows)."""
        key = (weight.name, id(native), rows)
        if key not in self._matrices:
            parts = [self._raw(p, native) for p in weight.parts]
            if rows is not None and len(parts) == 1:
                parts = [(self._first_rows(weight.parts[0], parts[0][0], rows), parts[0][1])]
            if len(parts) == 1:
                self._matrices[key] = parts[0]
            else:
                self._matrices[key] = [a for a, _ in parts], [int(t) for _, t in parts]
        return self._matrices[key]

    def _first_rows(self, name: str, arr: np.ndarray, rows: int) -> np.ndarray:
        total = int(self._info(name).shape[0])
        if not 1 <= rows <= total:
            raise ModelError(f"{self.gguf.path}: tensor {name} has {total} rows, {rows} were asked for")
        if rows == total:
            return arr
        if arr.ndim > 1:          # float types: a view of rows
            return arr[:rows]
        return arr[:arr.nbytes // total * rows]     # quantized rows are whole blocks, in order

    def vector(self, weight: Weight) -> np.ndarray:
        """A (possibly concatenated) 1-D float32 vector (norm gains, biases)."""
        if weight.name not in self._vectors:
            parts = []
            for name in weight.parts:
                info = self._info(name)
                parts.append(dequantize(info.data, info.type, info.shape).reshape(-1))
            self._vectors[weight.name] = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
        return self._vectors[weight.name]
