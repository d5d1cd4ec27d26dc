"""Batched decoding: ignis' continuous-batching scheduler against llama.cpp (llama-cpp-python's
low-level batch API) on the same GGUF, same threads, in one run.

    python bench/batched.py                          # the Q8_0 copy of the default model
    python bench/batched.py --original               # the original Q4_K_M-mix file
    python bench/batched.py -m FILE -t 2 -b 1,2,4,8,16 -p 128 -n 64 [--ignis-only] [--json]
    python bench/batched.py --ignis-only -b 8 --sampling greedy,full --sampler-share

For each batch size B: B sequences, each with its own p-token prompt (distinct pseudo-random
ids, the same for both engines: ignis.runtime.bench.batch_prompts), all submitted at once,
greedy, n tokens each.
  prefill tok/s = B * p / (time until every sequence has its first token)
  decode tok/s  = tokens generated after that moment / (time from it until the last sequence
                  finished), i.e. aggregate over all sequences; B * (n - 1) tokens for
                  llama.cpp, which prefills every prompt before the first decode step; for
                  ignis, whose chunked prefill lets early sequences start decoding while
                  later prompts are read, the tokens made before that moment are left out.
ignis runs through Model.scheduler (max_batch = B, --step-tokens tokens per step, default
512 = llama.cpp's n_batch) with ignore_eos, so Python, sampling and streaming are in its
numbers (ignis.runtime.bench.measure_batched, the same code as `ignis bench --batch`);
token counts are polled every 0.5 ms. llama.cpp prefills all prompts in batches of up to
n_batch = 512 tokens (several sequences per batch, logits only for each prompt's last
token), then runs decode batches of B tokens, one per sequence, with a numpy argmax per
sequence; its context uses llama.cpp's defaults otherwise (flash attention "auto", a KV
cache split per sequence: kv_unified off). Each batch size is run once untimed with
min(n, 16) tokens (plans compiled, weights faulted in; llama.cpp's KV cache cleared after)
and then timed; ignis' timed run is on a fresh scheduler (an empty prefix cache, so every
prompt is prefilled) whose engine thread is already running, and is redone in the rare case
that the thread started a step before every prompt was queued (--steps-report shows it).

--sampling runs ignis' sequences under other settings too (ignis.runtime.bench.BATCH_SAMPLING:
full = temperature 1, top_p 1, top_k 0, min_p 0, OpenAI's default; llama = llama.cpp's filters;
each sequence seeded), with the ratio of each to greedy; llama.cpp stays greedy (its argmax).
--sampler-share times ignis' sampler call of every step (the scheduler's sample_rows, wrapped
with two perf_counter reads) and prints its share of the timed run and of its decode window.

The numbers are only as good as the machine is quiet: llama.cpp's threads wait for each
other by spinning, so with another busy process on the same cores its speed collapses
(and jumps around from run to run) much more than ignis'.

Each engine runs in a worker process of its own that does every batch size in turn (one
model load), so the peak RSS reported is the engine's own, after its largest batch."""
import argparse
import ctypes
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ignis.runtime.bench import (BATCH_SAMPLING, BATCH_STEP_TOKENS, batch_ctx, batch_prompts,  # noqa: E402
                                 batch_rates, cpu_model, measure_batched, positive_int, ratio)

LLAMA_N_BATCH = 512


def _emit(obj) -> None:
    print(json.dumps(obj), flush=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- workers (one process per engine, every batch size) ---------------------------------------

def _time_sampler() -> list:
    """Wrap the scheduler's sampler call; the list it fills with (start, seconds) per call."""
    from ignis.runtime import scheduler
    calls, inner = [], scheduler.sample_rows

    def timed(*a, **kw):
        t = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            calls.append((t, time.perf_counter() - t))
    scheduler.sample_rows = timed
    return calls


def _sampler_share(calls: list, r: dict) -> None:
    def within(lo, hi):
        return sum(d for t, d in calls if lo <= t <= hi)
    r["sampler_s"] = within(r["t0"], r["t_end"])
    r["sampler_share"] = r["sampler_s"] / (r["t_end"] - r["t0"])
    r["sampler_share_decode"] = within(r["t_first"], r["t_end"]) / max(r["t_end"] - r["t_first"], 1e-9)


def worker_ignis(args) -> None:
    import ignis
    model = ignis.load(args.model, n_ctx=batch_ctx(max(args.batches), args.n_prompt, args.n_gen),
                       threads=args.threads)
    calls = _time_sampler() if args.sampler_share else None
    for b in args.batches:
        for sampling in args.sampling:
            r = measure_batched(model, b, args.n_prompt, args.n_gen, args.step_tokens, sampling=sampling)
            r["prompt_sum"] = int(sum(map(sum, batch_prompts(b, args.n_prompt, model.n_vocab))))
            if calls is not None:
                _sampler_share(calls, r)
                calls.clear()
            _emit(r)
    _emit({"rss_mb": _peak_rss_mb(), "threads": model.threads})


def _llama_run(L, ctx, batch, n_batch: int, prompts: list, n_gen: int, n_vocab: int) -> dict:
    """One batched run on llama.cpp: every prompt prefilled, then n_gen - 1 decode steps."""
    n_seq, n_prompt = len(prompts), len(prompts[0])
    tok = np.ctypeslib.as_array(batch.token, shape=(n_batch,))
    pos = np.ctypeslib.as_array(batch.pos, shape=(n_batch,))
    n_seq_id = np.ctypeslib.as_array(batch.n_seq_id, shape=(n_batch,))
    want_logits = np.ctypeslib.as_array(batch.logits, shape=(n_batch,))
    n_seq_id[:] = 1

    def decode(tokens, positions, seqs, out_rows) -> list:
        n = len(tokens)
        tok[:n] = tokens
        pos[:n] = positions
        want_logits[:n] = 0
        want_logits[out_rows] = 1
        for i, s in enumerate(seqs):
            batch.seq_id[i][0] = s
        batch.n_tokens = n
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return [int(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).argmax())
                for i in out_rows]

    rows = [(s, i) for s in range(n_seq) for i in range(n_prompt)]
    first = [0] * n_seq
    t0 = time.perf_counter()
    for lo in range(0, len(rows), n_batch):
        chunk = rows[lo:lo + n_batch]
        out_rows = [j for j, (_, i) in enumerate(chunk) if i == n_prompt - 1]
        sampled = decode([prompts[s][i] for s, i in chunk], [i for _, i in chunk], [s for s, _ in chunk], out_rows)
        for j, t in zip(out_rows, sampled):
            first[chunk[j][0]] = t
    t_first = time.perf_counter()
    last, every = first, list(range(n_seq))
    for k in range(1, n_gen):
        last = decode(last, [n_prompt + k - 1] * n_seq, every, every)
    t_end = time.perf_counter()
    return batch_rates(n_seq, n_prompt, t0, t_first, t_end, n_seq * (n_gen - 1))


def worker_llama(args) -> None:
    import llama_cpp as L

    @L.llama_log_callback
    def quiet(level, text, user_data):
        pass
    L.llama_log_set(quiet, ctypes.c_void_p())
    L.llama_backend_init()
    model = L.llama_model_load_from_file(args.model.encode(), L.llama_model_default_params())
    if not model:
        raise SystemExit(f"llama.cpp could not load {args.model}")
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    for b in args.batches:
        prompts = batch_prompts(b, args.n_prompt, n_vocab)
        n_batch = max(LLAMA_N_BATCH, b)
        cp = L.llama_context_default_params()
        cp.n_ctx = b * (args.n_prompt + args.n_gen) + 64
        cp.n_batch = cp.n_ubatch = n_batch
        cp.n_seq_max = b
        cp.n_threads = cp.n_threads_batch = args.threads
        ctx = L.llama_init_from_model(model, cp)
        if not ctx:
            raise SystemExit(f"llama.cpp could not make a context for {b} sequences")
        batch = L.llama_batch_init(n_batch, 0, 1)
        try:
            _llama_run(L, ctx, batch, n_batch, prompts, min(args.n_gen, 16), n_vocab)
            L.llama_memory_clear(L.llama_get_memory(ctx), True)
            r = _llama_run(L, ctx, batch, n_batch, prompts, args.n_gen, n_vocab)
        finally:
            L.llama_batch_free(batch)
            L.llama_free(ctx)
        r["batch"] = b
        r["prompt_sum"] = int(sum(map(sum, prompts)))
        _emit(r)
    L.llama_model_free(model)
    _emit({"rss_mb": _peak_rss_mb(), "threads": args.threads})


# -- the driver -------------------------------------------------------------------------------

def run_worker(engine: str, args) -> dict:
    """Run one engine's worker; its per-batch results as they come (progress on stderr)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", engine, "-m", args.model,
           "-b", ",".join(map(str, args.batches)), "-p", str(args.n_prompt), "-n", str(args.n_gen),
           "-t", str(args.threads), "--step-tokens", str(args.step_tokens), "--sampling", ",".join(args.sampling)]
    if args.sampler_share:
        cmd.append("--sampler-share")
    results, tail = [], {}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        for line in proc.stdout:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "batch" in r:
                results.append(r)
                print(f"  {engine:9s} B={r['batch']:<3d} {r.get('sampling', 'greedy'):6s} "
                      f"decode {r['decode_tok_s']:8.2f} tok/s  "
                      f"prefill {r['prefill_tok_s']:8.2f} tok/s", file=sys.stderr, flush=True)
            else:
                tail = r
        if proc.wait() != 0 or not tail:
            err.seek(0)
            raise SystemExit(f"{engine} worker failed (exit code {proc.returncode}):\n{err.read()[-3000:]}")
    return {"results": results, **tail}


def _batches(text: str) -> list:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of positive integers, got {text!r}")
    return sizes


def _samplings(text: str) -> list:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names or any(n not in BATCH_SAMPLING for n in names):
        raise argparse.ArgumentTypeError(f"pick from {', '.join(BATCH_SAMPLING)}, got {text!r}")
    return names


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _num(x) -> str:
    return f"{x:.2f}" if x is not None else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", help="GGUF file (default: the Q8_0 copy of the default model)")
    ap.add_argument("--original", action="store_true", help="use the original default model file")
    ap.add_argument("-t", "--threads", type=positive_int, default=2, help="threads for both engines (default 2)")
    ap.add_argument("-b", "--batches", type=_batches, default=[1, 2, 4, 8, 16],
                    help="batch sizes, comma-separated (default 1,2,4,8,16)")
    ap.add_argument("-p", "--n-prompt", type=positive_int, default=128, help="prompt tokens per sequence (default 128)")
    ap.add_argument("-n", "--n-gen", type=positive_int, default=64, help="tokens generated per sequence (default 64)")
    ap.add_argument("--step-tokens", type=positive_int, default=BATCH_STEP_TOKENS,
                    help=f"ignis scheduler tokens per step (default {BATCH_STEP_TOKENS})")
    ap.add_argument("--ignis-only", action="store_true", help="skip llama.cpp")
    ap.add_argument("--sampling", type=_samplings, default=["greedy"],
                    help="ignis' sampling settings, comma-separated, from " + ", ".join(BATCH_SAMPLING)
                    + " (default greedy; llama.cpp is always greedy)")
    ap.add_argument("--sampler-share", action="store_true",
                    help="time ignis' sampler call per step and print its share of the run")
    ap.add_argument("--steps-report", action="store_true",
                    help="also print ignis' scheduler steps and average tokens per step")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--worker", choices=["ignis", "llama.cpp"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.n_gen < 2:
        ap.error("-n must be at least 2 (the first token ends prefill)")
    if args.worker:
        (worker_ignis if args.worker == "ignis" else worker_llama)(args)
        return 0
    if not args.ignis_only and importlib.util.find_spec("llama_cpp") is None:
        ap.error("llama-cpp-python is not installed (pip install -e '.[bench]'), or pass --ignis-only")
    from ignis.hub import pull, pull_q8_0
    if not args.model:
        args.model = str(pull() if args.original else pull_q8_0())
    started = time.perf_counter()
    runs = {"ignis": run_worker("ignis", args)}
    if not args.ignis_only:
        runs["llama.cpp"] = run_worker("llama.cpp", args)
    seconds = time.perf_counter() - started
    by_b = {e: {r["batch"]: r for r in run["results"] if r.get("sampling", args.sampling[0]) == args.sampling[0]}
            for e, run in runs.items()}
    if not args.ignis_only:
        for b in args.batches:
            if by_b["ignis"][b]["prompt_sum"] != by_b["llama.cpp"][b]["prompt_sum"]:
                raise SystemExit(f"B={b}: the engines were given different prompts (vocabulary sizes differ?)")
    info = {"model": os.path.basename(args.model), "path": args.model, "cpu": cpu_model(), "threads": args.threads,
            "n_prompt": args.n_prompt, "n_gen": args.n_gen, "step_tokens": args.step_tokens,
            "seconds": seconds}
    if args.json:
        keys = ("decode_tok_s", "prefill_tok_s", "decode_tokens", "prefill_s", "decode_s")
        ignis_keys = keys + ("steps", "decode_steps", "avg_step_tokens", "avg_decode_step_tokens", "plans_compiled",
                             "cache_hits", "arrival_retries")
        out = dict(info, rss_mb={e: run["rss_mb"] for e, run in runs.items()}, results=[])
        for b in args.batches:
            row = {"batch": b, "ignis": {k: by_b["ignis"][b][k] for k in ignis_keys}}
            if not args.ignis_only:
                row["llama.cpp"] = {k: by_b["llama.cpp"][b][k] for k in keys}
                row["decode_ratio"] = row["ignis"]["decode_tok_s"] / row["llama.cpp"]["decode_tok_s"]
                row["prefill_ratio"] = row["ignis"]["prefill_tok_s"] / row["llama.cpp"]["prefill_tok_s"]
            out["results"].append(row)
        print(json.dumps(out))
        return 0
    print(f"model {info['model']}, threads {args.threads}, {args.n_prompt}-token prompt and {args.n_gen} "
          f"generated tokens per sequence, greedy; CPU {info['cpu']}")
    print("| B | ignis decode tok/s | llama.cpp decode tok/s | ratio | ignis prefill tok/s | "
          "llama.cpp prefill tok/s | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for b in args.batches:
        i = by_b["ignis"][b]
        ll = by_b.get("llama.cpp", {}).get(b, {})
        print(f"| {b} | {i['decode_tok_s']:.2f} | {_num(ll.get('decode_tok_s'))} | "
              f"{ratio(i['decode_tok_s'], ll.get('decode_tok_s'))} | {i['prefill_tok_s']:.2f} | "
              f"{_num(ll.get('prefill_tok_s'))} | {ratio(i['prefill_tok_s'], ll.get('prefill_tok_s'))} |")
    if len(args.sampling) > 1 or args.sampler_share:
        names = ", ".join(f"{k} = {v}" for k, v in BATCH_SAMPLING.items() if k in args.sampling)
        print(f"ignis by sampling setting ({names}):")
        print("| B | sampling | decode tok/s | vs greedy | sampler share of the run | of the decode window |")
        print("|---:|---|---:|---:|---:|---:|")
        for b in args.batches:
            rows = {r["sampling"]: r for r in runs["ignis"]["results"] if r["batch"] == b}
            greedy = rows.get("greedy")
            for name, r in rows.items():
                share = [_pct(r.get(k)) for k in ("sampler_share", "sampler_share_decode")]
                print(f"| {b} | {name} | {r['decode_tok_s']:.2f} | "
                      f"{ratio(r['decode_tok_s'], greedy['decode_tok_s']) if greedy else '-'} | "
                      f"{share[0]} | {share[1]} |")
    for b in args.batches:
        if by_b["ignis"][b]["cache_hits"]:
            print(f"warning: B={b}: ignis' prefix cache served {by_b['ignis'][b]['cache_hits']} prompts "
                  "(its prefill number is not a full prefill)")
    rss = "  ".join(f"{e} {run['rss_mb']:.0f} MB" for e, run in runs.items())
    print(f"peak RSS (after B={max(args.batches)}): {rss}"
          + (f"  (ratio {runs['ignis']['rss_mb'] / runs['llama.cpp']['rss_mb']:.2f}x)" if not args.ignis_only else ""))
    print(f"file {args.model}; ignis {args.step_tokens} tokens per scheduler step; run took {seconds:.0f} s")
    if args.steps_report:
        print("ignis scheduler (timed run): B, steps, avg tokens per step, avg tokens per decode-window step, "
              "decode-window steps, plans compiled during the timed run, "
              "prefix-cache hits, runs redone because the prompts did not all arrive in the first step")
        for b in args.batches:
            i = by_b["ignis"][b]
            print(f"  B={b:<3d} steps {i['steps']:4d}  avg {i['avg_step_tokens']:6.1f} tok/step  "
                  f"decode avg {i['avg_decode_step_tokens']:5.2f} tok/step over {i['decode_steps']} steps  "
                  f"plans compiled {i['plans_compiled']}  prefix-cache hits {i['cache_hits']}  "
                  f"arrival retries {i['arrival_retries']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
