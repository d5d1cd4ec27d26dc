"""ignis against llama.cpp (its own llama-bench, built natively for this CPU) on the same GGUF.

    python bench/speed.py                      # the Q8_0 copy of the default model
    python bench/speed.py --original           # the original Q4_K_M-mix file
    python bench/speed.py -m FILE -p 512 -n 128 -t 2 -r 3
    python bench/speed.py --presets [MODEL]    # MODEL requantized into llama.cpp's presets
    python bench/speed.py --presets MODEL --only Q4_0,Q6_K --no-prefill
    python bench/speed.py -m FILE --no-prefill -d 2048   # decode after a 2048-token context

Each measurement runs in a fresh process (so peak RSS is the engine's own), engines
alternate run by run, and the tables report medians: pp (prompt tokens/s from an empty
context), tg (decode tokens/s), the ratio ignis / llama.cpp, and each engine's share of
the decode memory roofline (read bandwidth measured by a probe / weight bytes read per
token).

llama.cpp's numbers come from llama-bench of a native build (GGML_NATIVE: this CPU's
kernels), not from llama-cpp-python's portable wheel, which flatters ignis. Its bin
directory: --llama-bin, else $IGNIS_LLAMA_BIN, else the default of
/work/shared/tools/build-llama-server.sh (~/.cache/llama-server-0.3.36/...).

--presets requantizes MODEL (default: the original default model) with llama.cpp's own
quantizer (llama_model_quantize through llama-cpp-python, allow_requantize) into each
preset, cached in ~/.cache/ignis/presets/ (never in the repository)."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ignis.runtime.bench import bench_prompt, forget, measure  # noqa: E402

PRESETS = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
           "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "BF16", "F16")
PRESET_DIR = Path.home() / ".cache" / "ignis" / "presets"
DEFAULT_LLAMA_BIN = Path.home() / ".cache" / "llama-server-0.3.36" / "src" / "vendor" / "llama.cpp" / "build" / "bin"


def worker_ignis(path, n_prompt, n_gen, threads, depth=0) -> dict:
    """pp and tg of one run; with depth, both after a context of that many tokens (llama-bench
    -d: evaluated before each timed part, untimed)."""
    import ignis
    model = ignis.load(path, n_ctx=depth + max(n_prompt, 1) + n_gen + 8, threads=threads)
    ids = bench_prompt(max(n_prompt, 1), model.n_vocab)
    context = bench_prompt(depth + 1, model.n_vocab)[1:] if depth else []     # not ids' prefix

    def reset():
        forget(model)
        if context:
            model.eval(context)
    pp, tg = measure(model.eval, reset, ids, n_gen)
    return {"pp": pp[0] if n_prompt else 0.0, "tg": tg[0]}


def llama_bench_path(bin_dir) -> Path:
    exe = Path(bin_dir or os.environ.get("IGNIS_LLAMA_BIN") or DEFAULT_LLAMA_BIN) / "llama-bench"
    if not exe.exists():
        raise SystemExit(f"{exe} not found: build llama.cpp natively (bash /work/shared/tools/build-llama-server.sh) "
                         "and pass its bin directory with --llama-bin")
    return exe


def run_llama_bench(exe, path, n_prompt, n_gen, threads, depth=0) -> dict:
    """One llama-bench process (one repetition): pp and tg tok/s and its peak RSS."""
    cmd = [str(exe), "-m", str(path), "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen), "-r", "1",
           "-d", str(depth), "-o", "json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"llama-bench failed:\n{err[-2000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    res = {"pp": 0.0, "tg": 0.0, "rss_mb": rss}
    for test in json.loads(out):
        res["pp" if test["n_prompt"] > 0 else "tg"] = float(test["avg_ts"])
    return res


def run_ignis(args, path) -> dict:
    cmd = [sys.executable, __file__, "--worker", "-m", str(path), "-p", str(args.n_prompt),
           "-n", str(args.n_gen), "-t", str(args.threads), "-d", str(args.depth)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"ignis worker failed:\n{out.stderr[-2000:]}")
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
    """Bytes/s that `threads` threads read from a buffer much larger than the caches (the best of
    three passes: numpy's sum streams its part with SIMD loads, the GIL released)."""
    buf = np.ones(nbytes // 8, dtype=np.float64)
    parts = np.array_split(buf, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(3):
            t0 = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = max(best, nbytes / (time.perf_counter() - t0))
    return best


def compare(args, exe, path) -> dict:
    """Interleaved runs of both engines on one file: medians and peak RSS."""
    runs = {"ignis": [], "llama.cpp": []}
    for rep in range(args.repetitions):
        for engine in (("ignis", "llama.cpp") if rep % 2 == 0 else ("llama.cpp", "ignis")):
            r = run_ignis(args, path) if engine == "ignis" else run_llama_bench(exe, path, args.n_prompt, args.n_gen,
                                                                                 args.threads, args.depth)
            runs[engine].append(r)
            print(f"  {os.path.basename(str(path))} run {rep + 1} {engine:9s} pp {r['pp']:7.1f}  tg {r['tg']:6.2f}",
                  file=sys.stderr, flush=True)
    med = {e: {k: statistics.median(r[k] for r in rs) for k in ("pp", "tg")} for e, rs in runs.items()}
    for e, rs in runs.items():
        med[e]["rss_mb"] = max(r["rss_mb"] for r in rs)
        med[e]["tg_runs"] = [r["tg"] for r in rs]
    return med


def quantize_preset(src: Path, preset: str) -> Path:
    """src requantized into preset by llama.cpp's quantizer, cached in ~/.cache/ignis/presets."""
    PRESET_DIR.mkdir(parents=True, exist_ok=True)
    dst = PRESET_DIR / f"{src.stem}.{preset}.gguf"
    if dst.exists():
        return dst
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{preset}")
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    tmp = dst.with_suffix(".part")
    print(f"  quantizing {src.name} -> {dst.name}", file=sys.stderr, flush=True)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed for {preset} (code {rc})")
    tmp.rename(dst)
    return dst


def pct(x) -> str:
    return f"{100 * x:.0f} %"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", help="GGUF file (default: the Q8_0 copy of the default model)")
    ap.add_argument("--original", action="store_true", help="use the original default model file")
    ap.add_argument("--presets", nargs="?", const="", metavar="MODEL",
                    help="requantize MODEL (default: the original default model) into llama.cpp's presets")
    ap.add_argument("--only", help="with --presets: a comma-separated subset, e.g. Q4_0,Q4_K_M,Q6_K")
    ap.add_argument("--no-prefill", action="store_true", help="measure decode only (-p 0)")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("-d", "--depth", type=int, default=0,
                    help="measure pp and tg after a context of this many tokens (llama-bench -d)")
    ap.add_argument("--llama-bin", help="directory of the native llama.cpp build's llama-bench")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.no_prefill:
        args.n_prompt = 0
    if args.worker:
        result = worker_ignis(args.model, args.n_prompt, args.n_gen, args.threads, args.depth)
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0
    exe = llama_bench_path(args.llama_bin)
    from ignis.hub import pull, pull_q8_0
    if args.presets is not None:
        src = Path(args.presets or args.model or pull())
        names = [p.strip().upper() for p in args.only.split(",")] if args.only else list(PRESETS)
        unknown = [p for p in names if p not in PRESETS]
        if unknown:
            raise SystemExit(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
        files = [(p, quantize_preset(src, p)) for p in names]
    else:
        if not args.model:
            args.model = str(pull() if args.original else pull_q8_0())
        files = [(None, Path(args.model))]
    bw = read_bandwidth(args.threads)
    print(f"threads {args.threads}, {args.repetitions} runs each (median), llama.cpp: {exe}; "
          f"read bandwidth {bw / 1e9:.1f} GB/s; load average {os.getloadavg()[0]:.1f}", flush=True)
    at = f" @ d{args.depth}" if args.depth else ""      # the roofline columns count weights only
    pp_name, tg_name = f"pp{args.n_prompt}{at}", f"tg{args.n_gen}{at}"
    print(f"| file | {pp_name} ignis | {pp_name} llama.cpp | ratio | {tg_name} ignis | {tg_name} llama.cpp | ratio | "
          f"MB/token | roofline tok/s | ignis | llama.cpp |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for preset, path in files:
        med = compare(args, exe, path)
        wbytes = decode_weight_bytes(path)
        roof = bw / wbytes
        ig, ll = med["ignis"], med["llama.cpp"]
        pp_ratio = f"{ig['pp'] / ll['pp']:.2f}x" if args.n_prompt and ll["pp"] else "-"
        tg_ratio = f"{ig['tg'] / ll['tg']:.2f}x" if args.n_gen and ll["tg"] else "-"
        print(f"| {preset or os.path.basename(str(path))} | {ig['pp']:.1f} | {ll['pp']:.1f} | {pp_ratio} | "
              f"{ig['tg']:.2f} | {ll['tg']:.2f} | {tg_ratio} | {wbytes / 1e6:.0f} | {roof:.1f} | "
              f"{pct(ig['tg'] / roof)} | {pct(ll['tg'] / roof)} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
