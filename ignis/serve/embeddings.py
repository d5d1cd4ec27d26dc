"""POST /v1/embeddings: OpenAI's request and response shapes (the handler is in app.py).

`input` is a string, a list of strings, a list of token ids, or a list of token-id lists;
`encoding_format` "float" (a list of numbers) or "base64" (the little-endian float32 bytes,
base64-encoded, as OpenAI's clients decode them); `dimensions` only as the model's width
(ignis does not truncate embeddings); `model` is accepted whatever the name (the server
serves its one model). The vectors are unit L2 norm, pooled as the server was told
(--pooling) or as the file says (else mean)."""
from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from ignis.serve.protocol import APIError, _describe

MAX_INPUTS = 2048          # inputs in one request (OpenAI's limit); each runs as its own sequence
FORMATS = ("float", "base64")


@dataclass
class EmbeddingsRequest:
    inputs: list               # each a str or a list of token ids
    encoding_format: str = "float"


def _is_ids(x) -> bool:
    return isinstance(x, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in x)


def parse(body, width: int) -> EmbeddingsRequest:
    """The checked request (APIError naming the field otherwise)."""
    if not isinstance(body, dict):
        raise APIError("the request body must be a JSON object")
    given = body.get("input")
    if isinstance(given, str) or (_is_ids(given) and given):
        inputs = [given]
    elif isinstance(given, list) and given and all(isinstance(x, str) or _is_ids(x) for x in given):
        inputs = list(given)
    else:
        raise APIError(f"input must be a string, a list of strings, a list of token ids or a list of token-id "
                       f"lists (not empty), got {_describe(given)}", param="input")
    if len(inputs) > MAX_INPUTS:
        raise APIError(f"input has {len(inputs)} entries, at most {MAX_INPUTS}", param="input")
    for i, x in enumerate(inputs):
        if not x:
            raise APIError(f"input[{i}] is empty", param="input")
    fmt = body.get("encoding_format")
    fmt = "float" if fmt is None else fmt
    if fmt not in FORMATS:
        raise APIError(f"encoding_format must be 'float' or 'base64', got {_describe(fmt)}", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or dims != width):
        raise APIError(f"dimensions = {_describe(dims)} is not supported: this model's embeddings have {width} "
                       "dimensions (leave dimensions out, or give that number)", param="dimensions")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise APIError(f"model must be a string, got {_describe(model)}", param="model")
    return EmbeddingsRequest(inputs, fmt)


def encode(vector: np.ndarray, fmt: str):
    """One embedding as the response carries it."""
    if fmt == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(v) for v in np.asarray(vector, dtype=np.float32)]


def response(vectors, fmt: str, model_name: str, prompt_tokens: int) -> dict:
    return {"object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": encode(v, fmt)} for i, v in enumerate(vectors)],
            "model": model_name,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
