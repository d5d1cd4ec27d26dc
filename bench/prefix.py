"""Prefix caching, timed from outside ignis: a request with a 400-token prefix, then a
different request sharing that prefix. Prints each one's time to first token and their
ratio (the engine-loop issue's bar: the second under 30 % of the first), and the tokens the
block pool served from its cache.

    python bench/prefix.py [-m MODEL] [-t THREADS] [--prefix 400] [-r 3]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import ignis  # noqa: E402
from ignis.runtime.bench import cpu_model  # noqa: E402


def ttft(model, ids) -> float:
    """Seconds from submitting until the first generated token is known."""
    sched = model._default_scheduler()
    t0 = time.perf_counter()
    handle = sched.submit(model.request(ids, max_tokens=1, temperature=0, ignore_eos=True))
    handle.wait()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default=None, help="GGUF file or catalogue name (default model)")
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("--prefix", type=int, default=400, help="shared prefix tokens (default 400)")
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    args = ap.parse_args()
    model = ignis.load(args.model, n_ctx=4096, threads=args.threads)
    rng = np.random.default_rng(0)
    vocab = model.n_vocab
    ttft(model, rng.integers(1000, 20000, size=args.prefix + 8).tolist())       # compile the plans
    firsts, seconds, cached = [], [], []
    for _ in range(args.repetitions):
        model.clear_prefix_cache()
        prefix = (rng.integers(1000, 20000, size=args.prefix) % vocab).tolist()
        a = prefix + (rng.integers(1000, 20000, size=8) % vocab).tolist()
        b = prefix + (rng.integers(1000, 20000, size=8) % vocab).tolist()
        firsts.append(ttft(model, a))
        before = model._default_scheduler().cached_tokens
        seconds.append(ttft(model, b))
        cached.append(model._default_scheduler().cached_tokens - before)
    f, s = statistics.median(firsts), statistics.median(seconds)
    print(f"cpu: {cpu_model()}; threads {model.threads}; prefix {args.prefix} tokens; {args.repetitions} runs (median)")
    print(f"first request TTFT {f * 1000:.1f} ms; second (shared prefix) TTFT {s * 1000:.1f} ms; "
          f"ratio {s / f:.3f}; tokens from the cache {cached}")
    model.close()


if __name__ == "__main__":
    main()
