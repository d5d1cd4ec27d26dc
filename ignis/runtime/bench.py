"""ignis' own speed measurement (what `ignis bench` prints): prompt processing of n_prompt
tokens from an empty context, then n_gen single-token decode steps, best of several runs."""
import os
import time

import numpy as np


def run_bench(path, n_prompt: int = 512, n_gen: int = 128, threads=None, repetitions: int = 3) -> dict:
    import ignis
    model = ignis.load(path, n_ctx=n_prompt + n_gen + 8, threads=threads)
    rng = np.random.default_rng(0)
    prompt = (rng.integers(1000, 20000, size=n_prompt) % model.n_vocab).tolist()
    model.eval(prompt)          # compile the plans (and fault in the weights) outside the timed runs
    model.reset()
    model.eval([1])
    pp, tg = [], []
    for _ in range(repetitions):
        model.reset()
        t0 = time.perf_counter()
        model.eval(prompt)
        pp.append(n_prompt / (time.perf_counter() - t0))
        model.reset()
        t0 = time.perf_counter()
        for i in range(n_gen):
            model.eval([prompt[i % n_prompt]])
        tg.append(n_gen / (time.perf_counter() - t0))
    return {"pp_tok_s": float(np.median(pp)), "tg_tok_s": float(np.median(tg)), "threads": model.threads,
            "model": os.path.basename(str(path)), "pp_runs": pp, "tg_runs": tg}
