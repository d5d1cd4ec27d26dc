"""Embeddings: one vector per input text, from the model's final-normed hidden states
(what llama.cpp's embedding mode returns for a decoder model: the hidden states after the
output norm, before the LM head).

Every input is a rows="embed" Request (ignis.runtime.request) for the engine loop: its
prompt is prefilled in chunks beside other requests, in a plan whose output is hidden
states instead of logits (build_graph(..., hidden=True)); nothing is sampled, and when the
prompt is computed the scheduler pools its rows (pool_rows) and frees its KV sequence.
Pooling is the caller's, else the file's `<arch>.pooling_type`, else mean."""
from __future__ import annotations

import numpy as np

from ignis.args import check_bool, describe
from ignis.errors import ArgumentError, ArgumentTypeError, IgnisError, ModelError
from ignis.runtime.request import POOLINGS, make_request
from ignis.runtime.sampling import SamplingParams

# llama.cpp's enum llama_pooling_type, as GGUF files store it (0 none and 4 rank give no
# single vector per text)
FILE_POOLING = {1: "mean", 2: "cls", 3: "last"}


def file_pooling(metadata) -> str | None:
    """The pooling a GGUF file names (`<arch>.pooling_type`), or None when it names none."""
    arch = metadata.get("general.architecture")
    value = metadata.get(f"{arch}.pooling_type")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) not in FILE_POOLING:
        raise ModelError(f"{arch}.pooling_type = {value!r} is not a pooling ignis does (1 mean, 2 cls, 3 last); "
                         "pass pooling= explicitly")
    return FILE_POOLING[int(value)]


def check_pooling(pooling, metadata) -> str:
    """pooling given ("mean", "last" or "cls"), else the file's, else "mean"."""
    if pooling is None:
        return file_pooling(metadata) or "mean"
    if not isinstance(pooling, str) or pooling not in POOLINGS:
        raise ArgumentError(f"pooling must be one of {', '.join(POOLINGS)} (or None: the file's, else mean), "
                            f"got {describe(pooling)}")
    return pooling


def pool_rows(rows: np.ndarray, pooling: str) -> np.ndarray:
    """One vector [width] (float32) of a prompt's hidden-state rows [n, width]: their mean,
    the last row, or the first ("cls")."""
    if pooling == "mean":
        return rows.astype(np.float64).mean(axis=0).astype(np.float32)
    return np.array(rows[-1 if pooling == "last" else 0], dtype=np.float32)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (an all-zero row stays zero)."""
    norms = np.linalg.norm(vectors.astype(np.float64), axis=-1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _is_token_ids(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in x)


def split_inputs(texts) -> list:
    """The inputs of an embed call: a str, a list of token ids (one input each), or a list
    or tuple of them."""
    if isinstance(texts, str) or _is_token_ids(texts):
        return [texts]
    if isinstance(texts, np.ndarray) and texts.ndim == 1:
        return [texts]
    if not isinstance(texts, (list, tuple)):
        raise ArgumentTypeError(f"texts must be a str, a list of str, a list of token ids or a list of them, "
                                f"got {describe(texts)}")
    if not texts:
        raise ArgumentError("texts is empty: give at least one text")
    for i, x in enumerate(texts):
        if not (isinstance(x, str) or _is_token_ids(x) or (isinstance(x, np.ndarray) and x.ndim == 1)):
            raise ArgumentTypeError(f"texts[{i}] must be a str or a non-empty list of token ids, got {describe(x)}")
    return list(texts)


def embed_request(model, text, pooling: str, name: str = "input"):
    """The validated rows="embed" Request of one input (text: tokenized with special tokens
    parsed and BOS where the vocabulary asks for it, as prompts are; or token ids)."""
    return make_request(model._prompt_ids(text, name), n_ctx=model.n_ctx, vocab=model.n_vocab, max_tokens=0,
                        params=SamplingParams(), stop=None, ignore_eos=False, rows="embed", name=name,
                        pooling=pooling)


def embed(model, texts, pooling=None, normalize: bool = True) -> np.ndarray:
    """Model.embed: float32 [len(inputs), width], one row per input (see the module doc)."""
    inputs = split_inputs(texts)
    pooling = check_pooling(pooling, model.gguf.metadata)
    normalize = check_bool("normalize", normalize)
    requests = []
    for i, x in enumerate(inputs):
        name = "texts" if len(inputs) == 1 and x is texts else f"texts[{i}]"
        requests.append(embed_request(model, x, pooling, name))
    sched = model._default_scheduler()
    handles = sched.submit_many(requests)      # taken together: prefilled in the same steps
    try:
        for h in handles:
            h.wait()
    finally:
        for h in handles:
            if not h.done:
                h.cancel()
    vectors = np.stack([h.embedding for h in handles])
    if not np.isfinite(vectors).all():
        raise IgnisError("non-finite embedding: the weights overflow float32")
    return l2_normalize(vectors) if normalize else vectors
