"""The public Tokenizer: byte-level BPE built from GGUF metadata."""
from ignis.args import check_bool, check_id, check_ids, check_path, check_str
from ignis.errors import TokenizerError
from ignis.tokenizer._bpe import BPEMerger
from ignis.tokenizer._bytes import BYTE_TO_CHAR, token_texts_to_bytes
from ignis.tokenizer._pretokenize import pre_tokenizer
from ignis.tokenizer._special import SpecialSplitter
from ignis.tokenizer._stream import StreamDecoder
from ignis.tokenizer._vocab import SPECIAL_TYPES, merge_ids, read_vocab

# texts that end a generation when the vocabulary has them (besides eos / eot / eom ids)
_END_OF_GENERATION_TEXTS = ("<|im_end|>", "<|endoftext|>")


class Tokenizer:
    """Text <-> token ids for one GGUF vocabulary.

    Build with Tokenizer.from_gguf(path) or Tokenizer.from_metadata(metadata)."""

    def __init__(self, metadata: dict):
        vocab = read_vocab(metadata)
        self._tokens = vocab.tokens
        token_to_id = {text: i for i, text in enumerate(vocab.tokens)}   # a repeated text: last id wins
        special_types = set(SPECIAL_TYPES)
        self._special_tokens = {text: i for i, (text, kind) in enumerate(zip(vocab.tokens, vocab.types.tolist()))
                                if kind in special_types}
        self._pieces = _token_pieces(vocab.tokens, set(self._special_tokens.values()))
        byte_ids = [token_to_id.get(BYTE_TO_CHAR[b], -1) for b in range(256)]
        self._bpe = BPEMerger(*merge_ids(vocab, token_to_id), byte_ids)
        self._pre = pre_tokenizer(vocab.pre)
        self._specials = SpecialSplitter(self._special_tokens)
        self.bos_id = vocab.bos_id
        self.eos_id = vocab.eos_id
        self.pad_id = vocab.pad_id
        self.add_bos = vocab.add_bos
        ends = {vocab.eos_id, vocab.eot_id, vocab.eom_id}
        ends.update(token_to_id.get(text) for text in _END_OF_GENERATION_TEXTS)
        ends.discard(None)
        self.eot_ids = frozenset(ends)

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_metadata(cls, metadata: dict) -> "Tokenizer":
        """From a GGUF metadata dict (key -> value; arrays as lists or numpy arrays)."""
        return cls(metadata)

    @classmethod
    def from_gguf(cls, path) -> "Tokenizer":
        """From the vocabulary embedded in a GGUF file."""
        from ignis.gguf import GGUFFile
        path = check_path("path", path)
        with GGUFFile(path) as gguf:
            metadata = gguf.metadata
        try:
            return cls(metadata)
        except TokenizerError as exc:
            raise TokenizerError(f"{path}: {exc}") from None

    # --- properties -----------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        return len(self._tokens)

    @property
    def special_tokens(self) -> dict:
        """Special token text -> id: the control and user-defined tokens that
        encode(..., parse_special=True) recognises in a text."""
        return dict(self._special_tokens)

    # --- encoding -------------------------------------------------------------------------

    def encode(self, text: str, parse_special: bool = True) -> list:
        """Token ids of text. parse_special=True turns special token texts such as
        <|im_start|> into their ids (chat prompts); False encodes them as plain text
        (untrusted input). No BOS is added (see add_bos / bos_id)."""
        check_str("text", text)
        parse_special = check_bool("parse_special", parse_special)
        ids = []
        if not parse_special:
            self._bpe.encode_pieces(self._pre.split(text), ids)
            return ids
        for part in self._specials.split(text):
            if type(part) is int:
                ids.append(part)
            else:
                self._bpe.encode_pieces(self._pre.split(part), ids)
        return ids

    # --- decoding -------------------------------------------------------------------------

    def token_to_piece(self, token_id: int) -> bytes:
        """The bytes one token stands for (a special token: its text in UTF-8)."""
        pieces = self._pieces
        if type(token_id) is not int or not 0 <= token_id < len(pieces):
            token_id = check_id("token_id", token_id, len(pieces))    # a numpy integer, or an error
        return pieces[token_id]

    def decode(self, ids) -> str:
        """The text of a sequence of ids (a list, tuple, iterator or integer numpy array);
        bytes that are not valid UTF-8 become U+FFFD."""
        pieces = self._pieces
        ids = check_ids("ids", ids, len(pieces))
        return b"".join([pieces[i] for i in ids]).decode("utf-8", errors="replace")

    def stream(self) -> StreamDecoder:
        """An incremental detokenizer: .push(id) -> completed text, .flush() at the end."""
        return StreamDecoder(self.token_to_piece)

    def __repr__(self) -> str:
        return f"Tokenizer(n_vocab={self.n_vocab}, special_tokens={len(self._special_tokens)})"


def _token_pieces(tokens: list, special_ids: set) -> list:
    """token id -> the bytes it stands for: special tokens and texts outside the byte-level
    alphabet as they are written (UTF-8), the others through the alphabet."""
    pieces = token_texts_to_bytes(tokens)
    for i, piece in enumerate(pieces):
        if piece is None:
            pieces[i] = tokens[i].encode("utf-8")
    for i in special_ids:
        pieces[i] = tokens[i].encode("utf-8")
    return pieces
