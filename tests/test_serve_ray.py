"""`ignis serve --ray --replicas 2`: the server on a fresh local Ray instance (its own temp dir,
loopback only), a tiny model, the official openai client and httpx. Requests spread over both
replicas; a replica killed mid-load fails only its own requests, and Ray replaces it. Every
load is bounded in count and time; the server and all of its Ray processes are stopped."""
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

pytest.importorskip("ray")        # the test extra installs it; only a run without the extra skips
pytest.importorskip("ray.serve")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")


CTX = 32768         # room in each replica's KV cache for every stream at once
HEADER = "x-ignis-replica"
START_TIMEOUT = 150
MAX_TOKENS = 3000    # long enough that the streams are still going when a replica is killed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_processes(sid: int) -> list[int]:
    """Live processes of the session sid (the server was started as its leader)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry))
    return found


class _RayServer:
    def __init__(self, path):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = tempfile.mkdtemp(prefix="ignis-ray-", dir="/tmp")    # short: Ray's socket paths
        env = dict(os.environ, RAY_TMPDIR=self.tmp, RAY_ADDRESS="local", RAY_USAGE_STATS_ENABLED="0")
        self.log = open(os.path.join(self.tmp, "server.log"), "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ignis", "serve", "--ray", "--replicas", "2", "-m", path,
             "--port", str(self.port), "-c", str(CTX), "-t", "1"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)      # its session: every Ray process it starts, to check at the end
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc.poll() is None, f"server exited: {self.output()}"
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not healthy within {START_TIMEOUT} s: {self.output()}"
            time.sleep(0.5)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def client(self):
        return openai.OpenAI(base_url=self.base + "/v1", api_key="none", timeout=30, max_retries=0)

    def complete(self, max_tokens=8):
        """(replica pid, completion) of one small request."""
        raw = self.client().completions.with_raw_response.create(
            model="tiny", prompt="hello", max_tokens=max_tokens, temperature=0)
        return int(raw.headers[HEADER]), raw.parse()

    def stop(self, timeout=60):
        """SIGTERM; the return code (None: it had to be killed), then no process of its session left."""
        code = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 15
        while _session_processes(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _session_processes(self.proc.pid)
        for pid in left:          # only this server's own session
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return code, left


@pytest.fixture(scope="module")
def server(tiny_model):
    path = tiny_model(n_ctx=CTX, seed=3)
    srv = _RayServer(path)
    try:
        yield srv
    finally:
        out = srv.output()
        code, left = srv.stop()
        assert code == 0, f"exit code {code}: {out}"
        assert not left, f"Ray processes left after the server stopped: {left}"


def test_requests_spread_over_both_replicas(server):
    seen = []
    for _ in range(12):
        pid, r = server.complete()
        assert r.choices[0].finish_reason in ("stop", "length")
        seen.append(pid)
    assert len(set(seen)) == 2, seen
    server.replicas = set(seen)


def _stream(base, max_tokens, started, ended):
    """One streaming completion: (replica pid, outcome, tokens); outcome "ok" (finish reason,
    usage and [DONE] all came) or the error seen. Bounded by the client's timeouts. ended[0]:
    when it ended."""
    try:
        return _stream_once(base, max_tokens, started)
    finally:
        ended.append(time.monotonic())


def _stream_once(base, max_tokens, started):
    pid, tokens, finish, done = None, 0, None, False
    body = {"model": "tiny", "prompt": "once upon a time", "max_tokens": max_tokens, "temperature": 0.8,
            "seed": 1, "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
    try:
        with httpx.stream("POST", base + "/v1/completions", json=body,
                          timeout=httpx.Timeout(30, connect=5)) as r:
            pid = int(r.headers[HEADER]) if HEADER in r.headers else None
            if r.status_code != 200:
                return pid, f"HTTP {r.status_code}", 0
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    return pid, f"error event: {event['error'].get('message')}", tokens
                for c in event["choices"]:
                    if c["text"]:
                        started.set()
                    finish = c["finish_reason"] or finish
                if event.get("usage"):
                    tokens = event["usage"]["completion_tokens"]
    except httpx.HTTPError as exc:
        return pid, f"{type(exc).__name__}: {exc}", tokens
    if not (done and finish == "length"):
        return pid, f"stream ended early (finish {finish}, [DONE] {done})", tokens
    return pid, "ok", tokens


def test_killed_replica_fails_its_requests_and_is_replaced(server):
    replicas = getattr(server, "replicas", None) or {server.complete()[0] for _ in range(12)}
    assert len(replicas) == 2
    n, max_tokens = 8, MAX_TOKENS
    pool = concurrent.futures.ThreadPoolExecutor(n)
    started = [threading.Event() for _ in range(n)]
    ended = [[] for _ in range(n)]
    futures = [pool.submit(_stream, server.base, max_tokens, started[i], ended[i]) for i in range(n)]
    try:
        for e in started:          # every stream under way (tokens flowing) before the kill
            assert e.wait(60), "a stream did not start within 60 s"
        victim = sorted(replicas)[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        results = [f.result(timeout=120) for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    # in flight at the kill: had not ended by then
    inflight = [e[0] > killed_at for e in ended]
    on_victim = [r for r, live in zip(results, inflight) if r[0] == victim and live]
    others = [r for r in results if r[0] != victim]
    assert on_victim and others, (results, inflight)     # the load was on both replicas
    for pid, outcome, _ in on_victim:            # cut: an error, not a hang and not a full text
        assert outcome != "ok", results
    for pid, outcome, tokens in others:          # untouched: complete
        assert outcome == "ok" and tokens == max_tokens, results
    # Ray replaces the replica: new requests keep succeeding, and a new pid serves some
    deadline = time.monotonic() + 90
    seen = set()
    while time.monotonic() < deadline:
        pid, r = server.complete()
        assert r.choices[0].finish_reason in ("stop", "length")
        seen.add(pid)
        if seen - replicas:
            break
        time.sleep(0.2)
    assert victim not in seen, seen
    assert seen - replicas, f"no new replica within 90 s (served by {seen})"
