"""A soak of `ignis serve`: minutes of bounded mixed load on loopback, then checks that
nothing was lost, leaked or left running.

    python bench/soak.py                         # 30 minutes on the default model
    python bench/soak.py --minutes 10 [-m FILE] [--workers 6] [--parallel 8] [--seed 0] [--json]

It starts `ignis serve` on 127.0.0.1 (a free port) and runs WORKERS client threads until the
time is up. Each sends one request at a time, drawn from a fixed mix:
  chat / completion, streamed or not; n = 2..3; response_format json_schema; the regex
  extension; logit_bias (a banned and a forced token); a ~500-token prompt; a streamed request
  cancelled (connection closed) after a few chunks; a non-streamed request whose client goes
  away before the answer (a short read timeout); a client gone mid-body (raw socket); bad
  bodies (malformed JSON, bad fields), which must be 400s.
Every request that is not deliberately abandoned must end, within REQUEST_DEADLINE seconds,
with a complete answer (200 with n choices and OpenAI finish reasons, or a stream with a finish
reason per choice and [DONE]) or an OpenAI error (a 400 for the bad bodies, a documented 503
for an overload); anything else is a failure. A sampler thread reads the server's RSS and
/metrics (KV blocks used, running, waiting) every --sample-every seconds.

At the end it asserts: no request lost, hung or failed; RSS after warm-up flat within 5 %,
total and anonymous (the median of the last tenth of the samples against the median of the
first tenth after warm-up; warm-up ends once the bounded caches are full: the mapped model
file resident and every KV block used once, see warm_up_end); KV blocks in use back to the
engine's own reserved blocks and nothing running or waiting; the server alive (GET /health),
exiting 0 on SIGTERM, with no traceback in its log.
It stops by itself: the workers stop at the deadline, and a watchdog ends the run (and the
server) if anything is still going HARD_MARGIN seconds later. Exit status 0 when every check held.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ignis.runtime.bench import SSE_DONE, sse_event  # noqa: E402

REQUEST_DEADLINE = 180.0      # seconds a request may take before it counts as hung (a loaded machine is slow)
HARD_MARGIN = 300.0           # seconds past the end before the watchdog ends everything
RSS_TOLERANCE = 0.05
METRIC_RE = re.compile(r"^(\S+) (\S+)$", re.M)

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                          "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
TOPICS = ["the sea", "a lighthouse", "a red kite", "tea", "old maps", "winter", "a violin", "bridges"]
LONG = " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog near {TOPICS[i % len(TOPICS)]}."
                for i in range(40))         # ~600 tokens with Qwen's tokenizer
KINDS = {                     # kind: weight
    "chat_stream": 14, "chat": 8, "completion": 8, "completion_stream": 6, "n_many": 8, "json_schema": 6,
    "regex": 5, "logit_bias": 6, "long_prompt": 5, "cancel_stream": 10, "disconnect": 8, "gone_mid_body": 3,
    "bad_body": 13,
}
ABANDONED = {"cancel_stream", "disconnect", "gone_mid_body"}      # the client leaves on purpose


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> dict:
    """The server's resident memory in MB: total, anonymous, and file-backed (the mapped model)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = {"VmRSS:": "rss_mb", "RssAnon:": "anon_mb", "RssFile:": "file_mb"}.get(line.split(":")[0] + ":")
                if key:
                    out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


class Server:
    def __init__(self, model: str, ctx: int, parallel: int, threads: int, max_queue: int):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ignis-soak-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "ignis", "serve", "-m", model, "--host", "127.0.0.1", "--port", str(self.port),
               "-c", str(ctx), "--parallel", str(parallel), "-t", str(threads), "--max-queue", str(max_queue),
               "--quiet"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"soak: the server exited: {self.stderr()[-2000:]}")
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("soak: the server was not healthy within 300 s")
            time.sleep(0.2)

    def stderr(self) -> str:
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def metrics(self) -> dict:
        text = httpx.get(self.base + "/metrics", timeout=10).text
        return {k: float(v) for k, v in METRIC_RE.findall(text) if k.startswith("ignis_") and "{" not in k}

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


# -- requests -------------------------------------------------------------------------------

def _chat(text: str, **kw) -> tuple:
    return "/v1/chat/completions", {"messages": [{"role": "user", "content": text}], **kw}


def make_request(kind: str, rng: random.Random, banned: int, forced: int) -> tuple:
    """(path, body or raw bytes, n choices expected, streamed)."""
    topic = rng.choice(TOPICS)
    tokens = rng.randint(4, 48)
    temp = rng.choice([0.0, 0.7, 1.0])
    common = {"max_tokens": tokens, "temperature": temp, "seed": rng.randint(0, 1 << 30)}
    if kind in ("chat_stream", "cancel_stream"):
        path, body = _chat(f"Tell me about {topic}.", stream=True, stream_options={"include_usage": True},
                           **dict(common, max_tokens=max(tokens, 24)))
        return path, body, 1, True
    if kind == "chat":
        return (*_chat(f"Describe {topic}.", **common), 1, False)
    if kind in ("completion", "disconnect"):
        body = {"prompt": f"A story about {topic}:", **common}
        if kind == "disconnect":
            body["max_tokens"] = 200
        return "/v1/completions", body, 1, False
    if kind == "completion_stream":
        return "/v1/completions", {"prompt": f"Facts about {topic}:", "stream": True, **common}, 1, True
    if kind == "n_many":
        n = rng.randint(2, 3)
        stream = rng.random() < 0.5
        if rng.random() < 0.5:
            path, body = _chat(f"One word for {topic}.", n=n, stream=stream, **common)
        else:
            path, body = "/v1/completions", {"prompt": f"{topic} is", "n": n, "stream": stream, **common}
        if rng.random() < 0.3:
            body["max_tokens"] = 1          # the first completion ends on its first token
        return path, body, n, stream
    if kind == "json_schema":
        path, body = _chat(f"A person who likes {topic}, as JSON.", response_format={
            "type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}},
            **dict(common, max_tokens=64), stream=rng.random() < 0.3)
        return path, body, 1, body["stream"]
    if kind == "regex":
        body = {"prompt": f"The year {topic} was invented:", "regex": r" [12][0-9]{3}", **common}
        return "/v1/completions", body, 1, False
    if kind == "logit_bias":
        bias = {str(banned): -100} if rng.random() < 0.5 else {str(forced): 100, str(banned): -100}
        stream = rng.random() < 0.5
        path, body = _chat(f"Say something about {topic}.", logit_bias=bias, stream=stream, **common)
        return path, body, 1, stream
    if kind == "long_prompt":
        stream = rng.random() < 0.5
        path, body = _chat(LONG + f"\nSummarize the lines about {topic}.", stream=stream,
                           **dict(common, max_tokens=16))
        return path, body, 1, stream
    if kind == "gone_mid_body":
        return "/v1/completions", b'{"prompt": "' + b"x" * rng.randint(10, 2000), 1, False
    # bad bodies: each must be a 400
    bad = rng.choice([
        b"{not json", b"[]", b'{"prompt": 5}', b'{"messages": []}', b'{"prompt": "x", "max_tokens": -3}',
        b'{"prompt": "x", "temperature": "hot"}', b'{"prompt": "x", "logit_bias": {"abc": 1}}',
        b'{"prompt": "x", "logit_bias": {"5": 500}}', b'{"prompt": "x", "n": 999}',
        b'{"prompt": "x", "response_format": {"type": "json_schema"}}', b'{"prompt": "x", "regex": "("}',
        b'{"prompt": [999999999]}', b'{"prompt": "' + b"[" * 3000 + b'"}' + b"[" * 2000,
    ])
    path = "/v1/completions" if bad.startswith(b'{"prompt') or rng.random() < 0.5 else "/v1/chat/completions"
    return path, bad, 0, False


class Failure(Exception):
    pass


def _check_choices(choices: list, n: int, finishes: dict) -> None:
    if len(finishes) != n or sorted(finishes) != list(range(n)):
        raise Failure(f"expected {n} choices, got indices {sorted(finishes)}")
    bad = {i: f for i, f in finishes.items() if f not in ("stop", "length", "tool_calls")}
    if bad:
        raise Failure(f"finish reasons {bad}")


def send(base: str, port: int, client: httpx.Client, kind: str, rng: random.Random, banned: int,
         forced: int) -> str:
    """One request; its outcome ("ok", "400", "503", "cancelled", "disconnected") or Failure."""
    path, body, n, stream = make_request(kind, rng, banned, forced)
    if kind == "gone_mid_body":
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000\r\n\r\n" + body)
        return "disconnected"
    if kind == "bad_body":
        r = client.post(base + path, content=body, headers={"Content-Type": "application/json"},
                        timeout=REQUEST_DEADLINE)
        if r.status_code != 400 or "error" not in r.json():
            raise Failure(f"bad body {body[:60]!r}: HTTP {r.status_code} {r.text[:200]}")
        return "400"
    if kind == "disconnect":
        try:
            client.post(base + path, json=body, timeout=httpx.Timeout(REQUEST_DEADLINE, read=rng.uniform(0.2, 2.0)))
        except httpx.ReadTimeout:
            return "disconnected"
        return "ok"          # answered before the client gave up
    if not stream:
        r = client.post(base + path, json=body, timeout=REQUEST_DEADLINE)
        if r.status_code == 503 and r.json()["error"].get("code") in ("queue_full", "kv_cache_full"):
            return "503"
        if r.status_code != 200:
            raise Failure(f"{kind}: HTTP {r.status_code} {r.text[:300]}")
        data = r.json()
        _check_choices(data["choices"], n, {c["index"]: c["finish_reason"] for c in data["choices"]})
        if kind == "json_schema":
            json.loads(data["choices"][0]["message"]["content"])
        return "ok"
    finishes, done, chunks = {}, False, 0
    stop_after = rng.randint(1, 6) if kind == "cancel_stream" else None
    with client.stream("POST", base + path, json=body, timeout=REQUEST_DEADLINE) as r:
        if r.status_code == 503:
            r.read()
            if r.json()["error"].get("code") in ("queue_full", "kv_cache_full"):
                return "503"
        if r.status_code != 200:
            r.read()
            raise Failure(f"{kind} stream: HTTP {r.status_code} {r.text[:300]}")
        for line in r.iter_lines():
            chunk = sse_event(line)
            if chunk is None:
                continue
            if chunk == SSE_DONE:
                done = True
                break
            if "error" in chunk:
                raise Failure(f"{kind} stream: error event {chunk['error']}")
            chunks += 1
            for c in chunk.get("choices") or []:
                if c.get("finish_reason"):
                    finishes[c["index"]] = c["finish_reason"]
            if stop_after is not None and chunks >= stop_after:
                return "cancelled"          # leaving the with-block closes the connection
    if not done:
        raise Failure(f"{kind} stream ended without [DONE]")
    _check_choices([], n, finishes)
    return "ok"


# -- the run --------------------------------------------------------------------------------

def run(args) -> dict:
    server = Server(args.model, args.ctx, args.parallel, args.threads, args.max_queue)
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    stop_event = threading.Event()
    lock = threading.Lock()
    outcomes, failures, samples = Counter(), [], []
    started = finished = 0
    slowest = 0.0

    def watchdog():           # the run stops by itself, whatever hangs
        if not stop_event.wait(end - time.monotonic() + HARD_MARGIN):
            print("soak: watchdog: still running past the hard margin, stopping the server", file=sys.stderr,
                  flush=True)
            server.proc.kill()
            os._exit(3)

    def sampler():
        while not stop_event.is_set():
            try:
                m = server.metrics()
                samples.append({"t": round(time.monotonic() - t0, 1), **rss_mb(server.proc.pid),
                                "kv_used": m.get("ignis_kv_blocks_used"), "kv_cached": m.get("ignis_kv_blocks_cached"),
                                "kv_free": m.get("ignis_kv_blocks_free"),
                                "running": m.get("ignis_requests_running"), "waiting": m.get("ignis_requests_waiting")})
            except httpx.HTTPError as exc:
                samples.append({"t": round(time.monotonic() - t0, 1), "error": str(exc)})
            stop_event.wait(args.sample_every)

    # a token to ban (the greedy first token of a short chat) and one to force
    tok = httpx.post(server.base + "/tokenize", json={"content": " the"}, timeout=30).json()["tokens"]
    forced, banned = tok[-1], httpx.post(server.base + "/tokenize", json={"content": "The"},
                                         timeout=30).json()["tokens"][0]
    kinds, weights = zip(*KINDS.items())

    def worker(w: int):
        nonlocal started, finished, slowest
        rng = random.Random(args.seed * 1000 + w)
        with httpx.Client(limits=httpx.Limits(max_connections=2)) as client:
            while time.monotonic() < end:
                kind = rng.choices(kinds, weights)[0]
                with lock:
                    started += 1
                t = time.monotonic()
                try:
                    outcome = send(server.base, server.port, client, kind, rng, banned, forced)
                except (Failure, httpx.HTTPError, json.JSONDecodeError, KeyError, OSError) as exc:
                    outcome = "failed"
                    with lock:
                        failures.append(f"{kind}: {type(exc).__name__}: {str(exc)[:300]}")
                    print(f"soak: FAIL {failures[-1]}", file=sys.stderr, flush=True)
                took = time.monotonic() - t
                with lock:
                    finished += 1
                    outcomes[(kind, outcome)] += 1
                    slowest = max(slowest, took)

    threads = [threading.Thread(target=watchdog, daemon=True), threading.Thread(target=sampler, daemon=True)]
    threads += [threading.Thread(target=worker, args=(w,)) for w in range(args.workers)]
    for th in threads:
        th.start()
    last = t0
    try:
        for th in threads[2:]:
            while th.is_alive():
                th.join(5)
                if time.monotonic() - last > 60:
                    last = time.monotonic()
                    s = samples[-1] if samples else {}
                    print(f"soak: {last - t0:.0f} s, {finished} requests done, {len(failures)} failures, "
                          f"RSS {s.get('rss_mb') or 0:.0f} MB, KV used {s.get('kv_used')}", file=sys.stderr,
                          flush=True)
        elapsed = time.monotonic() - t0
        # afterwards: alive, idle, blocks back, nothing running
        alive = server.proc.poll() is None and httpx.get(server.base + "/health", timeout=10).status_code == 200
        idle = {}
        if alive:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                idle = server.metrics()
                if (not idle.get("ignis_requests_running") and not idle.get("ignis_requests_waiting")
                        and idle.get("ignis_kv_blocks_used") == idle.get("ignis_kv_blocks_reserved")):
                    break
                time.sleep(0.2)
        stop_event.set()
    finally:
        stop_event.set()
        code = server.stop()
    log = server.stderr()
    os.unlink(server.log.name)

    warm = warm_up_end(samples, os.path.getsize(args.model), elapsed)
    rss = [(s["t"], s["rss_mb"], s.get("anon_mb")) for s in samples if s.get("rss_mb")]
    after = [r for t, r, _ in rss if t >= warm]
    after_anon = [a for t, _, a in rss if t >= warm and a]
    tenth = max(1, len(after) // 10)
    base_rss = statistics.median(after[:tenth]) if after else None
    final_rss = statistics.median(after[-tenth:]) if after else None
    growth = (final_rss / base_rss - 1) if after else None
    anon_growth = (statistics.median(after_anon[-tenth:]) / statistics.median(after_anon[:tenth]) - 1
                   if after_anon else None)
    checks = {
        "no request failed or hung": not failures and slowest <= REQUEST_DEADLINE,
        "every request ended": started == finished,
        "server alive at the end": alive,
        "nothing running or waiting at idle": alive and not idle.get("ignis_requests_running")
                                              and not idle.get("ignis_requests_waiting"),
        "KV blocks in use back to the reserved ones": alive and idle.get("ignis_kv_blocks_used")
                                                      == idle.get("ignis_kv_blocks_reserved"),
        "RSS flat within 5 % after warm-up": growth is not None and abs(growth) <= RSS_TOLERANCE,
        "anonymous RSS flat within 5 % after warm-up": anon_growth is not None and abs(anon_growth) <= RSS_TOLERANCE,
        "exit 0 on SIGTERM": code == 0,
        "no traceback in the log": "Traceback" not in log,
    }
    by_outcome = Counter()
    for (_, outcome), k in outcomes.items():
        by_outcome[outcome] += k
    kv = [s["kv_used"] for s in samples if s.get("kv_used") is not None]
    return {
        "model": os.path.basename(args.model), "minutes": args.minutes, "seconds": round(elapsed, 1),
        "workers": args.workers, "parallel": args.parallel, "requests": finished, "outcomes": dict(by_outcome),
        "by_kind": {f"{k}/{o}": v for (k, o), v in sorted(outcomes.items())}, "slowest_s": round(slowest, 1),
        "rss_mb": {"warm_up_s": round(warm), "after_warm_up": round(base_rss or 0, 1),
                   "final": round(final_rss or 0, 1), "max": round(max(after or [0]), 1),
                   "growth": None if growth is None else round(growth, 4),
                   "anon_growth": None if anon_growth is None else round(anon_growth, 4),
                   "first": samples[0] if samples else None, "last": samples[-1] if samples else None},
        "kv_blocks_used": {"max": max(kv or [0]), "idle": idle.get("ignis_kv_blocks_used"),
                           "reserved": idle.get("ignis_kv_blocks_reserved")},
        "generated_tokens": idle.get("ignis_generated_tokens_total"), "samples": len(samples),
        "failures": failures[:20], "n_failures": len(failures), "checks": checks,
        "traceback": log[log.index("Traceback"):][:1500] if "Traceback" in log else None,
        "loadavg": os.getloadavg(),
    }


def warm_up_end(samples: list, model_bytes: int, elapsed: float) -> float:
    """When the bounded caches are full, in seconds from the start: the first sample by which
    the mapped model file is resident (its pages come in as rows are first used, e.g. the
    embedding rows of tokens not seen before) and every KV block has been used once (the pool's
    pages are touched lazily); at least 60 s, at most half the run. RSS growth after it is not
    a cache filling up."""
    lo, hi = 60.0, max(60.0, elapsed / 2)
    for s in samples:
        total = (s.get("kv_used") or 0) + (s.get("kv_free") or 0)
        touched = (s.get("kv_used") or 0) + (s.get("kv_cached") or 0)   # cached: held or idle in the prefix cache
        if (s["t"] >= lo and s.get("file_mb") and s["file_mb"] * 2**20 >= 0.97 * model_bytes
                and total and touched >= 0.9 * total):
            return s["t"]
    return hi


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", help="GGUF file (default: the default model)")
    ap.add_argument("--minutes", type=float, default=30.0, help="how long the load runs (default 30)")
    ap.add_argument("--workers", type=int, default=6, help="client threads, one request each at a time (default 6)")
    ap.add_argument("--parallel", type=int, default=8, help="the server's --parallel (default 8)")
    ap.add_argument("--max-queue", type=int, default=64, help="the server's --max-queue (default 64)")
    ap.add_argument("-t", "--threads", type=int, default=2, help="the server's threads (default 2)")
    ap.add_argument("-c", "--ctx", type=int, default=4096, help="the server's context (default 4096)")
    ap.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS/metrics samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = ap.parse_args(argv)
    if not args.model:
        from ignis.hub import pull
        args.model = str(pull(progress=False))
    summary = run(args)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"soak: {summary['model']}, {summary['seconds']:.0f} s, {summary['workers']} workers, "
              f"--parallel {summary['parallel']}: {summary['requests']} requests, outcomes {summary['outcomes']}, "
              f"slowest {summary['slowest_s']} s, {summary['generated_tokens']} tokens generated")
        r = summary["rss_mb"]
        print(f"RSS MB: {r['after_warm_up']} after the {r['warm_up_s']} s warm-up, {r['final']} at the end "
              f"({100 * (r['growth'] or 0):+.2f} %; anonymous {100 * (r['anon_growth'] or 0):+.2f} %), max {r['max']}; "
              f"first sample {r['first']}, last {r['last']}; KV blocks used: max "
              f"{summary['kv_blocks_used']['max']}, at idle {summary['kv_blocks_used']['idle']} "
              f"(reserved {summary['kv_blocks_used']['reserved']}); load average {summary['loadavg']}")
        for kind_outcome, k in summary["by_kind"].items():
            print(f"  {kind_outcome}: {k}")
        for name, ok in summary["checks"].items():
            print(f"  [{'ok' if ok else 'FAILED'}] {name}")
        for f in summary["failures"]:
            print(f"  failure: {f}")
        if summary["traceback"]:
            print(summary["traceback"])
    return 0 if all(summary["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
