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
