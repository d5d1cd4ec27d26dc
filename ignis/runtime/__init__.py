"""Runtime: lowering IR → Plan, KV cache, prefill/decode, sampling, generation, the public Model."""
from ignis.runtime.model import Model, load
from ignis.runtime.sampling import SamplingParams

__all__ = ["Model", "load", "SamplingParams"]
