"""The compiled property: a fused plan and its unfused original give the same bits
through the kernels users run. Shared by tests/ (few examples) and this fuzzer (many):
`python -m fuzz.compiled --examples 20000 [--seed N] [--max-width 1024]`.

For a generated model of each architecture (qwen2, llama, gemma3: ignis' own GGUF
writer; gemma3 with a short sliding window and a global layer every 1-3; every weight type the
kernels read, one type for the whole file or mixed per tensor as in real files;
widths up to 1024 including non-power-of-two multiples of the block size; 1-4
layers; GQA ratios 1-8; head dims 32-256; vocabularies of awkward sizes), a random
list of passes (any non-empty subset, any order) is lowered and run through `ignis._kernels`
against the plan of the unfused graph (`passes=[]`): a prefill of 1-80 tokens cut
into random pieces (so several plan sizes run, with and without every position's
logits), then 1-3 decode steps, each engine with 1 or 2 threads. Every step's
logits and, at the end, the whole KV cache must be np.array_equal.

The reference interpreter is not involved: there a fused op is defined as its
primitives, so only the kernels can show that a fused kernel does the same
arithmetic as the sequence it replaces (fuzz/passes.py checks the rewiring).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ignis.gguf import GGUFFile
from ignis.passes import PASSES
from ignis.runtime.engine import Engine
from ignis.testing import (EngineSequence, allowed_types, tiny_gemma3_config, tiny_llama_config, tiny_qwen2_config,
                           write_model)

PASS_NAMES = tuple(PASSES)
HEAD_DIMS = (32, 40, 48, 64, 80, 96, 128, 160, 192, 256)
MAX_PREFILL = 80


def _sizes(draw, max_width: int) -> dict:
    """Heads, head dim and widths. Most examples are small (fast), some reach max_width."""
    big = draw(st.integers(0, 9)) == 0
    limit = max_width if big else min(max_width, 256)
    while True:
        n_kv = draw(st.sampled_from([1, 2, 4]))
        group = draw(st.integers(1, 8))
        dims = [hd for hd in HEAD_DIMS if (n_kv * group * hd) % 32 == 0 and n_kv * group * hd <= limit]
        if dims:
            break
    head_dim = draw(st.sampled_from(dims))
    width = n_kv * group * head_dim
    ffn = 32 * draw(st.integers(1, (2 * limit) // 32))
    return {"n_heads": n_kv * group, "n_kv_heads": n_kv, "width": width, "ffn": ffn}


def _weight_types(draw, config) -> dict:
    """Tensor name -> kernel type: one type for the file (where rows allow it) or a mix."""
    shapes = {name: shape for name, shape in config.tensor_shapes().items() if len(shape) == 2}
    one = draw(st.sampled_from(["mixed", "F32", "F16", "Q8_0", "Q5_0", "Q4_K", "Q6_K"]
                               + ["BF16", "Q4_0", "Q5_1", "IQ4_NL"] + ["Q5_K", "Q3_K", "Q2_K", "IQ4_XS"]))
    types = {}
    for name, (_, k) in shapes.items():
        fits = allowed_types(k)
        types[name] = one if one in fits else draw(st.sampled_from(fits))
    return types


@st.composite
def compiled_cases(draw, max_width: int = 1024):
    sizes = _sizes(draw, max_width)
    n_prompt = draw(st.integers(1, MAX_PREFILL))
    n_decode = draw(st.integers(1, 3))
    arch = draw(st.sampled_from(["qwen2", "llama", "gemma3"]))
    common = dict(n_layers=draw(st.integers(1, 4)), vocab=draw(st.integers(260, 2000)),
                  n_ctx=n_prompt + n_decode + draw(st.integers(0, 16)), tied_output=draw(st.booleans()),
                  rope_theta=draw(st.sampled_from([10000.0, 1e6])))
    if arch == "gemma3":    # the head dim is free of the width; a short window so it matters
        sizes["head_dim"] = sizes.pop("width") // sizes["n_heads"]
        config = tiny_gemma3_config(width=32 * draw(st.integers(1, min(max_width, 256) // 32)),
                                    window=draw(st.integers(1, 24)), global_every=draw(st.integers(1, 3)),
                                    **common, **sizes)
    else:
        config = (tiny_qwen2_config if arch == "qwen2" else tiny_llama_config)(**common, **sizes)
    cuts = sorted(draw(st.sets(st.integers(1, n_prompt - 1), max_size=4)) if n_prompt > 1 else [])
    bounds = [0] + cuts + [n_prompt]
    tokens = draw(st.lists(st.integers(0, config.vocab - 1), min_size=n_prompt + n_decode,
                           max_size=n_prompt + n_decode))
    n_seq = draw(st.integers(2, 4))
    lengths = draw(st.lists(st.integers(1, 24), min_size=n_seq, max_size=n_seq))
    order = draw(st.permutations([i for i, n in enumerate(lengths) for _ in range(n)]))
    cuts = sorted(draw(st.sets(st.integers(1, len(order) - 1), max_size=5)))
    batch = {"lengths": lengths, "order": list(order), "cuts": cuts,
             "extra_rows": draw(st.lists(st.integers(0, len(order) - 1), max_size=3)),
             "tokens": draw(st.lists(st.integers(0, config.vocab - 1), min_size=len(order) + 2 * n_seq,
                                     max_size=len(order) + 2 * n_seq))}
    return {
        "batch": batch,
        "config": config,
        "types": _weight_types(draw, config),
        "seed": draw(st.integers(0, 2 ** 16)),
        "passes": draw(st.lists(st.sampled_from(PASS_NAMES), unique=True, min_size=1, max_size=len(PASS_NAMES))),
        "pieces": [(bounds[i], bounds[i + 1], draw(st.booleans())) for i in range(len(bounds) - 1)],
        "tokens": tokens,
        "n_prompt": n_prompt,
        "threads": (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
    }


def describe(case) -> str:
    c = case["config"]
    kinds = sorted(set(case["types"].values()))
    window = f", window {c.window} global every {c.global_every}" if c.ARCH == "gemma3" else ""
    return (f"{c.ARCH}{window}, {c.n_layers} layers, width {c.width}, ffn {c.ffn}, heads {c.n_heads}/{c.n_kv_heads} x "
            f"{c.head_dim}, vocab {c.vocab}, tied {c.tied_output}, types {'+'.join(kinds)}, "
            f"passes {case['passes']}, pieces {case['pieces']}, threads {case['threads']}, "
            f"batch lengths {case['batch']['lengths']} cut at {case['batch']['cuts']}")


def run_case(path, case) -> list:
    """[(fused output, unfused output, what)] for every step of the case and the KV caches."""
    config = case["config"]
    tokens, n_prompt = case["tokens"], case["n_prompt"]
    fused_threads, unfused_threads = case["threads"]
    with GGUFFile(path) as gguf:
        kv_tokens = config.context_length + 4 * 32 + 16      # room for the batch part too
        fused = EngineSequence(Engine(gguf, config, config.context_length, fused_threads, case["passes"], kv_tokens))
        unfused = EngineSequence(Engine(gguf, config, config.context_length, unfused_threads, [], kv_tokens))
        pairs = []
        for lo, hi, all_logits in case["pieces"]:
            what = f"prefill [{lo}, {hi}){' all logits' if all_logits else ''}"
            pairs.append((fused.forward(tokens[lo:hi], lo, all_logits),
                          unfused.forward(tokens[lo:hi], lo, all_logits), what))
        for at in range(n_prompt, len(tokens)):
            pairs.append((fused.forward([tokens[at]], at), unfused.forward([tokens[at]], at), f"decode at {at}"))
        pairs += kv_pairs(fused, unfused, "")
        steps = batch_steps(case["batch"])
        for got, want, what in zip(run_batch(fused, steps), run_batch(unfused, steps), range(len(steps))):
            pairs.append((got, want, f"batch step {what}"))
        pairs += kv_pairs(fused, unfused, " after the batch")
        return pairs


def kv_pairs(fused, unfused, when: str) -> list:
    """The KV caches of two engines, side by side (both pools of a sliding-window model)."""
    pools = [("", fused.kv, unfused.kv)] if fused.kv_layers is None else \
        [("", fused.kv.full, unfused.kv.full), (" (sliding-window pool)", fused.kv.local, unfused.kv.local)]
    return [(getattr(a, name), getattr(b, name), f"KV cache {what}{label}{when}")
            for label, a, b in pools for name, what in (("k", "keys"), ("v", "values"))]


def batch_steps(batch) -> list:
    """[(tokens, sequence indexes, positions, wanted rows)] of the batch part of a case:
    the interleaved prompts cut into steps, then two decode steps."""
    lengths, order, tokens = batch["lengths"], batch["order"], batch["tokens"]
    pos, last = [0] * len(lengths), {}
    places = []
    for j, s in enumerate(order):
        places.append((tokens[j], s, pos[s]))
        pos[s] += 1
        if pos[s] == lengths[s]:
            last[j] = s
    bounds = [0] + batch["cuts"] + [len(order)]
    steps = []
    for a, b in zip(bounds, bounds[1:]):
        part = places[a:b]
        rows = sorted({j - a for j in last if a <= j < b} | {j - a for j in batch["extra_rows"] if a <= j < b})
        steps.append(([p[0] for p in part], [p[1] for p in part], [p[2] for p in part], rows))
    at = len(order)
    for _ in range(2):
        seqs = list(range(len(lengths)))
        steps.append(([tokens[at + s] for s in seqs], seqs, [pos[s] for s in seqs], seqs))
        at += len(lengths)
        pos = [p + 1 for p in pos]
    return steps


def run_batch(engine, steps) -> list:
    """Run batch steps on fresh sequences of the engine's paged cache; each step's logits."""
    kv = engine.kv
    seqs = [kv.new_sequence() for _ in range(max(max(s[1]) for s in steps) + 1)]
    out = []
    for tokens, idx, positions, rows in steps:
        for i in idx:
            kv.reserve(seqs[i], 1)
        out.append(engine.step(tokens, [seqs[i] for i in idx], positions, rows))
    for s in seqs:
        kv.free(s)
    return out


def check_compiled(case) -> None:
    with tempfile.TemporaryDirectory(dir=_scratch_dir()) as tmp:
        path = write_model(os.path.join(tmp, "m.gguf"), case["config"], case["types"], case["seed"])
        for got, want, what in run_case(path, case):
            assert got.shape == want.shape, f"{what}: shapes {got.shape} vs {want.shape} ({describe(case)})"
            if not np.array_equal(got, want):
                diff = int(np.sum(got != want))
                raise AssertionError(f"{what}: fused and unfused differ in {diff} of {got.size} values, "
                                     f"max |diff| {float(np.max(np.abs(got.astype(np.float64) - want))):.3g} "
                                     f"({describe(case)})")


def _scratch_dir():
    """Model files go to memory where the machine has a tmpfs (they are written per example)."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.compiled", description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (reproduce a run)")
    parser.add_argument("--max-width", type=int, default=1024)
    parser.add_argument("--progress", type=int, default=500, help="print a line every N examples (0: never)")
    args = parser.parse_args(argv)
    done, t0 = [0], time.time()

    def check(case):
        check_compiled(case)
        done[0] += 1
        if args.progress and done[0] % args.progress == 0:
            print(f"compiled: {done[0]} examples ok ({time.time() - t0:.0f}s)", flush=True)
    test = settings(max_examples=args.examples, deadline=None, print_blob=True, database=None,
                    suppress_health_check=list(HealthCheck))(given(compiled_cases(args.max_width))(check))
    if args.seed is not None:
        from hypothesis import seed
        test = seed(args.seed)(test)
    try:
        test()
    except Exception as e:      # hypothesis has printed the falsifying example
        print(f"compiled: FAILED after {done[0]} examples, {time.time() - t0:.0f}s ({type(e).__name__}: {e})",
              flush=True)
        return 1
    print(f"compiled: {done[0]} examples ok ({time.time() - t0:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
