"""ignis: an LLM inference engine built like a compiler.

Public API re-exports only; see the subpackages for the parts."""
from ignis.errors import (ArgumentError, ArgumentTypeError, ContextOverflowError, GGUFError,
                          IgnisError, ModelError, PullError, TokenIdError, TokenizerError)
from ignis.gguf import GGUFFile
from ignis.runtime import Model, SamplingParams, load
from ignis.tokenizer import Tokenizer

__version__ = "0.1.0"

__all__ = ["load", "Model", "SamplingParams", "Tokenizer", "GGUFFile",
           "IgnisError", "GGUFError", "TokenizerError", "ModelError", "ContextOverflowError",
           "PullError", "ArgumentError", "ArgumentTypeError", "TokenIdError", "__version__"]
