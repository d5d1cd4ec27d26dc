"""Shared fixtures. The real model comes through ignis' own pull code and cache
(fetched once per machine); tiny models are generated per test session."""
import pytest


@pytest.fixture(scope="session")
def real_model_path():
    """The original Qwen2.5-Coder-0.5B-Instruct GGUF (Q5_0/Q8_0/Q4_K/Q6_K/F32)."""
    from ignis.hub import pull
    return str(pull(progress=False))


@pytest.fixture(scope="session")
def real_q8_0_path():
    """ignis' own Q8_0 requantization of the real model."""
    from ignis.hub import pull_q8_0
    return str(pull_q8_0(progress=False))


@pytest.fixture(scope="session")
def smollm2_path():
    """SmolLM2-135M-Instruct (architecture llama, Q4_1 weights, Q8_0 embeddings)."""
    from ignis.hub import CATALOGUE, pull
    return str(pull(CATALOGUE["smollm2-135m"], progress=False))


@pytest.fixture(scope="session")
def qwen15_path():
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M (architecture qwen2, the default model's vocabulary)."""
    from ignis.hub import CATALOGUE, pull
    return str(pull(CATALOGUE["qwen2.5-coder-1.5b"], progress=False))


@pytest.fixture(scope="session")
def gemma3_path():
    """Gemma 3 270M (architecture gemma3, Q5_0/Q8_0/Q4_K/Q6_K, sliding-window layers)."""
    from ignis.hub import CATALOGUE, pull
    return str(pull(CATALOGUE["gemma3-270m"], progress=False))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The one factory of tiny models: tiny_model(**params) -> the path (str) of a GGUF written
    by ignis' own writer (ignis.testing), each distinct model once per session.

        tiny_model(seed=3, n_ctx=512)                     make_tiny_qwen2's parameters
        tiny_model(arch="llama", n_layers=2)              write_model(tiny_llama_config(...), seed=3)
        tiny_model(arch="gemma3", n_layers=3, window=8)   write_model(tiny_gemma3_config(...), seed=3)

    A qwen2 file is named tiny.gguf (the server calls its model "tiny"), the others llama.gguf,
    gemma3.gguf. The files are shared between tests: read them, never change them in place."""
    import inspect

    from ignis import testing
    root = tmp_path_factory.mktemp("tiny_models")
    made = {}
    qwen2_defaults = {name: p.default for name, p in inspect.signature(testing.make_tiny_qwen2).parameters.items()
                      if p.default is not inspect.Parameter.empty}

    def make(arch="qwen2", seed=None, **params):
        if arch == "qwen2":
            params = {**qwen2_defaults, **params, "seed": qwen2_defaults["seed"] if seed is None else seed}
        key = (arch, seed, tuple(sorted(params.items())))
        if key not in made:
            folder = root / str(len(made))          # the file's stem names the model (e.g. the server's id)
            folder.mkdir()
            path = folder / ("tiny.gguf" if arch == "qwen2" else f"{arch}.gguf")
            if arch == "qwen2":
                made[key] = testing.make_tiny_qwen2(path, **params)
            else:
                config = {"llama": testing.tiny_llama_config, "gemma3": testing.tiny_gemma3_config}[arch](**params)
                made[key] = str(testing.write_model(path, config, {}, seed=3 if seed is None else seed))
        return made[key]
    return make
