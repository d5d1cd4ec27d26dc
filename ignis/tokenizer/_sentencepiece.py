"""SentencePiece-style tokenization (tokenizer.ggml.model = "llama", e.g. Gemma 3).

Token texts are plain UTF-8 with U+2581 ("▁") standing for a space; there are no merge
rules, only a score per token: the merge loop (_spm.pyx) joins adjacent symbols into the
highest-scoring token, and a character no token covers becomes its bytes' <0xXX> tokens.
There is no pre-tokenizer: each plain segment between special tokens is merged whole.
With tokenizer.ggml.add_space_prefix (llama.cpp's default when the key is absent; Gemma 3
has it off) a space goes before the text and after each special token; it is part of the
ids, and decoding gives it back, as llama.cpp's token_to_piece does."""
import regex

from ignis.errors import TokenizerError
from ignis.tokenizer._spm import SPMMerger
from ignis.tokenizer._vocab import TYPE_BYTE, TYPE_NORMAL, Vocab

SPACE_MARK = "\u2581"
_BYTE_TOKEN = regex.compile(r"<0x([0-9A-Fa-f]{2})>")


def byte_token_value(text: str) -> int | None:
    """The byte a <0xXX> token text stands for, or None for any other text."""
    match = _BYTE_TOKEN.fullmatch(text)
    return int(match.group(1), 16) if match else None


def _fallback_ids(token_to_id: dict) -> list:
    """byte -> the token it falls back to: <0xXX> (upper-case hex, as the converters write
    it), else a token whose text is that one byte (ASCII only), else -1."""
    ids = []
    for b in range(256):
        token_id = token_to_id.get(f"<0x{b:02X}>")
        if token_id is None and b < 0x80:
            token_id = token_to_id.get(chr(b))
        ids.append(-1 if token_id is None else token_id)
    return ids


def spm_pieces(tokens: list, types: list) -> list:
    """token id -> the bytes it stands for: normal tokens with ▁ as a space, byte tokens
    their byte, every other token (control, user-defined, unknown...) its text as written."""
    pieces = []
    for text, kind in zip(tokens, types):
        if kind == TYPE_NORMAL:
            pieces.append(text.replace(SPACE_MARK, " ").encode("utf-8"))
            continue
        value = byte_token_value(text) if kind == TYPE_BYTE else None
        pieces.append(text.encode("utf-8") if value is None else bytes((value,)))
    return pieces


class SentencePieceEncoder:
    """Plain text segments -> ids for one SentencePiece-style vocabulary."""

    def __init__(self, vocab: Vocab, token_to_id: dict):
        texts = [text.encode("utf-8") for text in vocab.tokens]
        unk = -1 if vocab.unk_id is None else vocab.unk_id
        self._merger = SPMMerger(texts, vocab.scores, _fallback_ids(token_to_id), unk)
        self._space_prefix = vocab.add_space_prefix

    def encode(self, text: str, out: list, after_special: bool) -> None:
        """Append the ids of one plain segment to out. after_special: the segment starts the
        text or follows a special token, where add_space_prefix puts a space."""
        if self._space_prefix and after_special:
            text = " " + text
        try:
            data = text.replace(" ", SPACE_MARK).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TokenizerError(f"cannot encode {text!r}: {exc.reason} "
                                 "(a lone surrogate has no UTF-8 form)") from None
        self._merger.encode(data, out)
