# cython: language_level=3, boundscheck=False, wraparound=False
"""GGUF string arrays read in C: a vocabulary holds 150k tokens and as many merges, and a
Python loop over them was most of a model's load time."""
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint64_t
from libc.string cimport memcpy


def read_strings(const unsigned char[::1] buf, Py_ssize_t pos, Py_ssize_t count):
    """(strings, pos after them) for up to count length-prefixed UTF-8 strings from pos: it
    stops before the first item that is cut off or not valid UTF-8, which the caller reads
    again through its per-item path for the error."""
    cdef Py_ssize_t size = buf.shape[0], i
    cdef uint64_t length
    out = []
    if pos < 0 or pos > size:
        return out, pos
    for i in range(count):
        if size - pos < 8:
            break
        memcpy(&length, &buf[pos], 8)      # the format is little-endian, as is every target
        if length > <uint64_t>(size - pos - 8):
            break
        try:
            text = PyUnicode_DecodeUTF8(<const char *>&buf[pos + 8], <Py_ssize_t>length, NULL)
        except UnicodeDecodeError:
            break
        out.append(text)
        pos += 8 + <Py_ssize_t>length
    return out, pos
