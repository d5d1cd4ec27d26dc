"""Reading a request's JSON body within limits: at most MAX_BODY_BYTES, nested at most
MAX_DEPTH levels. The depth is measured on the raw bytes before parsing (strings removed,
then a running sum over the brackets), so no parser or checker ever recurses over a
client's nesting."""
from __future__ import annotations

import json
import re

import numpy as np
from starlette.requests import ClientDisconnect

from ignis.serve.protocol import APIError

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class ClientGone(Exception):
    """The client went away (mid-body, or while its request ran): answered with a quiet 499."""


def depth(raw: bytes) -> int:
    """How deep the brackets of a JSON text nest (brackets inside strings do not count)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


async def read_json(request):
    """The request's body parsed as JSON; a bad, huge or deep body is a 400 naming the limit,
    a client gone mid-body is ClientGone."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _too_large()
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone() from None
    raw = b"".join(chunks)
    if depth(raw) > MAX_DEPTH:
        raise APIError(f"the request body nests deeper than {MAX_DEPTH} levels", code="body_too_deep")
    try:
        return json.loads(raw)
    except RecursionError:          # not reached after the depth check; kept as a last guard
        raise APIError(f"the request body nests deeper than {MAX_DEPTH} levels", code="body_too_deep") from None
    except (UnicodeDecodeError, ValueError) as exc:   # ValueError: also an integer of over 4300 digits
        raise APIError(f"the request body is not valid JSON: {exc}") from None


def _too_large() -> APIError:
    return APIError(f"the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB", code="body_too_large")
