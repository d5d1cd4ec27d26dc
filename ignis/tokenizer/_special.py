"""Finds special tokens (control and user-defined ones, e.g. <|im_start|>) in a text.

They are matched before pre-tokenization, as whole strings; the text between two of
them is encoded on its own, so nothing merges across them. Two matching rules, after
the two reference tokenizers: SpecialSplitter is leftmost-longest (Hugging Face
`tokenizers`, Qwen2's reference), LongestFirstSplitter is llama.cpp's."""
import regex

# Texts llama.cpp treats as control tokens whatever type the file gives them (it takes them
# for end-of-generation or fill-in-the-middle markers), measured against llama.cpp itself:
# a user-defined "</s>" in Gemma 3's vocabulary, for one, is not matched in untrusted text.
# (Of several fill-in-the-middle markers of one kind in a vocabulary, llama.cpp retypes only
# the first it meets; all of them are retyped here.)
LLAMA_CPP_CONTROL_TEXTS = frozenset((
    # end of generation
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
    "<\uff5cend\u2581of\u2581sentence\uff5c>", "<|end_of_text|>", "<end_of_utterance>", "<|eom_id|>",
    "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "</s>",
    # fill in the middle
    "<|fim_prefix|>", "<fim-prefix>", "<\uff5cfim\u2581begin\uff5c>", "<PRE>", "\u2581<PRE>", "<|code_prefix|>",
    "<fim_prefix>", "<|fim_suffix|>", "<fim-suffix>", "<\uff5cfim\u2581hole\uff5c>", "<SUF>", "\u2581<SUF>",
    "<|code_suffix|>", "<fim_suffix>", "<|fim_middle|>", "<fim-middle>", "<\uff5cfim\u2581end\uff5c>", "<MID>",
    "\u2581<MID>", "<|code_middle|>", "<fim_middle>", "<|fim_pad|>", "<fim-pad>", "<PAD>", "<fim_pad>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
))


class SpecialSplitter:
    """Cuts a text into plain segments (str) and special token ids (int)."""

    def __init__(self, special_tokens: dict):
        self._ids = dict(special_tokens)
        # an alternation tries its branches in order: longest first gives leftmost-longest
        texts = sorted((t for t in self._ids if t), key=lambda t: (-len(t), t))
        self._pattern = regex.compile("|".join(regex.escape(t) for t in texts)) if texts else None
        # a text holding none of their first characters has none of them: a cheap check
        # while those characters are few (all of Qwen2's start with "<")
        first_chars = {t[0] for t in texts}
        self._first_chars = tuple(sorted(first_chars)) if len(first_chars) <= 8 else None

    def split(self, text: str, parse_special: bool = True) -> list:
        """[segment or id, ...] in text order; segments are non-empty. Without
        parse_special, the text is one plain segment."""
        if not parse_special or self._pattern is None or (self._first_chars is not None
                                     and not any(c in text for c in self._first_chars)):
            return [text] if text else []
        parts = []
        start = 0
        for match in self._pattern.finditer(text, concurrent=False):
            if match.start() > start:
                parts.append(text[start:match.start()])
            parts.append(self._ids[match.group()])
            start = match.end()
        if start < len(text):
            parts.append(text[start:])
        return parts


class LongestFirstSplitter:
    """Special tokens as llama.cpp (the reference of the tokenizers it was checked against)
    finds them: longest token first (by UTF-8 length; the id breaks ties), each one cut
    out of every plain segment left, at all its non-overlapping occurrences from the left.
    This can differ from leftmost-longest when two tokens overlap in the text.
    Tokens in `always` (user-defined ones) are cut out even when parse_special is false."""

    def __init__(self, special_tokens: dict, always=()):
        self._ids = {text: i for text, i in special_tokens.items() if text}
        order = sorted(self._ids, key=lambda t: (-len(t.encode("utf-8")), self._ids[t]))
        self._rank = {text: r for r, text in enumerate(order)}
        self._always = frozenset(always) & self._ids.keys()
        # candidates are looked up by their first two characters (one for one-character
        # tokens): a text can only hold the tokens whose key it holds
        self._by_key = {}
        for text in order:
            self._by_key.setdefault(text[:2], []).append(text)

    def _candidates(self, text: str, parse_special: bool) -> list:
        keys = set(text)
        keys.update(map(str.__add__, text, text[1:]))
        found = [token for key in self._by_key.keys() & keys for token in self._by_key[key]
                 if (parse_special or token in self._always) and (len(token) <= 2 or token in text)]
        found.sort(key=self._rank.__getitem__)
        return found

    def split(self, text: str, parse_special: bool = True) -> list:
        """[segment or id, ...] in text order; segments are non-empty."""
        if not text:
            return []
        parts = [text]
        for token in self._candidates(text, parse_special):
            token_id = self._ids[token]
            cut = []
            for part in parts:
                if type(part) is int or token not in part:
                    cut.append(part)
                    continue
                for k, piece in enumerate(part.split(token)):
                    if k:
                        cut.append(token_id)
                    if piece:
                        cut.append(piece)
            parts = cut
        return parts
