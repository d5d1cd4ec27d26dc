"""Perplexity over a token stream, in the form of llama.cpp's perplexity tool.

The ids are cut into non-overlapping chunks of n_ctx tokens (the remainder is dropped).
Each chunk is evaluated from an empty context and only its second half is scored: for
positions i in [n_ctx/2, n_ctx - 1) the negative log-likelihood of token i+1 under the
logits at i (log-softmax in float64). If the tokenizer adds a BOS token, the first token of
every chunk is replaced by BOS, as llama.cpp does. PPL = exp(mean NLL); its error is
PPL * stderr(NLL) (first-order propagation of the standard error of the mean)."""
import math

import numpy as np

from ignis.errors import IgnisError


def text_ids(model, text: str) -> list:
    """The ids of a whole text for perplexity: BOS first if the tokenizer adds one; special
    token strings in the text are not parsed (it is data)."""
    ids = model.tokenize(text, parse_special=False)
    tok = model.tokenizer
    if getattr(tok, "add_bos", False) and tok.bos_id is not None:
        ids = [tok.bos_id] + ids
    return ids


def chunk_count(n_ids: int, n_ctx: int, max_chunks=None) -> int:
    """Whole chunks of n_ctx tokens in n_ids (at most max_chunks)."""
    n = n_ids // n_ctx
    return n if max_chunks is None else min(n, max_chunks)


def _chunk_nll(logits: np.ndarray, chunk: list, first: int) -> np.ndarray:
    """NLL of chunk[i + 1] given logits[i], for i in [first, len(chunk) - 1)."""
    x = np.asarray(logits[first:len(chunk) - 1], dtype=np.float64)
    targets = np.asarray(chunk[first + 1:], dtype=np.int64)
    peak = x.max(axis=1)
    log_z = peak + np.log(np.exp(x - peak[:, None]).sum(axis=1))
    return log_z - x[np.arange(len(targets)), targets]


def _estimate(nll_sum: float, nll2_sum: float, n: int) -> tuple:
    mean = nll_sum / n
    ppl = math.exp(mean)
    if n < 2:
        return ppl, 0.0
    var = max(nll2_sum / n - mean * mean, 0.0)
    return ppl, ppl * math.sqrt(var / (n - 1))


def perplexity(model, ids, n_ctx: int, max_chunks=None, on_chunk=None) -> tuple:
    """(ppl, err, n_scored, per_chunk) over the chunks of `ids`; per_chunk is the running
    PPL after each chunk, and on_chunk(k, running_ppl) is called after chunk k (1-based)."""
    ids = list(ids)
    if n_ctx < 4:
        raise IgnisError(f"perplexity needs a context of at least 4 tokens, got {n_ctx}")
    if n_ctx > model.n_ctx:
        raise IgnisError(f"context of {n_ctx} tokens is larger than the model's n_ctx = {model.n_ctx}")
    n_chunks = chunk_count(len(ids), n_ctx, max_chunks)
    if n_chunks < 1:
        raise IgnisError(f"the text has {len(ids)} tokens, fewer than the {n_ctx} of one chunk "
                         f"(give a longer text or a smaller -c)")
    tok = getattr(model, "tokenizer", None)
    bos = tok.bos_id if tok is not None and getattr(tok, "add_bos", False) else None
    first = n_ctx // 2
    nll_sum = nll2_sum = 0.0
    n = 0
    per_chunk = []
    for k in range(n_chunks):
        chunk = ids[k * n_ctx:(k + 1) * n_ctx]
        if bos is not None:
            chunk[0] = bos
        nll = _chunk_nll(model.logits(chunk), chunk, first)
        nll_sum += float(nll.sum())
        nll2_sum += float((nll * nll).sum())
        n += len(nll)
        running = math.exp(nll_sum / n)
        per_chunk.append(running)
        if on_chunk is not None:
            on_chunk(k + 1, running)
    model.reset()
    ppl, err = _estimate(nll_sum, nll2_sum, n)
    return ppl, err, n, per_chunk
