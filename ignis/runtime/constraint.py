"""Structured output: a request's constraint (a JSON Schema, a regex or a Lark/GBNF
grammar), compiled by llguidance against the model's vocabulary, and each sequence's
matcher state, which gives the set of tokens allowed next.

Why llguidance: it is the constraint engine llama.cpp, vLLM and SGLang use; it takes
JSON Schema, regexes and grammars over a tokenizer's byte strings and computes a token
mask over a 150k vocabulary in well under a millisecond (Rust, the GIL dropped).

Lifecycle: `compile_constraint(...)` checks and compiles once per request (before any
token is generated: an invalid constraint is a ConstraintError). `Constraint.start()`
gives one sequence its `ConstraintState`. Per step the state's mask is computed on a
worker thread (`begin`) while the forward pass runs -- the kernels release the GIL --
and the sampler reads it (`next_mask`) when the logits are ready."""
from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ignis.args import describe
from ignis.errors import ArgumentError, ArgumentTypeError, ConstraintError, IgnisError

KINDS = ("json_schema", "regex", "grammar")
# Whitespace between JSON tokens: a few spaces, or one line break and its indentation.
# llguidance's default allows any run of whitespace, and a sampled model can fall into
# emitting newlines until max_tokens (the output then never closes). A schema's own
# "x-guidance" options still override this.
JSON_WHITESPACE = r"[\x20\x09]{1,8}|[\x20\x09]{0,8}\x0A[\x20\x09]{0,40}"
_SPECIAL_MARK = b"\xff"   # llguidance's convention: a special token's bytes start with 0xFF

# IGNIS_MASK_OVERLAP=0 computes each mask when the sampler asks, on the sampling thread (for
# measuring what the overlap buys: on 2 cores, ~8% of batch-8 decode, nothing single-stream)
OVERLAP = os.environ.get("IGNIS_MASK_OVERLAP", "1") != "0"
_pool = None
_pool_lock = threading.Lock()


def _worker_pool() -> ThreadPoolExecutor:
    """The threads that compute masks while the kernels run (one per core is plenty:
    a mask takes far less time than a forward pass)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ignis-mask")
        return _pool


def _llguidance():
    try:
        import llguidance
    except ImportError:
        raise IgnisError("structured output needs the llguidance package: pip install llguidance") from None
    return llguidance


# --- the vocabulary as llguidance sees it ----------------------------------------------

class _VocabView:
    """What llguidance's LLTokenizer reads from a tokenizer: every token's bytes (special
    tokens marked), the end ids, and a function that tokenizes text."""
    is_tokenizer_wrapper = True

    def __init__(self, tokenizer, n_vocab: int):
        # control tokens are marked; user-defined ones that stand for text (Gemma's "\n")
        # are text, which a grammar's literal may be tokenized into
        special = set(tokenizer.special_tokens.values()) - getattr(tokenizer, "text_special_ids", frozenset())
        n_text = min(tokenizer.n_vocab, n_vocab)
        self.tokens = [_SPECIAL_MARK + tokenizer.token_to_piece(i) if i in special else tokenizer.token_to_piece(i)
                       for i in range(n_text)]
        self.tokens += [b""] * (n_vocab - n_text)       # rows of the output matrix with no text
        self.special_token_ids = sorted(special)
        self.eos_token_id = tokenizer.eos_id
        self.bos_token_id = tokenizer.bos_id
        self._encode = tokenizer.encode

    def __call__(self, text) -> list:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return self._encode(text, parse_special=False)


_lltokenizers_lock = threading.Lock()


def lltokenizer(tokenizer, n_vocab: int, eog_ids):
    """The llguidance tokenizer of a vocabulary (built once, ~1 s for 150k tokens, then kept
    on the tokenizer object, so it lives as long as the model does)."""
    with _lltokenizers_lock:
        built = tokenizer.__dict__.setdefault("_llguidance", {})
        if n_vocab not in built:
            llg = _llguidance()
            built[n_vocab] = llg.LLTokenizer(_VocabView(tokenizer, n_vocab), n_vocab=n_vocab,
                                             eos_token=sorted(eog_ids))
        return built[n_vocab]


# --- compiling a request's constraint ---------------------------------------------------

def _one_line(message: str, source: str = "") -> str:
    """llguidance's errors span lines (source excerpts with carets): keep the words."""
    lines = []
    for line in str(message).splitlines():
        line = line.strip()
        if not line or line == source.strip() or set(line) <= {"^", " ", "~"} or re.match(r"^\d*\s*\|", line):
            continue
        lines.append(line)
    text = " ".join(lines) or "rejected by the constraint engine"
    return text if len(text) <= 300 else text[:297] + "..."


def schema_text(json_schema) -> str:
    """A JSON Schema given as a dict or as JSON text, as JSON text (ConstraintError if neither)."""
    if isinstance(json_schema, (dict, bool)):
        try:
            return json.dumps(json_schema)
        except (TypeError, ValueError) as exc:
            raise ConstraintError(f"json_schema: not JSON-serialisable: {exc}") from None
    if isinstance(json_schema, str):
        try:
            value = json.loads(json_schema)
        except ValueError as exc:
            raise ConstraintError(f"json_schema: not valid JSON: {exc}") from None
        if not isinstance(value, (dict, bool)):
            raise ConstraintError(f"json_schema: a schema is a JSON object, got {type(value).__name__}")
        return json_schema
    raise ArgumentTypeError(f"json_schema must be a dict or a JSON string, got {describe(json_schema)}")


# Decimal places a generated JSON number may have. llguidance's numbers are unbounded, and a
# sampled model can fall into "199.9999..." until max_tokens (the output never closes); a
# bound as llama.cpp's JSON grammars have (16 there; 10 is the most llguidance takes as a
# multipleOf) ends such a run. Written as multipleOf on
# every number schema that has none.
JSON_DECIMALS = 10


def _bound_numbers(node):
    """The schema with every {"type": "number"} (without multipleOf, enum or const) bounded
    to JSON_DECIMALS decimal places; walks every nested object and list."""
    if isinstance(node, list):
        return [_bound_numbers(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _bound_numbers(v) for k, v in node.items()}
    kind = node.get("type")
    numeric = kind == "number" or (isinstance(kind, list) and "number" in kind)
    if numeric and not {"multipleOf", "enum", "const"} & node.keys():
        out["multipleOf"] = float(f"1e-{JSON_DECIMALS}")     # written "1e-10": exact as a decimal
    return out


def _grammar(kind: str, source: str) -> str:
    """The llguidance grammar of a constraint (ConstraintError if it is malformed)."""
    llg = _llguidance()
    try:
        if kind == "json_schema":
            source = json.dumps(_bound_numbers(json.loads(source)))
            return llg.LLMatcher.grammar_from_json_schema(source, defaults={"whitespace_pattern": JSON_WHITESPACE})
        if kind == "regex":
            return llg.LLMatcher.grammar_from_regex(source)
        return llg.grammar_from("grammar", source)       # Lark, or llama.cpp's GBNF (converted)
    except (ValueError, TypeError) as exc:
        raise ConstraintError(f"{kind}: {_one_line(exc, source)}") from None


class Constraint:
    """One request's compiled constraint; `start()` gives a sequence its own state."""

    def __init__(self, kind: str, source: str, grammar: str, lltok):
        self.kind, self.source, self.grammar, self.lltok = kind, source, grammar, lltok

    def start(self) -> "ConstraintState":
        return ConstraintState(self)

    def __repr__(self) -> str:
        return f"Constraint({self.kind}={self.source[:60]!r})"


def compile_constraint(tokenizer, n_vocab: int, eog_ids, json_schema=None, regex=None,
                       grammar=None) -> Constraint | None:
    """The constraint of a request given at most one of json_schema (dict or JSON text),
    regex (str) and grammar (Lark or GBNF text); None when none is given. Everything is
    checked here, so a bad constraint fails before any token is generated."""
    given = [(k, v) for k, v in zip(KINDS, (json_schema, regex, grammar)) if v is not None]
    if not given:
        return None
    if len(given) > 1:
        raise ArgumentError(f"give at most one of json_schema, regex and grammar, got {given[0][0]} "
                            f"and {given[1][0]}")
    kind, value = given[0]
    if kind == "json_schema":
        source = schema_text(value)
    else:
        if not isinstance(value, str):
            raise ArgumentTypeError(f"{kind} must be a str, got {describe(value)}")
        if not value.strip():
            raise ConstraintError(f"{kind} is empty")
        source = value
    llg = _llguidance()
    compiled = _grammar(kind, source)
    lltok = lltokenizer(tokenizer, n_vocab, eog_ids)
    problem = llg.LLMatcher.validate_grammar(compiled, lltok)
    if problem and not problem.startswith("WARNING"):
        raise ConstraintError(f"{kind}: {_one_line(problem, source)}")
    return Constraint(kind, source, compiled, lltok)


def response_format_schema(response_format):
    """The JSON Schema an OpenAI-style response_format asks for: {"type": "text"} -> None,
    {"type": "json_object"} -> any object, {"type": "json_schema", "json_schema": {"schema": S}} -> S."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise ArgumentTypeError(f"response_format must be a dict such as {{'type': 'json_object'}}, "
                                f"got {describe(response_format)}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise ArgumentError("response_format: type json_schema needs 'json_schema': {'schema': {...}}")
        return spec["schema"]
    raise ArgumentError(f"response_format: type must be 'text', 'json_object' or 'json_schema', "
                        f"got {describe(kind)}")


# --- one sequence's state ---------------------------------------------------------------

class ConstraintState:
    """A sequence's matcher and its next-token mask (bit i of the int32 words: token i
    allowed). Calls come from one thread at a time: the mask job runs between begin()
    and next_mask(), and accept() comes after the sampler has read the mask."""

    def __init__(self, constraint: Constraint):
        llg = _llguidance()
        self.constraint = constraint
        self.matcher = llg.LLMatcher(constraint.lltok, constraint.grammar, log_level=0)
        if self.matcher.is_error():
            raise ConstraintError(f"{constraint.kind}: {_one_line(self.matcher.get_error())}")
        self.n_vocab = constraint.lltok.vocab_size
        self.mask = np.zeros((self.n_vocab + 31) // 32, dtype=np.int32)
        self._job = None

    def _fill(self) -> None:
        self.matcher.unsafe_compute_mask_ptr(self.mask.ctypes.data, self.mask.nbytes)

    def begin(self) -> None:
        """Start computing the mask of the next token (on a worker thread)."""
        if self._job is None and OVERLAP:
            self._job = _worker_pool().submit(self._fill)

    def next_mask(self) -> np.ndarray:
        """The mask of the ids allowed next (waits for the mask job); the sampler reads it."""
        self.begin()
        job, self._job = self._job, None
        if job is None:
            self._fill()
        else:
            job.result()
        if self.matcher.is_error():
            raise ConstraintError(f"{self.constraint.kind}: {_one_line(self.matcher.get_error())}")
        if not self.mask.any():
            raise ConstraintError(f"{self.constraint.kind}: no token of the vocabulary can continue the output")
        return self.mask

    def accept(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise ConstraintError(f"{self.constraint.kind}: token {token} rejected: "
                                  f"{_one_line(self.matcher.get_error())}")

    @property
    def finished(self) -> bool:
        """The output is complete and nothing may follow."""
        return self.matcher.is_stopped()
