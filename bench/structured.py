"""Structured output's cost: decode speed with and without a constraint, on the same model,
same threads, in one run (ignis against itself: the constraint is the only difference).

    python bench/structured.py                     # the default model, 2 repetitions
    python bench/structured.py -m FILE -t 2 -n 128 -r 3 [--json]

The permissive schema is one free-text string field of at least 2000 characters: the
mask lets almost every token through (llguidance does its full work each step), and no
request can finish before n tokens, so both sides generate exactly n tokens a request
(the unconstrained ones ignore the end-of-generation token).

Single stream: Model.generate of a chat prompt, with and without the schema; decode
tok/s = decode tokens / decode seconds of the request (the prompt excluded).

Batch 8: 8 chat prompts submitted at once to a scheduler (max_batch 8), each with its
own constraint state, against the same 8 unconstrained; aggregate tok/s = generated
tokens / wall time from submission to the last one's end (prefill included, the same
on both sides).

The machine should be quiet: both columns move with any other load."""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import ignis  # noqa: E402
from ignis.runtime.bench import cpu_model  # noqa: E402

PERMISSIVE = {"type": "object", "properties": {"story": {"type": "string", "minLength": 2000}},
              "required": ["story"]}
TOPICS = ["a lighthouse", "a robot", "a dragon", "the sea", "a city at night", "a garden", "a train", "a cat"]


def _prompt(model, topic):
    return model.render_chat([{"role": "user", "content": f"Write a long story about {topic} as JSON."}])


def single(model, n, constrained, seed):
    kwargs = {"json_schema": PERMISSIVE} if constrained else {"ignore_eos": True}
    model.generate(_prompt(model, TOPICS[0]), max_tokens=n, temperature=0.8, seed=seed, **kwargs)
    r = model.last_result
    return r.decode_tokens / r.decode_seconds, r.decode_tokens


_schedulers = {}


def batch(model, n, constrained, seed):
    sched = _schedulers.setdefault(id(model), model.scheduler(max_batch=len(TOPICS)))
    constraint = model.constraint(json_schema=PERMISSIVE) if constrained else None
    prompts = [model.tokenize(_prompt(model, t)) for t in TOPICS]
    t0 = time.perf_counter()
    handles = [sched.submit(model.request(ids, max_tokens=n, temperature=0.8, seed=seed + i,
                                          ignore_eos=not constrained, constraint=constraint))
               for i, ids in enumerate(prompts)]
    for h in handles:
        h.text()
    wall = time.perf_counter() - t0
    tokens = sum(len(h.result.tokens) for h in handles)
    return tokens / wall, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default=None, help="GGUF file or catalogue name (default model)")
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("-n", type=int, default=128, help="tokens per request (default 128)")
    ap.add_argument("-r", "--repetitions", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model = ignis.load(args.model, n_ctx=4096, threads=args.threads)
    single(model, 8, True, 0)                 # warm: plans, llguidance's tokenizer
    batch(model, 8, True, 0)
    rows = {}
    for name, fn in (("single", single), ("batch8", batch)):
        for constrained in (False, True):
            rates = []
            for rep in range(args.repetitions):
                rate, _ = fn(model, args.n, constrained, seed=rep + 1)
                rates.append(rate)
            rows[(name, constrained)] = statistics.median(rates)
    out = {"cpu": cpu_model(), "threads": model.threads, "n": args.n,
           "single_free": rows[("single", False)], "single_schema": rows[("single", True)],
           "batch8_free": rows[("batch8", False)], "batch8_schema": rows[("batch8", True)]}
    out["single_ratio"] = out["single_schema"] / out["single_free"]
    out["batch8_ratio"] = out["batch8_schema"] / out["batch8_free"]
    if args.json:
        print(json.dumps(out))
        return
    print(f"cpu: {out['cpu']}, {out['threads']} threads, model {model.path}")
    print(f"{'':10s} {'free tok/s':>11s} {'schema tok/s':>13s} {'schema/free':>12s}")
    for name in ("single", "batch8"):
        print(f"{name:10s} {out[name + '_free']:11.1f} {out[name + '_schema']:13.1f} {out[name + '_ratio']:12.3f}")


if __name__ == "__main__":
    main()
