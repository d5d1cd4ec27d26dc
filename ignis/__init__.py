"""ignis: an LLM inference engine built like a compiler.

Public API re-exports only; see the subpackages for the parts."""
from ignis.errors import (ArgumentError, ArgumentTypeError, ContextOverflowError, GGUFError,
                          IgnisError, ModelError, PullError, TokenIdError, TokenizerError)

try:
    from ignis.gguf import GGUFFile
    from ignis.runtime import Model, Request, SamplingParams, load
    from ignis.tokenizer import Tokenizer
except ImportError as _e:
    # from a source tree without the compiled extensions (e.g. the repo root after
    # `pip install .`): say what to do instead of the traceback of a half-imported package
    from ignis._build_check import source_tree_message as _message
    if _message() is None:
        raise
    raise ImportError(f"{_message()} [{type(_e).__name__}: {_e}]") from None

__version__ = "0.1.0"

__all__ = ["load", "Model", "Request", "SamplingParams", "Tokenizer", "GGUFFile",
           "IgnisError", "GGUFError", "TokenizerError", "ModelError", "ContextOverflowError",
           "PullError", "ArgumentError", "ArgumentTypeError", "TokenIdError", "__version__"]
