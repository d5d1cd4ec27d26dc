"""ignis against llama.cpp (llama-cpp-python) on the same GGUF, same threads, in one run.

    python bench/speed.py                      # the Q8_0 copy of the default model
    python bench/speed.py --original           # the original Q4_K_M-mix file
    python bench/speed.py -m FILE -p 512 -n 128 -t 2 -r 3

Each measurement runs in a fresh process (so peak RSS is the engine's own), engines
alternate run by run, and the table reports medians: pp (prompt tokens/s from an
empty context), tg (decode tokens/s), peak RSS, the ratio ignis / llama.cpp, and the
memory roofline for decode (weight bytes read per token ÷ measured read bandwidth)."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ignis.runtime.bench import bench_prompt, forget, measure  # noqa: E402


def worker_ignis(path, n_prompt, n_gen, threads) -> dict:
    import ignis
    model = ignis.load(path, n_ctx=n_prompt + n_gen + 8, threads=threads)
    pp, tg = measure(model.eval, lambda: forget(model), bench_prompt(n_prompt, model.n_vocab), n_gen)
    return {"pp": pp[0], "tg": tg[0]}


def worker_llama(path, n_prompt, n_gen, threads) -> dict:
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=n_prompt + n_gen + 8, n_threads=threads, n_threads_batch=threads,
                n_batch=512, n_ubatch=512, verbose=False)
    pp, tg = measure(llm.eval, llm.reset, bench_prompt(n_prompt, llm.n_vocab()), n_gen)
    return {"pp": pp[0], "tg": tg[0]}


def run_worker(engine, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, "-m", args.model, "-p", str(args.n_prompt),
           "-n", str(args.n_gen), "-t", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{engine} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def decode_weight_bytes(path) -> int:
    """Bytes of weights a decode step reads: every 2-D tensor except the embedding (one row)."""
    from ignis.gguf import GGUFFile
    with GGUFFile(path) as f:
        total = sum(t.nbytes for t in f.tensors.values() if len(t.shape) == 2 and t.name != "token_embd.weight")
        if "output.weight" not in f.tensors:
            total += f.tensors["token_embd.weight"].nbytes
        return total


def read_bandwidth(threads: int, nbytes: int = 1 << 30) -> float:
    """Bytes/s that `threads` threads read from a buffer much larger than the caches."""
    buf = np.ones(nbytes // 8, dtype=np.float64)
    parts = np.array_split(buf, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(3):
            t0 = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = max(best, nbytes / (time.perf_counter() - t0))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", help="GGUF file (default: the Q8_0 copy of the default model)")
    ap.add_argument("--original", action="store_true", help="use the original default model file")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("--worker", choices=["ignis", "llama.cpp"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fn = worker_ignis if args.worker == "ignis" else worker_llama
        result = fn(args.model, args.n_prompt, args.n_gen, args.threads)
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0
    from ignis.hub import pull, pull_q8_0
    if not args.model:
        args.model = str(pull() if args.original else pull_q8_0())
    runs = {"ignis": [], "llama.cpp": []}
    for rep in range(args.repetitions):
        for engine in (("ignis", "llama.cpp") if rep % 2 == 0 else ("llama.cpp", "ignis")):
            r = run_worker(engine, args)
            runs[engine].append(r)
            print(f"  run {rep + 1} {engine:9s} pp {r['pp']:7.1f}  tg {r['tg']:6.2f}  rss {r['rss_mb']:.0f} MB", file=sys.stderr)
    med = {e: {k: statistics.median(r[k] for r in rs) for k in ("pp", "tg")} for e, rs in runs.items()}
    rss = {e: max(r["rss_mb"] for r in rs) for e, rs in runs.items()}
    name = os.path.basename(args.model)
    pp_name, tg_name = f"pp{args.n_prompt}", f"tg{args.n_gen}"
    print(f"model {name}, threads {args.threads}, {args.repetitions} runs each (median)")
    print(f"| engine    | {pp_name:>8s} tok/s | {tg_name:>8s} tok/s | peak RSS MB |")
    print("|-----------|----------------|----------------|-------------|")
    for e in ("ignis", "llama.cpp"):
        print(f"| {e:9s} | {med[e]['pp']:14.2f} | {med[e]['tg']:14.2f} | {rss[e]:11.0f} |")
    print(f"| ratio     | {med['ignis']['pp'] / med['llama.cpp']['pp']:13.2f}x | "
          f"{med['ignis']['tg'] / med['llama.cpp']['tg']:13.2f}x | {rss['ignis'] / rss['llama.cpp']:10.2f}x |")
    wbytes = decode_weight_bytes(args.model)
    bw = read_bandwidth(args.threads)
    roof = bw / wbytes
    print(f"roofline: {wbytes / 1e6:.0f} MB of weights per decoded token / {bw / 1e9:.1f} GB/s read bandwidth "
          f"= {roof:.1f} tok/s; ignis at {100 * med['ignis']['tg'] / roof:.0f} %, "
          f"llama.cpp at {100 * med['llama.cpp']['tg'] / roof:.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
