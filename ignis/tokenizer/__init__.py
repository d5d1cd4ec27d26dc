"""Tokenizers built from GGUF metadata: byte-level BPE (tokenizer.ggml.model "gpt2": the Qwen2
and smollm pre-tokenizers, merges by rank in _bpe.pyx) and SentencePiece-style ("llama":
score-ordered merges in _spm.pyx, byte fallback), special tokens, and a streaming
detokenizer."""
from ignis.tokenizer._stream import StreamDecoder
from ignis.tokenizer._tokenizer import Tokenizer

__all__ = ["Tokenizer", "StreamDecoder"]
