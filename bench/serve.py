"""Serving under load: `ignis serve` against llama.cpp's native `llama-server` and against
llama-cpp-python's server, on the same GGUF, same threads, over loopback, in one run.

    python bench/serve.py                                  # everything, the Q8_0 copy of the default model
    python bench/serve.py --engines ignis,llama-server --loads c16 --sampling full,llama
    python bench/serve.py -m FILE -t 2 -n 96 --rounds 2 [--original] [--json]

Engines (each a subprocess on a free 127.0.0.1 port, started once, stopped at the end, also on
errors or Ctrl-C: SIGTERM, SIGKILL after a grace period):
  ignis             python -m ignis serve -m FILE --parallel 8 -t T -c 8192
  llama-server      llama-server -m FILE -np 8 -c 8192 -t T (llama.cpp built natively for this
                    CPU by ../shared/tools/build-llama-server.sh; continuous batching over 8 slots,
                    each slot with 8192 / 8 = 1024 positions)
  llama-cpp-python  python -m llama_cpp.server (one request at a time; a portable build)
Loads (each: ROUNDS rounds of CONCURRENCY streaming chat completions sent at once; the next
round starts when all of them have ended; max_tokens N, stream_options.include_usage):
  c16, c32          16 / 32 concurrent short prompts, under each --sampling setting
  mixed             16 concurrent, a quarter of them ~850-token prompts (the most a 1024-position
                    llama-server slot takes with 96 tokens to generate), the rest short; full sampling
Sampling settings, the same body for every engine:
  full              OpenAI's default, temperature 1, top_p 1, spelled out top_k 0, min_p 0 (the
                    whole vocabulary is sampled on every engine)
  llama             llama.cpp's default filters spelled out: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05
  greedy            temperature 0
Figures per engine and load:
  gen tok/s     completion tokens / wall time of the rounds; tokens from each stream's usage
                chunk, or (a server that sends none) from its own tokenizer on the text (untimed)
  TTFT          send -> first non-empty content chunk (p50, p99)
  ITL p99       between consecutive content chunks of a stream, all streams pooled
  peak RSS      the server's VmHWM after all its loads
  completed     streams that reached [DONE]; failed: the others (errors, round timeout)
and the ratios ignis / llama-server and ignis / llama-cpp-python. The machine may be shared:
the 1-minute load average before and after each load is printed; figures are noisy then."""
import argparse
import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ignis.runtime.bench import SSE_DONE, cpu_model, positive_int, ratio, sse_event  # noqa: E402

ENGINES = ("ignis", "llama-server", "llama-cpp-python")
LOADS = {"c16": (16, False), "c32": (32, False), "mixed": (16, True)}     # concurrency, long prompts
SAMPLING = {
    "full": {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0},
    "llama": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05},
    "greedy": {"temperature": 0.0},
}
PARALLEL = 8
READY_TIMEOUT = 600.0      # seconds for a server to load the model and answer
STOP_TIMEOUT = 30.0        # seconds between SIGTERM and SIGKILL
_HERE = os.path.dirname(os.path.abspath(__file__))
# the build script, next to the repository (a worktree is one level deeper)
TOOLS = [os.path.normpath(os.path.join(_HERE, *up, "shared", "tools", "build-llama-server.sh"))
         for up in ((("..",) * 2), (("..",) * 3))]
TOPICS = ["the ocean", "a lighthouse", "autumn leaves", "a mountain village", "coffee", "the moon",
          "a thunderstorm", "a library", "trains", "a desert at night", "honeybees", "a snowy forest",
          "a busy market", "the first computer", "a paper airplane", "a garden in spring",
          "a river delta", "a clock tower", "volcanoes", "a jazz club"]
FORMS = ["Write a short paragraph about", "Describe", "Tell a tiny story about", "Explain to a child"]
PLACES = ["mill", "bridge", "harbour", "station", "market", "school", "tower", "farm"]


def short_prompts(n: int, offset: int = 0) -> list:
    """n distinct short user prompts (the same list for every server)."""
    out = []
    for i in range(offset, offset + n):
        p = f"{FORMS[(i // len(TOPICS)) % len(FORMS)]} {TOPICS[i % len(TOPICS)]}."
        if i >= len(TOPICS) * len(FORMS):
            p += f" (variation {i // (len(TOPICS) * len(FORMS))})"
        out.append(p)
    return out


def long_prompt(i: int) -> str:
    """A distinct prompt of ~850 tokens (Qwen's tokenizer): numbered notes, then a question."""
    notes = " ".join(f"Note {k}: the courier reached the {PLACES[(k + i) % len(PLACES)]} at {(k * 7 + i) % 60} "
                     f"minutes past {(k + i) % 12 + 1}." for k in range(48))
    return f"Logbook {i}. {notes}\nWhich place did the courier reach most often? Answer briefly."


def load_prompts(name: str, rounds: int) -> list:
    """Per round, its prompts."""
    concurrency, mixed = LOADS[name]
    out = []
    for k in range(rounds):
        batch = short_prompts(concurrency, k * concurrency)
        if mixed:          # every fourth one long
            batch = [long_prompt(k * concurrency + j) if j % 4 == 1 else p for j, p in enumerate(batch)]
        out.append(batch)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llama_server_bin(given: str | None) -> str:
    """The natively built llama-server: --llama-server (the binary or its directory), else
    $LLAMA_SERVER, else what ../shared/tools/build-llama-server.sh prints last (its bin dir;
    the script reuses its build)."""
    given = given or os.environ.get("LLAMA_SERVER")
    if given:
        path = os.path.join(given, "llama-server") if os.path.isdir(given) else given
        if not os.path.isfile(path):
            raise SystemExit(f"bench/serve: no llama-server at {path}")
        return path
    script = next((t for t in TOOLS if os.path.isfile(t)), None)
    if script is None:
        raise SystemExit(f"bench/serve: no {os.path.basename(TOOLS[0])} in {' or '.join(map(os.path.dirname, TOOLS))}"
                         "; pass --llama-server PATH")
    out = subprocess.run(["bash", script], capture_output=True, text=True, timeout=7200)
    lines = out.stdout.strip().splitlines()
    path = os.path.join(lines[-1].strip(), "llama-server") if lines else ""
    if out.returncode != 0 or not os.path.isfile(path):
        raise SystemExit(f"bench/serve: no llama-server from {script}: {out.stderr[-1000:]}")
    return path


def server_cmd(engine: str, args, port: int) -> list:
    if engine == "ignis":
        return [sys.executable, "-m", "ignis", "serve", "-m", args.model, "--host", "127.0.0.1",
                "--port", str(port), "--parallel", str(PARALLEL), "-t", str(args.threads), "-c", str(args.ctx)]
    if engine == "llama-server":
        return [args.llama_server, "-m", args.model, "-np", str(PARALLEL), "-c", str(args.ctx),
                "-t", str(args.threads), "--host", "127.0.0.1", "--port", str(port)]
    return [sys.executable, "-m", "llama_cpp.server", "--model", args.model, "--host", "127.0.0.1",
            "--port", str(port), "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
            "--n_ctx", str(args.ctx), "--interrupt_requests", "False"]


def peak_rss_mb(pid: int):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- the client -------------------------------------------------------------------------------

async def wait_ready(client, proc, engine: str) -> None:
    path = "/health" if engine in ("ignis", "llama-server") else "/v1/models"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{engine} server exited with code {proc.returncode} before it was ready")
        try:
            if (await client.get(path, timeout=5.0)).status_code == 200:
                return
        except Exception:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError(f"{engine} server was not ready after {READY_TIMEOUT:.0f} s")


def _empty_result(error=None) -> dict:
    return {"ok": False, "ttft": None, "gaps": [], "completion_tokens": 0, "prompt_tokens": 0, "usage": False,
            "chunks": 0, "text": "", "finish": None, "error": error}


async def one_request(client, model: str, prompt: str, max_tokens: int, sampling: dict, seed: int) -> dict:
    """One streaming chat completion: TTFT, the gaps between content chunks, completion tokens
    (from the usage chunk when the server sends one), the text, and whether it reached [DONE]."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}, "seed": seed, **sampling}
    r = _empty_result()
    t0 = time.perf_counter()
    last = None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                r["error"] = f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"
                return r
            done, usage, parts = False, None, []
            async for line in resp.aiter_lines():
                chunk = sse_event(line)
                if chunk is None:
                    continue
                if chunk == SSE_DONE:
                    done = True
                    break
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        now = time.perf_counter()
                        if r["ttft"] is None:
                            r["ttft"] = now - t0
                        else:
                            r["gaps"].append(now - last)
                        last = now
                        r["chunks"] += 1
                        parts.append(content)
                    if choice.get("finish_reason"):
                        r["finish"] = choice["finish_reason"]
            r["text"] = "".join(parts)
            if usage:
                r["usage"] = True
                r["completion_tokens"] = int(usage.get("completion_tokens") or 0)
                r["prompt_tokens"] = int(usage.get("prompt_tokens") or 0)
            r["ok"] = done
            if not done:
                r["error"] = "stream ended without [DONE]"
    except Exception as exc:      # noqa: BLE001 -- a failed request is counted, not fatal
        r["error"] = f"{type(exc).__name__}: {exc}"
    return r


async def count_tokens(client, engine: str, model: str, text: str) -> int:
    """Tokens in a streamed text, by the server's own tokenizer (untimed; for a server that sends
    no usage chunk in a stream: llama-cpp-python's ignores stream_options)."""
    if engine in ("ignis", "llama-server"):
        resp = await client.post("/tokenize", json={"content": text})
        return len(resp.json()["tokens"])
    resp = await client.post("/extras/tokenize/count", json={"model": model, "input": text})
    return int(resp.json()["count"])


def _pct(xs, q):
    return float(np.percentile(xs, q)) if xs else None


async def run_load(client, engine: str, model: str, args, load: str, sampling: str) -> dict:
    rounds = load_prompts(load, args.rounds)
    results, wall, round_s = [], 0.0, []
    load_before = os.getloadavg()[0]
    for k, batch in enumerate(rounds):
        tasks = [asyncio.create_task(one_request(client, model, p, args.n_gen, SAMPLING[sampling], 1000 * k + j))
                 for j, p in enumerate(batch)]
        t0 = time.perf_counter()
        finished, pending = await asyncio.wait(tasks, timeout=args.round_timeout)
        dt = time.perf_counter() - t0
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        got = [t.result() for t in finished]
        got += [_empty_result(f"not finished within the round timeout ({args.round_timeout:.0f} s)")
                for _ in pending]
        results += got
        wall += dt
        round_s.append(dt)
        print(f"  {engine:16s} {load:5s} {sampling:6s} round {k + 1}/{args.rounds}: "
              f"{sum(r['ok'] for r in got)}/{len(got)} completed in {dt:.1f} s", file=sys.stderr, flush=True)
    counted = 0
    for r in results:
        if r["ok"] and not r["usage"]:
            r["completion_tokens"] = await count_tokens(client, engine, model, r["text"])
            counted += 1
    ok = [r for r in results if r["ok"]]
    ttfts = [r["ttft"] for r in ok if r["ttft"] is not None]
    gaps = [g for r in ok for g in r["gaps"]]
    gen = sum(r["completion_tokens"] for r in results)
    finish = {}
    for r in ok:
        finish[r["finish"]] = finish.get(r["finish"], 0) + 1
    return {"completed": len(ok), "failed": len(results) - len(ok), "completion_tokens": gen,
            "prompt_tokens": sum(r["prompt_tokens"] for r in results), "wall_s": wall, "round_s": round_s,
            "gen_tok_s": gen / wall if wall > 0 else 0.0, "ttft_p50": _pct(ttfts, 50), "ttft_p99": _pct(ttfts, 99),
            "itl_p50": _pct(gaps, 50), "itl_p99": _pct(gaps, 99),
            "tokens_from": "usage" if not counted else ("tokenized text" if counted == len(ok) else "mixed"),
            "content_chunks": sum(r["chunks"] for r in results), "finish_reasons": finish,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()[0],
            "errors": sorted({r["error"] for r in results if r["error"]})[:5]}


async def drive(engine: str, args, port: int, proc: subprocess.Popen, scenarios: list) -> dict:
    import httpx
    most = max(LOADS[load][0] for load, _ in scenarios)
    limits = httpx.Limits(max_connections=most + 4, max_keepalive_connections=most + 4)
    timeout = httpx.Timeout(args.round_timeout, connect=10.0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=timeout) as client:
        t_start = time.perf_counter()
        await wait_ready(client, proc, engine)
        ready_s = time.perf_counter() - t_start
        models = (await client.get("/v1/models")).json()
        model = models["data"][0]["id"]
        warm = await one_request(client, model, "Say hello.", 8, SAMPLING["greedy"], 0)
        if not warm["ok"]:
            raise RuntimeError(f"{engine} warm-up request failed: {warm['error']}")
        out = {"ready_s": ready_s, "model_id": model, "loads": {}}
        for load, sampling in scenarios:
            out["loads"][f"{load}/{sampling}"] = await run_load(client, engine, model, args, load, sampling)
        return out


def run_engine(engine: str, args, scenarios: list, procs: list) -> dict:
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(server_cmd(engine, args, port), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True)
        procs.append(proc)
        try:
            result = asyncio.run(drive(engine, args, port, proc, scenarios))
            result["rss_mb"] = peak_rss_mb(proc.pid)
            return result
        except Exception as exc:
            stop(proc)
            log.seek(0)
            raise SystemExit(f"{engine} server run failed: {exc}\n--- server log (tail) ---\n{log.read()[-3000:]}")
        finally:
            stop(proc)


# -- the driver -------------------------------------------------------------------------------

def _num(x, fmt="{:.2f}") -> str:
    return fmt.format(x) if x is not None else "-"


def _ratio(a, b):
    return a / b if a and b else None


def _list(value: str, known, what: str) -> list:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in known]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"{what}: pick from {', '.join(known)}, got {value!r}")
    return items


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", help="GGUF file (default: the Q8_0 copy of the default model)")
    ap.add_argument("--original", action="store_true", help="use the original default model file")
    ap.add_argument("-t", "--threads", type=positive_int, default=2, help="threads for every server (default 2)")
    ap.add_argument("-n", "--n-gen", type=positive_int, default=96, help="max_tokens per request (default 96)")
    ap.add_argument("--rounds", type=positive_int, default=2, help="rounds of requests per load (default 2)")
    ap.add_argument("-c", "--ctx", type=positive_int, default=8192, help="context size of every server (default 8192)")
    ap.add_argument("--engines", type=lambda v: _list(v, ENGINES, "--engines"), default=list(ENGINES),
                    help="comma-separated, from " + ", ".join(ENGINES) + " (default: all)")
    ap.add_argument("--loads", type=lambda v: _list(v, LOADS, "--loads"), default=list(LOADS),
                    help="comma-separated, from " + ", ".join(LOADS) + " (default: all)")
    ap.add_argument("--sampling", type=lambda v: _list(v, SAMPLING, "--sampling"), default=list(SAMPLING),
                    help="comma-separated, from " + ", ".join(SAMPLING) + " (default: all; mixed runs full only)")
    ap.add_argument("--slow-engine-loads", default="c16",
                    help="loads llama-cpp-python runs (it serves one request at a time; default c16)")
    ap.add_argument("--llama-server", help="the llama-server binary or its directory (default: $LLAMA_SERVER, "
                    "else built by ../shared/tools/build-llama-server.sh)")
    ap.add_argument("--round-timeout", type=float, default=900.0, help="seconds a round may take (default 900)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = ap.parse_args()
    if "llama-cpp-python" in args.engines and importlib.util.find_spec("llama_cpp") is None:
        ap.error("llama-cpp-python is not installed (pip install -e '.[bench]'), or leave it out of --engines")
    from ignis.hub import pull, pull_q8_0
    if not args.model:
        args.model = str(pull(progress=False) if args.original else pull_q8_0(progress=False))
    if "llama-server" in args.engines:
        args.llama_server = llama_server_bin(args.llama_server)
    scenarios = [(load, s) for load in args.loads for s in (args.sampling if load != "mixed" else ["full"])]
    slow_loads = _list(args.slow_engine_loads, LOADS, "--slow-engine-loads")
    procs = []

    def on_signal(sig, frame):        # a finally below stops the servers
        raise SystemExit(f"bench/serve: signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)
    started = time.perf_counter()
    runs = {}
    try:
        for e in args.engines:
            mine = [sc for sc in scenarios if e != "llama-cpp-python" or sc[0] in slow_loads]
            runs[e] = run_engine(e, args, mine, procs)
    finally:
        for p in procs:
            stop(p)
    seconds = time.perf_counter() - started
    info = {"model": os.path.basename(args.model), "path": args.model, "cpu": cpu_model(), "threads": args.threads,
            "n_gen": args.n_gen, "rounds": args.rounds, "ctx": args.ctx, "parallel": PARALLEL, "seconds": seconds}
    ratios = {}
    if "ignis" in runs:
        for peer in ("llama-server", "llama-cpp-python"):
            if peer not in runs:
                continue
            for name, mine in runs["ignis"]["loads"].items():
                theirs = runs[peer]["loads"].get(name)
                if theirs:
                    ratios[f"{name} ignis/{peer}"] = {k: _ratio(mine[k], theirs[k]) for k in
                                                      ("gen_tok_s", "ttft_p50", "ttft_p99", "itl_p99")}
    if args.json:
        print(json.dumps(dict(info, results=runs, ratios=ratios)))
        return 0
    print(f"model {info['model']}, threads {args.threads}, {args.rounds} rounds per load, streaming chat "
          f"completions, max_tokens {args.n_gen}, --parallel/-np {PARALLEL}, context {args.ctx}; CPU {info['cpu']}")
    print("| load / sampling | server | completed | failed | tokens | wall s | gen tok/s | TTFT p50 s | TTFT p99 s "
          "| ITL p99 ms | load avg |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, _ in [(f"{a}/{b}", None) for a, b in scenarios]:
        for e, run in runs.items():
            r = run["loads"].get(name)
            if r is None:
                continue
            print(f"| {name} | {e} | {r['completed']} | {r['failed']} | {r['completion_tokens']} | {r['wall_s']:.1f} | "
                  f"{r['gen_tok_s']:.1f} | {_num(r['ttft_p50'], '{:.2f}')} | {_num(r['ttft_p99'], '{:.2f}')} | "
                  f"{_num(r['itl_p99'] and 1000 * r['itl_p99'], '{:.0f}')} | "
                  f"{r['loadavg_before']:.1f}→{r['loadavg_after']:.1f} |")
    if ratios:
        print()
        print("| load / sampling | ratio | gen tok/s | TTFT p50 | TTFT p99 | ITL p99 |")
        print("|---|---|---:|---:|---:|---:|")
        for name, r in ratios.items():
            load, who = name.split(" ", 1)
            print(f"| {load} | {who} | {ratio(r['gen_tok_s'], 1) if r['gen_tok_s'] else '-'} | "
                  + " | ".join(_num(r[k], "{:.2f}x") for k in ("ttft_p50", "ttft_p99", "itl_p99")) + " |")
    print()
    print("peak RSS MB: " + ", ".join(f"{e} {_num(r['rss_mb'], '{:.0f}')}" for e, r in runs.items())
          + "; ready after: " + ", ".join(f"{e} {r['ready_s']:.1f} s" for e, r in runs.items()))
    for e, run in runs.items():
        for name, r in run["loads"].items():
            if r["errors"] or r["tokens_from"] != "usage":
                print(f"{e} {name}: tokens from {r['tokens_from']}; finish reasons {r['finish_reasons']}"
                      + (f"; errors: {'; '.join(r['errors'])}" if r["errors"] else ""))
    print(f"(gen tok/s higher is better, TTFT and ITL lower; llama-cpp-python serves one request at a time; "
          f"file {args.model}; run took {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
