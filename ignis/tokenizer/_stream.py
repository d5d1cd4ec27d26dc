"""Incremental detokenization: text as tokens arrive, never a broken UTF-8 sequence.

A token can end in the middle of a character (byte-level BPE splits rare characters
into byte tokens), so the bytes of an incomplete trailing sequence are held back until
the tokens that complete it arrive. Bytes that can never form a character become
U+FFFD at once; what is still held back at the end becomes U+FFFD on flush(). The
concatenation of everything push() and flush() return equals decode(ids), for any
way the ids are fed in (UTF-8 decoding with errors="replace" is prefix-consistent:
the stdlib incremental decoder replaces exactly the maximal invalid subsequences a
one-shot decode replaces)."""
import codecs

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class StreamDecoder:
    """push(id) -> newly completed text; flush() -> whatever is left, at the end."""

    __slots__ = ("_piece", "_utf8")

    def __init__(self, token_to_piece):
        self._piece = token_to_piece
        self._utf8 = _Utf8Decoder(errors="replace")

    def push(self, token_id: int) -> str:
        """Feed one token; return the text it completes (possibly "")."""
        return self._utf8.decode(self._piece(token_id))

    def flush(self) -> str:
        """End of generation: held-back bytes become one U+FFFD. The decoder is then
        empty and can be used for a new sequence."""
        return self._utf8.decode(b"", final=True)
