"""Model builders: one per architecture, GGUF hyper-parameters -> unfused IR graph.

`config_from_file(gguf)` picks the config class by `general.architecture`; every config
has `.build_graph(T, all_logits, n_out, hidden)`, `.tensor_shapes()`, and the fields the runtime
reads (n_layers, n_kv_heads, head_dim, vocab, context_length, tied_output)."""
from ignis.errors import ModelError
from ignis.models.common import GGUFWeights, load_weights
from ignis.models.gemma3 import Gemma3Config
from ignis.models.llama import LlamaConfig
from ignis.models.qwen2 import Qwen2Config

CONFIGS = {cls.ARCH: cls for cls in (Qwen2Config, LlamaConfig, Gemma3Config)}


def config_class(metadata, source: str = "model"):
    """The config class of a file's general.architecture (ModelError if ignis has none)."""
    arch = metadata.get("general.architecture")
    cls = CONFIGS.get(arch) if isinstance(arch, str) else None
    if cls is None:
        raise ModelError(f"{source}: general.architecture is {arch!r}: that architecture is not supported "
                         f"(ignis runs {', '.join(CONFIGS)})")
    return cls


def config_from_file(gguf):
    """The validated config of an open GGUFFile, for its architecture."""
    source = getattr(gguf, "path", "model")
    return config_class(gguf.metadata, source).from_gguf(gguf.metadata, gguf.tensors, source)


def build_graph(config, T: int, all_logits: bool = False, n_out: int | None = None, hidden: bool = False):
    """The unfused forward graph of `config`'s architecture for T new tokens (hidden: its
    output is the final-normed hidden state of those rows, "hidden" [rows, width], instead
    of the logits: what embeddings pool)."""
    return config.build_graph(T, all_logits, n_out, hidden)


__all__ = ["CONFIGS", "Gemma3Config", "GGUFWeights", "LlamaConfig", "Qwen2Config", "build_graph",
           "config_class", "config_from_file", "load_weights"]
