"""Llama (SmolLM2, TinyLlama, Llama 2/3 ...): the Qwen2 block without q/k/v biases, and
RoPE over adjacent pairs. The GGUF converter permutes Wq and Wk so that llama.cpp's
"normal" rotation (pairs (2i, 2i + 1)) reproduces the Hugging Face model, whose rotation
pairs (i, i + hd/2): reading the file as it is, the rope op's mode "normal" is the one
that matches (docs/ops.md).

Per layer L:
    a = rmsnorm(h) @attn_norm
    q = rope(matmul(a) @Wq, normal)    k = rope(matmul(a) @Wk, normal)    v = matmul(a) @Wv
    kv = kv_write(k, v, pos)           h = add(h, matmul(attention(q, kv, pos)) @Wo)
    f = rmsnorm(h) @ffn_norm           h = add(h, matmul(mul(silu(matmul(f) @Wgate), matmul(f) @Wup)) @Wdown)
then logits = matmul(rmsnorm(h) @output_norm) @output (@token_embd when tied).

The graph is the one ignis.models.qwen2.build_graph writes for these class attributes.
"""
from __future__ import annotations

from ignis.models.qwen2 import Qwen2Config, build_graph

ARCH = "llama"

__all__ = ["LlamaConfig", "build_graph"]


class LlamaConfig(Qwen2Config):
    """Llama hyper-parameters (the fields of Qwen2Config; rope_theta defaults to 10000
    when the file has no llama.rope.freq_base, as Llama 2 does)."""
    ARCH = ARCH
    QKV_BIAS = False
    ROPE_MODE = "normal"
