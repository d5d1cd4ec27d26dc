"""A short run of the HTTP fuzzer (fuzz/http.py runs it for 20,000 bodies and more) against
`ignis serve` with a tiny model on 127.0.0.1."""
import os
import sys

import pytest

pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from ignis.testing import make_tiny_qwen2  # noqa: E402

try:
    from fuzz import http as fuzz_http
except ImportError:     # plain `pytest` does not put the repository root on sys.path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fuzz import http as fuzz_http


def test_http_fuzz_300_bodies(tmp_path):
    path = str(make_tiny_qwen2(tmp_path / "tiny.gguf", n_ctx=256, seed=5))
    summary = fuzz_http.run(path, count=300, seconds=300, seed=11, workers=4, threads=1, out=sys.stderr)
    assert summary["failures"] == [], summary["failures"][:10]
    assert summary["sent"] == 300
    # the run reached the engine, the parser and the disconnect paths
    assert summary["statuses"].get(200, 0) > 20 and summary["statuses"].get(400, 0) > 50
    assert summary["modes"].get("gone-mid-body", 0) + summary["modes"].get("gone-mid-response", 0) > 0


def test_plants_are_seen(tmp_path):
    """The fuzzer's checks catch what they are for: a 500, and a stream cut without [DONE]."""
    with pytest.raises(fuzz_http.Failure):
        fuzz_http._check_stream(['{"choices": []}'])
    with pytest.raises(fuzz_http.Failure):
        fuzz_http._check_stream(['{"error": {"code": "engine_error"}}'])
    fuzz_http._check_stream(['{"choices": []}', "[DONE]"])
    with pytest.raises(fuzz_http.Failure):
        fuzz_http._check_error_json(400, "plain text")
