"""One access log line per HTTP request, written when its response has been sent (a stream:
at its end): client, method, path, status, prompt and completion tokens, time taken."""
from __future__ import annotations

import logging
import time

log = logging.getLogger("ignis.serve.access")


class AccessLog:
    """ASGI middleware. Handlers leave (prompt tokens, completion tokens) in the request's
    scope under "ignis.tokens"; a response never started (the client went away) logs 499."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [499]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            tokens = scope.get("ignis.tokens")
            log.info('%s "%s %s" %d %s %.3fs', f"{client[0]}:{client[1]}" if client else "-", scope["method"],
                     scope["path"], status[0],
                     f"tokens {tokens[0]}+{tokens[1]}" if tokens else "tokens -", time.perf_counter() - t0)
