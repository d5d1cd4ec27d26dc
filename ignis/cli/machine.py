"""`ignis info | bench`: this machine's kernel level, and how fast a model runs on it."""
import json
import sys

from ignis.cli.common import model_flag, model_path, positive, raise_arg, threads_flag


def info_args(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_info(args) -> int:
    """What ignis sees of this machine and which kernel level it runs."""
    import os
    import platform
    from ignis import _kernels as K
    from ignis.runtime.bench import cpu_model
    from ignis.runtime.engine import default_threads
    K.check_isa()
    levels = K.isa_levels()
    forced = os.environ.get("IGNIS_ISA", "").strip()
    info = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "features": K.cpu_features(),
        "level": K.isa(),
        "chosen_by": f"IGNIS_ISA={forced}" if forced else "best level this CPU runs",
        "build_levels": [name for name, _ in levels],
        "runnable_levels": [name for name, ok in levels if ok],
        "threads": default_threads(),
        "openmp_threads": K.openmp_threads(),
    }
    if args.json:
        print(json.dumps(info))
        return 0
    amx = ""
    if "amx (cpuid)" in info["features"] and "amx (os)" not in info["features"]:
        amx = "  (AMX: advertised by CPUID, tile state not enabled by the OS: never used)"
    rows = [
        ("cpu", f"{info['cpu']} ({info['machine']})"),
        ("features", (", ".join(info["features"]) or "none beyond the baseline") + amx),
        ("kernel level", f"{info['level']}  ({info['chosen_by']})"),
        ("build levels", ", ".join(f"{n}{'' if ok else ' (not on this CPU)'}" for n, ok in levels)),
        ("threads", f"{info['threads']} by default; OpenMP "
                    + (f"allows {info['openmp_threads']}" if info["openmp_threads"] else "not in this build: 1")),
    ]
    for key, value in rows:
        print(f"{key:<13} {value}")
    return 0


def _batch_sizes(text):
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise_arg(f"--batch must be a comma-separated list of positive integers, got {text!r}")
    return sizes


def bench_args(p) -> None:
    model_flag(p)
    p.add_argument("-p", "--n-prompt", type=positive("-p"), default=None,
                   help="prompt tokens (default 512; with --batch, 128 per sequence)")
    p.add_argument("-n", "--n-gen", type=positive("-n"), default=None,
                   help="generated tokens (default 128; with --batch, 64 per sequence)")
    threads_flag(p)
    p.add_argument("-r", "--repetitions", type=positive("-r"), default=3, help="repetitions (default 3)")
    p.add_argument("--batch", type=_batch_sizes, default=None, metavar="B1,B2,...",
                   help="batched decoding instead: B sequences at once through the scheduler, for each B "
                        "(e.g. 1,2,4,8,16); aggregate decode and prefill tok/s")
    p.add_argument("--step-tokens", type=positive("--step-tokens"), default=512,
                   help="with --batch: the scheduler's tokens per step (default 512)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_bench(args) -> int:
    if args.batch is not None:
        return _bench_batched(args)
    from ignis.runtime.bench import run_bench
    path = model_path(args)
    n_prompt = 512 if args.n_prompt is None else args.n_prompt
    n_gen = 128 if args.n_gen is None else args.n_gen
    reps = args.repetitions

    # progress on stderr, so stdout stays the table (or the JSON)
    def warmup():
        sys.stderr.write("ignis bench: warm-up run (untimed: compiles the plans)\n")
        sys.stderr.flush()

    def progress(run, pp, tg):
        sys.stderr.write(f"ignis bench: run {run}/{reps}: pp{n_prompt} {pp:.2f} tok/s, tg{n_gen} {tg:.2f} tok/s\n")
        sys.stderr.flush()

    report = run_bench(path, n_prompt=n_prompt, n_gen=n_gen, threads=args.threads, repetitions=reps,
                       on_run=progress, on_warmup=warmup)
    if args.json:
        print(json.dumps({key: report[key] for key in ("pp_tok_s", "tg_tok_s", "threads", "model", "pp_runs",
                                                      "tg_runs", "pp_spread", "tg_spread")}))
        return 0
    print(f"{reps} run{'s' if reps > 1 else ''}: tok/s is the median; the spread is over the runs")
    print("| model | threads | test | tok/s | mean ± stdev | min | max |")
    print("|---|---|---|---|---|---|---|")
    for test, key in ((f"pp{n_prompt}", "pp"), (f"tg{n_gen}", "tg")):
        s = report[f"{key}_spread"]
        print(f"| {report['model']} | {report['threads']} | {test} | {report[key + '_tok_s']:.2f} | "
              f"{s['mean']:.2f} ± {s['stdev']:.2f} | {s['min']:.2f} | {s['max']:.2f} |")
    return 0


def _bench_batched(args) -> int:
    """`ignis bench --batch 1,2,4`: aggregate decode and prefill speed of the continuous-batching
    scheduler, B sequences with their own prompts at once (see ignis.runtime.bench)."""
    from ignis.runtime.bench import run_batch_bench
    n_prompt = 128 if args.n_prompt is None else args.n_prompt
    n_gen = 64 if args.n_gen is None else args.n_gen
    if n_gen < 2:     # a usage error, like a bad flag
        sys.stderr.write(f"ignis bench: error: with --batch, -n must be at least 2 (the first token ends "
                         f"prefill), got {n_gen} (see 'ignis bench --help')\n")
        return 2

    def progress(r):                    # stderr, so stdout stays the table (or the JSON)
        sys.stderr.write(f"ignis bench: batch {r['batch']}: decode {r['decode_tok_s']:.2f} tok/s, "
                         f"prefill {r['prefill_tok_s']:.2f} tok/s\n")
        sys.stderr.flush()

    report = run_batch_bench(model_path(args), args.batch, n_prompt=n_prompt, n_gen=n_gen,
                             threads=args.threads, step_tokens=args.step_tokens, on_result=progress)
    keys = ("batch", "decode_tok_s", "prefill_tok_s", "avg_decode_step_tokens")
    if args.json:
        print(json.dumps({"threads": report["threads"], "model": report["model"], "n_prompt": n_prompt,
                          "n_gen": n_gen, "step_tokens": report["step_tokens"],
                          "results": [{k: r[k] for k in keys} for r in report["results"]]}))
        return 0
    print(f"{report['model']}, {report['threads']} threads, {n_prompt}-token prompt and {n_gen} tokens "
          f"per sequence, {report['step_tokens']} tokens per step")
    print("| batch | decode tok/s (all sequences) | prefill tok/s |")
    print("|---|---|---|")
    for r in report["results"]:
        print(f"| {r['batch']} | {r['decode_tok_s']:.2f} | {r['prefill_tok_s']:.2f} |")
    return 0
