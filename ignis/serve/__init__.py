"""`ignis serve`: an OpenAI-compatible HTTP server over the continuous-batching scheduler
(needs the `serve` extra: starlette, uvicorn, prometheus-client)."""
from ignis.serve.app import ServerState, create_app, serve
from ignis.serve.protocol import APIError

__all__ = ["APIError", "ServerState", "create_app", "serve"]
