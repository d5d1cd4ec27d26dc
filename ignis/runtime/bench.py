"""Speed measurement: prompt processing of a prompt from an empty context, then single-token
decode steps. `measure` works on any engine given its eval and reset (bench/speed.py runs it
on ignis and on llama.cpp); `run_bench` is what `ignis bench` prints."""
import os
import time

import numpy as np


def bench_prompt(n_prompt: int, n_vocab: int) -> list:
    """The same pseudo-random prompt for every engine and run."""
    return (np.random.default_rng(0).integers(1000, 20000, size=n_prompt) % n_vocab).tolist()


def measure(eval_ids, reset, ids: list, n_gen: int, repetitions: int = 1) -> tuple:
    """(pp tok/s per run, tg tok/s per run). One warm-up pass first (plans compiled for the
    prompt's chunk sizes and for one token, weights faulted in), outside the timed runs."""
    eval_ids(ids)
    eval_ids(ids[:1])
    pp, tg = [], []
    for _ in range(repetitions):
        reset()
        t0 = time.perf_counter()
        eval_ids(ids)
        pp.append(len(ids) / (time.perf_counter() - t0))
        reset()
        t0 = time.perf_counter()
        for i in range(n_gen):
            eval_ids([ids[i % len(ids)]])
        tg.append(n_gen / (time.perf_counter() - t0))
    return pp, tg


def run_bench(path, n_prompt: int = 512, n_gen: int = 128, threads=None, repetitions: int = 3) -> dict:
    import ignis
    model = ignis.load(path, n_ctx=n_prompt + n_gen + 8, threads=threads)
    pp, tg = measure(model.eval, model.reset, bench_prompt(n_prompt, model.n_vocab), n_gen, repetitions)
    return {"pp_tok_s": float(np.median(pp)), "tg_tok_s": float(np.median(tg)), "threads": model.threads,
            "model": os.path.basename(str(path)), "pp_runs": pp, "tg_runs": tg}
