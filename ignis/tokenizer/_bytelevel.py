"""Byte-level BPE tokenization (tokenizer.ggml.model = "gpt2", e.g. Qwen2, SmolLM2):
a pre-tokenizer regex cuts the text, then merges by rank within each piece (_bpe.pyx)."""
from ignis.tokenizer._bpe import BPEMerger
from ignis.tokenizer._bytes import BYTE_TO_CHAR, token_texts_to_bytes
from ignis.tokenizer._pretokenize import pre_tokenizer
from ignis.tokenizer._vocab import Vocab, merge_ids


def byte_level_pieces(tokens: list, special_ids: set) -> list:
    """token id -> the bytes it stands for: special tokens and texts outside the byte-level
    alphabet as they are written (UTF-8), the others through the alphabet."""
    pieces = token_texts_to_bytes(tokens)
    for i, piece in enumerate(pieces):
        if piece is None:
            pieces[i] = tokens[i].encode("utf-8")
    for i in special_ids:
        pieces[i] = tokens[i].encode("utf-8")
    return pieces


class ByteLevelEncoder:
    """Plain text segments -> ids for one byte-level BPE vocabulary."""

    def __init__(self, vocab: Vocab, token_to_id: dict, drop_missing_bytes: bool = False):
        """drop_missing_bytes: a byte without a token is left out (llama.cpp's way: SmolLM2's
        vocabulary lacks 21 bytes) rather than an encode error."""
        byte_ids = [token_to_id.get(BYTE_TO_CHAR[b], -1) for b in range(256)]
        self.bpe = BPEMerger(*merge_ids(vocab, token_to_id), byte_ids, drop_missing_bytes=drop_missing_bytes)
        self.pre = pre_tokenizer(vocab.pre)

    def encode(self, text: str, out: list, after_special: bool) -> None:
        """Append the ids of one plain segment to out (after_special does not matter here)."""
        self.bpe.encode_pieces(self.pre.split(text), out)
