"""Reads and validates the tokenizer part of GGUF metadata into plain arrays.

Every problem becomes a one-line TokenizerError naming the metadata field."""
from dataclasses import dataclass

import numpy as np

from ignis.errors import TokenizerError
from ignis.tokenizer._bpe import first_bad_merge, merge_table

SUPPORTED_MODELS = ("gpt2", "llama")  # byte-level BPE; SentencePiece-style (scores, byte fallback)
SUPPORTED_PRE = ("qwen2", "smollm")   # byte-level BPE pre-tokenizers we reproduce exactly

# tokenizer.ggml.token_type values (llama.cpp's numbering)
TYPE_NORMAL = 1
TYPE_UNKNOWN = 2
TYPE_CONTROL = 3
TYPE_USER_DEFINED = 4
TYPE_UNUSED = 5
TYPE_BYTE = 6
SPECIAL_TYPES = (TYPE_CONTROL, TYPE_USER_DEFINED)   # matched whole in the text, before pre-tokenization

_KEY = "tokenizer.ggml."


@dataclass(frozen=True)
class Vocab:
    """What the tokenizer needs from the metadata, validated."""
    model: str
    pre: str                # "" where the model has no pre-tokenizer (llama)
    tokens: list            # token id -> token text (byte-level alphabet for normal gpt2 tokens)
    types: np.ndarray       # token id -> token type (int32)
    merges: list            # rank -> "left right" as written; gpt2 only
    scores: np.ndarray | None   # token id -> merge score (float32); llama only
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    eot_id: int | None      # an explicit end-of-turn id, where the file has one
    eom_id: int | None
    unk_id: int | None
    add_bos: bool
    add_space_prefix: bool  # llama: a space before the text (and after each special token)


def _fail(field: str, problem: str) -> TokenizerError:
    return TokenizerError(f"{_KEY}{field}: {problem}")


def _string(metadata: dict, field: str) -> str:
    value = metadata.get(_KEY + field)
    if value is None:
        raise _fail(field, "missing (is this a GGUF with an embedded tokenizer?)")
    if not isinstance(value, str):
        raise _fail(field, f"expected a string, found {type(value).__name__}")
    return value


def _string_list(metadata: dict, field: str) -> list:
    value = metadata.get(_KEY + field)
    if value is None:
        raise _fail(field, "missing")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise _fail(field, f"expected an array of strings, found {type(value).__name__}")
    items = list(value)
    if set(map(type, items)) - {str}:
        i, item = next((i, item) for i, item in enumerate(items) if not isinstance(item, str))
        raise _fail(f"{field}[{i}]", f"expected a string, found {type(item).__name__}")
    return items


def _per_token_array(metadata: dict, field: str, n_tokens: int, kinds: str, what: str):
    """tokenizer.ggml.<field> as a 1-D array of one entry per token, its dtype kind one of
    kinds ("i", "u", "f", "b"), what naming them in errors; None when the file has none."""
    value = metadata.get(_KEY + field)
    if value is None:
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise _fail(field, f"expected an array of {what} ({exc})") from None
    if array.ndim != 1 or (array.size and array.dtype.kind not in kinds):
        raise _fail(field, f"expected an array of {what}, found {array.dtype} with shape {array.shape}")
    if len(array) != n_tokens:
        raise _fail(field, f"has {len(array)} entries but tokenizer.ggml.tokens has {n_tokens}")
    return array


def _token_types(metadata: dict, n_tokens: int) -> np.ndarray:
    types = _per_token_array(metadata, "token_type", n_tokens, "iub", "integers")
    if types is None:           # optional in the format: every token is then a normal one
        return np.full(n_tokens, TYPE_NORMAL, dtype=np.int32)
    return types.astype(np.int32)


def _scores(metadata: dict, n_tokens: int) -> np.ndarray:
    scores = _per_token_array(metadata, "scores", n_tokens, "iuf", "numbers")
    if scores is None:          # optional in the format: all equal, the leftmost pair merges first
        return np.zeros(n_tokens, dtype=np.float32)
    scores = scores.astype(np.float32)
    if np.isnan(scores).any():
        raise _fail(f"scores[{int(np.argmax(np.isnan(scores)))}]", "is NaN")
    return scores


def _merges(metadata: dict) -> list:
    """The merges as written ("left right" in rank order), each checked to be two tokens
    separated by one space (the check runs in C: a vocabulary has 150k of them)."""
    merges = _string_list(metadata, "merges")
    rank = first_bad_merge(merges)
    if rank >= 0:
        raise _fail(f"merges[{rank}]", f"expected two tokens separated by one space, found {merges[rank]!r}")
    return merges


def _optional_id(metadata: dict, field: str, n_tokens: int) -> int | None:
    value = metadata.get(_KEY + field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _fail(field, f"expected a token id, found {type(value).__name__}")
    value = int(value)
    if value == -1 or value == 0xFFFFFFFF:      # "none" as some converters write it
        return None
    if not 0 <= value < n_tokens:
        raise _fail(field, f"token id {value} is outside the vocabulary (0..{n_tokens - 1})")
    return value


def _optional_bool(metadata: dict, field: str, default: bool) -> bool:
    value = metadata.get(_KEY + field)
    if value is None:
        return default
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(field, f"expected a bool, found {type(value).__name__}")
    return bool(value)


def read_vocab(metadata: dict) -> Vocab:
    """Validate the tokenizer.ggml.* fields of a GGUF metadata dict."""
    if not isinstance(metadata, dict):
        raise TokenizerError(f"tokenizer metadata: expected a dict, found {type(metadata).__name__}")
    model = _string(metadata, "model")
    if model not in SUPPORTED_MODELS:
        raise _fail("model", f"unsupported tokenizer model {model!r} (supported: {', '.join(SUPPORTED_MODELS)})")
    byte_level = model == "gpt2"
    if byte_level:
        pre = _string(metadata, "pre")
        if pre not in SUPPORTED_PRE:
            raise _fail("pre", f"unsupported pre-tokenizer {pre!r} (supported: {', '.join(SUPPORTED_PRE)})")
    else:
        pre = ""                # SentencePiece-style models are not pre-tokenized: any value is ignored
    tokens = _string_list(metadata, "tokens")
    if not tokens:
        raise _fail("tokens", "is empty")
    n = len(tokens)
    return Vocab(
        model=model, pre=pre, tokens=tokens, types=_token_types(metadata, n),
        merges=_merges(metadata) if byte_level else [],
        scores=None if byte_level else _scores(metadata, n),
        bos_id=_optional_id(metadata, "bos_token_id", n), eos_id=_optional_id(metadata, "eos_token_id", n),
        pad_id=_optional_id(metadata, "padding_token_id", n), eot_id=_optional_id(metadata, "eot_token_id", n),
        eom_id=_optional_id(metadata, "eom_token_id", n),
        unk_id=None if byte_level else _optional_id(metadata, "unknown_token_id", n),
        add_bos=_optional_bool(metadata, "add_bos_token", False),
        # llama.cpp's default where the key is absent: on for SentencePiece-style, off for BPE
        add_space_prefix=_optional_bool(metadata, "add_space_prefix", not byte_level),
    )


def merge_ids(vocab: Vocab, token_to_id: dict) -> tuple:
    """The merges as three int32 arrays in rank order: left id, right id, merged id."""
    left, right, merged, rank = merge_table(vocab.merges, token_to_id)
    if rank >= 0:
        a, b = vocab.merges[rank].split(" ")
        text = next(t for t in (a, b, a + b) if t not in token_to_id)
        raise _fail(f"merges[{rank}]", f"{vocab.merges[rank]!r} needs token {text!r}, which is not in "
                                       "tokenizer.ggml.tokens")
    return left, right, merged
