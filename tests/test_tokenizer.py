"""Tokenizer: a tiny synthetic vocabulary checked against a naive BPE oracle, metadata
errors, decoding and streaming; the golden ids of the real model (marked real)."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from ignis.errors import TokenizerError
from ignis.gguf import ValueType, write_gguf
from ignis.tokenizer import Tokenizer
from ignis.tokenizer._bytes import BYTE_TO_CHAR, bytes_to_token_text

from helpers import few, props, real_tokenizer_properties

from ignis.tokenizer._pretokenize import UNICODE_17_LETTERS_NUMBERS  # noqa: E402

GOLDEN = Path(__file__).parent / "data" / "tokenizer_public.jsonl"
# The reference's regex engine knows Unicode 16: letters and numbers that Unicode 17 added
# are "other" there, so the oracle's classes leave them out (the ranges are data of the module).
_NEWER = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in UNICODE_17_LETTERS_NUMBERS)
_L, _N = rf"[\p{{L}}--[{_NEWER}]]", rf"[\p{{N}}--[{_NEWER}]]"
QWEN2_PATTERN = regex.compile(rf"(?V1)(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n{_L}{_N}]?{_L}+|{_N}"
                              rf"| ?[^\s{_L}{_N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TRAINING_TEXT = ("the cat sat on the mat. The other cat's hat is that one; they'll see it, won't they?\n"
                 "def the_func(x):\n    return x + 1  # the end\n\n"
                 "aaaa aaaaa bbb 1234 the the the théâtre naïve 你好你好 ")
SPECIALS = {"<|endoftext|>": 3, "<|im_start|>": 3, "<|im_end|>": 3, "<|im": 4, "<tool_call>": 4}


# --- a tiny vocabulary and an independent oracle -------------------------------------------

def train_merges(text: str, n_merges: int) -> list:
    """Greedy BPE training on the byte-level pre-tokens of text (most frequent pair first)."""
    words = Counter(tuple(bytes_to_token_text(p.encode())) for p in QWEN2_PATTERN.findall(text))
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for word, count in words.items():
            for a, b in zip(word, word[1:]):
                pairs[a, b] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        words = Counter({tuple(oracle_merge(list(w), best)): c for w, c in words.items()})
    return merges


def oracle_merge(symbols: list, pair: tuple) -> list:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def oracle_bpe(piece: str, ranks: dict) -> list:
    """Textbook BPE: merge the lowest-ranked adjacent pair everywhere, until none is left."""
    symbols = list(bytes_to_token_text(piece.encode()))
    while len(symbols) > 1:
        pairs = [(ranks[p], p) for p in zip(symbols, symbols[1:]) if p in ranks]
        if not pairs:
            break
        symbols = oracle_merge(symbols, min(pairs)[1])
    return symbols


def tiny_metadata(**overrides) -> dict:
    merges = train_merges(TRAINING_TEXT, 120)
    tokens = list(BYTE_TO_CHAR)
    for a, b in merges:
        if a + b not in tokens:
            tokens.append(a + b)
    types = [1] * len(tokens)
    for text, kind in SPECIALS.items():
        tokens.append(text)
        types.append(kind)
    tokens.append("[PAD0]")
    types.append(5)
    metadata = {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2",
        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": [f"{a} {b}" for a, b in merges],
        "tokenizer.ggml.bos_token_id": tokens.index("<|endoftext|>"),
        "tokenizer.ggml.eos_token_id": tokens.index("<|im_end|>"),
        "tokenizer.ggml.padding_token_id": tokens.index("<|endoftext|>"),
        "tokenizer.ggml.add_bos_token": False,
    }
    metadata.update(overrides)
    return {k: v for k, v in metadata.items() if v is not None}


@pytest.fixture(scope="module")
def tiny():
    return Tokenizer.from_metadata(tiny_metadata())


@pytest.fixture(scope="module")
def oracle():
    """text -> ids by the naive oracle, special tokens matched leftmost-longest."""
    meta = tiny_metadata()
    tokens = meta["tokenizer.ggml.tokens"]
    ids = {t: i for i, t in enumerate(tokens)}
    ranks = {tuple(m.split(" ")): r for r, m in enumerate(meta["tokenizer.ggml.merges"])}
    specials = sorted(SPECIALS, key=len, reverse=True)

    def encode(text, parse_special=True):
        out, plain, i = [], "", 0
        while i < len(text):
            hit = next((s for s in specials if text.startswith(s, i)), None) if parse_special else None
            if hit is None:
                plain += text[i]
                i += 1
                continue
            out += [ids[s] for p in QWEN2_PATTERN.findall(plain) for s in oracle_bpe(p, ranks)]
            out.append(ids[hit])
            plain, i = "", i + len(hit)
        return out + [ids[s] for p in QWEN2_PATTERN.findall(plain) for s in oracle_bpe(p, ranks)]
    return encode


TINY_TEXTS = [
    "", " ", "the cat", "the cat sat on the mat.", "The other cat's hat", "aaaaaaaaaaa", "a" * 1000,
    " " * 50 + "x", "x\n\n\n  y\r\n", "1234567", "théâtre naïve", "你好你好你好", "emoji 👨\u200d👩\u200d👧",
    "<|im_start|>user\nthe cat<|im_end|>\n", "text<|endoftext|>more", "<|im_start|", "<|im<|im_end|>",
    "<tool_call>{}</tool_call>", "a<|endoftext|><|endoftext|>b", "  <|im_start|>  ", "!!<|im_end|>!!",
    "[PAD0]", "the_func(x) + 1", "they'll won't it's IT'S",
]


@pytest.mark.parametrize("text", TINY_TEXTS)
def test_tiny_matches_oracle(tiny, oracle, text):
    assert tiny.encode(text) == oracle(text)
    assert tiny.encode(text, parse_special=False) == oracle(text, parse_special=False)
    assert tiny.decode(tiny.encode(text)) == text
    assert tiny.decode(tiny.encode(text, parse_special=False)) == text


def test_tiny_merges_really_merge(tiny):
    ids = tiny.encode("the cat sat on the mat")
    assert len(ids) < len("the cat sat on the mat")
    assert all(tiny.token_to_piece(i) for i in ids)


def test_special_tokens_and_ids(tiny):
    meta = tiny_metadata()
    tokens = meta["tokenizer.ggml.tokens"]
    assert tiny.special_tokens == {t: tokens.index(t) for t in SPECIALS}
    assert tiny.n_vocab == len(tokens)
    assert tiny.bos_id == tokens.index("<|endoftext|>")
    assert tiny.eos_id == tokens.index("<|im_end|>")
    assert tiny.eot_ids == {tokens.index("<|im_end|>"), tokens.index("<|endoftext|>")}
    assert tiny.add_bos is False
    # unused tokens are not special: "[PAD0]" is plain text
    assert tokens.index("[PAD0]") not in tiny.encode("[PAD0]")
    # leftmost-longest: "<|im_end|>" wins over its prefix "<|im"
    assert tiny.encode("<|im_end|>") == [tokens.index("<|im_end|>")]
    assert tiny.encode("<|im_end|>", parse_special=False) != [tokens.index("<|im_end|>")]


def test_text_next_to_special_tokens_is_split_there(tiny):
    im_start = tiny.special_tokens["<|im_start|>"]
    left, right = tiny.encode("  "), tiny.encode("the")
    assert tiny.encode("  <|im_start|>the") == left + [im_start] + right


def test_token_to_piece(tiny):
    for b in range(256):
        assert tiny.token_to_piece(b) == bytes([b])
    assert tiny.token_to_piece(tiny.special_tokens["<|im_start|>"]) == b"<|im_start|>"
    for bad in (-1, tiny.n_vocab, 10**12, 1.5, "3", None):
        with pytest.raises(TokenizerError, match="not in the vocabulary"):
            tiny.token_to_piece(bad)


def test_decode_invalid_utf8_becomes_replacement(tiny):
    assert tiny.decode([0xE4, 0xBD]) == "\ufffd"            # truncated 3-byte sequence: one U+FFFD
    assert tiny.decode([0xFF, ord("a")]) == "\ufffda"
    assert tiny.decode(np.array([ord("h"), ord("i")], dtype=np.int64)) == "hi"
    assert tiny.decode(iter([ord("o"), ord("k")])) == "ok"
    assert tiny.decode([]) == ""


@pytest.mark.parametrize("bad", [[-1], [0, 10**9], [0, 2.5], ["x"]])
def test_decode_bad_ids(tiny, bad):
    with pytest.raises(TokenizerError, match="not in the vocabulary"):
        tiny.decode(bad)


def test_stream_holds_back_incomplete_utf8(tiny):
    ni = "你".encode()                                          # e4 bd a0
    stream = tiny.stream()
    assert stream.push(ord("a")) == "a"
    assert stream.push(ni[0]) == ""
    assert stream.push(ni[1]) == ""
    assert stream.push(ni[2]) == "你"
    assert stream.push(ni[0]) == ""
    assert stream.flush() == "\ufffd"                           # leftover bytes: one U+FFFD
    assert stream.flush() == ""
    assert stream.push(0xFF) == "\ufffd"                        # never valid: replaced at once
    assert stream.push(ni[0]) == "" and stream.push(ord("b")) == "\ufffdb"


def test_encode_rejects_non_text(tiny):
    with pytest.raises(TypeError):
        tiny.encode(b"bytes")
    with pytest.raises(TokenizerError, match="surrogate"):
        tiny.encode("a\ud800b")


def test_missing_byte_token_is_an_encode_error():
    meta = tiny_metadata()
    tokens = list(meta["tokenizer.ggml.tokens"])
    assert "Q" not in TRAINING_TEXT
    tokens[ord("Q")] = "<never>"       # byte 0x51 has no token now (and no merge uses it)
    tok = Tokenizer.from_metadata({**meta, "tokenizer.ggml.tokens": tokens})
    assert tok.encode("fine") == Tokenizer.from_metadata(meta).encode("fine")
    with pytest.raises(TokenizerError, match="0x51"):
        tok.encode("fine Quote")


def test_long_pieces_and_cache(tiny, oracle):
    text = "ab" * 5000 + " " + "a" * 3000 + "\n" * 2000
    assert tiny.encode(text) == oracle(text)
    again = tiny.encode(text)                                 # second time through the cache
    assert again == oracle(text)


# --- metadata errors ------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, field", [
    ({"tokenizer.ggml.model": "bert"}, "model"),
    ({"tokenizer.ggml.model": None}, "model"),
    ({"tokenizer.ggml.model": 3}, "model"),
    ({"tokenizer.ggml.pre": "deepseek-llm"}, "pre"),
    ({"tokenizer.ggml.pre": None}, "pre"),
    ({"tokenizer.ggml.tokens": None}, "tokens"),
    ({"tokenizer.ggml.tokens": []}, "tokens"),
    ({"tokenizer.ggml.tokens": "abc"}, "tokens"),
    ({"tokenizer.ggml.tokens": ["a", 3]}, "tokens"),
    ({"tokenizer.ggml.token_type": [1, 2]}, "token_type"),
    ({"tokenizer.ggml.token_type": ["x"] * 400}, "token_type"),
    ({"tokenizer.ggml.merges": None}, "merges"),
    ({"tokenizer.ggml.merges": ["ab"]}, "merges"),
    ({"tokenizer.ggml.merges": ["a  b"]}, "merges"),
    ({"tokenizer.ggml.merges": ["a b c"]}, "merges"),
    ({"tokenizer.ggml.merges": ["\u4e00 \u4e01"]}, "merges"),
    ({"tokenizer.ggml.merges": ["a b", "x y"]}, "merges"),
    ({"tokenizer.ggml.eos_token_id": 10**6}, "eos_token_id"),
    ({"tokenizer.ggml.bos_token_id": "1"}, "bos_token_id"),
    ({"tokenizer.ggml.add_bos_token": 1}, "add_bos_token"),
])
def test_bad_metadata_is_a_one_line_error(overrides, field):
    with pytest.raises(TokenizerError) as info:
        Tokenizer.from_metadata(tiny_metadata(**overrides))
    message = str(info.value)
    assert f"tokenizer.ggml.{field}" in message and "\n" not in message


def test_unknown_model_and_pre_are_named():
    with pytest.raises(TokenizerError, match="'bert'"):
        Tokenizer.from_metadata(tiny_metadata(**{"tokenizer.ggml.model": "bert"}))
    with pytest.raises(TokenizerError, match="'deepseek-llm'"):
        Tokenizer.from_metadata(tiny_metadata(**{"tokenizer.ggml.pre": "deepseek-llm"}))
    with pytest.raises(TokenizerError, match="expected a dict"):
        Tokenizer.from_metadata(["not", "a", "dict"])


def test_metadata_arrays_may_be_numpy(tiny):
    meta = tiny_metadata()
    meta["tokenizer.ggml.token_type"] = np.asarray(meta["tokenizer.ggml.token_type"], dtype=np.int32)
    meta["tokenizer.ggml.eos_token_id"] = np.uint32(meta["tokenizer.ggml.eos_token_id"])
    tok = Tokenizer.from_metadata(meta)
    assert tok.encode(TINY_TEXTS[13]) == tiny.encode(TINY_TEXTS[13])


def test_optional_fields_may_be_absent():
    tok = Tokenizer.from_metadata(tiny_metadata(**{
        "tokenizer.ggml.token_type": None, "tokenizer.ggml.bos_token_id": None,
        "tokenizer.ggml.eos_token_id": None, "tokenizer.ggml.padding_token_id": None,
        "tokenizer.ggml.add_bos_token": None}))
    assert tok.special_tokens == {} and tok.bos_id is None and tok.eos_id is None
    assert tok.eot_ids == {tok.n_vocab - len(SPECIALS) - 1 + list(SPECIALS).index(t) for t in ("<|endoftext|>", "<|im_end|>")}
    assert tok.decode(tok.encode("<|im_start|>hi")) == "<|im_start|>hi"


def test_from_gguf(tmp_path):
    meta = tiny_metadata()
    path = tmp_path / "tok.gguf"
    write_gguf(path, meta, [], types={"tokenizer.ggml.token_type": (ValueType.ARRAY, ValueType.INT32)})
    tok = Tokenizer.from_gguf(path)
    ref = Tokenizer.from_metadata(meta)
    for text in TINY_TEXTS:
        assert tok.encode(text) == ref.encode(text)
    broken = tmp_path / "broken.gguf"
    write_gguf(broken, {**meta, "tokenizer.ggml.pre": "nope"}, [])
    with pytest.raises(TokenizerError, match=r"broken\.gguf.*tokenizer\.ggml\.pre.*'nope'"):
        Tokenizer.from_gguf(broken)


# --- properties (a few examples here; python -m fuzz.tokenizer runs thousands) ---------------



@few
@given(props.texts)
def test_tiny_roundtrip(tiny, text):
    props.check_roundtrip(tiny, text)


@few
@given(props.fragment_text)
def test_tiny_matches_oracle_on_generated_text(tiny, oracle, text):
    assert tiny.encode(text) == oracle(text)


@few
@given(st.data())
def test_tiny_stream(tiny, data):
    props.check_stream(tiny, data.draw(props.token_ids(tiny.n_vocab)))


# --- the real model -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real(real_model_path):
    return Tokenizer.from_gguf(real_model_path)


def golden_cases():
    return [json.loads(line) for line in GOLDEN.open()]


@pytest.mark.real
def test_golden_ids_exact(real):
    cases = golden_cases()
    wrong = [c["text"][:40] for c in cases if real.encode(c["text"]) != c["ids"]]
    assert not wrong, f"{len(wrong)}/{len(cases)} golden texts encode differently: {wrong[:5]}"


@pytest.mark.real
def test_golden_decode_exact(real):
    cases = golden_cases()
    wrong = [c["text"][:40] for c in cases if real.decode(c["ids"]) != c["text"]]
    assert not wrong, f"{len(wrong)}/{len(cases)} golden id lists decode differently: {wrong[:5]}"


@pytest.mark.real
def test_real_vocabulary_facts(real):
    assert real.n_vocab == 151_936
    assert real.bos_id == 151_643 and real.eos_id == 151_645
    assert real.eot_ids == {151_643, 151_645}
    assert real.special_tokens["<|im_start|>"] == 151_644
    assert real.special_tokens["<|fim_prefix|>"] == 151_659
    assert real.special_tokens["<tool_call>"] == 151_657
    assert "[PAD151665]" not in real.special_tokens
    assert real.token_to_piece(220) == b" "
    assert real.encode("<|im_start|>", parse_special=False) == [27, 91, 318, 4906, 91, 29]


@pytest.mark.real
@pytest.mark.parametrize("text, pieces, ids", [
    # letters and numbers that Unicode 17 added are "other" to the reference (Unicode 16);
    # the ids are the reference's
    ("a\u088fb", ["a", "\u088fb"], [64, 156, 95, 237, 65]),
    ("\U00011de0\U00011de1", ["\U00011de0\U00011de1"], [128240, 115, 254, 128240, 115, 94]),
    ("x \U000323b0\U000323b1y", ["x", " \U000323b0\U000323b1", "y"],
     [87, 220, 172, 110, 236, 108, 172, 110, 236, 109, 88]),
])
def test_unicode_17_code_points_follow_the_reference(real, text, pieces, ids):
    assert real._pre.split(text) == pieces
    assert real.encode(text) == ids
    assert real.decode(ids) == text


class TestRealProperties(real_tokenizer_properties()):
    @pytest.fixture(scope="class")
    def tok(self, real):
        return real


@pytest.fixture(scope="module")
def reference(real_model_path):
    pytest.importorskip("tokenizers")
    from ignis.gguf import GGUFFile
    with GGUFFile(real_model_path) as gguf:
        return props.hf_reference(gguf.metadata)


@pytest.mark.real
@few
@given(props.texts)
def test_real_matches_reference(real, reference, text):
    props.check_reference(real, reference, text)
