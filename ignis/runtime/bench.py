"""Speed measurement: prompt processing of a prompt from an empty context, then single-token
decode steps. `measure` works on any engine given its eval and reset (bench/speed.py runs it
on ignis and on llama.cpp); `run_bench` is what `ignis bench` prints. Batched decoding
through the continuous-batching scheduler: `measure_batched` (bench/batched.py compares it
with llama.cpp) and `run_batch_bench` (`ignis bench --batch`)."""
import json
import os
import statistics
import time

import numpy as np


def bench_prompt(n_prompt: int, n_vocab: int) -> list:
    """The same pseudo-random prompt for every engine and run."""
    return (np.random.default_rng(0).integers(1000, 20000, size=n_prompt) % n_vocab).tolist()


def forget(model) -> None:
    """An empty context and an empty prefix cache: Model.reset alone keeps the KV blocks, so the
    next run of the same prompt would be served from the cache instead of computed."""
    model.reset()
    model.clear_prefix_cache()


def measure(eval_ids, reset, ids: list, n_gen: int, repetitions: int = 1, on_run=None, on_warmup=None) -> tuple:
    """(pp tok/s per run, tg tok/s per run). One warm-up pass first (plans compiled for the
    prompt's chunk sizes and for one token, weights faulted in), outside the timed runs.
    Progress, if wanted: on_warmup() before the warm-up, on_run(i, pp, tg) after run i (from 1)."""
    if on_warmup is not None:
        on_warmup()
    eval_ids(ids)
    eval_ids(ids[:1])
    pp, tg = [], []
    for run in range(1, repetitions + 1):
        reset()
        t0 = time.perf_counter()
        eval_ids(ids)
        pp.append(len(ids) / (time.perf_counter() - t0))
        reset()
        t0 = time.perf_counter()
        for i in range(n_gen):
            eval_ids([ids[i % len(ids)]])
        tg.append(n_gen / (time.perf_counter() - t0))
        if on_run is not None:
            on_run(run, pp[-1], tg[-1])
    return pp, tg


def spread(runs: list) -> dict:
    """Mean, sample standard deviation (0 for one run), min and max of the rates of the runs."""
    return {"mean": statistics.fmean(runs), "stdev": statistics.stdev(runs) if len(runs) > 1 else 0.0,
            "min": min(runs), "max": max(runs)}


def run_bench(path, n_prompt: int = 512, n_gen: int = 128, threads=None, repetitions: int = 3,
              on_run=None, on_warmup=None) -> dict:
    """`ignis bench`: pp and tg tok/s, the median and the spread over the repetitions (on_run,
    on_warmup: see measure)."""
    import ignis
    model = ignis.load(path, n_ctx=n_prompt + n_gen + 8, threads=threads)
    pp, tg = measure(model.eval, lambda: forget(model), bench_prompt(n_prompt, model.n_vocab), n_gen, repetitions,
                     on_run, on_warmup)
    return {"pp_tok_s": float(np.median(pp)), "tg_tok_s": float(np.median(tg)), "threads": model.threads,
            "model": os.path.basename(str(path)), "pp_runs": pp, "tg_runs": tg,
            "pp_spread": spread(pp), "tg_spread": spread(tg)}


# -- batched decoding (continuous batching) ------------------------------------------------
#
# B sequences, each with its own n_prompt-token prompt, all submitted at once, greedy,
# n_gen tokens each. Two numbers per B, defined the same way for every engine
# (bench/batched.py runs ignis and llama.cpp through `batch_rates`):
#   prefill tok/s = B * n_prompt / (time until every sequence has its first token)
#   decode tok/s  = tokens generated after that moment / (time from it until the last
#                   sequence finished)
# With every prompt prefilled before any decode step (llama.cpp here) the decode count is
# exactly B * (n_gen - 1). With chunked prefill (ignis' scheduler) sequences whose prompts
# finished early have already decoded a few tokens by then; those are left out of the
# window rather than credited to it.

BATCH_STEP_TOKENS = 512   # the scheduler's tokens per step in these measurements (llama.cpp's n_batch)


def batch_prompts(n_seq: int, n_prompt: int, n_vocab: int) -> list:
    """n_seq distinct pseudo-random prompts of n_prompt ids, the same for every engine and run
    (the first n of them are the same whatever n_seq is)."""
    return [(np.random.default_rng(1 + s).integers(1000, 20000, size=n_prompt) % n_vocab).tolist()
            for s in range(n_seq)]


def batch_ctx(n_seq: int, n_prompt: int, n_gen: int, block: int = 16) -> int:
    """A KV-cache budget (ignis' n_ctx) that holds n_seq sequences of n_prompt + n_gen
    positions in blocks of `block` positions."""
    return n_seq * (-(-(n_prompt + n_gen) // block) * block) + block


def batch_rates(n_seq: int, n_prompt: int, t0: float, t_first: float, t_end: float,
                decode_tokens: int) -> dict:
    """The two numbers of a batched run from its timestamps (see the comment above)."""
    prefill_s, decode_s = t_first - t0, t_end - t_first
    return {"prefill_tok_s": n_seq * n_prompt / prefill_s,
            "decode_tok_s": decode_tokens / decode_s if decode_s > 0 else 0.0,
            "prefill_s": prefill_s, "decode_s": decode_s, "decode_tokens": decode_tokens}


# sampling settings a batched run can use (Model.request's keywords); greedy is the default
BATCH_SAMPLING = {
    "greedy": {"temperature": 0.0},
    "full": {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0},     # OpenAI's default
    "llama": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05},  # llama.cpp's filters
}


def _scheduler_run(sched, prompts: list, n_gen: int, poll: float, sampling: str = "greedy") -> dict:
    """Submit every prompt at once and watch the handles' token counts until all finish."""
    from ignis.errors import IgnisError

    settings = BATCH_SAMPLING[sampling]
    requests = [sched.model.request(ids, max_tokens=n_gen, ignore_eos=True, seed=i, **settings)
                for i, ids in enumerate(prompts)]
    steps0 = sched.steps
    t0 = time.perf_counter()
    handles = sched.submit_many(requests)      # the engine thread takes them in one step
    t_first, first_step, sizes0 = None, None, len(sched.step_sizes)
    while True:
        now = time.perf_counter()
        counts = [len(h.result.tokens) for h in handles]
        if first_step is None and len(sched.step_sizes) > sizes0:    # the list is replaced, never changed
            first_step = sched.step_sizes[sizes0]
        if t_first is None and min(counts) >= 1:
            t_first, at_first, steps_first = now, counts, sched.steps
        if all(h.done for h in handles):
            t_end = now
            break
        time.sleep(poll)
    for h in handles:
        if h.error is not None:
            raise h.error
        if len(h.result.tokens) != n_gen:
            raise IgnisError(f"batched bench: a request stopped after {len(h.result.tokens)} of {n_gen} "
                             f"tokens ({h.finish_reason})")
    if t_first is None:       # every request finished between two polls
        t_first, at_first, steps_first = t_end, [n_gen] * len(handles), sched.steps
    decode_tokens = n_gen * len(handles) - sum(at_first)
    out = batch_rates(len(prompts), len(prompts[0]), t0, t_first, t_end, decode_tokens)
    steps, decode_steps = sched.steps - steps0, sched.steps - steps_first
    out.update(steps=steps, decode_steps=decode_steps, first_step_tokens=first_step, t0=t0, t_first=t_first,
               t_end=t_end, sampling=sampling,
               avg_step_tokens=(len(prompts) * len(prompts[0]) + n_gen * len(handles) - len(handles)) / max(steps, 1),
               avg_decode_step_tokens=decode_tokens / decode_steps if decode_steps else 0.0)
    return out


def measure_batched(model, n_seq: int, n_prompt: int = 128, n_gen: int = 64,
                    step_tokens: int = BATCH_STEP_TOKENS, warmup: bool = True, poll: float = 0.0005,
                    sampling: str = "greedy") -> dict:
    """Batched prefill and aggregate decode speed of `model` through its continuous-batching
    scheduler (greedy, ignore_eos, so everything a caller pays per step is in): n_seq
    sequences with prompts from batch_prompts, n_gen tokens each. One untimed run first
    (min(n_gen, 16) tokens: compiles the step plans, faults the weights in), then the timed
    run. sampling: a BATCH_SAMPLING name (seeded per sequence). Returns batch_rates' dict
    plus the run's perf_counter timestamps (t0, t_first, t_end), the scheduler's steps, average tokens per step (whole
    run and decode window), the plans compiled during the timed run (0 if the warm-up
    covered every step shape), its prefix-cache hits (0) and arrival retries (see _fresh_run)."""
    if n_gen < 2:
        raise ValueError("measure_batched: n_gen must be at least 2 (the first token ends prefill)")
    prompts = batch_prompts(n_seq, n_prompt, model.n_vocab)
    if warmup:
        _fresh_run(model, prompts, min(n_gen, 16), step_tokens, poll, sampling)
    out = _fresh_run(model, prompts, n_gen, step_tokens, poll, sampling)
    out["batch"] = n_seq
    return out


def _fresh_run(model, prompts: list, n_gen: int, step_tokens: int, poll: float, sampling: str = "greedy",
               attempts: int = 3) -> dict:
    """One run on a fresh scheduler, the prefix cache emptied first (every prompt is prefilled). The
    engine thread may, rarely, take the first request alone into a step before the others
    are queued; such a run (its first step smaller than all prompts at once would make it)
    is done again, up to `attempts` times."""
    n_seq, n_prompt = len(prompts), len(prompts[0])
    per_step = max(step_tokens, n_seq)
    plans = getattr(model.engine, "_plans", None)
    for attempt in range(attempts):
        sched = model.scheduler(max_batch=n_seq, step_tokens=per_step)
        model.clear_prefix_cache()
        try:
            _start(sched, prompts[0][0])
            compiled = len(plans) if plans is not None else 0
            out = _scheduler_run(sched, prompts, n_gen, poll, sampling)
            out["plans_compiled"] = (len(plans) - compiled) if plans is not None else None
            out["cache_hits"] = getattr(sched, "cache_hits", 0)
        finally:
            sched.close()
        if out["first_step_tokens"] in (None, min(per_step, n_seq * n_prompt)):
            break
    out["arrival_retries"] = attempt
    return out


def _start(sched, token: int) -> None:
    """Start the scheduler's engine thread (a one-token request), so that a run's prompts all
    arrive in its first step."""
    sched.submit(sched.model.request([token], max_tokens=1, temperature=0.0, ignore_eos=True)).text()


def run_batch_bench(path, batches, n_prompt: int = 128, n_gen: int = 64, threads=None,
                    step_tokens: int = BATCH_STEP_TOKENS, on_result=None) -> dict:
    """`ignis bench --batch`: measure_batched for each batch size on one loaded model (its KV
    cache sized for the largest batch). on_result(dict) is called after each size."""
    import ignis
    model = ignis.load(path, n_ctx=batch_ctx(max(batches), n_prompt, n_gen), threads=threads)
    try:
        results = []
        for b in batches:
            results.append(measure_batched(model, b, n_prompt, n_gen, step_tokens))
            if on_result is not None:
                on_result(results[-1])
        return {"threads": model.threads, "model": os.path.basename(str(path)), "n_prompt": n_prompt,
                "n_gen": n_gen, "step_tokens": step_tokens, "results": results}
    finally:
        model.close()


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), for the line every speed report carries."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def positive_int(text: str) -> int:
    """argparse type of the bench scripts' counts: a positive integer."""
    import argparse
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def ratio(a, b) -> str:
    """a / b as '1.23x', '-' when either is missing."""
    return f"{a / b:.2f}x" if a and b else "-"


SSE_DONE = "[DONE]"


def sse_event(line: str):
    """One line of an OpenAI-style event stream: None (not a data line), SSE_DONE, or the
    data's parsed JSON (the serve benchmark and the soak read streams line by line)."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    return SSE_DONE if data == SSE_DONE else json.loads(data)
