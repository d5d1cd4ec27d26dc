"""The chat page served at `/`: one HTML file, package data, read once."""
import functools
from importlib import resources


@functools.lru_cache(maxsize=1)
def html() -> bytes:
    return resources.files(__name__).joinpath("index.html").read_bytes()
