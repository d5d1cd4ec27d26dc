"""Byte-level BPE tokenizer built from GGUF metadata: the Qwen2 pre-tokenizer regex,
special tokens, merges by rank (the merge loop is compiled: _bpe.pyx) and a streaming
detokenizer."""
from ignis.tokenizer._stream import StreamDecoder
from ignis.tokenizer._tokenizer import Tokenizer

__all__ = ["Tokenizer", "StreamDecoder"]
