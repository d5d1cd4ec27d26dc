"""Model builders: one per architecture, GGUF hyper-parameters -> unfused IR graph."""
from ignis.models.qwen2 import GGUFWeights, Qwen2Config, build_graph, load_weights

__all__ = ["Qwen2Config", "build_graph", "load_weights", "GGUFWeights"]
