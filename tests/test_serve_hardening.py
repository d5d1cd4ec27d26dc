"""`ignis serve` under clients that misbehave and servers that stop: over real HTTP (uvicorn
on 127.0.0.1, a free port), with tiny generated models. Every load is bounded in count and
time; nothing here asserts a duration."""
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

import ignis  # noqa: E402
from ignis.serve import create_app, protocol  # noqa: E402
from ignis.testing import make_tiny_qwen2  # noqa: E402

CTX = 8192          # long enough for a request that is still running when the test acts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout=15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class _Metrics:
    base: str

    def metric(self, name, labels=""):
        text = httpx.get(self.base + "/metrics", timeout=10).text
        m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def post(self, path, body, **kw):
        return httpx.post(self.base + path, json=body, timeout=30, **kw)


class _Server(_Metrics):
    """`ignis serve` in a subprocess; its stderr goes to a file (the access log grows)."""

    def __init__(self, path, tmp_path, *flags, ctx=CTX):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"serve-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ignis", "serve", "-m", path, "--port", str(self.port), "-c", str(ctx),
             "-t", "1", *flags], stdout=subprocess.DEVNULL, stderr=self.log)
        assert _wait_for(self._healthy, 60), f"server not healthy: {self.stderr()[-2000:]}"

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, f"server exited: {self.stderr()[-2000:]}"
        try:
            return httpx.get(self.base + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stderr(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signal; the return code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.log.close()


class _InProcess(_Metrics):
    """uvicorn in a thread of this process, serving a model the test holds (to break it)."""

    def __init__(self, model, **kw):
        app = create_app(model, access_log=False, **kw)
        self.state = app.state.ignis
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        assert _wait_for(lambda: self._healthy(), 60)

    def _healthy(self):
        try:
            return httpx.get(self.base + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self):
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return str(make_tiny_qwen2(tmp_path_factory.mktemp("serve") / "tiny.gguf", n_ctx=CTX, seed=3))


@pytest.fixture(scope="module")
def server(tiny_path, tmp_path_factory):
    srv = _Server(tiny_path, tmp_path_factory.mktemp("log"), "--parallel", "8", "--max-queue", "16")
    yield srv
    assert srv.stop() == 0
    assert "Traceback" not in srv.stderr(), srv.stderr()[-3000:]


LONG = {"prompt": "a long story", "max_tokens": CTX - 100, "ignore_eos": True, "temperature": 1.0, "seed": 1}


def _stream_lines(base, path, body, lines: list, timeout=60):
    """POST a stream; append its `data:` payloads to lines as they come."""
    with httpx.stream("POST", base + path, json={**body, "stream": True}, timeout=timeout) as r:
        lines.append(r.status_code)
        for line in r.iter_lines():
            if line.startswith("data: "):
                lines.append(line[6:])


# -- 1 and 2: shutdown drains, then cuts off with an error --------------------------------------

def test_shutdown_drains_requests_in_flight(tiny_path, tmp_path):
    """SIGTERM: new requests get a 503 at once, the two in flight run to their end (200,
    every token, [DONE]), then the server exits 0."""
    srv = _Server(tiny_path, tmp_path, "--parallel", "4", "--shutdown-timeout", "60")
    try:
        body = {"prompt": "go", "max_tokens": 400, "ignore_eos": True, "seed": 2}
        whole, lines = [], []
        t1 = threading.Thread(target=lambda: whole.append(srv.post("/v1/completions", body)))
        t2 = threading.Thread(target=_stream_lines, args=(srv.base, "/v1/completions", body, lines))
        t1.start(), t2.start()
        assert _wait_for(lambda: srv.metric("ignis_requests_running") == 2)
        srv.proc.send_signal(signal.SIGTERM)
        refused = None
        for _ in range(200):
            r = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
            if r.status_code == 503:
                refused = r
                break
            time.sleep(0.02)
        assert refused is not None and refused.json()["error"]["code"] == "shutting_down"
        t1.join(60), t2.join(60)
        r = whole[0]
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 400 and r.json()["choices"][0]["finish_reason"] == "length"
        assert lines[0] == 200 and lines[-1] == "[DONE]"
        finals = [json.loads(x)["choices"][0]["finish_reason"] for x in lines[1:-1]]
        assert finals[-1] == "length"
        assert srv.stop() == 0
        assert "Traceback" not in srv.stderr()
    finally:
        srv.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_cuts_off_with_an_error_never_stop(tiny_path, tmp_path, sig):
    """Past --shutdown-timeout, what is left is cancelled: the non-streamed request gets a
    503 with OpenAI's error JSON, the stream a last error event and no [DONE]; exit 0."""
    srv = _Server(tiny_path, tmp_path, "--parallel", "4", "--shutdown-timeout", "0.5")
    try:
        whole, lines = [], []
        t1 = threading.Thread(target=lambda: whole.append(srv.post("/v1/completions", LONG)))
        t2 = threading.Thread(target=_stream_lines, args=(srv.base, "/v1/chat/completions",
                                                          {"messages": [{"role": "user", "content": "go"}],
                                                           "max_tokens": CTX - 100, "ignore_eos": True},
                                                          lines))
        t1.start(), t2.start()
        assert _wait_for(lambda: srv.metric("ignis_requests_running") == 2)
        srv.proc.send_signal(sig)
        t1.join(60), t2.join(60)
        r = whole[0]
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == "shutting_down"
        assert lines[0] == 200 and "[DONE]" not in lines
        last = json.loads(lines[-1])
        assert last["error"]["code"] == "shutting_down"
        reasons = [c["finish_reason"] for x in lines[1:-1] for c in json.loads(x)["choices"]]
        assert set(reasons) == {None}             # no "stop" (nor any finish) before the error
        assert srv.stop() == 0
        assert "Traceback" not in srv.stderr()
    finally:
        srv.stop()


def test_engine_error_is_a_503_and_a_last_error_event(tiny_path):
    """A step that raises: the non-streamed request gets a 503 (engine_error), the stream a
    last error event without [DONE]; the server goes on serving afterwards."""
    model = ignis.load(tiny_path, n_ctx=1024, threads=1)
    srv = _InProcess(model, max_batch=4)
    try:
        real_step = model.engine.step
        calls = [0]

        def failing_step(*args, **kw):
            calls[0] += 1
            if calls[0] > 20:
                raise RuntimeError("planted kernel failure")
            return real_step(*args, **kw)

        model.engine.step = failing_step
        body = {"prompt": "go", "max_tokens": 500, "ignore_eos": True}
        r = srv.post("/v1/completions", body)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "engine_error" and "planted" in r.json()["error"]["message"]
        calls[0] = 0
        lines = []
        _stream_lines(srv.base, "/v1/completions", body, lines)
        assert "[DONE]" not in lines and json.loads(lines[-1])["error"]["code"] == "engine_error"
        model.engine.step = real_step
        r = srv.post("/v1/completions", {"prompt": "go", "max_tokens": 5, "ignore_eos": True})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
    finally:
        srv.close()


# -- 3: a client that disconnects frees its sequence -------------------------------------------

def _raw_post(port: int, path: str, body, declared: int | None = None) -> socket.socket:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port))
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared if declared is not None else len(data)}\r\n\r\n")
    s.sendall(head.encode() + data)
    return s


@pytest.mark.parametrize("stream", [False, True])
def test_disconnect_frees_the_kv_blocks_while_tokens_flow(server, stream):
    """The client goes away 1.5 s into a long request (tokens flowing all the while): its
    blocks are back, and the completion is counted as cancelled."""
    idle = server.metric("ignis_kv_blocks_used")
    cancelled = server.metric("ignis_completions_finished_total", '{reason="cancelled"}')
    s = _raw_post(server.port, "/v1/completions", {**LONG, "stream": stream})
    try:
        assert _wait_for(lambda: server.metric("ignis_requests_running") == 1)
        assert server.metric("ignis_kv_blocks_used") > idle
        time.sleep(1.5)
    finally:
        s.close()
    assert _wait_for(lambda: server.metric("ignis_kv_blocks_used") == idle), "KV blocks not freed"
    assert _wait_for(lambda: server.metric("ignis_completions_finished_total", '{reason="cancelled"}')
                     == cancelled + 1)
    assert server.metric("ignis_requests_running") == 0 and server.metric("ignis_requests_waiting") == 0


def test_client_gone_mid_body_is_a_quiet_499(server):
    s = _raw_post(server.port, "/v1/completions", b'{"prompt": "abc", "max_', declared=5000)
    time.sleep(0.3)
    s.close()
    assert _wait_for(lambda: re.search(r'"POST /v1/completions" 499', server.stderr()) is not None)
    assert "Traceback" not in server.stderr() and "ClientDisconnect" not in server.stderr()


# -- 4: --max-queue counts sequences, atomically --------------------------------------------------

def test_max_queue_counts_sequences_of_concurrent_n2_requests(server):
    """--parallel 8 --max-queue 16 holds 24 sequences: of 64 concurrent n = 2 requests, some
    are refused (503 queue_full, Retry-After); the others get both choices in full."""
    body = {"prompt": "tell me", "max_tokens": 200, "ignore_eos": True, "n": 2, "temperature": 1.0}

    async def burst():
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as client:
            return await asyncio.gather(*[client.post(server.base + "/v1/completions", json={**body, "seed": i})
                                          for i in range(64)])

    results = asyncio.run(burst())
    codes = [r.status_code for r in results]
    assert set(codes) <= {200, 503}, codes
    refused = [r for r in results if r.status_code == 503]
    assert refused, "64 concurrent n=2 requests all accepted past --max-queue 16"
    assert all(r.json()["error"]["code"] == "queue_full" and r.headers["retry-after"] for r in refused)
    for r in results:
        if r.status_code == 200:
            assert len(r.json()["choices"]) == 2 and r.json()["usage"]["completion_tokens"] == 400
    assert _wait_for(lambda: server.metric("ignis_requests_running") == 0)
    # a request that could never fit (13 prompts x 2 > 8 + 16) is a 400, not a 503 to retry
    r = server.post("/v1/completions", {**body, "prompt": ["p"] * 13})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"


# -- 5: max_tokens defaults and the real vocabulary -------------------------------------------------

def test_max_tokens_defaults_per_endpoint(tiny_path):
    model = ignis.load(tiny_path, n_ctx=300, threads=1)
    srv = _InProcess(model, max_batch=2)
    try:
        r = srv.post("/v1/completions", {"prompt": "hi", "ignore_eos": True}).json()
        assert r["usage"]["completion_tokens"] == 16 and r["choices"][0]["finish_reason"] == "length"
        r = srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                              "ignore_eos": True}).json()
        # up to the context (the last token sampled needs no KV row of its own)
        assert r["usage"]["total_tokens"] in (300, 301) and r["choices"][0]["finish_reason"] == "length"
    finally:
        srv.close()


def _padded_tiny(path, real=300, padded=320):
    """A tiny model whose vocabulary is padded, as converted Qwen files are: the embedding
    has `padded` rows, ids from `real` on are unused-type [PADn] entries."""
    from ignis.gguf import write_gguf
    from ignis.testing import qwen2_metadata, random_qwen2_weights, tiny_qwen2_config, tiny_vocab
    config = tiny_qwen2_config(vocab=padded, n_ctx=256)
    metadata, types = qwen2_metadata(config, "padded", 0)
    tokens, token_types, merges = tiny_vocab(real)
    metadata["tokenizer.ggml.tokens"] = list(tokens) + [f"[PAD{i}]" for i in range(real, padded)]
    metadata["tokenizer.ggml.token_type"] = list(token_types) + [5] * (padded - real)
    metadata["tokenizer.ggml.merges"] = merges
    from ignis.gguf import TensorType
    write_gguf(path, metadata, [(name, TensorType.F32, w.shape, w)
                                for name, w in random_qwen2_weights(config, 1).items()], types=types)
    return str(path)


def test_ids_past_the_real_vocabulary_are_400(tmp_path):
    model = ignis.load(_padded_tiny(tmp_path / "padded.gguf"), n_ctx=256, threads=1)
    assert model.n_vocab == 320
    srv = _InProcess(model, max_batch=2)
    try:
        assert srv.post("/v1/completions", {"prompt": [5, 299], "max_tokens": 2}).status_code == 200
        for prompt in ([5, 300], [319], [[1, 2], [3, 310]]):
            r = srv.post("/v1/completions", {"prompt": prompt, "max_tokens": 2})
            assert r.status_code == 400 and "not in the vocabulary" in r.json()["error"]["message"], r.text
        r = srv.post("/detokenize", {"tokens": [5, 305]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "tokens"
        assert srv.post("/detokenize", {"tokens": [5, 299]}).status_code == 200
    finally:
        srv.close()


# -- 6: deep and huge bodies --------------------------------------------------------------------

def _nested_schema(levels: int) -> dict:
    schema = {"type": "integer"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def test_deep_or_huge_json_is_400(server):
    for raw in (b'{"prompt": ' + b"[" * 100 + b"]" * 100 + b"}",
                b"[" * 200_000,
                b'{"prompt": "x", "a": ' + b'{"b": ' * 5000 + b"1" + b"}" * 5000 + b"}"):
        r = httpx.post(server.base + "/v1/completions", content=raw, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "body_too_deep", r.text
    # a deep json_schema is refused the same way, before anything compiles it
    deep = {"prompt": "x", "max_tokens": 4, "response_format": {"type": "json_schema",
                                                               "json_schema": {"schema": _nested_schema(40)}}}
    r = server.post("/v1/completions", deep)
    assert r.status_code == 400 and r.json()["error"]["code"] == "body_too_deep"
    # within the limit: answered (a schema 25 objects deep compiles, or is a 400), never a 5xx
    ok = {**deep, "response_format": {"type": "json_schema", "json_schema": {"schema": _nested_schema(25)}}}
    assert server.post("/v1/completions", ok).status_code in (200, 400)
    # brackets inside strings do not count
    r = server.post("/v1/completions", {"prompt": "[" * 1000 + "{" * 1000, "max_tokens": 1})
    assert r.status_code == 200, r.text
    big = b'{"prompt": "' + b"a" * (9 * 1024 * 1024) + b'"}'
    r = httpx.post(server.base + "/v1/completions", content=big, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "body_too_large"
    r = httpx.post(server.base + "/v1/completions", content=b'{"prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}",
                   timeout=30)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


# -- 7: fields, roles, paths, model names, logs -------------------------------------------------------

# OpenAI's API reference: every request field of each endpoint
KNOWN = {
    "chat": ["messages", "model", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens",
             "max_completion_tokens", "n", "presence_penalty", "response_format", "seed", "stop", "stream",
             "stream_options", "temperature", "top_p", "tools", "tool_choice", "parallel_tool_calls", "user",
             "service_tier", "store", "metadata", "modalities", "audio", "prediction", "reasoning_effort",
             "web_search_options", "functions", "function_call"],
    "completion": ["model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
                   "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix",
                   "temperature", "top_p", "user"],
}
# a value of each that asks for something (not the default)
VALUES = {
    "model": "any-name", "frequency_penalty": 0.5, "logit_bias": {"5": 10}, "logprobs": True, "top_logprobs": 2,
    "max_tokens": 3, "max_completion_tokens": 3, "n": 2, "presence_penalty": 0.5,
    "response_format": {"type": "json_object"}, "seed": 1, "stop": ["\n"], "stream": False,
    "stream_options": {"include_usage": True}, "temperature": 0.5, "top_p": 0.9,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto", "parallel_tool_calls": True, "user": "u1", "service_tier": "auto", "store": True,
    "metadata": {"k": "v"}, "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"},
    "prediction": {"type": "content", "content": "x"}, "reasoning_effort": "low", "web_search_options": {},
    "functions": [{"name": "f", "parameters": {"type": "object"}}], "function_call": "auto",
    "best_of": 3, "echo": True, "suffix": " the end",
}
BASE = {"chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}),
        "completion": ("/v1/completions", {"prompt": "hi", "max_tokens": 3})}


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_every_known_openai_field_is_honoured_ignored_or_refused(server, kind):
    lists = protocol.HONOURED[kind] | protocol.IGNORED[kind] | protocol.REFUSED[kind]
    assert set(KNOWN[kind]) <= lists, set(KNOWN[kind]) - lists
    assert not (protocol.HONOURED[kind] & protocol.REFUSED[kind])
    assert "logit_bias" in protocol.HONOURED[kind]          # passed to the sampler (tests/test_serve.py)
    path, base = BASE[kind]
    for name in KNOWN[kind]:
        if name in ("messages", "prompt"):
            continue
        value = VALUES[name] if kind == "chat" or name != "logprobs" else 2
        needs = {"top_logprobs": {"logprobs": True}, "tool_choice": {"tools": VALUES["tools"]},
                 "parallel_tool_calls": {"tools": VALUES["tools"]}}.get(name, {})     # as OpenAI asks
        r = server.post(path, {**base, **needs, name: value})
        if name in protocol.REFUSED[kind]:
            assert r.status_code == 400, (name, r.text)
            err = r.json()["error"]
            assert err["param"] == name and name in err["message"] and err["code"] == "unsupported_parameter"
        else:
            assert r.status_code == 200, (name, r.text)
    # a refused field with a value that asks for nothing is accepted
    for name, neutral in (("logit_bias", {}), ("best_of", 1), ("modalities", ["text"]), ("functions", [])):
        if name in protocol.REFUSED[kind]:
            assert server.post(path, {**base, name: neutral}).status_code == 200, name


def test_roles_paths_and_model_names(server):
    r = server.post("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 400 and "role" in r.json()["error"]["message"]
    for role in ("system", "developer", "user"):
        r = server.post("/v1/chat/completions", {"messages": [{"role": role, "content": "hi"}], "max_tokens": 2})
        assert r.status_code == 200, (role, r.text)
    r = httpx.get(server.base + "/v1/nothing-here", timeout=10)
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "not_found"
    r = httpx.get(server.base + "/v1/completions", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"
    # whatever model name is asked for, the one model answers (as llama-server does)
    r = server.post("/v1/completions", {"prompt": "hi", "max_tokens": 2, "model": "gpt-4o"})
    assert r.status_code == 200 and r.json()["model"] == "tiny"


def test_access_log_and_startup_line(server):
    server.post("/v1/completions", {"prompt": "hi", "ignore_eos": True})
    log = server.stderr()
    assert re.search(r"model tiny loaded from \S+tiny\.gguf", log)
    assert re.search(r'127\.0\.0\.1:\d+ "POST /v1/completions" 200 tokens \d+\+16 \d+\.\d+s', log), log[-2000:]


def test_quiet_has_no_access_log(tiny_path, tmp_path):
    srv = _Server(tiny_path, tmp_path, "--quiet", ctx=256)
    try:
        assert srv.post("/v1/completions", {"prompt": "hi", "max_tokens": 2}).status_code == 200
    finally:
        assert srv.stop() == 0
    assert "POST /v1/completions" not in srv.stderr() and "loaded from" in srv.stderr()


def test_busy_port_is_one_line_before_the_model_loads(tiny_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "ignis", "serve", "-m", tiny_path, "--port", str(port)],
                           capture_output=True, text=True, timeout=60, env={**os.environ})
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], r.stderr
    assert "loaded" not in r.stderr


def test_n2_ending_on_the_first_token_answers(server):
    """n = 2 where the first completion ends at once (max_tokens 1, a stop string): each
    request answers with both choices, each ended once (it hung on 3 of 6 tries)."""
    for stream in (False, True):
        for _ in range(6):
            body = {"prompt": "The capital of Spain is", "max_tokens": 1, "n": 2, "stop": [" "], "temperature": 0}
            if not stream:
                r = httpx.post(server.base + "/v1/completions", json=body, timeout=20)
                assert r.status_code == 200 and sorted(c["index"] for c in r.json()["choices"]) == [0, 1]
                continue
            lines = []
            _stream_lines(server.base, "/v1/completions", body, lines, timeout=20)
            finals = [c["index"] for x in lines[1:-1] for c in json.loads(x)["choices"] if c["finish_reason"]]
            assert lines[-1] == "[DONE]" and sorted(finals) == [0, 1]


def test_a_full_kv_cache_is_a_503_to_retry(tiny_path):
    """A KV pool smaller than the sequences running together: a request that cannot grow
    gets a 503 kv_cache_full with Retry-After (an overload), never a 500 or a "stop"."""
    model = ignis.load(tiny_path, n_ctx=64, threads=1)
    srv = _InProcess(model, max_batch=4)
    try:
        async def together():
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*[
                    client.post(srv.base + "/v1/completions", json={"prompt": f"p{i} " * 6, "max_tokens": 50,
                                                                    "ignore_eos": True, "seed": i})
                    for i in range(4)])

        # today 3 of the 4 get the 503; a scheduler that waits or preempts instead may answer all
        for r in asyncio.run(together()):
            if r.status_code == 503:
                assert r.json()["error"]["code"] == "kv_cache_full" and r.headers["retry-after"]
            else:
                assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length", r.text
        assert _wait_for(lambda: srv.metric("ignis_kv_blocks_used") == srv.metric("ignis_kv_blocks_reserved"))
    finally:
        srv.close()


@pytest.mark.real
def test_qwen_padding_ids_are_400(real_model_path):
    """The default model's GGUF pads its 151,665 tokens to 151,936 embedding rows with
    [PADn] entries: those ids are a 400, the last real one is served."""
    model = ignis.load(real_model_path, n_ctx=128, threads=1)
    assert model.n_vocab == 151936
    srv = _InProcess(model, max_batch=2)
    try:
        assert srv.post("/v1/completions", {"prompt": [151664], "max_tokens": 1}).status_code == 200
        for ids in ([151665], [9707, 151900], [151935]):
            r = srv.post("/v1/completions", {"prompt": ids, "max_tokens": 1})
            assert r.status_code == 400 and "not in the vocabulary" in r.json()["error"]["message"], r.text
        assert srv.post("/detokenize", {"tokens": [151935]}).status_code == 400
        assert srv.post("/detokenize", {"tokens": [151664]}).json() == {"content": "<|file_sep|>"}
    finally:
        srv.close()


def test_sse_event_is_one_line_for_every_line_splitter():
    """A token's text may hold U+0085, U+2028 or U+2029: JSON leaves them raw, but readers that
    split a stream with str.splitlines (httpx's iter_lines) would cut the event there (seen: a
    tiny model's stream read as broken JSON). The event escapes them and still decodes."""
    from ignis.serve.app import _sse
    text = "a\x85b\u2028c\u2029d\u00e9\U0001F600"
    event = _sse({"choices": [{"delta": {"content": text}}]})
    assert event.endswith("\n\n") and len(event.strip("\n").splitlines()) == 1
    assert json.loads(event[len("data: "):])["choices"][0]["delta"]["content"] == text
