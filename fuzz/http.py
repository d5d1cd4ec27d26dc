"""A bounded HTTP fuzzer for `ignis serve`, on loopback only.

It starts `ignis serve` on 127.0.0.1 (a free port, a small context so that no request can
run long) and sends it generated and mutated bodies, headers, content types and methods
against /v1/completions, /v1/chat/completions, /tokenize and /detokenize, a few at a time,
plus raw-socket clients that go away mid-body or mid-response. Bounded by a count and a
time. It asserts:
  - no 5xx but the documented 503s of an overload (queue_full, kv_cache_full), and every
    4xx is OpenAI's error JSON;
  - no request waits longer than 30 s (a hang; with --lenient, on a loaded machine, slower
    answers are counted and only one past 180 s fails);
  - a stream ends with [DONE] or an error event, never an engine error;
  - afterwards the server is alive, nothing is running or waiting, every KV block in use is
    one the prefix cache or the engine holds (none leaked), and its log has no traceback.

    python -m fuzz.http [--model PATH] [--count 20000] [--time 3600] [--seed 0] [--workers 4]

Exit status 0 when every check held; the counts are printed either way.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import httpx

ENDPOINTS = ("/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize")
HANG = 30.0                      # seconds a request may take before it counts as a hang
SLOW_LIMIT = 180.0               # without --strict: slower than HANG is reported as slow, a hang past this
ALLOWED_503 = {"queue_full", "kv_cache_full"}     # the documented 503s while the server runs (overload)

# -- values -----------------------------------------------------------------------------------

_STRINGS = ["", "a", "hello world", "<|im_end|>", "<|im_start|>user\n", "\x00", "\ud7ff", "é" * 50, "🦀" * 20,
            " " * 300, "\\", '"', "[", "{", "null", "NaN", "-1", "1e999", "x" * 5000]
_INTS = [0, 1, 2, -1, 3, 7, 8, 9, 16, 20, 21, 64, 65, 255, 256, 1023, 2 ** 31, 2 ** 63, 2 ** 64, -2 ** 63,
         10 ** 30, 151664, 151665, 151935, 151936, 299, 300]
_FLOATS = [0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 2.0001, -0.1, 1e-300, 1e308, 0.999999]


def _scalar(rng: random.Random):
    k = rng.random()
    if k < 0.15:
        return None
    if k < 0.25:
        return rng.random() < 0.5
    if k < 0.5:
        return rng.choice(_INTS) if rng.random() < 0.7 else rng.randint(-1000, 1000)
    if k < 0.65:
        return rng.choice(_FLOATS) if rng.random() < 0.7 else rng.uniform(-3, 3)
    return rng.choice(_STRINGS)


def _value(rng: random.Random, depth: int = 0):
    """Any JSON value (bounded size)."""
    k = rng.random()
    if depth > 3 or k < 0.6:
        return _scalar(rng)
    if k < 0.8:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(_STRINGS[:6] + ["type", "role", "content", "text", "schema"]): _value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def _small_tokens(rng: random.Random, max_tokens: int) -> int:
    return rng.randint(0, max_tokens)


def _ids(rng: random.Random) -> list:
    return [rng.choice(_INTS) if rng.random() < 0.1 else rng.randint(0, 3000) for _ in range(rng.randint(1, 12))]


def _prompt(rng: random.Random):
    k = rng.random()
    if k < 0.5:
        return rng.choice(_STRINGS[:12]) or "hi"
    if k < 0.7:
        return _ids(rng)
    if k < 0.85:
        return [rng.choice(["a b c", "the cat", "1 2 3"]) for _ in range(rng.randint(1, 4))]
    return _value(rng)


def _message(rng: random.Random):
    k = rng.random()
    role = rng.choice(["user", "user", "system", "assistant", "developer", "tool", "wizard", "", None, 3])
    if k < 0.7:
        return {"role": role, "content": rng.choice(_STRINGS[:12])}
    if k < 0.85:
        return {"role": role, "content": [{"type": rng.choice(["text", "image_url"]), "text": "hi"}]}
    return _value(rng)


_RESPONSE_FORMATS = [
    {"type": "json_object"}, {"type": "text"}, {"type": "yaml"}, {"type": "json_schema"},
    {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
    {"type": "json_schema", "json_schema": {"schema": {"type": "nope"}}},
    {"type": "json_schema", "json_schema": {"schema": {"enum": ["x", "y"]}}},
]


def _good_fields(rng: random.Random, kind: str, max_tokens: int, max_n: int) -> dict:
    """A body the server should accept."""
    body = {"max_tokens": _small_tokens(rng, max_tokens)}
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": rng.choice(["hi", "count to 3", "write a haiku"])}]
    else:
        body["prompt"] = rng.choice(["The capital of Spain is", "def f(x):", [1, 2, 3], ["a", "b"]])
    options = {
        "temperature": lambda: rng.choice([0, 0.7, 1.0, 2.0]), "top_p": lambda: rng.choice([0, 0.5, 1]),
        "top_k": lambda: rng.choice([0, 1, 40]), "min_p": lambda: rng.choice([0, 0.05]),
        "seed": lambda: rng.randint(-5, 2 ** 64), "n": lambda: rng.randint(1, max_n),
        "stop": lambda: rng.choice([" ", ["\n", "."], "", []]), "stream": lambda: rng.random() < 0.4,
        "stream_options": lambda: {"include_usage": rng.random() < 0.5}, "ignore_eos": lambda: rng.random() < 0.3,
        "presence_penalty": lambda: rng.uniform(-2, 2), "frequency_penalty": lambda: rng.uniform(-2, 2),
        "repeat_penalty": lambda: rng.choice([1.0, 1.1]), "user": lambda: "u",
        "response_format": lambda: rng.choice(_RESPONSE_FORMATS[:2] + _RESPONSE_FORMATS[4:5]),
        "regex": lambda: rng.choice(["[0-9]+", "(a|b)*"]),
        "logit_bias": lambda: rng.choice([{}, {"5": -100}, {"1": 100, "2": -5.5}, {"0": 0}]),
    }
    if kind == "chat":
        options["logprobs"] = lambda: True
        options["top_logprobs"] = lambda: rng.randint(0, 3)
    else:
        options["logprobs"] = lambda: rng.randint(0, 3)
        options["echo"] = lambda: rng.random() < 0.5
    for name in rng.sample(sorted(options), rng.randint(0, 5)):
        body[name] = options[name]()
    if "regex" in body and "response_format" in body:
        del body["regex"]
    if kind == "chat" and "top_logprobs" in body:
        body["logprobs"] = True
    return body


_FIELDS = ["model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
           "min_p", "n", "stop", "stream", "stream_options", "seed", "logprobs", "top_logprobs", "echo",
           "presence_penalty", "frequency_penalty", "repeat_penalty", "ignore_eos", "response_format",
           "json_schema", "regex", "grammar", "logit_bias", "tools", "tool_choice", "best_of", "suffix", "user",
           "metadata", "content", "tokens", "modalities", "audio"]


def _generated(rng: random.Random, path: str, max_tokens: int, max_n: int):
    """A generated body: mostly plausible, some fields given random values of any type."""
    if path == "/tokenize":
        body = {"content": rng.choice(_STRINGS)} if rng.random() < 0.7 else {"content": _value(rng)}
    elif path == "/detokenize":
        body = {"tokens": _ids(rng)} if rng.random() < 0.7 else {"tokens": _value(rng)}
    else:
        body = _good_fields(rng, "chat" if "chat" in path else "completion", max_tokens, max_n)
        if rng.random() < 0.3:
            body["messages" if "chat" in path else "prompt"] = (
                [_message(rng) for _ in range(rng.randint(0, 3))] if "chat" in path else _prompt(rng))
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        name = rng.choice(_FIELDS)
        body[name] = _value(rng)
        if name in ("max_tokens", "max_completion_tokens") and isinstance(body[name], int) and body[name] > max_tokens:
            body[name] = max_tokens          # keep every accepted request short
        if name == "n" and isinstance(body[name], int) and body[name] > max_n:
            body[name] = max_n
    if rng.random() < 0.02:
        return _value(rng)                   # not an object at all
    return body


_SPLICE = [b"{", b"}", b"[", b"]", b'"', b"\\", b",", b":", b"null", b"true", b"1e999", b"-0", b"NaN", b"Infinity",
           b"99999999999999999999999", b"\\u0000", b"\\ud800", b"\xff\xfe", b"\xc3", b"\x00", b" " * 100,
           b'"max_tokens": 1', b'"stream": true', b'"n": 3']


def _mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        k = rng.random()
        at = rng.randint(0, len(data))
        if k < 0.25 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif k < 0.45:
            del data[at:at + rng.randint(1, 8)]
        elif k < 0.7:
            data[at:at] = rng.choice(_SPLICE)
        elif k < 0.8 and data:
            end = min(len(data), at + rng.randint(1, 30))
            data[at:at] = data[at:end] * rng.randint(1, 5)
        elif k < 0.9:
            del data[at:]
        else:
            deep = rng.choice([10, 63, 65, 100, 2000])
            data[at:at] = b"[" * deep + b"1" + b"]" * deep
    return bytes(data)


_CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain", "", None,
                  "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin-1",
                  "garbage/\x7f"]


def make_case(seed: int, i: int, max_tokens: int, max_n: int = 3) -> dict:
    """Case i of a run: what to send, reproducible from (seed, i)."""
    rng = random.Random(f"{seed}:{i}")
    path = rng.choice(ENDPOINTS)
    body = _generated(rng, path, max_tokens, max_n)
    raw = json.dumps(body).encode() if rng.random() < 0.9 else json.dumps(body, ensure_ascii=False).encode()
    mode = "generated"
    if rng.random() < 0.35:
        raw, mode = _mutate(rng, raw), "mutated"
    headers = {}
    ctype = rng.choice(_CONTENT_TYPES) if rng.random() < 0.3 else "application/json"
    if ctype is not None:
        headers["content-type"] = ctype
    if rng.random() < 0.05:
        headers["authorization"] = rng.choice(["Bearer x", "Basic Zm9v", "", "Bearer " + "a" * 5000])
    if rng.random() < 0.03:
        headers["content-encoding"] = rng.choice(["gzip", "br", "identity"])
    method = "POST" if rng.random() < 0.97 else rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
    k = rng.random()
    if k < 0.02:
        mode = "gone-mid-body"
    elif k < 0.05:
        mode = "gone-mid-response"
    elif k < 0.07:
        mode = "chunked"
    return {"i": i, "path": path, "raw": raw, "headers": headers, "method": method, "mode": mode,
            "cut": rng.randint(0, max(0, len(raw) - 1)), "after": rng.uniform(0, 0.3)}


# -- sending and checking -----------------------------------------------------------------------

class Failure(Exception):
    pass


def _check_error_json(status: int, text: str) -> None:
    try:
        err = json.loads(text)["error"]
        assert isinstance(err["message"], str) and isinstance(err["type"], str)
    except Exception:                 # noqa: BLE001 - any shape problem is the finding
        raise Failure(f"{status} without OpenAI's error JSON: {text[:200]!r}") from None


def _check_stream(lines: list):
    """SSE data payloads of a 200 stream: JSON chunks, then [DONE] or one error event (its
    code returned)."""
    if not lines:
        raise Failure("a 200 stream with no events")
    for j, payload in enumerate(lines):
        if payload == "[DONE]":
            if j != len(lines) - 1:
                raise Failure("events after [DONE]")
            return
        event = json.loads(payload)
        if "error" in event:
            if event["error"].get("code") not in ALLOWED_503 or j != len(lines) - 1:
                raise Failure(f"stream error event: {payload[:300]}")
            return event["error"]["code"]
    raise Failure("a stream that ended without [DONE] or an error event")


def send(base: str, port: int, case: dict, client: httpx.Client, limit: float = HANG) -> int:
    """Send one case; its status (499: this client went away on purpose). Raises Failure."""
    mode = case["mode"]
    if mode == "gone-mid-body":
        with socket.create_connection(("127.0.0.1", port), timeout=HANG) as s:
            s.sendall(f"POST {case['path']} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(case['raw']) + 10}\r\n\r\n".encode() + case["raw"][:case["cut"]])
            time.sleep(case["after"])
        return 499
    if mode == "gone-mid-response":
        with socket.create_connection(("127.0.0.1", port), timeout=HANG) as s:
            s.sendall(f"POST {case['path']} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(case['raw'])}\r\n\r\n".encode() + case["raw"])
            time.sleep(case["after"])
        return 499
    content = case["raw"]
    if mode == "chunked":
        pieces = [content[j:j + 7] for j in range(0, len(content), 7)]
        content = iter(pieces)
    t0 = time.monotonic()
    try:
        with client.stream(case["method"], base + case["path"], content=content, headers=case["headers"],
                           timeout=limit) as r:
            status = r.status_code
            ctype = r.headers.get("content-type", "")
            if status == 200 and ctype.startswith("text/event-stream"):
                lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
                code = _check_stream(lines)
                return status if code is None else f"200 then {code}"
            text = r.read().decode("utf-8", "replace")
    except httpx.TimeoutException:
        raise Failure(f"no answer within {limit:.0f} s (a hang)") from None
    except httpx.HTTPError as exc:
        raise Failure(f"transport error after {time.monotonic() - t0:.1f} s: {type(exc).__name__}: {exc}") from None
    if status >= 500:
        code = None
        try:
            code = json.loads(text)["error"]["code"]
        except Exception:             # noqa: BLE001
            pass
        if not (status == 503 and code in ALLOWED_503):
            raise Failure(f"{status}: {text[:300]}")
        return f"{status} {code}"
    if 400 <= status < 500 and case["method"] != "HEAD":
        _check_error_json(status, text)
    if status == 200 and case["method"] == "POST":
        json.loads(text)
    return status


# -- the server -----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`ignis serve` on 127.0.0.1 in a subprocess; its stderr in a file."""

    def __init__(self, model: str | None, ctx: int, parallel: int, max_queue: int, threads: int | None):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ignis-fuzz-http-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "ignis", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "-c", str(ctx), "--parallel", str(parallel), "--max-queue", str(max_queue), "--quiet"]
        if model:
            cmd += ["-m", model]
        if threads:
            cmd += ["-t", str(threads)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"fuzz/http: the server exited: {self.stderr()[-2000:]}")
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("fuzz/http: the server was not healthy within 300 s")
            time.sleep(0.2)

    def stderr(self) -> str:
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def metric(self, name: str) -> float:
        text = httpx.get(self.base + "/metrics", timeout=10).text
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else float("nan")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def run(model: str | None = None, count: int = 20000, seconds: float = 3600, seed: int = 0, workers: int = 4,
        max_tokens: int = 2, ctx: int = 256, parallel: int = 8, max_queue: int = 8, threads: int | None = None,
        max_n: int = 3, strict: bool = True, out=sys.stdout) -> dict:
    """Run the fuzzer; a summary dict (failures: a list of (case index, message)). strict:
    an answer slower than HANG is a failure; else it is counted as slow (a loaded machine),
    and only one slower than SLOW_LIMIT fails."""
    server = Server(model, ctx, parallel, max_queue, threads)
    statuses, modes, failures, slow, codes = Counter(), Counter(), [], [], Counter()
    lock = threading.Lock()
    local = threading.local()
    t0 = time.monotonic()
    sent = 0

    def one(i: int) -> None:
        case = make_case(seed, i, max_tokens, max_n)
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(limits=httpx.Limits(max_connections=2))
        t = time.monotonic()
        try:
            status = send(server.base, server.port, case, client, HANG if strict else SLOW_LIMIT)
            took = time.monotonic() - t
            with lock:
                statuses[status] += 1
                modes[case["mode"]] += 1
                if took > HANG:
                    slow.append((i, round(took, 1)))
                    if strict:
                        failures.append((i, f"{case['method']} {case['path']}: answered after {took:.0f} s"))
        except (Failure, json.JSONDecodeError, UnicodeDecodeError) as exc:
            with lock:
                failures.append((i, f"{case['method']} {case['path']} {case['mode']}: {exc}"))
                modes[case["mode"]] += 1
            print(f"fuzz/http: FAIL case {i}: {failures[-1][1]}", file=out, flush=True)

    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            pending = set()
            for i in range(count):
                if time.monotonic() - t0 > seconds:
                    break
                pending.add(pool.submit(one, i))
                sent += 1
                if len(pending) >= 4 * workers:
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                if sent % 1000 == 0:
                    print(f"fuzz/http: {sent} sent, {len(failures)} failures, {time.monotonic() - t0:.0f} s",
                          file=out, flush=True)
            concurrent.futures.wait(pending)
        elapsed = time.monotonic() - t0
        # afterwards: alive, idle, no block leaked, no traceback
        alive = server.proc.poll() is None and httpx.get(server.base + "/health", timeout=10).status_code == 200
        if not alive:
            failures.append((-1, "the server is not alive after the run"))
        deadline = time.monotonic() + 60
        while alive and time.monotonic() < deadline and (server.metric("ignis_requests_running")
                                                         or server.metric("ignis_requests_waiting")):
            time.sleep(0.2)
        used = cached = float("nan")
        if alive:
            for _ in range(50):          # a cancelled sequence is freed at the scheduler's next step
                used, cached = server.metric("ignis_kv_blocks_used"), server.metric("ignis_kv_blocks_reserved")
                if used == cached:
                    break
                time.sleep(0.1)
            if server.metric("ignis_requests_running") or server.metric("ignis_requests_waiting"):
                failures.append((-1, "requests still running or waiting 60 s after the run"))
            if used != cached:
                failures.append((-1, f"{used:.0f} KV blocks in use at idle, only {cached:.0f} held by the prefix cache and the engine"))
    finally:
        code = server.stop()
    log = server.stderr()
    if "Traceback" in log:
        failures.append((-1, "a traceback in the server's log: " + log[log.index("Traceback"):][:1500]))
    if code != 0:
        failures.append((-1, f"the server exited with {code} on SIGTERM"))
    os.unlink(server.log.name)
    summary = {"sent": sent, "seconds": round(elapsed, 1), "statuses": dict(sorted(statuses.items(), key=str)),
               "slower_than_30s": len(slow), "slowest": sorted(slow, key=lambda x: -x[1])[:5],
               "modes": dict(sorted(modes.items())), "kv_blocks_used_at_idle": used, "kv_blocks_reserved": cached,
               "failures": failures}
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz.http", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", "-m", default=None, help="GGUF to serve (default: ignis' default model)")
    p.add_argument("--count", type=int, default=20000, help="bodies to send (default 20000)")
    p.add_argument("--time", type=float, default=3600, help="stop sending after this many seconds (default 3600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=4, help="requests in flight at once (default 4)")
    p.add_argument("--max-tokens", type=int, default=2, help="largest max_tokens sent (default 2)")
    p.add_argument("--ctx", type=int, default=256, help="the server's context (bounds every request; default 256)")
    p.add_argument("--threads", "-t", type=int, default=None, help="the server's threads")
    p.add_argument("--max-n", type=int, default=3, help="largest n sent (default 3)")
    p.add_argument("--lenient", action="store_true",
                   help=f"a loaded machine: answers slower than {HANG:.0f} s are counted, only past "
                        f"{SLOW_LIMIT:.0f} s are they a failure")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))      # so that the server is stopped too
    summary = run(args.model, args.count, args.time, args.seed, args.workers, args.max_tokens, args.ctx,
                  threads=args.threads, max_n=args.max_n, strict=not args.lenient)
    failures = summary.pop("failures")
    print(json.dumps(summary, indent=1))
    for i, message in failures[:30]:
        print(f"FAIL case {i}: {message}")
    print(f"fuzz/http: {summary['sent']} bodies in {summary['seconds']} s, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
