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
