"""Tokenizers of the second-wave models: SentencePiece-style (Gemma 3: tokenizer.ggml.model
"llama") and byte-level BPE with the smollm pre-tokenizer (SmolLM2). A tiny SentencePiece
vocabulary is checked against a naive oracle; the real vocabularies against llama.cpp's
golden ids (marked real)."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ignis.errors import TokenizerError
from ignis.gguf import ValueType, write_gguf
from ignis.tokenizer import Tokenizer
from ignis.tokenizer._pretokenize import pre_tokenizer
from ignis.tokenizer._special import LongestFirstSplitter, SpecialSplitter

from helpers import few, props, real_tokenizer_properties

DATA = Path(__file__).parent / "data"

# --- a tiny SentencePiece-style vocabulary and a naive oracle --------------------------------

SPACE = "\u2581"
# (text, score): a higher score merges first; "ab", "ba" and "bb" tie, so the leftmost wins
PIECES = [
    ("▁", -1.0), ("a", -2.0), ("b", -2.0), ("c", -2.0), ("t", -2.0), ("h", -2.0), ("e", -2.0),
    ("é", -3.0), ("你", -3.0),
    ("ab", -5.0), ("ba", -5.0), ("bb", -5.0), ("aa", -6.0), ("aaa", -4.0),
    ("th", -7.0), ("he", -8.0), ("the", -9.0), ("▁t", -10.0), ("▁th", -11.0), ("▁the", -3.5),
    ("ca", -12.0), ("at", -12.5), ("cat", -13.0), ("▁c", -14.0), ("▁cat", -4.5), ("▁▁", -20.0),
    ("é▁", -6.5), ("<s", -30.0), ("<", -2.0), (">", -2.0), ("s", -2.0),
]
CONTROL = ["<unk>", "<s>", "</s>", "<start_of_turn>"]
USER_DEFINED = ["  ", "\n"]


def tiny_spm_metadata(**overrides) -> dict:
    tokens = list(CONTROL) + [f"<0x{b:02X}>" for b in range(256)] + [t for t, _ in PIECES] + USER_DEFINED
    scores = [0.0] * len(CONTROL) + [0.0] * 256 + [s for _, s in PIECES] + [0.0] * len(USER_DEFINED)
    types = [3] * len(CONTROL) + [6] * 256 + [1] * len(PIECES) + [4] * len(USER_DEFINED)
    metadata = {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_space_prefix": False,
    }
    metadata.update(overrides)
    return {k: v for k, v in metadata.items() if v is not None}


def oracle_spm(text: str, metadata: dict) -> list:
    """Textbook score merging: join the best adjacent pair (highest score, then leftmost)
    whose text is a token, until none is; leftovers fall back to <0xXX> tokens.
    No special tokens (texts for it avoid them)."""
    tokens = metadata["tokenizer.ggml.tokens"]
    scores = metadata["tokenizer.ggml.scores"]
    ids = {t: i for i, t in enumerate(tokens)}
    symbols = list(text.replace(" ", SPACE))
    while True:
        best = None
        for i in range(len(symbols) - 1):
            merged = symbols[i] + symbols[i + 1]
            if merged in ids and (best is None or scores[ids[merged]] > best[0]):
                best = (scores[ids[merged]], i)
        if best is None:
            break
        i = best[1]
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
    out = []
    for symbol in symbols:
        if symbol in ids:
            out.append(ids[symbol])
        else:
            out.extend(ids[f"<0x{b:02X}>"] for b in symbol.encode())
    return out


@pytest.fixture(scope="module")
def spm():
    return Tokenizer.from_metadata(tiny_spm_metadata())


def _id(text: str) -> int:
    return tiny_spm_metadata()["tokenizer.ggml.tokens"].index(text)


SPM_TEXTS = [
    "", "a", "aba", "abab", "bab", "aaaa", "aaaaaaa", "the cat", " the cat ", "thecat", "cat the",
    "é é", "你好", "🙂", "x", "the 🙂 cat\t", "a" * 500, "ab" * 300, "é " * 20, "< s>", "<s",
]


@pytest.mark.parametrize("text", SPM_TEXTS)
def test_spm_matches_oracle(spm, text):
    ids = spm.encode(text)
    assert ids == oracle_spm(text, tiny_spm_metadata())
    assert spm.decode(ids) == text


def test_spm_ties_merge_leftmost_and_scores_decide(spm):
    # "ab" and "ba" score the same: the leftmost pair merges
    assert spm.encode("aba") == [_id("ab"), _id("a")]
    assert spm.encode("bab") == [_id("ba"), _id("b")]
    # "aaa" scores better than "aa": a, a, a -> aa + a (only pair) -> aaa
    assert spm.encode("aaa") == [_id("aaa")]
    # "▁the" outscores every piece on the way, but is built from them
    assert spm.encode(" the") == [_id("▁the")]
    assert spm.encode(" cat") == [_id("▁cat")]


def test_spm_byte_fallback_and_pieces(spm):
    ids = spm.encode("🙂x")
    assert ids == [_id(f"<0x{b:02X}>") for b in "🙂x".encode()]
    assert b"".join(spm.token_to_piece(i) for i in ids) == "🙂x".encode()
    assert spm.token_to_piece(_id("▁the")) == b" the"
    assert spm.token_to_piece(_id("<0x0A>")) == b"\n"
    assert spm.token_to_piece(_id("<start_of_turn>")) == b"<start_of_turn>"
    assert spm.decode([_id("<0xE4>"), _id("<0xBD>")]) == "\ufffd"


def test_spm_special_tokens(spm):
    sot = _id("<start_of_turn>")
    assert spm.encode("a<start_of_turn>b") == [_id("a"), sot, _id("b")]
    assert sot not in spm.encode("a<start_of_turn>b", parse_special=False)
    # user-defined tokens are text: matched whether or not special tokens are parsed
    for parse_special in (True, False):
        assert spm.encode("a  b\n", parse_special) == [_id("a"), _id("  "), _id("b"), _id("\n")]
    # control tokens can still be reached by merging when they are not parsed, as in llama.cpp
    assert spm.encode("<s", parse_special=False) == [_id("<s")]
    assert spm.bos_id == 1 and spm.eos_id == 2 and spm.add_bos is True
    assert spm.special_tokens["<start_of_turn>"] == sot and "  " in spm.special_tokens


def test_spm_space_prefix():
    tok = Tokenizer.from_metadata(tiny_spm_metadata(**{"tokenizer.ggml.add_space_prefix": True}))
    sot = _id("<start_of_turn>")
    assert tok.encode("the") == [_id("▁the")]
    # a space goes before the text and after each special token (user-defined ones too, as
    # in llama.cpp), not elsewhere
    assert tok.encode("the<start_of_turn>cat  the") == [_id("▁the"), sot, _id("▁cat"), _id("  "), _id("▁the")]
    assert tok.encode("cat the") == [_id("▁cat"), _id("▁the")]
    # llama.cpp's default when the key is absent: on
    absent = Tokenizer.from_metadata(tiny_spm_metadata(**{"tokenizer.ggml.add_space_prefix": None}))
    assert absent.encode("cat") == [_id("▁cat")]


def test_spm_without_byte_tokens_uses_unknown():
    meta = tiny_spm_metadata()
    tokens = [t if not t.startswith("<0x") else f"<byte{i}>" for i, t in enumerate(meta["tokenizer.ggml.tokens"])]
    tok = Tokenizer.from_metadata({**meta, "tokenizer.ggml.tokens": tokens})
    assert tok.encode("a🙂b") == [_id("a"), 0, _id("b")]       # one <unk> per unknown character
    no_unk = {**meta, "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.unknown_token_id": None}
    with pytest.raises(TokenizerError, match="no unknown token"):
        Tokenizer.from_metadata(no_unk).encode("a🙂b")


def test_spm_rejects_lone_surrogates(spm):
    with pytest.raises(TokenizerError, match="surrogate"):
        spm.encode("a\ud800b")


def test_spm_long_text(spm):
    text = ("the cat " * 100) + "🙂" * 50 + "ab" * 300
    assert spm.encode(text) == oracle_spm(text, tiny_spm_metadata())     # the oracle is quadratic
    text = ("the cat é " * 5000) + "🙂" * 5000 + "ab" * 20000
    assert spm.decode(spm.encode(text)) == text


def test_spm_from_gguf(tmp_path):
    meta = tiny_spm_metadata()
    path = tmp_path / "spm.gguf"
    write_gguf(path, meta, [], types={"tokenizer.ggml.token_type": (ValueType.ARRAY, ValueType.INT32),
                                      "tokenizer.ggml.scores": (ValueType.ARRAY, ValueType.FLOAT32)})
    tok = Tokenizer.from_gguf(path)
    for text in SPM_TEXTS:
        assert tok.encode(text) == oracle_spm(text, meta)


@few
@given(st.binary(max_size=200))
def test_spm_merger_takes_any_bytes(spm, data):
    # the compiled loop on bytes that need not be UTF-8: no crash, and every byte comes back
    ids = []
    spm._encoder._merger.encode(data, ids)
    assert b"".join(spm.token_to_piece(i) for i in ids) == data.replace(SPACE.encode(), b" ")


def test_spm_merger_rejects_non_bytes(spm):
    with pytest.raises(TypeError):
        spm._encoder._merger.encode(None, [])
    with pytest.raises(TypeError):
        spm._encoder._merger.encode(b"ab", None)


@pytest.mark.parametrize("args, error", [
    (([None], [0.0], [-1] * 256), TypeError),
    (([b"a"], [0.0, 1.0], [-1] * 256), ValueError),
    (([b"a"], [0.0], [-1] * 255), ValueError),
    (([b"a"], [0.0], [5] * 256), ValueError),
    (([b"a"], [0.0], [-1] * 256, 7), ValueError),
])
def test_spm_merger_checks_its_arguments(args, error):
    from ignis.tokenizer._spm import SPMMerger
    with pytest.raises(error):
        SPMMerger(*args)


spm_text = st.text(st.sampled_from("abcthe é你🙂xs<>\t"), max_size=80)


@few
@given(spm_text)
def test_spm_matches_oracle_on_generated_text(spm, text):
    assume("  " not in text)        # a user-defined token, which the oracle does not know
    assert spm.encode(text, parse_special=False) == oracle_spm(text, tiny_spm_metadata())


@few
@given(props.texts)
def test_spm_roundtrip(spm, text):
    props.check_roundtrip(spm, text)


@few
@given(st.data())
def test_spm_stream(spm, data):
    props.check_stream(spm, data.draw(props.token_ids(spm.n_vocab)))


# --- special tokens as llama.cpp matches them ------------------------------------------------

def test_control_looking_texts_are_control_tokens():
    # llama.cpp retypes end-of-generation and fill-in-the-middle markers as control tokens:
    # a user-defined "</s>" is then not matched in untrusted text, a normal "<|im_end|>" is
    # matched in trusted text
    meta = tiny_spm_metadata()
    tokens = meta["tokenizer.ggml.tokens"] + ["</s>", "<|im_end|>"]
    types = meta["tokenizer.ggml.token_type"] + [4, 1]
    scores = meta["tokenizer.ggml.scores"] + [0.0, 0.0]
    tok = Tokenizer.from_metadata({**meta, "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
                                   "tokenizer.ggml.scores": scores})
    end_s, im_end = len(tokens) - 2, len(tokens) - 1
    assert tok.encode("a</s>a<|im_end|>") == [_id("a"), end_s, _id("a"), im_end]
    plain = tok.encode("a</s>a<|im_end|>", parse_special=False)
    assert end_s not in plain and im_end not in plain
    assert tok.special_tokens["</s>"] == end_s and tok.special_tokens["<|im_end|>"] == im_end


def test_longest_first_differs_from_leftmost_longest():
    specials = {"ab": 10, "bcd": 11}
    # llama.cpp takes the longer token first wherever it is; the leftmost-longest rule does not
    assert LongestFirstSplitter(specials).split("abcd") == ["a", 11]
    assert SpecialSplitter(specials).split("abcd") == [10, "cd"]
    assert LongestFirstSplitter(specials).split("ab-bcd-ab") == [10, "-", 11, "-", 10]
    assert LongestFirstSplitter(specials).split("abab", parse_special=False) == ["abab"]
    assert LongestFirstSplitter(specials, always=["ab"]).split("abab", parse_special=False) == [10, 10]
    assert LongestFirstSplitter({}).split("") == []


# --- the smollm pre-tokenizer ----------------------------------------------------------------

@pytest.mark.parametrize("text, pieces", [
    ("12345", ["1", "2", "3", "4", "5"]),
    ("a 12 b", ["a", " ", "1", "2", " b"]),
    ("x   1", ["x", "   ", "1"]),            # the space run ends at the digit: no lookahead past it
    ("x   y", ["x", "  ", " y"]),
    ("IT'S it's", ["IT", "'", "S", " it", "'s"]),
    ("v1.2", ["v", "1", ".", "2"]),
    ("\t\tx", ["\t", "\t", "x"]),
    ("٣٤ ²", ["٣", "٤", " ", "²"]),           # any number character, not only ASCII digits
    ("hello  world!!\n", ["hello", " ", " world", "!!", "\n"]),
    # letters and numbers that Unicode 16 and 17 added are "other" to llama.cpp
    ("x\U00011de0'll", ["x", "\U00011de0'", "ll"]),
    ("a\u088fb \U00010d40", ["a", "\u088f", "b", " \U00010d40"]),
    ("\U000323b0\U000323b1 1", ["\U000323b0\U000323b1", " ", "1"]),
])
def test_smollm_pre_tokenizer(text, pieces):
    assert pre_tokenizer("smollm").split(text) == pieces


@few
@given(props.texts)
def test_smollm_pieces_concatenate_to_the_text(text):
    assert "".join(pre_tokenizer("smollm").split(text)) == text


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, field, named", [
    ({"tokenizer.ggml.model": "bert"}, "model", "'bert'"),
    ({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "default", "tokenizer.ggml.merges": []},
     "pre", "'default'"),
    ({"tokenizer.ggml.scores": [0.0] * 5}, "scores", "5 entries"),
    ({"tokenizer.ggml.scores": ["x"] * 10}, "scores", "numbers"),
    ({"tokenizer.ggml.unknown_token_id": 10**6}, "unknown_token_id", "outside"),
    ({"tokenizer.ggml.add_space_prefix": "yes"}, "add_space_prefix", "bool"),
])
def test_bad_metadata_is_a_one_line_error(overrides, field, named):
    with pytest.raises(TokenizerError) as info:
        Tokenizer.from_metadata(tiny_spm_metadata(**overrides))
    message = str(info.value)
    assert f"tokenizer.ggml.{field}" in message and named in message and "\n" not in message


def test_nan_score_is_an_error():
    scores = list(tiny_spm_metadata()["tokenizer.ggml.scores"])
    scores[200] = float("nan")
    with pytest.raises(TokenizerError, match=r"tokenizer\.ggml\.scores\[200\]"):
        Tokenizer.from_metadata(tiny_spm_metadata(**{"tokenizer.ggml.scores": scores}))


def test_pre_does_not_matter_for_sentencepiece():
    for pre in ("default", "anything", None):
        tok = Tokenizer.from_metadata(tiny_spm_metadata(**{"tokenizer.ggml.pre": pre}))
        assert tok.encode(" the") == [_id("▁the")]


def test_scores_are_optional():
    tok = Tokenizer.from_metadata(tiny_spm_metadata(**{"tokenizer.ggml.scores": None}))
    assert tok.encode("aba") == [_id("ab"), _id("a")]          # all equal: leftmost first


# --- the real vocabularies -------------------------------------------------------------------

def _pull(name: str) -> str:
    from ignis.hub import CATALOGUE, pull
    return str(pull(CATALOGUE[name], progress=False))


@pytest.fixture(scope="module")
def gemma3():
    return Tokenizer.from_gguf(_pull("gemma3-270m"))


@pytest.fixture(scope="module")
def smollm2():
    return Tokenizer.from_gguf(_pull("smollm2-135m"))


def _golden(name: str) -> list:
    return [json.loads(line) for line in (DATA / f"tokenizer_{name}_public.jsonl").open()]


# each golden case both ways: (does the tokenizer agree with the case, what the failure says)
_GOLDEN_WAYS = {
    "encode": (lambda tok, case: tok.encode(case["text"]) == case["ids"], "golden texts encode"),
    "decode": (lambda tok, case: tok.decode(case["ids"]) == case["text"], "golden id lists decode"),
}


@pytest.mark.real
@pytest.mark.parametrize("way", sorted(_GOLDEN_WAYS))
@pytest.mark.parametrize("name", ["gemma3", "smollm2"])
def test_golden_exact(request, name, way):
    tok = request.getfixturevalue(name)
    agrees, what = _GOLDEN_WAYS[way]
    cases = _golden(name)
    wrong = [c["text"][:40] for c in cases if not agrees(tok, c)]
    assert not wrong, f"{len(wrong)}/{len(cases)} {what} differently: {wrong[:5]}"


@pytest.mark.real
def test_gemma3_vocabulary_facts(gemma3):
    assert gemma3.n_vocab == 262_144 and gemma3.model == "llama"
    assert gemma3.bos_id == 2 and gemma3.eos_id == 1 and gemma3.add_bos is True
    assert {1, 106} <= gemma3.eot_ids                                   # <eos>, <end_of_turn>
    assert gemma3.special_tokens["<start_of_turn>"] == 105
    assert gemma3.encode("<start_of_turn>user\nHi", parse_special=False)[0] != 105
    assert gemma3.token_to_piece(1902) == b" world" and gemma3.token_to_piece(248) == b"\n"
    assert gemma3.encode("Hello  world") == [9259, 138, 12392]          # "  " is a user-defined token
    # "</s>" is user-defined in the file, but a control token to llama.cpp
    assert gemma3.encode("a</s>") == [236746, 212] and 212 not in gemma3.encode("a</s>", parse_special=False)


@pytest.mark.real
def test_smollm2_vocabulary_facts(smollm2):
    assert smollm2.n_vocab == 49_152 and smollm2.model == "gpt2"
    assert smollm2.eos_id == 2 and smollm2.eot_ids == {0, 2}
    assert smollm2.special_tokens["<|im_start|>"] == 1
    # the vocabulary has no token for byte 0x04: llama.cpp leaves it out, and so do we
    assert smollm2.encode("a\x04b") == smollm2.encode("a") + smollm2.encode("b")


class TestGemma3Properties(real_tokenizer_properties()):
    @pytest.fixture(scope="class")
    def tok(self, gemma3):
        return gemma3


@pytest.mark.real
@few
@given(props.texts)
def test_gemma3_pieces_concatenate(gemma3, text):
    ids = gemma3.encode(text, parse_special=False)
    assert b"".join(gemma3.token_to_piece(i) for i in ids) == text.encode("utf-8", "surrogatepass")


# bytes SmolLM2's vocabulary has a token for: a text made of them round-trips
def _smollm2_encodable(text: str, missing=frozenset((0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2,
                                                     *range(0xF5, 0x100)))) -> bool:
    return not missing.intersection(text.encode("utf-8", "surrogatepass"))


@pytest.mark.real
@few
@given(props.texts.filter(_smollm2_encodable))
def test_smollm2_roundtrip(smollm2, text):
    props.check_roundtrip(smollm2, text)


# llama.cpp itself (llama-cpp-python, a test dependency), where it is installed

def _llama_cpp(name: str):
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(_pull(name), vocab_only=True, verbose=False)


@pytest.fixture(scope="module")
def gemma3_reference():
    return _llama_cpp("gemma3-270m")


@pytest.fixture(scope="module")
def smollm2_reference():
    return _llama_cpp("smollm2-135m")


@pytest.fixture(scope="module", params=["gemma3", "smollm2"])
def tokenizer_and_reference(request):
    """(ignis' tokenizer, llama.cpp's) of one model."""
    return request.getfixturevalue(request.param), request.getfixturevalue(f"{request.param}_reference")


@pytest.mark.real
@few
@given(props.texts, st.booleans())
def test_matches_llama_cpp(tokenizer_and_reference, text, parse_special):
    tok, reference = tokenizer_and_reference
    expected = reference.tokenize(text.encode(), add_bos=False, special=parse_special)
    assert tok.encode(text, parse_special) == expected
