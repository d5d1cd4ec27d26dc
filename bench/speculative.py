"""Speculative decoding, timed from outside the engines, on the same files and threads.

  lookup  the default model: plain ignis, ignis `ngram` (exact: the text must equal plain
          decoding's) and llama.cpp's prompt lookup (llama-cpp-python's
          LlamaPromptLookupDecoding), on a code edit (a real source file given back with a
          rename; greedy, and sampled at temperature 0.8 with seed 42), an input-grounded
          answer (quote passages of a given document) and an open-ended prompt.
  draft   the 1.5B (qwen2.5-coder-1.5b): plain, `ngram`, `draft` with the default 0.5B as
          the draft model and with its Q8_0 copy, on code completions and the workloads
          above; and the native llama-server with the same draft model (-md, --spec-draft-n-max
          16, --spec-draft-n-min 1), one request at a time over loopback, its own `timings`.
  batch   the 1.5B under continuous batching: B = 1, 2, 4, 8 concurrent code completions,
          plain vs ngram vs draft, aggregate tok/s.

Plain and speculative runs are interleaved (the machine is shared: its load moves), each
rate is the median over --repeat rounds. Prints decode tok/s, the speed-up over plain,
drafted/accepted tokens and whether every text equals plain decoding's.

    python bench/speculative.py [--sections lookup,draft,batch] [-t 2] [-n 256] [--repeat 2] [--no-llama]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ignis  # noqa: E402
from ignis.runtime.bench import cpu_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.expanduser("~/.cache/ignis/models")
MAIN_15B = "qwen2.5-coder-1.5b"
DRAFTS = {"q4": os.path.join(MODELS, "qwen2.5-coder-0.5b-instruct.gguf"),
          "q8": os.path.join(MODELS, "qwen2.5-coder-0.5b-instruct-q8_0.gguf")}
COMPLETIONS = {
    "quicksort": "Write a Python function quicksort(arr) that returns a new sorted list, recursively, with a "
                 "docstring. Only the code.",
    "bsearch": "Write a Python function binary_search(items, target) that returns the index of target in the "
               "sorted list items, or -1. Only the code, with a docstring.",
    "class": "Write a Python class Stack with push, pop, peek, is_empty and __len__ methods, each with a "
             "docstring. Only the code.",
}


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


SEEDED = {"temperature": 0.8, "seed": 42}     # the lookup section's sampled rows


def ignis_run(model, prompt: str, n: int, speculative, sampling=None) -> tuple:
    messages = [{"role": "user", "content": prompt}]
    first = None
    pieces = []
    for piece in model.chat(messages, max_tokens=n, stream=True, speculative=speculative,
                            **(sampling or {"temperature": 0})):
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
    first, count = None, 0
    for _ in llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=n, temperature=0,
                                        stream=True):
        if first is None:
            first = time.perf_counter()
        count += 1
    end = time.perf_counter()
    return (count - 1) / (end - first) if first and count > 1 else 0.0


# -- the native llama-server ---------------------------------------------------------------------

class LlamaServer:
    """llama.cpp's own server (built natively by /work/shared/tools/build-llama-server.sh) on a
    free loopback port; draft: -md DRAFT --spec-draft-n-max 16 --spec-draft-n-min 1."""

    def __init__(self, model: str, threads: int, draft: str | None = None):
        out = subprocess.run(["bash", "/work/shared/tools/build-llama-server.sh"], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        argv = [os.path.join(out, "llama-server"), "-m", model, "-t", str(threads), "-c", "4096", "--port",
                str(self.port), "--host", "127.0.0.1", "-np", "1", "--poll", "0"]
        if draft:
            argv += ["-md", draft, "--spec-type", "draft-simple", "--spec-draft-n-max", "16", "--spec-draft-n-min", "1",
                     "-td", str(threads),
                     "--spec-draft-poll", "0"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited: {self.proc.stderr.read()[-1500:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama-server not healthy in 120 s")
            time.sleep(0.3)

    def run(self, prompt: str, n: int) -> tuple:
        """(text, decode tok/s, drafted, accepted) from the response's own timings."""
        body = json.dumps({"messages": [{"role": "user", "content": prompt}], "max_tokens": n,
                           "temperature": 0, "cache_prompt": False}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=900) as r:
            out = json.loads(r.read())
        t = out.get("timings", {})
        self.last_timings = t
        return (out["choices"][0]["message"]["content"], t.get("predicted_per_second", 0.0),
                t.get("draft_n", 0), t.get("draft_n_accepted", 0))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- sections ------------------------------------------------------------------------------------

def section_lookup(args) -> None:
    model = ignis.load(args.model, n_ctx=4096, threads=args.threads)
    model.chat([{"role": "user", "content": "hi"}], max_tokens=4)          # compile the plans
    print(f"\n[lookup] {os.path.basename(model.path)}; {args.threads} threads; {args.n} tokens; load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'workload':12s} {'plain':>8s} {'ngram':>8s} {'x':>6s} {'drafted':>8s} {'accepted':>8s} "
          f"{'same text':>9s} {'llama.cpp lookup':>16s}")
    tasks = [(name, prompt, None) for name, prompt in workloads().items()]
    tasks.insert(1, ("edit T0.8 s42", workloads()["code edit"], SEEDED))    # sampled: the same draws
    for name, prompt, sampling in tasks:
        model.clear_prefix_cache()
        plain, rate0, _, _ = ignis_run(model, prompt, args.n, None, sampling)
        model.clear_prefix_cache()
        fast, rate1, drafted, accepted = ignis_run(model, prompt, args.n, "ngram", sampling)
        peer = "" if args.no_llama or sampling else f"{llama_run(model.path, args.threads, prompt, args.n):16.1f}"
        print(f"{name:12s} {rate0:8.1f} {rate1:8.1f} {rate1 / rate0 if rate0 else 0:6.2f} {drafted:8d} {accepted:8d} "
              f"{str(plain == fast):>9s} {peer}", flush=True)
    model.close()


def _load_15b(args):
    from ignis.runtime.draft_model import DraftModel
    model = ignis.load(args.main, n_ctx=4096, threads=args.threads)
    drafts = {name: DraftModel(model, ignis.load(path, n_ctx=model.n_ctx, threads=model.threads))
              for name, path in DRAFTS.items() if os.path.exists(path)}
    for d in drafts.values():
        model.draft = d
        model.chat([{"role": "user", "content": "hi"}], max_tokens=8, speculative="draft")   # compile the plans
    return model, drafts


def section_draft(args) -> None:
    model, drafts = _load_15b(args)
    modes = [("plain", None, None), ("ngram", "ngram", None)] + [(f"draft {k}", "draft", d)
                                                                  for k, d in drafts.items()]
    print(f"\n[draft] {os.path.basename(model.path)} + draft {', '.join(os.path.basename(DRAFTS[k]) for k in drafts)}; "
          f"{args.threads} threads; {args.n} tokens; median of {args.repeat} interleaved rounds; load "
          f"{os.getloadavg()[0]:.1f}")
    peers = {}
    if not args.no_llama:
        peers = {"llama plain": LlamaServer(model.path, args.threads),
                 "llama draft": LlamaServer(model.path, args.threads, drafts and DRAFTS[next(iter(drafts))])}
    head = f"{'workload':12s} {'plain':>7s}" + "".join(f" {name:>16s}" for name, _, _ in modes[1:])
    head += f" {'same':>5s}" + "".join(f" {name:>16s}" for name in peers)
    print(head + "   (tok/s, x plain, accepted/drafted %)")
    tasks = dict(COMPLETIONS)
    tasks.update(workloads())
    if args.workloads:
        tasks = {k: v for k, v in tasks.items() if k in args.workloads.split(",")}
    try:
        for name, prompt in tasks.items():
            rates = {m: [] for m, _, _ in modes}
            stats, texts = {}, {}
            for _ in range(args.repeat):
                for label, spec, d in modes:
                    if d is not None:
                        model.draft = d
                    model.clear_prefix_cache()
                    text, rate, drafted, accepted = ignis_run(model, prompt, args.n, spec)
                    cost = d.cost if d is not None else None
                    sys.stderr.write(f"  {name} {label}: {rate:.2f} tok/s, {accepted}/{drafted} accepted"
                                     + (f", draft step {1000 * cost.draft_step:.1f} ms, main step "
                                        f"{1000 * cost.main_step:.1f} ms" if cost and cost.main_step else "")
                                     + f", load {os.getloadavg()[0]:.1f}\n")
                    rates[label].append(rate)
                    stats[label] = (drafted, accepted)
                    texts.setdefault(label, text)
            base = statistics.median(rates["plain"])
            same = all(t == texts["plain"] for t in texts.values())
            line = f"{name:12s} {base:7.1f}"
            for label, _, _ in modes[1:]:
                r = statistics.median(rates[label])
                d, a = stats[label]
                line += f" {r:5.1f} {r / base:4.2f}x {100 * a / d if d else 0:3.0f}%"
            line += f" {str(same):>5s}"
            for label, server in peers.items():
                _, r, d, a = server.run(prompt, args.n)
                line += f" {r:5.1f} {100 * a / d if d else 0:9.0f}%" if d else f" {r:5.1f} {'':>10s}"
            print(line, flush=True)
    finally:
        for server in peers.values():
            server.close()
        model.close()


def _batch_run(model, prompts: list, n: int, spec) -> tuple:
    """B requests at once in the model's scheduler: aggregate tok/s, texts, drafted, accepted."""
    sched = model._default_scheduler()
    t0 = time.perf_counter()
    handles = [sched.submit(model.request(model.render_chat([{"role": "user", "content": p}]), max_tokens=n,
                                          temperature=0, speculative=spec)) for p in prompts]
    texts = [h.text() for h in handles]
    seconds = time.perf_counter() - t0
    tokens = sum(len(h.result.tokens) for h in handles)
    return tokens / seconds, texts, sum(h.result.drafted for h in handles), sum(h.result.accepted for h in handles)


def section_batch(args) -> None:
    model, drafts = _load_15b(args)
    if "q4" in drafts:
        model.draft = drafts["q4"]
    base = list(COMPLETIONS.values()) + [workloads()["open-ended"]]
    base += [p.replace("Python", "JavaScript") for p in COMPLETIONS.values()] + ["Explain what a hash map is."]
    modes = [("plain", None), ("ngram", "ngram"), ("draft", "draft")]
    print(f"\n[batch] {os.path.basename(model.path)} + draft q4; {args.threads} threads; {args.batch_n} tokens "
          f"each; aggregate tok/s, median of {args.repeat} interleaved rounds (prompt time included); load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'B':>3s} {'plain':>7s} {'ngram':>13s} {'draft':>13s} {'same':>5s}")
    try:
        for b in (1, 2, 4, 8):
            prompts = base[:b]
            rates = {m: [] for m, _ in modes}
            texts = {}
            for _ in range(args.repeat):
                for label, spec in modes:
                    model.clear_prefix_cache()
                    rate, out, _, _ = _batch_run(model, prompts, args.batch_n, spec)
                    rates[label].append(rate)
                    texts.setdefault(label, out)
            p = statistics.median(rates["plain"])
            line = f"{b:3d} {p:7.1f}"
            for label, _ in modes[1:]:
                r = statistics.median(rates[label])
                line += f" {r:6.1f} {r / p:4.2f}x"
            print(line + f" {str(all(t == texts['plain'] for t in texts.values())):>5s}", flush=True)
    finally:
        model.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default=None, help="lookup: GGUF file or catalogue name (default model)")
    ap.add_argument("--main", default=MAIN_15B, help=f"draft and batch: the main model (default {MAIN_15B})")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=256, help="tokens to generate (default 256)")
    ap.add_argument("--batch-n", type=int, default=96, help="batch: tokens per request (default 96)")
    ap.add_argument("--repeat", type=int, default=2, help="draft and batch: interleaved rounds (default 2)")
    ap.add_argument("--sections", default="lookup,draft,batch")
    ap.add_argument("--workloads", default=None, help="draft: a comma-separated subset of "
                    f"{', '.join(list(COMPLETIONS) + ['code edit', 'grounded', 'open-ended'])}")
    ap.add_argument("--no-llama", action="store_true", help="skip llama.cpp")
    args = ap.parse_args()
    print(f"cpu: {cpu_model()}; {os.cpu_count()} cores; load average {os.getloadavg()}")
    sections = {"lookup": section_lookup, "draft": section_draft, "batch": section_batch}
    for name in args.sections.split(","):
        sections[name.strip()](args)


if __name__ == "__main__":
    main()
