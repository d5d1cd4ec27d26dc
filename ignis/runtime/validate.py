"""Load-time checks of weight values: a NaN or an infinity in a weight makes every logit
NaN (or silently garbage), so the loader refuses such a file with a ModelError naming
the tensor, before any kernel runs.

Cheap by construction: float tensors are scanned whole (in a real file they are the
norms and biases, a few hundred KB), quantized tensors only through their block scale
fields (f16 `d`/`dmin`, f32 in Q8_1/Q8_K) -- the integer quants cannot be non-finite.
On the 0.5 GB Qwen2.5-0.5B file this reads one 2-byte field per 32..256 weights."""
import numpy as np

from ignis.errors import ModelError
from ignis.gguf.types import BLOCK_LAYOUTS, TensorType

# type -> (dtype of the scale fields, their indexes in a block viewed as that dtype)
_SCALES = {
    TensorType.Q4_0: ("<u2", (0,)),
    TensorType.Q4_1: ("<u2", (0, 1)),
    TensorType.Q5_0: ("<u2", (0,)),
    TensorType.Q5_1: ("<u2", (0, 1)),
    TensorType.Q8_0: ("<u2", (0,)),
    TensorType.Q8_1: ("<u4", (0, 1)),
    TensorType.Q2_K: ("<u2", (40, 41)),
    TensorType.Q3_K: ("<u2", (54,)),
    TensorType.Q4_K: ("<u2", (0, 1)),
    TensorType.Q5_K: ("<u2", (0, 1)),
    TensorType.Q6_K: ("<u2", (104,)),
    TensorType.Q8_K: ("<u4", (0,)),
    TensorType.IQ4_XS: ("<u2", (0,)),
    TensorType.IQ4_NL: ("<u2", (0,)),
}
# all-ones exponent (an infinity or a NaN) of an IEEE value held as unsigned bits
_EXP_MASK = {"<u2": 0x7C00, "<u4": 0x7F800000}
_BF16_EXP = 0x7F80

_CHUNK_BLOCKS = 1 << 20     # bounds the temporaries of one step to a few MB


def _first_bad(bits: np.ndarray, mask: int) -> int:
    """Index of the first value whose exponent bits are all ones, or -1."""
    for lo in range(0, bits.shape[0], _CHUNK_BLOCKS):
        chunk = bits[lo:lo + _CHUNK_BLOCKS]
        bad = (chunk & mask) == mask
        if bad.any():
            return lo + int(np.argmax(bad.reshape(bad.shape[0], -1).any(axis=1)))
    return -1


def nonfinite_location(info) -> str | None:
    """Where tensor `info` (a gguf TensorInfo) first holds a NaN/Inf, described in words;
    None when it is clean."""
    data, ttype = info.data, info.type
    if ttype == TensorType.F32:
        at = _first_bad(data.view("<u4"), _EXP_MASK["<u4"])
        return None if at < 0 else f"element {at} is {data.view('<f4')[at]}"
    if ttype == TensorType.F16:
        at = _first_bad(data.view("<u2"), _EXP_MASK["<u2"])
        return None if at < 0 else f"element {at} is {data.view('<f2')[at]}"
    if ttype == TensorType.BF16:
        at = _first_bad(data.view("<u2"), _BF16_EXP)
        return None if at < 0 else f"element {at} is not finite"
    if ttype not in _SCALES:
        return None
    dtype, fields = _SCALES[ttype]
    layout = BLOCK_LAYOUTS[ttype]
    per_block = layout.nbytes // np.dtype(dtype).itemsize
    blocks = data.view(dtype).reshape(-1, per_block)
    cols = blocks[:, fields[0]] if len(fields) == 1 else blocks[:, list(fields)]
    at = _first_bad(cols, _EXP_MASK[dtype])
    if at < 0:
        return None
    row = at * layout.elements // info.shape[-1] if info.shape else 0
    return f"block {at} (row {row}) has a non-finite scale"


def check_finite_weights(gguf, names=None) -> None:
    """Raise ModelError naming the first tensor (of `names`, default all) with a NaN or Inf."""
    tensors = gguf.tensors
    for name in (tensors if names is None else names):
        info = tensors.get(name)
        if info is None:
            continue
        where = nonfinite_location(info)
        if where is not None:
            raise ModelError(f"{gguf.path}: tensor {name} holds NaN/Inf ({info.type.name}: {where}); "
                             "the file is corrupt")
