"""The public Tokenizer, built from GGUF metadata: byte-level BPE (tokenizer.ggml.model
"gpt2") or SentencePiece-style (model "llama"), behind one interface."""
from ignis.args import check_bool, check_id, check_ids, check_path, check_str
from ignis.errors import TokenizerError
from ignis.tokenizer._bytelevel import ByteLevelEncoder, byte_level_pieces
from ignis.tokenizer._sentencepiece import SentencePieceEncoder, spm_pieces
from ignis.tokenizer._special import LLAMA_CPP_CONTROL_TEXTS, LongestFirstSplitter, SpecialSplitter
from ignis.tokenizer._stream import StreamDecoder
from ignis.tokenizer._vocab import SPECIAL_TYPES, TYPE_CONTROL, TYPE_UNKNOWN, TYPE_USER_DEFINED, read_vocab

# texts that end a generation when the vocabulary has them (besides eos / eot / eom ids)
_END_OF_GENERATION_TEXTS = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>")

# Whose rules a vocabulary follows where the two reference tokenizers differ (which special
# tokens are matched and how, a byte without a token): Qwen2's golden ids are Hugging Face
# `tokenizers`', every other vocabulary's are llama.cpp's.
_HF_REFERENCE_PRE = ("qwen2",)


def _follows_hf(vocab) -> bool:
    return vocab.model == "gpt2" and vocab.pre in _HF_REFERENCE_PRE


def _special_splitter(vocab, types: list, hf_rules: bool) -> tuple:
    """(special token text -> id, the splitter that finds them in a text)."""
    if hf_rules:
        special = {text: i for i, (text, kind) in enumerate(zip(vocab.tokens, types)) if kind in SPECIAL_TYPES}
        return special, SpecialSplitter(special)
    # llama.cpp also matches unknown-type tokens, retypes some texts as control tokens, and
    # matches user-defined tokens even in untrusted text
    kinds = {*SPECIAL_TYPES, TYPE_UNKNOWN}
    special, user_defined = {}, []
    for i, (text, kind) in enumerate(zip(vocab.tokens, types)):
        if text in LLAMA_CPP_CONTROL_TEXTS:
            kind = TYPE_CONTROL
        if kind in kinds:
            special[text] = i
            if kind == TYPE_USER_DEFINED:
                user_defined.append(text)
    return special, LongestFirstSplitter(special, always=user_defined)


class Tokenizer:
    """Text <-> token ids for one GGUF vocabulary.

    Build with Tokenizer.from_gguf(path) or Tokenizer.from_metadata(metadata)."""

    def __init__(self, metadata: dict):
        vocab = read_vocab(metadata)
        self._tokens = vocab.tokens
        self.model = vocab.model        # "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
        token_to_id = {text: i for i, text in enumerate(vocab.tokens)}   # a repeated text: last id wins
        types = vocab.types.tolist()
        hf_rules = _follows_hf(vocab)
        self._special_tokens, self._specials = _special_splitter(vocab, types, hf_rules)
        # user-defined tokens matched even in untrusted text (llama.cpp's rule): pieces of
        # text such as Gemma's "\n" and runs of spaces, not control tokens
        always = getattr(self._specials, "_always", frozenset())
        self.text_special_ids = frozenset(self._special_tokens[t] for t in always)
        if vocab.model == "gpt2":
            self._encoder = ByteLevelEncoder(vocab, token_to_id, drop_missing_bytes=not hf_rules)
            self._pre, self._bpe = self._encoder.pre, self._encoder.bpe
            self._pieces = byte_level_pieces(vocab.tokens, set(self._special_tokens.values()))
        else:
            self._encoder = SentencePieceEncoder(vocab, token_to_id)
            self._pre = self._bpe = None
            self._pieces = spm_pieces(vocab.tokens, types)
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
        """Special token text -> id: the control and user-defined tokens (and, for a
        vocabulary that follows llama.cpp, unknown-type ones) that
        encode(..., parse_special=True) recognises in a text."""
        return dict(self._special_tokens)

    # --- encoding -------------------------------------------------------------------------

    def encode(self, text: str, parse_special: bool = True) -> list:
        """Token ids of text. parse_special=True turns special token texts such as
        <|im_start|> into their ids (chat prompts); False encodes control tokens as plain
        text (untrusted input; the user-defined tokens of a vocabulary that follows llama.cpp,
        such as Gemma's runs of spaces, are still matched, as there). No BOS is added
        (see add_bos / bos_id)."""
        check_str("text", text)
        parse_special = check_bool("parse_special", parse_special)
        ids = []
        after_special = True
        for part in self._specials.split(text, parse_special):
            if type(part) is int:
                ids.append(part)
                after_special = True
            else:
                self._encoder.encode(part, ids, after_special)
                after_special = False
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

