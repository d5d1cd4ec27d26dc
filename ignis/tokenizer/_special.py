"""Finds special tokens (control and user-defined ones, e.g. <|im_start|>) in a text.

They are matched before pre-tokenization, as whole strings: at each position the
leftmost occurrence wins and, among tokens starting there, the longest. The text
between two of them is pre-tokenized on its own, so nothing merges across them."""
import regex


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

    def split(self, text: str) -> list:
        """[segment or id, ...] in text order; segments are non-empty."""
        if self._pattern is None or (self._first_chars is not None
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
