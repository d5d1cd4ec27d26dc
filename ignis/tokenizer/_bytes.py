"""The byte-level alphabet: every byte 0..255 is stood for by one printable character.

Byte-level BPE vocabularies (GPT-2 lineage, Qwen2 included) store tokens as strings
over this alphabet, so token texts never contain raw control bytes or spaces.
Definition: the printable bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' stand for themselves;
every other byte, in increasing order, stands for U+0100, U+0101, ...
"""

_SELF_MAPPED = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                *range(ord("®"), ord("ÿ") + 1)]


def _build_byte_to_char() -> tuple:
    table = [""] * 256
    for b in _SELF_MAPPED:
        table[b] = chr(b)
    next_code = 256
    for b in range(256):
        if not table[b]:
            table[b] = chr(next_code)
            next_code += 1
    return tuple(table)


BYTE_TO_CHAR: tuple = _build_byte_to_char()
"""BYTE_TO_CHAR[b] is the one-character string that stands for byte b."""

CHAR_TO_BYTE: dict = {ch: b for b, ch in enumerate(BYTE_TO_CHAR)}
"""The inverse of BYTE_TO_CHAR."""

# str.translate table taking a token text to latin-1 characters whose code points are the
# bytes; characters outside the alphabet become U+FFFF so that .encode("latin-1") fails
# on them instead of silently yielding a wrong byte.
_OUTSIDE = "\uffff"
_TO_LATIN1 = {ord(ch): chr(b) for ch, b in CHAR_TO_BYTE.items()}
_TO_LATIN1.update({c: _OUTSIDE for c in range(256) if chr(c) not in CHAR_TO_BYTE})


def token_text_to_bytes(text: str) -> bytes | None:
    """The bytes a byte-level token text stands for, or None if it uses a character
    outside the alphabet (then it is not a byte-level token)."""
    try:
        return text.translate(_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError:
        return None


def bytes_to_token_text(data: bytes) -> str:
    """The byte-level token text for raw bytes (the inverse of token_text_to_bytes)."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


def token_texts_to_bytes(texts: list) -> list:
    """token_text_to_bytes of every text, at once (one translate over their concatenation:
    each alphabet character is one byte, so the byte lengths are the text lengths)."""
    try:
        joined = "".join(texts).translate(_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError:
        return [token_text_to_bytes(text) for text in texts]
    pieces, at = [], 0
    for text in texts:
        pieces.append(joined[at:at + len(text)])
        at += len(text)
    return pieces
