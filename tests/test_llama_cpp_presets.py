"""Files made by llama.cpp's own quantizer: ignis reads their Q5_K / Q3_K / Q2_K / IQ4_XS
tensors natively and agrees with llama.cpp on the same file (teacher-forced top-1).

The two engines round activations differently (llama.cpp: 256-wide Q8_K blocks for the
K-quants, ignis: Q8_0), so exact agreement is not the target; a wrong kernel shows far
below the bar."""
import ctypes

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

import ignis  # noqa: E402
from ignis.gguf import GGUFFile, TensorType  # noqa: E402
from ignis.runtime.weights import NATIVE_MATMUL  # noqa: E402

TEXT = ("The history of computing is a story of layers. Each generation of engineers builds on the "
        "abstractions of the last: transistors become gates, gates become adders, adders become "
        "processors, and processors run compilers that translate languages people can read into "
        "instructions machines can follow. def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n"
        "        a, b = b, a + b\n    return a\n\nprint([fibonacci(i) for i in range(10)])\n"
        "In the same way, a language model is a stack of matrix multiplications, each reading "
        "numbers that were squeezed into a few bits so that the model fits in memory.")


def requantize(src, dst, ftype):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize returned {rc}"


def top1_agreement(path, n_tokens=256):
    model = ignis.load(path, n_ctx=512, threads=2)
    ids = model.tokenize(TEXT * 3)[:n_tokens]
    ours = model.logits(ids)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, logits_all=True, n_threads=2, verbose=False)
    llm.eval(ids)
    theirs = np.asarray(llm.scores[:len(ids)], dtype=np.float32)
    return float((ours.argmax(axis=1) == theirs.argmax(axis=1)).mean()), model


@pytest.mark.real
@pytest.mark.parametrize("preset, expect", [("LLAMA_FTYPE_MOSTLY_Q5_K_M", TensorType.Q5_K),
                                            ("LLAMA_FTYPE_MOSTLY_Q2_K", TensorType.Q3_K),     # ffn_down
                                            ("LLAMA_FTYPE_MOSTLY_IQ4_XS", TensorType.IQ4_XS)])
def test_preset_agrees_with_llama_cpp(smollm2_path, tmp_path, preset, expect):
    out = tmp_path / f"smollm2-{preset}.gguf"
    requantize(smollm2_path, out, getattr(llama_cpp, preset))
    with GGUFFile(out) as g:
        types = {info.type for info in g.tensors.values()}
    assert expect in types and expect in NATIVE_MATMUL       # the kernel under test is in the file
    agreement, model = top1_agreement(out)
    assert agreement >= 0.94, agreement
