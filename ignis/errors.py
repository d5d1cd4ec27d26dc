"""Typed errors. Every failure a user can cause raises an IgnisError subclass
whose message is one line: which file or field, what was found, what was expected."""


class IgnisError(Exception):
    """Base class of every error ignis raises on bad input."""


class GGUFError(IgnisError):
    """A file is not a well-formed GGUF file."""


class TokenizerError(IgnisError):
    """The tokenizer metadata is missing, unsupported or malformed, or a text cannot be encoded."""


class ModelError(IgnisError):
    """A well-formed GGUF file that does not describe a model ignis can run."""


class ContextOverflowError(IgnisError):
    """A prompt (plus the tokens to generate) does not fit in the context window."""


class PullError(IgnisError):
    """The default model could not be fetched or verified."""


class ArgumentError(IgnisError, ValueError):
    """A public function was given a value of the wrong type or out of range. Also a
    ValueError, so callers that catch ValueError keep working."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of the wrong type (a str where a number is expected, a float token id,
    a bool where a count is expected...). Also a TypeError."""


class TokenIdError(TokenizerError, ArgumentError):
    """A token id that is not an integer in the vocabulary: both a tokenizer error and
    an argument error."""


class KVCacheFullError(IgnisError):
    """The paged KV cache has too few free blocks for a sequence to grow (the others are untouched)."""


class ISAError(IgnisError):
    """A kernel level (IGNIS_ISA, use_isa) that this build lacks or this CPU cannot run."""


class UnknownModelError(IgnisError):
    """A model name that is not in the catalogue (ignis.hub.CATALOGUE), or not cached where that is needed."""


class ConstraintError(ArgumentError):
    """A JSON Schema, regex or grammar that cannot constrain generation (malformed, or a
    feature the constraint engine lacks). Also an ArgumentError: it is a bad argument."""
