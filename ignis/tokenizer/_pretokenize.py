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


# Letters (L) and numbers (N) that Unicode 16.0 and 17.0 added. llama.cpp, the reference of
# the smollm rules, classifies code points with tables older than both (measured against
# it code point by code point): to it they are "other".
UNICODE_16_17_LETTERS_NUMBERS = (
    (0x088F, 0x088F), (0x0C5C, 0x0C5C), (0x0CDC, 0x0CDC), (0x1C89, 0x1C8A), (0xA7CB, 0xA7CF),
    (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4), (0xA7DA, 0xA7DC), (0xA7F1, 0xA7F1), (0x105C0, 0x105F3),
    (0x10940, 0x10959), (0x10D40, 0x10D65), (0x10D6F, 0x10D85), (0x10EC2, 0x10EC7),
    (0x11380, 0x11389), (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5),
    (0x113B7, 0x113B7), (0x113D1, 0x113D1), (0x113D3, 0x113D3), (0x116D0, 0x116E3),
    (0x11BC0, 0x11BE0), (0x11BF0, 0x11BF9), (0x11DB0, 0x11DDB), (0x11DE0, 0x11DE9),
    (0x13460, 0x143FA), (0x16100, 0x1611D), (0x16130, 0x16139), (0x16D40, 0x16D6C),
    (0x16D70, 0x16D79), (0x16EA0, 0x16EB8), (0x16EBB, 0x16ED3), (0x16FF2, 0x16FF6),
    (0x187F8, 0x187FF), (0x18CFF, 0x18CFF), (0x18D09, 0x18D1E), (0x18D80, 0x18DF2),
    (0x1CCF0, 0x1CCF9), (0x1E5D0, 0x1E5ED), (0x1E5F0, 0x1E5FA), (0x1E6C0, 0x1E6DE),
    (0x1E6E0, 0x1E6E2), (0x1E6E4, 0x1E6E5), (0x1E6E7, 0x1E6ED), (0x1E6F0, 0x1E6F4),
    (0x1E6FE, 0x1E6FF), (0x2B73A, 0x2B73F), (0x2CEA2, 0x2CEAD), (0x323B0, 0x33479),
)


def _smollm_patterns(letter: str, number: str) -> tuple:
    """(one number character, GPT-2's split pattern) with the letter and number classes as
    given. GPT-2's final \\s+ takes the lone whitespace the other branches leave (the
    reference keeps any text no branch matches as a piece of its own: the same result)."""
    return (rf"([{number}])",
            rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letter}]+| ?[{number}]+| ?[^\s{letter}{number}]+|\s+(?!\S)|\s+")


class DigitsThenGPT2:
    """SmolLM's pre-tokenizer (tokenizer.ggml.pre = "smollm"), as llama.cpp applies it: every
    number character is a piece of its own, then GPT-2's pattern splits the text between
    them, each stretch on its own (so a lookahead never sees past a digit). Like the Qwen2
    one, a fast pattern pair serves every text without a code point whose class the
    reference sees otherwise, an exact pair (compiled on first use) the others."""

    def __init__(self):
        self._fast = tuple(map(regex.compile, _smollm_patterns(r"\p{L}", r"\p{N}")))
        self._exact = None
        self._newer_bitmap = _bitmap_of(UNICODE_16_17_LETTERS_NUMBERS)
        self._newer_lowest = UNICODE_16_17_LETTERS_NUMBERS[0][0]

    def _patterns(self, text: str) -> tuple:
        if text.isascii() or not contains_marked(text, self._newer_bitmap, self._newer_lowest):
            return self._fast
        if self._exact is None:
            newer = _class_of(UNICODE_16_17_LETTERS_NUMBERS)
            # V1 for the set difference "--"
            self._exact = tuple(regex.compile("(?V1)" + pattern) for pattern in _smollm_patterns(
                rf"[\p{{L}}--[{newer}]]", rf"[\p{{N}}--[{newer}]]"))
        return self._exact

    def split(self, text: str) -> list:
        """The pre-tokens of text, in order; they concatenate back to text."""
        numbers, gpt2 = self._patterns(text)
        pieces = []
        # split with a group alternates: stretch, number, stretch, number, ..., stretch
        for k, part in enumerate(numbers.split(text, concurrent=False)):
            if k % 2:
                pieces.append(part)
            elif part:
                pieces.extend(gpt2.findall(part, concurrent=False))
        return pieces


_BUILDERS = {"qwen2": _qwen2, "smollm": DigitsThenGPT2}


def pre_tokenizer(name: str) -> PreTokenizer:
    """The pre-tokenizer that tokenizer.ggml.pre names."""
    try:
        return _BUILDERS[name]()
    except KeyError:
        raise TokenizerError(f"tokenizer.ggml.pre: unsupported pre-tokenizer {name!r} "
                             f"(supported: {', '.join(_BUILDERS)})") from None
