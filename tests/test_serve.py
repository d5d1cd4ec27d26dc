"""`ignis serve`: a real server (a subprocess on 127.0.0.1, a free port, a tiny model) talked
to with the official openai client. Every load is bounded in count and time."""
import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")


KEY = "test-key"
CTX = 2048


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, path, *flags):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ignis", "serve", "-m", path, "--port", str(self.port), "-c", str(CTX),
             "-t", "1", "--api-key", KEY, *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"server exited: {self.proc.communicate()[1][-2000:]}"
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server not healthy within 30 s"
            time.sleep(0.1)

    def client(self, key=KEY, cls=None):
        return (cls or openai.OpenAI)(base_url=self.base + "/v1", api_key=key, timeout=30, max_retries=0)

    def get(self, path):
        return httpx.get(self.base + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)

    def post(self, path, body, key=KEY):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(self.base + path, json=body, headers=headers, timeout=10)

    def metric(self, name, labels=""):
        text = self.get("/metrics").text
        m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def stop(self, timeout=15):
        """SIGTERM; (return code, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            return None, err
        return self.proc.returncode, err


@pytest.fixture(scope="module")
def tiny_path(tiny_model):
    return tiny_model(n_ctx=CTX, seed=3)


@pytest.fixture(scope="module")
def server(tiny_path):
    srv = _Server(tiny_path, "--parallel", "8")
    yield srv
    code, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


def test_completion_and_usage(server):
    r = server.client().completions.create(model="tiny", prompt="hello world", max_tokens=8, temperature=0)
    assert len(r.choices) == 1 and isinstance(r.choices[0].text, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert 1 <= r.usage.completion_tokens <= 8 or r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    ids = server.post("/tokenize", {"content": "hello world"}).json()["tokens"]
    assert r.usage.prompt_tokens == len(ids)
    # a prompt of token ids gives the same greedy text
    again = server.client().completions.create(model="tiny", prompt=ids, max_tokens=8, temperature=0)
    assert again.choices[0].text == r.choices[0].text


def test_chat(server):
    r = server.client().chat.completions.create(
        model="tiny", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_completion_tokens=6, temperature=0.7, seed=1, extra_body={"some_unknown_field": 1})
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant" and isinstance(r.choices[0].message.content, str)
    assert r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 0


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_stream_equals_non_stream_with_usage(server, kind):
    client = server.client()
    common = dict(model="tiny", max_tokens=24, temperature=0.9, seed=1234, extra_body={"ignore_eos": True})
    if kind == "chat":
        create, args = client.chat.completions.create, dict(messages=[{"role": "user", "content": "count"}])
    else:
        create, args = client.completions.create, dict(prompt="once upon a time")
    whole = create(**args, **common)
    pieces, usage = [], None
    for chunk in create(**args, **common, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
        for c in chunk.choices:
            pieces.append((c.delta.content or "") if kind == "chat" else c.text)
    expected = whole.choices[0].message.content if kind == "chat" else whole.choices[0].text
    assert "".join(pieces) == expected
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens == 24
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_n_choices(server):
    r = server.client().completions.create(model="tiny", prompt="abc", max_tokens=12, n=2, temperature=1.0,
                                           seed=7, extra_body={"ignore_eos": True})
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert r.choices[0].text != r.choices[1].text     # seeds 7 and 8
    assert r.usage.completion_tokens == 24
    # streamed: both choices arrive, each the same as non-streamed
    texts = {0: "", 1: ""}
    for chunk in server.client().completions.create(model="tiny", prompt="abc", max_tokens=12, n=2,
                                                    temperature=1.0, seed=7, stream=True,
                                                    extra_body={"ignore_eos": True}):
        for c in chunk.choices:
            texts[c.index] += c.text
    assert texts == {c.index: c.text for c in r.choices}


def test_several_prompts_in_one_completions_request(server):
    """OpenAI's batch form: choice i*n + j is completion j of prompt i, each the text that
    prompt gets alone (batch invariance), usage sums the prompts; streamed the same."""
    client = server.client()
    common = dict(model="tiny", max_tokens=10, temperature=0.9, seed=11, extra_body={"ignore_eos": True})
    prompts = ["abc", "a longer second prompt", [5, 6, 7]]
    r = client.completions.create(prompt=prompts, n=2, **common)
    assert sorted(c.index for c in r.choices) == list(range(6))
    by_index = {c.index: c.text for c in r.choices}
    n_prompt = 0
    for i, p in enumerate(prompts):
        alone = client.completions.create(prompt=p, n=2, **common)
        n_prompt += alone.usage.prompt_tokens
        assert [by_index[2 * i], by_index[2 * i + 1]] == [c.text for c in sorted(alone.choices, key=lambda c: c.index)]
    assert r.usage.prompt_tokens == n_prompt and r.usage.completion_tokens == 60
    texts = {}
    for chunk in client.completions.create(prompt=prompts, n=2, stream=True, **common):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
    assert texts == by_index
    echoed = client.completions.create(prompt=["abc", "xyz"], echo=True, **common)
    assert sorted(c.text[:3] for c in echoed.choices) == ["abc", "xyz"]
    err = server.post("/v1/completions", {"prompt": ["ok", 3], "max_tokens": 1}).json()["error"]
    assert err["param"] == "prompt"
    err = server.post("/v1/completions", {"prompt": ["ok", [10**9]], "max_tokens": 1}).json()["error"]
    assert "prompt[1]" in err["message"]


def test_logprobs(server):
    client = server.client()
    r = client.completions.create(model="tiny", prompt="hello", max_tokens=6, temperature=0, logprobs=3,
                                  extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens == 6
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert chosen <= 0 and 1 <= len(top) <= 3
        assert chosen == pytest.approx(max(top.values()))          # greedy: the most likely token
        assert sum(math.exp(v) for v in top.values()) <= 1 + 1e-9
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    # chat, streamed and not: the same entries
    common = dict(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8, temperature=0.8,
                  seed=5, logprobs=True, top_logprobs=2, extra_body={"ignore_eos": True})
    whole = client.chat.completions.create(**common).choices[0].logprobs.content
    streamed = []
    for chunk in client.chat.completions.create(**common, stream=True):
        for c in chunk.choices:
            if c.logprobs is not None:
                streamed.extend(c.logprobs.content)
    assert len(whole) == 8 and all(len(e.top_logprobs) == 2 for e in whole)
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in whole]


def test_bad_requests_are_400(server):
    client = server.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", max_tokens=-1)
    assert e.value.status_code == 400
    err = server.post("/v1/completions", {"prompt": "x", "max_tokens": -1}).json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == "max_tokens" and "-1" in err["message"]
    with pytest.raises(openai.BadRequestError, match=str(CTX)):
        client.completions.create(model="tiny", prompt=[1] * (CTX + 5), max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[], max_tokens=1)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="tiny", prompt="x", temperature="hot")
    with pytest.raises(openai.BadRequestError, match="n must be at most"):
        client.completions.create(model="tiny", prompt="x", n=99)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt=[10**9], max_tokens=1)   # not in the vocabulary
    r = httpx.post(server.base + "/v1/completions", content=b"{not json", timeout=10,
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


SCHEMA = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
                                          "n": {"type": "integer", "minimum": 1, "maximum": 9}},
          "required": ["color", "n"], "additionalProperties": False}


def _valid(text) -> bool:
    """The output is a JSON object of SCHEMA (checked here by hand, without ignis)."""
    obj = json.loads(text)
    return set(obj) == {"color", "n"} and obj["color"] in ("red", "green", "blue") and \
        type(obj["n"]) is int and 1 <= obj["n"] <= 9


@pytest.fixture(scope="module")
def structured_server(tiny_path):
    """A server of its own: these requests fill the prefix cache, which the KV-block
    accounting tests of `server` must not see."""
    srv = _Server(tiny_path, "--parallel", "4")
    yield srv
    code, err = srv.stop()
    assert code == 0, err[-2000:]


def test_response_format_on_both_endpoints(structured_server):
    """The tiny model's weights are random: without the schema its output is not JSON."""
    server = structured_server
    client = server.client()
    fmt = {"type": "json_schema", "json_schema": {"name": "pick", "schema": SCHEMA}}
    for seed in (1, 2):
        chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "pick"}],
                                              response_format=fmt, max_tokens=200, seed=seed, temperature=0.8)
        assert _valid(chat.choices[0].message.content), chat.choices[0].message.content
        assert chat.choices[0].finish_reason == "stop"
        comp = client.completions.create(model="tiny", prompt="pick", max_tokens=200, seed=seed, temperature=0.8,
                                         extra_body={"response_format": fmt})
        assert _valid(comp.choices[0].text), comp.choices[0].text
    # streamed: the pieces join into a valid object
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "pick"}],
                                            response_format=fmt, max_tokens=200, seed=3, stream=True)
    assert _valid("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
    # llama.cpp server's own field
    r = server.post("/v1/completions", {"prompt": "x", "max_tokens": 30, "regex": "[0-9]{3}"})
    assert re.fullmatch(r"[0-9]{3}", r.json()["choices"][0]["text"])
    plain = client.completions.create(model="tiny", prompt="pick", max_tokens=40, seed=1, temperature=0.8)
    with pytest.raises(ValueError):
        json.loads(plain.choices[0].text)


def test_bad_response_format_is_400(structured_server):
    for body, words in [({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "nope"}}}},
                         "json_schema"),
                        ({"response_format": {"type": "yaml"}}, "response_format"),
                        ({"response_format": {"type": "json_object"}, "regex": "a"}, "at most one"),
                        ({"regex": "(("}, "regex")]:
        for path, extra in (("/v1/completions", {"prompt": "x"}),
                            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})):
            r = structured_server.post(path, {**extra, "max_tokens": 5, **body})
            assert r.status_code == 400, (path, body, r.text)
            err = r.json()["error"]
            assert err["type"] == "invalid_request_error" and words in err["message"], err


def test_api_key(server):
    with pytest.raises(openai.AuthenticationError):
        server.client(key="wrong").completions.create(model="tiny", prompt="x", max_tokens=1)
    r = server.post("/v1/completions", {"prompt": "x", "max_tokens": 1}, key=None)
    assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(server.base + "/health", timeout=10).status_code == 200     # open to probes
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_metrics_are_prometheus_text(server):
    server.client().completions.create(model="tiny", prompt="hello", max_tokens=4)
    r = server.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    for name in ("ignis_requests_total", "ignis_prompt_tokens_total", "ignis_generated_tokens_total",
                 "ignis_requests_waiting", "ignis_requests_running", "ignis_kv_blocks_used",
                 "ignis_kv_blocks_free", "ignis_time_to_first_token_seconds",
                 "ignis_inter_token_latency_seconds"):
        assert re.search(rf"^# TYPE {name} (counter|gauge|histogram)$", r.text, re.M), name
    assert server.metric("ignis_requests_total", '{endpoint="completions",status="200"}') >= 1
    assert server.metric("ignis_time_to_first_token_seconds_count") >= 1
    assert server.metric("ignis_kv_blocks_free") > 0


def test_tokenize_detokenize_round_trip(server):
    text = "Hello, world! <|im_end|> 123"
    tokens = server.post("/tokenize", {"content": text}).json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert server.post("/detokenize", {"tokens": tokens}).json() == {"content": text}
    assert server.post("/detokenize", {"tokens": [10**9]}).status_code == 400


def test_batch_invariance_over_http(server):
    """The same request alone and among 15 concurrent others: the same text."""
    target = dict(model="tiny", prompt="the quick brown fox", max_tokens=32, temperature=1.0, seed=99,
                  extra_body={"ignore_eos": True})
    alone = server.client().completions.create(**target).choices[0].text

    async def crowd():
        client = server.client(cls=openai.AsyncOpenAI)
        others = [client.completions.create(model="tiny", prompt=f"other prompt number {i} " * (1 + i % 3),
                                            max_tokens=16 + 3 * i, temperature=0.8, seed=i,
                                            extra_body={"ignore_eos": True}) for i in range(15)]
        jobs = others[:7] + [client.completions.create(**target)] + others[7:]
        results = await asyncio.wait_for(asyncio.gather(*jobs), timeout=60)
        await client.close()
        return results

    results = asyncio.run(crowd())
    assert results[7].choices[0].text == alone
    assert all(r.usage.completion_tokens == 16 + 3 * i for i, r in enumerate(results[:7] + results[8:]))


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_disconnect_mid_stream_frees_the_kv_blocks(server):
    idle = server.metric("ignis_kv_blocks_used")
    cancelled = server.metric("ignis_completions_finished_total", '{reason="cancelled"}')
    stream = server.client().completions.create(model="tiny", prompt="a long story", max_tokens=CTX - 20,
                                                temperature=1.0, seed=3, stream=True,
                                                extra_body={"ignore_eos": True})
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    assert _wait_for(lambda: server.metric("ignis_kv_blocks_used") == idle), "KV blocks not freed"
    assert _wait_for(lambda: server.metric("ignis_completions_finished_total", '{reason="cancelled"}')
                     == cancelled + 1)
    assert server.metric("ignis_requests_running") == 0


def test_queue_limit_and_sigterm_mid_request(tiny_path):
    """--parallel 1 --max-queue 0: a second request while one runs is a 503 with Retry-After;
    SIGTERM with a stream in flight (and no time to drain) ends the stream with an error
    event and exits 0 without a traceback."""
    srv = _Server(tiny_path, "--parallel", "1", "--max-queue", "0", "--shutdown-timeout", "0")
    try:
        stream = srv.client().completions.create(model="tiny", prompt="go", max_tokens=CTX - 10,
                                                 temperature=1.0, seed=1, stream=True,
                                                 extra_body={"ignore_eos": True})
        chunks = iter(stream)
        next(chunks)
        r = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
        assert r.status_code == 503 and r.headers.get("retry-after")
        assert r.json()["error"]["code"] == "queue_full"
        srv.proc.send_signal(signal.SIGTERM)
        with pytest.raises(openai.APIError, match="shut down before the request finished"):
            list(chunks)           # the stream ends with an error event instead of running to CTX tokens
        code, err = srv.stop()
        assert code == 0, err[-2000:]
        assert "Traceback" not in err, err[-2000:]
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.communicate()


def test_bad_model_path_is_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ignis", "serve", "-m", str(tmp_path / "missing.gguf"),
                        "--port", str(_free_port())], capture_output=True, text=True, timeout=30,
                       env={**os.environ})
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "ignis: error:" in r.stderr


def test_max_tokens_zero(server):
    r = server.client().completions.create(model="tiny", prompt="hello", max_tokens=0)
    assert r.choices[0].text == "" and r.usage.completion_tokens == 0 and r.usage.prompt_tokens > 0
    chunks = list(server.client().chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=0, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 0


def test_health_is_503_while_loading(tiny_path):
    """In process (Starlette's TestClient): /health answers 503 until the loader returns."""
    import threading

    from starlette.testclient import TestClient

    import ignis
    from ignis.serve import create_app

    release = threading.Event()

    def load():
        release.wait(20)
        return ignis.load(tiny_path, n_ctx=256, threads=1)

    app = create_app(load, max_batch=2)
    with TestClient(app) as client:
        r = client.get("/health")
        assert r.status_code == 503 and r.headers["retry-after"]
        assert client.post("/v1/completions", json={"prompt": "x"}).status_code == 503
        release.set()
        assert _wait_for(lambda: client.get("/health").status_code == 200)
        r = client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 3, "temperature": 0})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3


# -- logit_bias ---------------------------------------------------------------------------------

def _greedy_ids(server, prompt_ids, n, **extra):
    """The ids a temperature-0 completion of prompt_ids picks (each a one-token prompt
    extension, so no text has to round-trip through the tokenizer)."""
    ids = list(prompt_ids)
    out = []
    for _ in range(n):
        r = server.post("/v1/completions", {"prompt": ids, "max_tokens": 1, "temperature": 0, "ignore_eos": True,
                                            "logprobs": 0, **extra})
        assert r.status_code == 200, r.text
        text = r.json()["choices"][0]["text"]
        token = server.post("/tokenize", {"content": text}).json()["tokens"]
        assert len(token) == 1, (text, token)
        out.append(token[0])
        ids.append(token[0])
    return out


def test_logit_bias_forces_and_bans_tokens(server):
    prompt = [5, 17, 42, 9]
    base = {"prompt": prompt, "max_tokens": 6, "temperature": 0, "ignore_eos": True}
    plain = server.post("/v1/completions", base).json()["choices"][0]["text"]
    greedy = _greedy_ids(server, prompt, 1)[0]
    # -100 on the greedy token: it is never picked, so the answer changes
    banned = server.post("/v1/completions", {**base, "logit_bias": {str(greedy): -100}})
    assert banned.status_code == 200, banned.text
    assert banned.json()["choices"][0]["text"] != plain
    assert _greedy_ids(server, prompt, 1, logit_bias={str(greedy): -100})[0] != greedy
    # +100 on one token forces it, whatever the sampling settings (a full-vocabulary draw here)
    forced = next(t for t in range(65, 91) if t != greedy)
    piece = server.post("/detokenize", {"tokens": [forced] * 6}).json()["content"]
    for body in ({**base}, {**base, "temperature": 1.0, "top_p": 1.0, "seed": 7}):
        r = server.post("/v1/completions", {**body, "logit_bias": {str(forced): 100}})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == piece
    # chat, streamed and not, honours it too
    client = server.client()
    common = dict(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0.9,
                  seed=1, logit_bias={str(forced): 100}, extra_body={"ignore_eos": True})
    whole = client.chat.completions.create(**common).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**common, stream=True)
                       if c.choices)
    four = server.post("/detokenize", {"tokens": [forced] * 4}).json()["content"]
    assert whole == streamed == four


@pytest.mark.parametrize("bias, says", [
    ([1, 2], "object"), ("5", "object"), ({"abc": 1}, "decimal"), ({"-1": 1}, "decimal"), ({" 5": 1}, "decimal"),
    ({"1.5": 1}, "decimal"), ({"5": 101}, "[-100, 100]"), ({"5": -100.5}, "[-100, 100]"), ({"5": "1"}, "number"),
    ({"5": True}, "number"), ({"5": None}, "number"), ({"5": 1, "05": 2}, "twice"),
    ({"299": 1, "300": 1}, "vocabulary"), ({"99999999999": 1}, "vocabulary"),
])
def test_bad_logit_bias_is_a_400_naming_it(server, bias, says):
    for path, body in (("/v1/completions", {"prompt": "hi", "max_tokens": 2}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})):
        r = server.post(path, {**body, "logit_bias": bias})
        assert r.status_code == 400, (path, bias, r.text)
        err = r.json()["error"]
        assert err["param"] == "logit_bias" and says in err["message"], err


def test_logit_bias_edges_are_accepted(server):
    top = server.get("/v1/models").json()["data"][0]["meta"]["n_vocab"] - 1     # the tiny vocab has no padding
    for bias in ({}, None, {"0": -100}, {str(top): 100.0}, {"7": 0}, {"7": -100, "8": 100, "9": 0.5}):
        r = server.post("/v1/completions", {"prompt": "hi", "max_tokens": 2, "logit_bias": bias})
        assert r.status_code == 200, (bias, r.text)
