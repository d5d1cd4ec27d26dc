"""A request to the engine loop: checked once, then immutable.

`Model.request(prompt, **settings)` is the one place where token ids, sampling settings,
stop strings and constraints are validated; `Scheduler.submit` takes nothing else, so
everything past it can trust its input. What a request asks the loop for:

  rows = "sample"   generate: every row that ends the known tokens is sampled (the default)
  rows = "last"     score: the logits of the last token only (Model.eval)
  rows = "all"      score: the logits of every token (Model.logits, perplexity, fidelity)
  rows = "embed"    embed: the final-normed hidden state of every token, pooled by
                    `pooling` when the prompt is computed (Model.embed, /v1/embeddings);
                    no sampling, and the KV sequence is freed at the end

A session (rows "last") keeps its KV sequence between requests, so `Model.eval` appends
to a context instead of recomputing it (the llama-cpp-python style stateful API)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ignis.args import check_bool, check_int, describe
from ignis.errors import ArgumentError, ArgumentTypeError, ContextOverflowError, IgnisError
from ignis.runtime.speculative import MODES

ROWS = ("sample", "last", "all", "embed")
POOLINGS = ("mean", "last", "cls")      # how an "embed" request's rows become one vector


class Session:
    """A context the loop keeps between requests: the tokens whose keys and values a parked
    KV sequence holds (the loop may drop the sequence under memory pressure; the tokens stay
    and are recomputed, with the same bits, when next needed)."""

    def __init__(self):
        self.tokens = []      # the context (what the next request continues)
        self.seq = None       # the parked KV sequence (engine thread only)
        self.held = 0         # positions of `seq` that hold `tokens`' rows


@dataclass(frozen=True)
class Request:
    ids: tuple                      # the prompt (or, for a session, the whole context to evaluate)
    max_tokens: int = 0
    params: object = None           # SamplingParams (a private copy)
    stop: tuple = ()
    ignore_eos: bool = False
    n: int = 1
    logprobs: int | None = None
    constraint: object = None       # a compiled Constraint (each completion starts its own state)
    end_ids: frozenset = frozenset()  # tokens that end generation
    keep_end: bool = False          # the end token is kept in result.end_token (greedy_ids)
    rows: str = "sample"
    session: Session | None = field(default=None, compare=False)
    vocab: int = 0                  # the model's vocabulary size (submit checks it is this model's)
    speculative: str | None = None  # "ngram": drafts verified exactly (ignis.runtime.speculative)
    pooling: str = "mean"           # rows "embed": one of POOLINGS


def check_stop(stop) -> tuple:
    """None, one stop string or a list/tuple of them; empty strings stop nothing."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    if not isinstance(stop, (list, tuple)):
        raise ArgumentTypeError(f"stop must be None, a str or a list of str, got {describe(stop)}")
    out = []
    for i, s in enumerate(stop):
        if not isinstance(s, str):
            raise ArgumentTypeError(f"stop[{i}] must be a str, got {describe(s)}")
        if s:
            out.append(s)
    return tuple(out)


def make_request(ids: list, *, n_ctx: int, vocab: int, max_tokens: int, params, stop, ignore_eos, n: int = 1,
                 max_n: int = 4096, logprobs=None, constraint=None, end_ids=(), keep_end: bool = False,
                 rows: str = "sample", session: Session | None = None, speculative=None,
                 name: str = "prompt", pooling: str = "mean") -> Request:
    """The validated Request (ids are already checked token ids of this model)."""
    if not ids:
        raise IgnisError(f"empty {name}: give some text or token ids")
    if len(ids) > n_ctx:
        raise ContextOverflowError(f"{name} of {len(ids)} tokens does not fit in the context of {n_ctx} "
                                   "tokens (raise n_ctx / --ctx, or shorten the prompt)")
    max_tokens = check_int("max_tokens", max_tokens, 0, 1 << 62)
    n = check_int("n", n, 1, max_n)
    if logprobs is not None:
        logprobs = check_int("logprobs", logprobs, 0, 1 << 20)
    if rows not in ROWS:
        raise ArgumentError(f"rows must be one of {', '.join(ROWS)}, got {describe(rows)}")
    if speculative is not None and speculative not in MODES:
        raise ArgumentError(f"speculative must be None or one of {', '.join(map(repr, MODES))}, "
                            f"got {describe(speculative)}")
    if pooling not in POOLINGS:
        raise ArgumentError(f"pooling must be one of {', '.join(POOLINGS)}, got {describe(pooling)}")
    if rows == "embed" and (n != 1 or session is not None):
        raise ArgumentError("an embedding request has one completion and no session")
    params = copy.deepcopy(params)
    params.validate(n_vocab=vocab or None)      # logit_bias ids within this model's logits
    return Request(ids=tuple(ids), max_tokens=max_tokens, params=params, stop=check_stop(stop),
                   ignore_eos=check_bool("ignore_eos", ignore_eos), n=n, logprobs=logprobs, constraint=constraint,
                   end_ids=frozenset(end_ids), keep_end=keep_end, rows=rows, session=session, vocab=vocab,
                   speculative=speculative, pooling=pooling)
