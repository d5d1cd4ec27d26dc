"""Pre-tokenization: cut a text (with no special tokens in it) into the pieces BPE merges
within (tokenizer.ggml.pre names the rules: "qwen2", or "smollm" further down). Byte-level BPE never merges across piece boundaries, so this regex decides as
much of the result as the merges do.

The Qwen2 pattern is the one its reference tokenizer uses (Hugging Face `tokenizers`,
whose regex engine is Oniguruma). Its letter/number classes come from the engine's
Unicode tables, and those lag the `regex` package's: code points that Unicode 17.0
assigned as letters or numbers were unassigned in 16.0, the version the reference knows,
so there they fall in the "anything else" class. A text holding one of them (a cheap
scan tells) is split with an exact variant whose classes leave them out; every other
text takes the fast pattern. The two agree on every text without such a code point.
"""
import regex

from ignis.errors import TokenizerError
from ignis.tokenizer._bpe import contains_marked

_QWEN2_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"


def _qwen2_pattern(letter: str, number: str) -> str:
    """The Qwen2 pre-tokenizer pattern, with the letter and number classes as given
    (each a class body, e.g. r"\\p{L}")."""
    return (_QWEN2_CONTRACTIONS
            + rf"|[^\r\n{letter}{number}]?[{letter}]+"
            + rf"|[{number}]"
            + rf"| ?[^\s{letter}{number}]+[\r\n]*"
            + r"|\s*[\r\n]+"
            + r"|\s+(?!\S)"
            + r"|\s+")


# Letters (L) and numbers (N) as of Unicode 17.0 that were unassigned in Unicode 16.0.
UNICODE_17_LETTERS_NUMBERS = (
    (0x088F, 0x088F), (0x0C5C, 0x0C5C), (0x0CDC, 0x0CDC), (0xA7CE, 0xA7CF), (0xA7D2, 0xA7D2),
    (0xA7D4, 0xA7D4), (0xA7F1, 0xA7F1), (0x10940, 0x10959), (0x10EC5, 0x10EC7),
    (0x11DB0, 0x11DDB), (0x11DE0, 0x11DE9), (0x16EA0, 0x16EB8), (0x16EBB, 0x16ED3),
    (0x16FF2, 0x16FF6), (0x187F8, 0x187FF), (0x18D09, 0x18D1E), (0x18D80, 0x18DF2),
    (0x1E6C0, 0x1E6DE), (0x1E6E0, 0x1E6E2), (0x1E6E4, 0x1E6E5), (0x1E6E7, 0x1E6ED),
    (0x1E6F0, 0x1E6F4), (0x1E6FE, 0x1E6FF), (0x2B73A, 0x2B73F), (0x2CEA2, 0x2CEAD),
    (0x323B0, 0x33479),
)


def _class_of(ranges) -> str:
    return "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)


def _bitmap_of(ranges) -> bytes:
    bits = bytearray(0x110000 // 8)
    for lo, hi in ranges:
        for c in range(lo, hi + 1):
            bits[c >> 3] |= 1 << (c & 7)
    return bytes(bits)


class PreTokenizer:
    """Splits text into pre-tokens with a fast pattern, or an exact one when needed."""

    def __init__(self, fast: str, exact: str, newer_ranges):
        self._fast = regex.compile(fast)
        self._exact_source = exact
        self._exact = None                          # compiled on first use: rarely needed
        self._newer_bitmap = _bitmap_of(newer_ranges)
        self._newer_lowest = min((lo for lo, _ in newer_ranges), default=0x110000)

    def split(self, text: str) -> list:
        """The pre-tokens of text, in order; they concatenate back to text."""
        # concurrent=False keeps the GIL: releasing and retaking it around every match
        # costs a quarter of the regex time, and the matching here is short anyway
        if text.isascii() or not contains_marked(text, self._newer_bitmap, self._newer_lowest):
            return self._fast.findall(text, concurrent=False)
        if self._exact is None:
            self._exact = regex.compile(self._exact_source)
        return self._exact.findall(text, concurrent=False)


def _qwen2() -> PreTokenizer:
    newer = _class_of(UNICODE_17_LETTERS_NUMBERS)
    # V1 for the set difference "--"; the contractions behave the same under it
    exact = "(?V1)" + _qwen2_pattern(rf"[\p{{L}}--[{newer}]]", rf"[\p{{N}}--[{newer}]]")
    return PreTokenizer(_qwen2_pattern(r"\p{L}", r"\p{N}"), exact, UNICODE_17_LETTERS_NUMBERS)


# GPT-2's split pattern; the final \s+ takes the lone whitespace the others leave (the
# reference keeps any text no branch matches as a piece of its own: the same result)
_GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


class DigitsThenGPT2:
    """SmolLM's pre-tokenizer (tokenizer.ggml.pre = "smollm"), as llama.cpp applies it: every
    number character is a piece of its own, then GPT-2's pattern splits the text between
    them, each stretch on its own (so a lookahead never sees past a digit)."""

    def __init__(self):
        self._numbers = regex.compile(r"(\p{N})")
        self._gpt2 = regex.compile(_GPT2_PATTERN)

    def split(self, text: str) -> list:
        """The pre-tokens of text, in order; they concatenate back to text."""
        pieces = []
        # re.split with a group alternates: stretch, number, stretch, number, ..., stretch
        for k, part in enumerate(self._numbers.split(text, concurrent=False)):
            if k % 2:
                pieces.append(part)
            elif part:
                pieces.extend(self._gpt2.findall(part, concurrent=False))
        return pieces


_BUILDERS = {"qwen2": _qwen2, "smollm": DigitsThenGPT2}


def pre_tokenizer(name: str) -> PreTokenizer:
    """The pre-tokenizer that tokenizer.ggml.pre names."""
    try:
        return _BUILDERS[name]()
    except KeyError:
        raise TokenizerError(f"tokenizer.ggml.pre: unsupported pre-tokenizer {name!r} "
                             f"(supported: {', '.join(_BUILDERS)})") from None
