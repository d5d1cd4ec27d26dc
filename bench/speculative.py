"""Speculative decoding, timed from outside the engines: plain ignis, ignis with n-gram
prompt lookup (exact: the text must equal plain decoding's), and llama.cpp's prompt lookup
(llama-cpp-python's LlamaPromptLookupDecoding) on the same file and threads, on three
workloads: a code edit (a real source file given back with a rename), an input-grounded
answer (quote passages of a given document) and an open-ended prompt. Prints decode tok/s,
ignis' drafted/accepted tokens, the speed-up and whether the texts are identical.

    python bench/speculative.py [-m MODEL] [-t THREADS] [-n 256] [--no-llama]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ignis  # noqa: E402
from ignis.runtime.bench import cpu_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def workloads() -> dict:
    with open(os.path.join(ROOT, "ignis", "runtime", "speculative.py"), encoding="utf-8") as f:
        source = f.read()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        doc = f.read()[:6000]
    return {
        "code edit": ("Rename the class NgramDrafter to PromptLookup everywhere in this file and give the whole "
                      "file back, unchanged otherwise:\n\n```python\n" + source + "```"),
        "grounded": "Quote, word for word, the two paragraphs of this document that talk about models:\n\n" + doc,
        "open-ended": "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    }


def ignis_run(model, prompt: str, n: int, speculative) -> tuple:
    messages = [{"role": "user", "content": prompt}]
    t0, first = time.perf_counter(), None
    pieces = []
    for piece in model.chat(messages, max_tokens=n, temperature=0, stream=True, speculative=speculative):
        if first is None:
            first = time.perf_counter()
        pieces.append(piece)
    end = time.perf_counter()
    r = model.last_result
    rate = (len(r.tokens) - 1) / (end - first) if first and len(r.tokens) > 1 else 0.0
    return "".join(pieces), rate, r.drafted, r.accepted


def llama_run(path: str, threads: int, prompt: str, n: int) -> float:
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
    llm = Llama(model_path=path, n_ctx=4096, n_threads=threads, verbose=False, logits_all=True,
                draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10))
    t0, first, count = time.perf_counter(), None, 0
    for _ in llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=n, temperature=0,
                                        stream=True):
        if first is None:
            first = time.perf_counter()
        count += 1
    end = time.perf_counter()
    return (count - 1) / (end - first) if first and count > 1 else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default=None, help="GGUF file or catalogue name (default model)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=256, help="tokens to generate (default 256)")
    ap.add_argument("--no-llama", action="store_true", help="skip llama.cpp's prompt lookup")
    args = ap.parse_args()
    model = ignis.load(args.model, n_ctx=4096, threads=args.threads)
    model.chat([{"role": "user", "content": "hi"}], max_tokens=4)          # compile the plans
    print(f"cpu: {cpu_model()}; {os.path.basename(model.path)}; {args.threads} threads; {args.n} tokens")
    print(f"{'workload':12s} {'plain':>8s} {'ngram':>8s} {'x':>6s} {'drafted':>8s} {'accepted':>8s} "
          f"{'same text':>9s} {'llama.cpp lookup':>16s}")
    for name, prompt in workloads().items():
        model.clear_prefix_cache()
        plain, rate0, _, _ = ignis_run(model, prompt, args.n, None)
        model.clear_prefix_cache()
        fast, rate1, drafted, accepted = ignis_run(model, prompt, args.n, "ngram")
        peer = "" if args.no_llama else f"{llama_run(model.path, args.threads, prompt, args.n):16.1f}"
        print(f"{name:12s} {rate0:8.1f} {rate1:8.1f} {rate1 / rate0 if rate0 else 0:6.2f} {drafted:8d} {accepted:8d} "
              f"{str(plain == fast):>9s} {peer}")
    model.close()


if __name__ == "__main__":
    main()
