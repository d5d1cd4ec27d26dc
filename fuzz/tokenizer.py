"""Tokenizer properties, run long: `python -m fuzz.tokenizer --examples 20000`.

The same strategies and properties back tests/test_tokenizer_props.py with a few
examples each. Properties, on the real model's vocabulary:
  roundtrip    decode(encode(s)) == s for arbitrary Unicode, with and without special tokens
  stream       what a stream detokenizer emits, token by token, is always a prefix of
               decode(ids), and push outputs + flush() == decode(ids)
  reference    encode(s) equals the reference tokenizer's ids (Hugging Face `tokenizers`
               built from the same GGUF, the way the golden ids were made); only when
               `tokenizers` is installed (a test-only dependency)
"""
import argparse
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# --- inputs -----------------------------------------------------------------------------

# pieces that stress the pre-tokenizer and the special-token matcher when glued together
FRAGMENTS = (
    " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\u00a0", "\u3000", "\u2028", "\x0b",
    "\x0c", "\x85", "\x1c", "\u200b", "\ufeff", "\u180e",
    "'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'LL", "'d", "'ſ", "'", "''", "\u2019s",
    "0", "7", "42", "1234", "\u00b2", "\u2460", "\u0663", "\u216b",
    "a", "Z", "the", "The", " the", "Hello", "world", "def", "return", "self", "_", "__init__",
    "é", "e\u0301", "\u0301", "\u0301\u0302", "\u093f", "\u0915\u094d\u0937",
    "👨\u200d👩\u200d👧\u200d👦", "🏳\ufe0f\u200d🌈", "\u200d", "\ufe0f", "👍🏽", "🌍",
    "你好", "世界", "こんにちは", "안녕", "Привет", "مرحبا", "שלום", "αβγ", "ﬁ", "Ａ", "İ", "ß",
    "(", ")", "[", "]", "{", "}", "<", ">", "|", "<|", "|>", "/", "\\", "::", "->", "=>", "!=",
    "...", "!!!", "?", ",", ";", "#", "@", "$", "%", "&&", "**", "```", "\"\"\"", "`",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<tool_call>", "</tool_call>", "<|im_start|", "|im_end|>", "<|im_start",
    "\u088f", "\U000323b0", "\U00011de0", "\U0001e6c0",  # letters/numbers new in Unicode 17
    "\U0010fffd", "\ue000", "\x00", "\x7f", "\x1b[0m",
)

unicode_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=120)
fragment_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), unicode_text.filter(lambda s: len(s) < 6)),
                         max_size=40).map("".join)
whitespace_text = st.lists(st.sampled_from((" ", "\t", "\n", "\r", "\r\n", "\u00a0", "x", "1", "!")),
                           max_size=300).map("".join)
texts = st.one_of(unicode_text, fragment_text, whitespace_text)


def token_ids(n_vocab: int):
    """Id sequences that mix byte tokens (so partial and invalid UTF-8 shows up) with any token."""
    return st.lists(st.one_of(st.integers(0, 255), st.integers(0, n_vocab - 1)), max_size=60)


# --- properties -------------------------------------------------------------------------

def check_roundtrip(tok, text: str) -> None:
    for parse_special in (True, False):
        ids = tok.encode(text, parse_special=parse_special)
        back = tok.decode(ids)
        assert back == text, (text, parse_special, ids, back)


def check_stream(tok, ids: list) -> None:
    expected = tok.decode(ids)
    stream = tok.stream()
    emitted = ""
    for token_id in ids:
        emitted += stream.push(token_id)
        assert expected.startswith(emitted), (ids, emitted, expected)
    emitted += stream.flush()
    assert emitted == expected, (ids, emitted, expected)


def check_reference(tok, reference, text: str) -> None:
    ours = tok.encode(text, parse_special=True)
    theirs = reference.encode(text, add_special_tokens=False).ids
    assert ours == theirs, (text, ours, theirs)


# --- the reference ----------------------------------------------------------------------

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def hf_reference(metadata: dict):
    """A Hugging Face `tokenizers` tokenizer built from GGUF metadata (test-only): byte-level
    BPE, the Qwen2 split pattern, control and user-defined tokens as special tokens."""
    from tokenizers import AddedToken, Regex, decoders, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import BPE

    tokens = list(metadata["tokenizer.ggml.tokens"])
    types = [int(t) for t in metadata["tokenizer.ggml.token_type"]]
    merges = [tuple(m.split(" ", 1)) for m in metadata["tokenizer.ggml.merges"]]
    hf = HFTokenizer(BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, unk_token=None,
                         fuse_unk=False, byte_fallback=False))
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(t, normalized=False, special=True)
                           for t, kind in zip(tokens, types) if kind in (3, 4)])
    return hf


def default_model_path() -> str:
    from ignis.hub import is_cached, model_path
    return str(model_path()) if is_cached() else "/tmp/model.gguf"


def load(path: str):
    """(our tokenizer, the HF reference or None) for the GGUF at path."""
    from ignis.gguf import GGUFFile
    from ignis.tokenizer import Tokenizer
    with GGUFFile(path) as gguf:
        metadata = gguf.metadata
    try:
        reference = hf_reference(metadata)
    except ImportError:
        reference = None
    return Tokenizer.from_metadata(metadata), reference


# --- the long run -----------------------------------------------------------------------

def run(path: str, examples: int) -> int:
    tok, reference = load(path)
    long_run = settings(max_examples=examples, deadline=None, database=None,
                        suppress_health_check=list(HealthCheck))
    checks = [
        ("roundtrip", given(texts)(lambda text: check_roundtrip(tok, text))),
        ("stream", given(token_ids(tok.n_vocab))(lambda ids: check_stream(tok, ids))),
        ("stream of encoded text", given(texts)(lambda text: check_stream(tok, tok.encode(text)))),
    ]
    if reference is not None:
        checks.append(("reference", given(texts)(lambda text: check_reference(tok, reference, text))))
    else:
        print("reference: skipped (pip install tokenizers to compare against Hugging Face)")
    failed = 0
    for name, check in checks:
        start = time.perf_counter()
        try:
            long_run(check)()
            print(f"{name}: {examples} examples ok ({time.perf_counter() - start:.1f} s)")
        except AssertionError as exc:
            failed += 1
            print(f"{name}: FAILED {exc!r}"[:2000])
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.tokenizer", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per property")
    parser.add_argument("--model", default=None, help="GGUF file (default: the pulled model)")
    args = parser.parse_args(argv)
    return run(args.model or default_model_path(), args.examples)


if __name__ == "__main__":
    sys.exit(main())
