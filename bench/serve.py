"""Serving under load: `ignis serve` against llama-cpp-python's server (`python -m llama_cpp.server`)
on the same GGUF, same threads, in one run, over loopback.

    python bench/serve.py                      # the Q8_0 copy of the default model
    python bench/serve.py --original           # the original Q4_K_M-mix file
    python bench/serve.py -m FILE -t 2 -n 64 --rounds 2 --concurrency 16 [--only ignis] [--json]

Each server runs as a subprocess of its own on a free 127.0.0.1 port (ignis with --parallel
CONCURRENCY, so every request of a round is decoded at once; llama.cpp with
--interrupt_requests False, so it serves one request at a time and the others wait on its
lock: that is how llama-cpp-python's server works, not a fault of the benchmark). Once it is
ready (ignis: GET /health 200; llama.cpp: GET /v1/models 200) one small request is sent
untimed (warm-up), then ROUNDS rounds: CONCURRENCY streaming chat completions sent at once
(distinct short user prompts, the same for both servers; temperature 0, max_tokens N,
stream_options.include_usage), and the next round starts when all of them have finished.
  completed = requests that streamed to [DONE]; failed = the others (errors, round timeout)
  gen tok/s = completion tokens / wall time of the rounds; the tokens come from each stream's
              usage chunk (ignis), or, for a server that sends none (llama-cpp-python ignores
              stream_options), from its own tokenizer on the streamed text after the rounds
              (POST /extras/tokenize/count, untimed)
  TTFT      = time from sending a request to its first non-empty content chunk (p50, p99)
The server is then stopped (SIGTERM, SIGKILL after a grace period), also on errors; its peak
RSS (VmHWM) is read just before. The client runs in this process, on the same machine."""
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
from ignis.runtime.bench import cpu_model, positive_int, ratio  # noqa: E402

ENGINES = ("ignis", "llama.cpp")
READY_TIMEOUT = 600.0      # seconds for a server to load the model and answer
STOP_TIMEOUT = 30.0        # seconds between SIGTERM and SIGKILL
TOPICS = ["the ocean", "a lighthouse", "autumn leaves", "a mountain village", "coffee", "the moon",
          "a thunderstorm", "a library", "trains", "a desert at night", "honeybees", "a snowy forest",
          "a busy market", "the first computer", "a paper airplane", "a garden in spring",
          "a river delta", "a clock tower", "volcanoes", "a jazz club"]
FORMS = ["Write a short paragraph about", "Describe", "Tell a tiny story about", "Explain to a child"]


def prompts(n: int) -> list:
    """n distinct short user prompts (the same list for both servers)."""
    return [f"{FORMS[(i // len(TOPICS)) % len(FORMS)]} {TOPICS[i % len(TOPICS)]}."
            + (f" (variation {i // (len(TOPICS) * len(FORMS))})" if i >= len(TOPICS) * len(FORMS) else "")
            for i in range(n)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cmd(engine: str, args, port: int) -> list:
    if engine == "ignis":
        return [sys.executable, "-m", "ignis", "serve", "-m", args.model, "--host", "127.0.0.1",
                "--port", str(port), "--parallel", str(args.concurrency), "-t", str(args.threads),
                "-c", str(args.ctx)]
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
    path = "/health" if engine == "ignis" else "/v1/models"
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


async def one_request(client, model: str, prompt: str, max_tokens: int) -> dict:
    """One streaming chat completion: TTFT, completion tokens (from the usage chunk when the server
    sends one), the streamed text, the number of content chunks, and whether it reached [DONE]."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    r = {"ok": False, "ttft": None, "completion_tokens": 0, "prompt_tokens": 0, "usage": False,
         "chunks": 0, "text": "", "finish": None, "error": None}
    t0 = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                r["error"] = f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"
                return r
            done, usage, parts = False, None, []
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if r["ttft"] is None:
                            r["ttft"] = time.perf_counter() - t0
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
    """Tokens in a streamed text, by the server's own tokenizer (untimed; for servers that send no
    usage chunk in a stream: llama-cpp-python's ignores stream_options)."""
    if engine == "ignis":
        resp = await client.post("/tokenize", json={"content": text})
        return len(resp.json()["tokens"])
    resp = await client.post("/extras/tokenize/count", json={"model": model, "input": text})
    return int(resp.json()["count"])


async def load(engine: str, args, port: int, proc: subprocess.Popen) -> dict:
    import httpx
    limits = httpx.Limits(max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4)
    timeout = httpx.Timeout(args.round_timeout, connect=10.0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=timeout) as client:
        t_start = time.perf_counter()
        await wait_ready(client, proc, engine)
        ready_s = time.perf_counter() - t_start
        models = (await client.get("/v1/models")).json()
        model = models["data"][0]["id"]
        warm = await one_request(client, model, "Say hello.", 8)
        if not warm["ok"]:
            raise RuntimeError(f"{engine} warm-up request failed: {warm['error']}")
        texts = prompts(args.rounds * args.concurrency)
        results, wall, round_s = [], 0.0, []
        for k in range(args.rounds):
            batch = texts[k * args.concurrency:(k + 1) * args.concurrency]
            tasks = [asyncio.create_task(one_request(client, model, p, args.n_gen)) for p in batch]
            t0 = time.perf_counter()
            finished, pending = await asyncio.wait(tasks, timeout=args.round_timeout)
            dt = time.perf_counter() - t0
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            got = [t.result() for t in finished]
            late = f"not finished within the round timeout ({args.round_timeout:.0f} s)"
            got += [{"ok": False, "ttft": None, "completion_tokens": 0, "prompt_tokens": 0, "usage": False,
                     "chunks": 0, "text": "", "finish": None, "error": late} for _ in pending]
            results += got
            wall += dt
            round_s.append(dt)
            print(f"  {engine:9s} round {k + 1}/{args.rounds}: {sum(r['ok'] for r in got)}/{len(got)} completed, "
                  f"{sum(r['chunks'] for r in got)} content chunks in {dt:.1f} s", file=sys.stderr, flush=True)
        counted = 0
        for r in results:
            if r["ok"] and not r["usage"]:
                r["completion_tokens"] = await count_tokens(client, engine, model, r["text"])
                counted += 1
    ok = [r for r in results if r["ok"]]
    finish = {}
    for r in ok:
        finish[r["finish"]] = finish.get(r["finish"], 0) + 1
    ttfts = [r["ttft"] for r in ok if r["ttft"] is not None]
    gen = sum(r["completion_tokens"] for r in results)
    return {"completed": len(ok), "failed": len(results) - len(ok), "completion_tokens": gen,
            "prompt_tokens": sum(r["prompt_tokens"] for r in results), "wall_s": wall, "round_s": round_s,
            "gen_tok_s": gen / wall if wall > 0 else 0.0,
            "ttft_p50": float(np.percentile(ttfts, 50)) if ttfts else None,
            "ttft_p99": float(np.percentile(ttfts, 99)) if ttfts else None,
            "ttft_max": max(ttfts) if ttfts else None, "ready_s": ready_s, "model_id": model,
            "tokens_from": "usage" if not counted else ("tokenized text" if counted == len(ok) else "mixed"),
            "content_chunks": sum(r["chunks"] for r in results), "finish_reasons": finish,
            "errors": sorted({r["error"] for r in results if r["error"]})[:5]}


def run_server(engine: str, args) -> dict:
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(server_cmd(engine, args, port), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True)
        try:
            result = asyncio.run(load(engine, args, port, proc))
            result["rss_mb"] = peak_rss_mb(proc.pid)
            result["loadavg_1m"] = os.getloadavg()[0]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", help="GGUF file (default: the Q8_0 copy of the default model)")
    ap.add_argument("--original", action="store_true", help="use the original default model file")
    ap.add_argument("-t", "--threads", type=positive_int, default=2, help="threads for both servers (default 2)")
    ap.add_argument("-n", "--n-gen", type=positive_int, default=64, help="max_tokens per request (default 64)")
    ap.add_argument("--rounds", type=positive_int, default=2, help="rounds of requests (default 2)")
    ap.add_argument("--concurrency", type=positive_int, default=16, help="requests sent at once per round (default 16)")
    ap.add_argument("-c", "--ctx", type=positive_int, default=8192,
                    help="context size for both servers (default 8192; ignis shares it across --parallel)")
    ap.add_argument("--round-timeout", type=float, default=600.0, help="seconds a round may take (default 600)")
    ap.add_argument("--only", choices=ENGINES, help="run one server only")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    engines = [args.only] if args.only else list(ENGINES)
    if "llama.cpp" in engines and importlib.util.find_spec("llama_cpp") is None:
        ap.error("llama-cpp-python is not installed (pip install -e '.[bench]'), or pass --only ignis")
    from ignis.hub import pull, pull_q8_0
    if not args.model:
        args.model = str(pull(progress=False) if args.original else pull_q8_0(progress=False))
    started = time.perf_counter()
    runs = {e: run_server(e, args) for e in engines}
    seconds = time.perf_counter() - started
    info = {"model": os.path.basename(args.model), "path": args.model, "cpu": cpu_model(), "threads": args.threads,
            "n_gen": args.n_gen, "rounds": args.rounds, "concurrency": args.concurrency, "ctx": args.ctx,
            "seconds": seconds}
    both = len(runs) == 2
    if args.json:
        out = dict(info, results=runs)
        if both:
            out["ratios"] = {k: (runs["ignis"][k] / runs["llama.cpp"][k]
                                 if runs["ignis"][k] and runs["llama.cpp"][k] else None)
                             for k in ("gen_tok_s", "ttft_p50", "ttft_p99", "rss_mb")}
        print(json.dumps(out))
        return 0
    print(f"model {info['model']}, threads {args.threads}, {args.rounds} rounds x {args.concurrency} concurrent "
          f"streaming chat completions, max_tokens {args.n_gen}, temperature 0; CPU {info['cpu']}")
    print("| server | completed | failed | tokens | wall s | gen tok/s | TTFT p50 s | TTFT p99 s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for e, r in runs.items():
        print(f"| {e} | {r['completed']} | {r['failed']} | {r['completion_tokens']} | {r['wall_s']:.1f} | "
              f"{r['gen_tok_s']:.2f} | {_num(r['ttft_p50'], '{:.3f}')} | {_num(r['ttft_p99'], '{:.3f}')} | "
              f"{_num(r['rss_mb'], '{:.0f}')} |")
    if both:
        i, ll = runs["ignis"], runs["llama.cpp"]
        print(f"| ratio ignis / llama.cpp | | | | | {ratio(i['gen_tok_s'], ll['gen_tok_s'])} | "
              f"{ratio(i['ttft_p50'], ll['ttft_p50'])} | {ratio(i['ttft_p99'], ll['ttft_p99'])} | "
              f"{ratio(i['rss_mb'], ll['rss_mb'])} |")
    notes = ["gen tok/s higher is better, TTFT lower is better"]
    if "ignis" in runs:
        notes.append(f"ignis serve runs with --parallel {args.concurrency}: "
                     "all requests of a round are decoded together")
    if "llama.cpp" in runs:
        notes.append("llama-cpp-python's server serializes requests, one at a time, so its later requests wait "
                     "for the earlier ones: expected, and the reason for its TTFT tail")
    print("(" + "; ".join(notes) + ")")
    for e, r in runs.items():
        print(f"{e}: tokens from {r['tokens_from']}, {r['content_chunks']} content chunks, finish reasons "
              + ", ".join(f"{k} {v}" for k, v in r["finish_reasons"].items())
              + f", ready after {r['ready_s']:.1f} s, rounds " + ", ".join(f"{x:.1f}" for x in r["round_s"])
              + f" s, 1-min load average {r['loadavg_1m']:.2f} after them")
        if r["errors"]:
            print(f"{e} errors: " + "; ".join(r["errors"]))
    print(f"file {args.model}; context {args.ctx}; prompt tokens per server "
          + ", ".join(f"{e} {r['prompt_tokens'] if r['tokens_from'] == 'usage' else '(not reported)'}"
                      for e, r in runs.items())
          + f"; run took {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
