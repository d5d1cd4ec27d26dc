"""Perplexity: ignis against llama.cpp (llama-cpp-python) on the same GGUF and the same tokens.

    python bench/perplexity.py                         # Q8_0 copy of the default model, ignis/_neon.h, c=512
    python bench/perplexity.py --original              # the original file
    python bench/perplexity.py -m FILE -f TEXT -c 512 -t 2 --chunks 8

The text is tokenized once by ignis and both engines score the same chunks (llama-perplexity's
method: non-overlapping chunks of c tokens, each from an empty context, the NLL of the second
half), so only the forward passes differ. Prints both PPLs and their ratio."""
import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import ignis  # noqa: E402
from ignis.runtime.perplexity import perplexity, text_ids  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def llama_cpp_perplexity(path, ids, c, n_chunks, threads, bos=None):
    """(ppl, err, n) of llama.cpp on the given chunks (same scoring as ignis: with a
    vocabulary that wants BOS, each chunk's first token is BOS, as llama-perplexity does)."""
    from llama_cpp import Llama
    llm = Llama(model_path=path, logits_all=True, n_ctx=c, n_batch=c, n_threads=threads, verbose=False)
    nll = []
    try:
        for k in range(n_chunks):
            chunk = list(ids[k * c:(k + 1) * c])
            if bos is not None:
                chunk[0] = bos
            llm.reset()
            llm.eval(chunk)
            x = np.asarray(llm.scores[:c], dtype=np.float64)[c // 2:c - 1]
            peak = x.max(axis=1, keepdims=True)
            lse = (peak + np.log(np.exp(x - peak).sum(axis=1, keepdims=True)))[:, 0]
            nll.extend(lse - x[np.arange(len(x)), chunk[c // 2 + 1:]])
            sys.stderr.write(f"{',' if k else ''}[{k + 1}]{math.exp(float(np.mean(nll))):.4f}")
            sys.stderr.flush()
    finally:
        sys.stderr.write("\n")
        llm.close()
    nll = np.asarray(nll)
    ppl = math.exp(nll.mean())
    return ppl, ppl * nll.std() / math.sqrt(len(nll) - 1), len(nll)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", help="GGUF file (default: the default model's Q8_0 copy)")
    ap.add_argument("--original", action="store_true", help="the default model's original file instead")
    ap.add_argument("-f", "--file", action="append",
                    help="text file (repeatable: concatenated; default ignis/_neon.h)")
    ap.add_argument("-c", "--ctx", type=int, default=512, help="tokens per chunk (default 512)")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count(), help="threads for both engines")
    ap.add_argument("--chunks", type=int, default=None, help="at most this many chunks (default: all)")
    args = ap.parse_args(argv)
    from ignis.hub import pull, pull_q8_0
    path = args.model or str(pull() if args.original else pull_q8_0())
    files = args.file or [os.path.join(ROOT, "ignis", "_neon.h")]
    text = "".join(open(f, encoding="utf-8", errors="replace").read() for f in files)

    t0 = time.perf_counter()
    with ignis.load(path, n_ctx=args.ctx, threads=args.threads) as model:
        ids = text_ids(model, text)
        tok = model.tokenizer
        bos = tok.bos_id if tok.add_bos else None
        show = lambda k, p: (sys.stderr.write(f"{',' if k > 1 else ''}[{k}]{p:.4f}"), sys.stderr.flush())  # noqa: E731
        ppl, err, n, per_chunk = perplexity(model, ids, args.ctx, max_chunks=args.chunks, on_chunk=show)
        sys.stderr.write("\n")
    t_ignis = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs, their_err, their_n = llama_cpp_perplexity(path, ids, args.ctx, len(per_chunk), args.threads, bos)
    t_llama = time.perf_counter() - t0
    assert their_n == n
    print(f"model: {os.path.basename(path)}; text: {', '.join(os.path.relpath(f) for f in files)}; "
          f"{len(ids)} tokens, {len(per_chunk)} chunks of {args.ctx}, {n} scored, {args.threads} threads")
    print(f"ignis     PPL = {ppl:.4f} +/- {err:.4f}  ({t_ignis:.1f} s)")
    print(f"llama.cpp PPL = {theirs:.4f} +/- {their_err:.4f}  ({t_llama:.1f} s)")
    print(f"ratio ignis / llama.cpp = {ppl / theirs:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
