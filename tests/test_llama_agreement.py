"""ignis and llama.cpp on the same file: presets of SmolLM2-135M made by llama.cpp's own
quantizer (llama_model_quantize through llama-cpp-python, allow_requantize) load natively in
ignis, and the teacher-forced top-1 tokens of the two engines agree at >= 0.94 of the
positions. The engines round activations differently (and llama.cpp rounds F16/BF16 weight
activations to 16 bits), so exact agreement is not the target; a wrong kernel shows far
below the bar."""
import ctypes

import numpy as np
import pytest

import ignis

from helpers import weights_in_place

TEXT = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, counting the steps "
    "out of habit even though he had known for years that there were exactly one hundred and "
    "twelve. At the top he trimmed the wick, polished the great lens with a soft cloth, and "
    "wrote the weather into the logbook: wind from the north-west, a long swell, fog likely "
    "before midnight. Ships had grown fewer since the new harbour opened down the coast, but "
    "the light still turned, and he still watched it turn.\n\n"
    "def moving_average(values, window):\n"
    "    \"\"\"Return the averages of each run of `window` consecutive values.\"\"\"\n"
    "    if window <= 0:\n"
    "        raise ValueError(\"window must be positive\")\n"
    "    total = sum(values[:window])\n"
    "    out = [total / window]\n"
    "    for i in range(window, len(values)):\n"
    "        total += values[i] - values[i - window]\n"
    "        out.append(total / window)\n"
    "    return out\n\n"
    "In the morning the fog lifted slowly, first from the rocks below and then from the water, "
    "until the whole bay lay open and bright. A fishing boat came round the point, its engine "
    "coughing, and the keeper raised a hand although he knew nobody on board would see it."
)


def make_preset(src, dst, preset):
    """llama.cpp's quantizer: src requantized into the LLAMA_FTYPE_MOSTLY_<preset> preset."""
    llama_cpp = pytest.importorskip("llama_cpp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{preset}")
    params.allow_requantize = True
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) == 0
    return dst


def top1_agreement(path, n_tokens=300):
    """(agreement, positions): ignis' and llama.cpp's argmax over teacher-forced logits."""
    llama_cpp = pytest.importorskip("llama_cpp")
    model = ignis.load(str(path), n_ctx=512, threads=2)
    try:
        ids = model.tokenize(TEXT)[:n_tokens]
        ours = model.logits(ids)
        assert weights_in_place(model)      # every weight read in place
    finally:
        model.close()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_batch=512, logits_all=True, verbose=False, n_threads=2)
    try:
        llm.eval(ids)
        theirs = np.asarray(llm.scores[:len(ids)], dtype=np.float32)
    finally:
        llm.close()
    return float(np.mean(ours.argmax(axis=1) == theirs.argmax(axis=1))), len(ids)


@pytest.mark.real
@pytest.mark.parametrize("preset", ["Q4_0", "BF16"])
def test_preset_agrees_with_llama_cpp(smollm2_path, tmp_path, preset):
    pytest.importorskip("llama_cpp")
    path = make_preset(smollm2_path, tmp_path / f"smollm2-{preset}.gguf", preset)
    agreement, n = top1_agreement(path)
    assert n >= 256
    assert agreement >= 0.94, f"{preset}: top-1 agreement {agreement:.4f} over {n} positions"
