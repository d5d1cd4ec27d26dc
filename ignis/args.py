"""Checks of the arguments of public functions: each returns the value as a plain Python
object or raises an ArgumentError (ArgumentTypeError for a wrong type, TokenIdError for
a token id) with a one-line message naming the parameter, what it was given and what it
expects. Shared by the runtime and the tokenizer (so it lives beside errors.py: the
tokenizer package does not import ignis.runtime).

Rules: an integer is an int or a numpy integer, never a bool; a number is an int, a
float or a numpy integer or float, never a bool or a str; a flag is a bool (or numpy
bool); token ids come as a list, tuple, range, iterator or 1-D integer numpy array."""
import math
import os
import reprlib
from collections.abc import Iterator

import numpy as np

from ignis.errors import ArgumentError, ArgumentTypeError, TokenIdError

INT64_MAX = 2**63 - 1      # the largest count a parameter takes
UINT64_MAX = 2**64 - 1     # the largest seed

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _repr.maxlong = 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


def short_repr(value) -> str:
    """repr(value) cut to at most ~48 characters, on one line."""
    if isinstance(value, int) and value.bit_length() > 128:    # printing a huge int is slow (or refused)
        return f"<{'negative ' if value < 0 else ''}int of {value.bit_length()} bits>"
    try:
        text = _repr.repr(value)
    except Exception:            # a hostile __repr__, an int too long to print...
        text = "<unprintable>"
    text = " ".join(text.splitlines())
    return text if len(text) <= 48 else text[:45] + "..."


def describe(value) -> str:
    """`type value` on one line, e.g. "str '3'", "float nan", "None"."""
    return "None" if value is None else f"{type(value).__name__} {short_repr(value)}"


def _fmt(bound) -> str:
    if bound == INT64_MAX:
        return "2**63 - 1"
    if bound == UINT64_MAX:
        return "2**64 - 1"
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def is_int(value) -> bool:
    """An int or a numpy integer, not a bool."""
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, np.integer)


def _interval(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    """'in [lo, hi]', '>= lo', '<= hi' (brackets and signs open or closed), or '' without bounds."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_fmt(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_fmt(hi)}"
    return ""


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """An integer in [lo, hi] (a bound of None is open)."""
    if not is_int(value):
        raise ArgumentTypeError(f"{name} must be {_expected_int(lo, hi)}, got {describe(value)}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ArgumentError(f"{name} must be {_expected_int(lo, hi)}, got {describe(value)}")
    return value


def _expected_int(lo, hi) -> str:
    # only formatted for an error: the checks run on every step
    return f"an integer {_interval(lo, hi)}".rstrip()


def check_float(name: str, value, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite number in the interval from lo to hi (each closed unless *_open; None: no bound)."""
    def where() -> str:     # only formatted for an error
        text = _interval(lo, hi, lo_open, hi_open)
        return text + " and finite" if (lo is None) != (hi is None) else text   # one bound: the other end finite
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentTypeError(f"{name} must be a {'number ' + where() if where() else 'finite number'}, "
                                f"got {describe(value)}")
    try:
        number = float(value)
    except OverflowError:        # an int beyond the float range
        number = math.inf
    ok = math.isfinite(number)
    if ok and lo is not None:
        ok = number > lo if lo_open else number >= lo
    if ok and hi is not None:
        ok = number < hi if hi_open else number <= hi
    if not ok:
        raise ArgumentError(f"{name} must be {where() or 'a finite number'}, got {describe(value)}")
    return number


def check_bool(name: str, value) -> bool:
    """True or False (a numpy bool too); 0, 1, None and strings are not flags."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def check_str(name: str, value) -> str:
    """A str (bytes are not text)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str, got {describe(value)}")
    return value


def check_path(name: str, value) -> str:
    """A file path: a str or an os.PathLike giving one (bytes paths are not taken), non-empty,
    on one line, without NUL and encodable for the file system."""
    if isinstance(value, os.PathLike):
        try:
            value = os.fspath(value)
        except TypeError:
            raise ArgumentTypeError(f"{name} must be a str or an os.PathLike, got {describe(value)}") from None
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str or an os.PathLike, got {describe(value)}")
    problem = None
    if not value:
        problem = "is empty"
    elif "\0" in value:
        problem = "holds a NUL character"
    elif value.splitlines() != [value]:
        problem = "holds a line break"
    else:
        try:
            os.fsencode(value)
        except UnicodeError:
            problem = "cannot be encoded for the file system"
    if problem:
        raise ArgumentError(f"{name} {problem}: {describe(value)}")
    return value


def check_id(name: str, value, n_vocab: int) -> int:
    """One token id: an integer in [0, n_vocab)."""
    if not is_int(value):
        raise TokenIdError(f"{name} is not in the vocabulary: a token id is an integer in [0, {n_vocab}), "
                           f"got {describe(value)}")
    value = int(value)
    if not 0 <= value < n_vocab:
        raise TokenIdError(f"{name}: token id {short_repr(value)} is out of range, not in the vocabulary "
                           f"[0, {n_vocab})")
    return value


def check_ids(name: str, ids, n_vocab: int, expected: str = "a list of token ids") -> list:
    """Token ids as a list of Python ints. Takes a list, tuple, range or iterator of ints
    or numpy integers, or a 1-D integer numpy array; the message names the first bad
    element and its index."""
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise ArgumentTypeError(f"{name} must be {expected}, got a {ids.ndim}-D {ids.dtype} numpy array")
        if ids.size:
            bad = (ids < 0) | (ids >= n_vocab)
            if bad.any():
                i = int(np.argmax(bad))
                check_id(f"{name}[{i}]", ids[i], n_vocab)
        return ids.tolist()
    if isinstance(ids, Iterator):
        ids = list(ids)
    elif not isinstance(ids, (list, tuple, range)):
        raise ArgumentTypeError(f"{name} must be {expected}, got {describe(ids)}")
    out = list(ids)
    for i, v in enumerate(out):
        if type(v) is not int or not 0 <= v < n_vocab:
            out[i] = check_id(f"{name}[{i}]", v, n_vocab)
    return out
