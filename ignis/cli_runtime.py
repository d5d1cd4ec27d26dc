"""Compiler and runtime subcommands of `ignis`: graph, plan, run, chat, bench, serve, perplexity."""
import json
import sys
import time

from ignis.errors import IgnisError


def _model_path(args) -> str:
    from ignis.cli import _model_path as resolve
    return resolve(args)


def _config(path):
    from ignis.gguf import GGUFFile
    from ignis.models import config_from_file
    with GGUFFile(path) as gguf:
        return config_from_file(gguf)


def _positive(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise_arg(f"{name} must be a positive integer, got {text!r}")
        return value
    return parse


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise_arg(f"expected a non-negative integer, got {text!r}")
    return value


def raise_arg(message):
    import argparse
    raise argparse.ArgumentTypeError(message)


# -- compiler views --------------------------------------------------------------------------

def cmd_graph(args) -> int:
    from ignis.ir import format_graph, to_dot
    from ignis.models import build_graph
    from ignis.passes import run_pipeline
    config = _config(_model_path(args))
    graph = build_graph(config, args.tokens)
    passes = [] if args.no_fuse else (args.passes.split(",") if args.passes else None)
    try:
        fused, reports = run_pipeline(graph, passes)
    except ValueError as e:
        raise IgnisError(str(e)) from None
    if args.dot:
        with open(args.dot, "w") as f:
            f.write(to_dot(fused))
    if args.json:
        print(json.dumps({"ops": {"unfused": len(graph), "fused": len(fused)},
                          "passes": [{"name": r.name, "ops_after": r.ops_after, "rewrites": r.rewrites}
                                     for r in reports]}))
        return 0
    if args.print:
        print(format_graph(fused))
        print()
    print(f"T={args.tokens}: {len(graph)} ops unfused")
    _print_kinds(graph.op_counts())
    for r in reports:
        print(f"after {r.name:18s} {r.ops_after:4d} ops ({r.rewrites} rewrites)")
    print(f"final: {len(fused)} ops")
    _print_kinds(fused.op_counts())
    if args.dot:
        print(f"wrote {args.dot}")
    return 0


def _print_kinds(counts: dict) -> None:
    for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"    {kind:16s} {n:4d}")


def cmd_plan(args) -> int:
    from ignis.models import build_graph
    from ignis.passes import plan_memory, plan_svg, run_pipeline
    config = _config(_model_path(args))
    fused, _ = run_pipeline(build_graph(config, args.tokens))
    plan = plan_memory(fused)
    report = plan.report()
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(plan_svg(plan))
    if args.json:
        print(json.dumps({k: report[k] for k in ("values", "naive_bytes", "buffers", "planned_bytes",
                                                  "lower_bound_bytes")}))
        return 0
    print(f"memory plan for T={args.tokens} ({len(fused)} ops, fully fused)")
    print(f"  activation values     {report['values']:>14,d}")
    print(f"  naive bytes           {report['naive_bytes']:>14,d}  (one buffer per value)")
    print(f"  distinct buffers      {report['buffers']:>14,d}")
    print(f"  planned bytes         {report['planned_bytes']:>14,d}  (one arena, {report['strategy']})")
    print(f"  lower bound           {report['lower_bound_bytes']:>14,d}  (peak simultaneously live)")
    print(f"  reduction vs naive    {report['reduction'] * 100:>13.1f}%")
    print(f"  inputs+logits (own)   {report['io_bytes']:>14,d}")
    if args.svg:
        print(f"wrote {args.svg}")
    return 0


# -- running -----------------------------------------------------------------------------

def _load(args):
    import ignis
    return ignis.load(_model_path(args), n_ctx=args.ctx, threads=args.threads)


def _sampling(args) -> dict:
    return dict(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repeat_penalty=args.repeat_penalty, presence_penalty=args.presence_penalty,
                frequency_penalty=args.frequency_penalty, seed=args.seed)


def _constraint(args) -> dict:
    """json_schema / regex / grammar keyword arguments from the structured-output flags
    (text given inline, or a file named by the flag: llama.cpp's --json-schema takes text,
    its --grammar-file a file; ignis takes either where that is unambiguous)."""
    import os
    if args.json_schema_file is not None:
        return {"json_schema": _read_text(args.json_schema_file, "--json-schema-file")}
    if args.json_schema is not None:
        text = args.json_schema
        if not text.lstrip().startswith(("{", "true", "false")) and os.path.isfile(text):
            text = _read_text(text, "--json-schema")
        return {"json_schema": text}
    if args.grammar_file is not None:
        return {"grammar": _read_text(args.grammar_file, "--grammar-file", strip_newline=False)}
    if args.grammar is not None:
        text = args.grammar
        if "\n" not in text and os.path.isfile(text):
            text = _read_text(text, "--grammar", strip_newline=False)
        return {"grammar": text}
    if args.regex is not None:
        return {"regex": args.regex}
    return {}


def _print_timings(result, load_seconds=None) -> None:
    def line(name, n, secs):
        head = f"ignis: {name:18s} = {1000 * secs:10.2f} ms / {n:5d} tokens"
        if n == 0 or secs <= 0:         # no rate to speak of (e.g. -n 0): no "inf tokens per second"
            return head + "\n"
        return f"{head} ({1000 * secs / n:8.2f} ms per token, {n / secs:8.2f} tokens per second)\n"
    if load_seconds is not None:
        sys.stderr.write(f"ignis: {'load time':18s} = {1000 * load_seconds:10.2f} ms\n")
    sys.stderr.write(line("prompt eval time", result.prompt_tokens, result.prompt_seconds))
    sys.stderr.write(line("eval time", result.decode_tokens, result.decode_seconds))


def report_context_limit(result, max_tokens: int, n_ctx: int) -> None:
    """One line on stderr when generation ended because the context was full (before the -n
    budget and any stop), so a cut-off text is not mistaken for a finished one."""
    if result.finish_reason == "length" and len(result.tokens) < max_tokens:
        sys.stderr.write(f"ignis: generation stopped at the context limit of {n_ctx} tokens after "
                         f"{len(result.tokens)} tokens (raise --ctx-size)\n")


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v", "0": "\0", "?": "?"}


def _unescape(text: str) -> str:
    """-e: \\n \\t \\r \\\\ \\" \\' \\a \\b \\f \\v \\0 \\? and \\xHH, as llama.cpp does; any other
    backslash is kept as it is."""
    def one(m):
        body = m.group(1)
        if body[0] == "x":
            return chr(int(body[1:], 16))
        return _ESCAPES[body]
    import re
    return re.sub(r"\\(x[0-9a-fA-F]{2}|[ntr\\\"'abfv0?])", one, text)


def _read_text(path: str, what: str, strip_newline: bool = True, errors: str = "strict") -> str:
    """The text of a file ('-': stdin), less one trailing newline (as llama.cpp's -f) unless
    strip_newline is false. Bytes that are not UTF-8: a one-line error, or with
    errors="replace" (a corpus to score) U+FFFD."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8", errors=errors) as f:
                text = f.read()
    except UnicodeDecodeError as e:
        raise IgnisError(f"{what} {'(stdin)' if path == '-' else path}: not UTF-8 text ({e.reason} at byte "
                         f"{e.start})") from None
    return text[:-1] if strip_newline and text.endswith("\n") else text


def _is_model_name(word: str) -> bool:
    """An existing .gguf file or a catalogue name (NAME or NAME:q8_0)."""
    import os
    from ignis.hub import lookup
    if word.lower().endswith(".gguf") and os.path.isfile(word):
        return True
    try:
        lookup(word)
    except IgnisError:
        return False
    return True


def _run_usage_error(message: str) -> int:
    sys.stderr.write(f"ignis run: error: {message} (see 'ignis run --help')\n")
    return 2


def _run_prompt(args):
    """Sort out [MODEL] [PROMPT], -m, -p and -f: sets args.model, returns the prompt text, or an
    error message (str) and None."""
    words = list(args.words or [])
    given = [flag for flag, value in (("-p", args.prompt), ("-f", args.file)) if value is not None]
    if len(given) > 1:
        return "give the prompt once: -p and -f both given", None
    if len(words) > 2:
        return f"at most two positional arguments (MODEL PROMPT), got {len(words)}", None
    if len(words) == 2 or (len(words) == 1 and (given or _is_model_name(words[0]))):
        if args.model:
            return f"give the model once: -m {args.model!r} and {words[0]!r}", None
        args.model = words.pop(0)
    if words:
        if given:
            return f"give the prompt once: {given[0]} and a positional PROMPT", None
        return None, words[0]
    if args.file is not None:
        return None, _read_text(args.file, "-f")
    if args.prompt == "-":
        return None, _read_text("-", "-p -")
    if args.prompt is None:
        return "the following arguments are required: -p/--prompt (or -f FILE, or PROMPT)", None
    return None, args.prompt


def cmd_run(args) -> int:
    error, prompt = _run_prompt(args)
    if error:
        return _run_usage_error(error)
    if args.escape:
        prompt = _unescape(prompt)
    t0 = time.perf_counter()
    model = _load(args)
    load_seconds = time.perf_counter() - t0
    shown = prompt
    if args.chat:
        prompt = model.render_chat([{"role": "user", "content": prompt}])
    pieces = model.generate(prompt, max_tokens=args.n_predict, stream=True, ignore_eos=args.ignore_eos,
                            stop=args.stop or None, **_sampling(args), **_constraint(args))
    if args.echo:
        sys.stdout.write(shown)
    try:
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:           # Ctrl-C: end the line, then main() says "interrupted", exit 130
        sys.stdout.write("\n")
        sys.stdout.flush()
        raise
    sys.stdout.write("\n")
    sys.stdout.flush()
    if model.last_result is not None:
        report_context_limit(model.last_result, args.n_predict, model.n_ctx)
        _print_timings(model.last_result, load_seconds)
    return 0


def cmd_chat(args) -> int:
    from ignis.cli_chat import run_chat
    model = _load(args)
    constraint = _constraint(args)
    if constraint:
        model.constraint(**constraint)      # a bad schema, regex or grammar: one line before the chat starts
    return run_chat(model, _sampling(args), args.n_predict, args.system, constraint)


def cmd_bench(args) -> int:
    if args.batch is not None:
        return _bench_batched(args)
    from ignis.runtime.bench import run_bench
    path = _model_path(args)
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

    report = run_batch_bench(_model_path(args), args.batch, n_prompt=n_prompt, n_gen=n_gen,
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


def _batch_sizes(text):
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise_arg(f"--batch must be a comma-separated list of positive integers, got {text!r}")
    return sizes


def cmd_serve(args) -> int:
    """`ignis serve`: the OpenAI-compatible HTTP server (ignis.serve); with --ray, N replicas
    of it on Ray Serve (ignis.serve.ray)."""
    if args.replicas is not None and not args.ray:
        sys.stderr.write("ignis serve: error: --replicas needs --ray (see 'ignis serve --help')\n")
        return 2
    if args.ray:
        try:
            from ignis.serve import ray as ray_serve
        except ImportError as exc:
            raise IgnisError("ignis serve --ray needs the ray extra: pip install 'ignis[ray]'"
                             f" ({exc.name} is missing)") from None
        return ray_serve.run(_model_path(args), replicas=args.replicas or 2, host=args.host,
                             port=args.port, n_ctx=args.ctx,
                             threads=args.threads, max_batch=args.parallel, api_key=args.api_key,
                             max_queue=args.max_queue)
    try:
        from ignis.serve import serve
    except ImportError as exc:
        raise IgnisError(f"ignis serve needs the serve extra ({exc.name} is missing): "
                         "pip install 'ignis[serve]'") from None
    return serve(_model_path(args), host=args.host, port=args.port, n_ctx=args.ctx, threads=args.threads,
                 max_batch=args.parallel, api_key=args.api_key, max_queue=args.max_queue,
                 shutdown_timeout=args.shutdown_timeout, quiet=args.quiet)


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise_arg(f"--shutdown-timeout must be a non-negative number of seconds, got {text!r}")
    return value


def _port(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise_arg(f"--port must be an integer in [0, 65535], got {text!r}")
    return value


# -- wiring ----------------------------------------------------------------------------------

def _run_flags(p, n_predict: int = 128, n_help: str = "tokens to generate") -> None:
    p.add_argument("-n", "--n-predict", type=_non_negative_int, default=n_predict,
                   help=f"{n_help} (default {n_predict})")
    p.add_argument("--temp", type=float, default=0.8, help="temperature; 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=_non_negative_int, default=40, help="top-k, 0 = off (default 40)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    p.add_argument("--min-p", type=float, default=0.05, help="min-p (default 0.05)")
    p.add_argument("--repeat-penalty", type=float, default=1.0, help="repetition penalty (default 1.0 = off)")
    p.add_argument("--presence-penalty", type=float, default=0.0,
                   help="subtract this from the logit of each token in the recent context (default 0 = off)")
    p.add_argument("--frequency-penalty", type=float, default=0.0,
                   help="subtract this times its count in the recent context from a token's logit (default 0 = off)")
    p.add_argument("-s", "--seed", type=int, default=None, help="RNG seed (same seed, same output)")
    p.add_argument("-t", "--threads", type=_positive("threads"), default=None, help="threads (default: all cores)")
    p.add_argument("-c", "--ctx-size", "--ctx", dest="ctx", type=_positive("context size"), default=None,
                   help="context size (default: model's, at most 4096)")


def _constraint_flags(p) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-j", "--json-schema", metavar="SCHEMA|FILE", default=None,
                       help="constrain the output to this JSON Schema (JSON text, or a file holding it)")
    group.add_argument("--json-schema-file", metavar="FILE", default=None, help="the JSON Schema, from FILE")
    group.add_argument("--regex", metavar="RE", default=None, help="the whole output matches this regex")
    group.add_argument("--grammar", metavar="GRAMMAR|FILE", default=None,
                       help="constrain the output to a Lark or GBNF grammar (text, or a file holding it)")
    group.add_argument("--grammar-file", metavar="FILE", default=None, help="the grammar, from FILE")


def register(command, model_flag) -> None:
    p = command("graph", cmd_graph, "show the SSA graph and what each pass does to it")
    model_flag(p)
    p.add_argument("--tokens", type=_positive("--tokens"), default=1, help="tokens per step (1 = decode)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--no-fuse", action="store_true", help="run no pass")
    group.add_argument("--passes", help="comma-separated passes to run, in order")
    p.add_argument("--dot", metavar="FILE", help="write the final graph as Graphviz DOT")
    p.add_argument("--print", action="store_true", help="print the final graph, one op per line")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("plan", cmd_plan, "show the activation memory plan of the fused graph")
    model_flag(p)
    p.add_argument("--tokens", type=_positive("--tokens"), default=1, help="tokens per step (1 = decode)")
    p.add_argument("--svg", metavar="FILE", help="draw the plan (x: program point, y: arena offset)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("run", cmd_run, "complete a prompt, streaming to stdout")
    p.usage = "%(prog)s [MODEL] [PROMPT] [-m MODEL] [-p PROMPT | -f FILE] [options]"
    p.epilog = ("Positional arguments: two are MODEL PROMPT. One is the PROMPT, unless -p/-f gives the prompt "
                "or it names an existing .gguf file or a catalogue model (then it is the MODEL). "
                "Keep positionals together (not split by flags).")
    p.add_argument("words", nargs="*", metavar="[MODEL] [PROMPT]",
                   help="a GGUF file or model name, then the prompt (see below)")
    model_flag(p)
    p.add_argument("-p", "--prompt", default=None,
                   help="the prompt (special tokens like <|im_start|> are parsed); '-' reads stdin")
    p.add_argument("-f", "--file", metavar="FILE", default=None, help="read the prompt from FILE")
    p.add_argument("-e", "--escape", action="store_true",
                   help="process escapes in the prompt (\\n \\t \\r \\\\ \\\" \\' \\xHH ...), as llama.cpp")
    _run_flags(p)
    _constraint_flags(p)
    p.add_argument("--stop", "-r", "--reverse-prompt", dest="stop", action="append",
                   help="stop string (repeatable)")
    p.add_argument("--ignore-eos", action="store_true", help="do not stop at end-of-generation tokens")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    p.add_argument("--echo", action="store_true", help="print the prompt before the completion")

    p = command("chat", cmd_chat, "interactive chat with the model's chat template")
    p.epilog = ("In the chat: /help lists the commands (/set temperature 0.7, /set system TEXT, /clear, /bye, "
                "...); a line starting with \"\"\" opens a multi-line message, one ending with \"\"\" closes it, "
                "and a paste is one message. When the conversation outgrows the context, its oldest turns are "
                "dropped (the system prompt stays).")
    model_flag(p)
    _run_flags(p, n_predict=512, n_help="most tokens per reply; a reply also ends at the context limit, "
                                        "and /set max_tokens N changes it")
    _constraint_flags(p)
    p.add_argument("--system", help="system prompt")

    p = command("bench", cmd_bench, "measure prompt processing and generation speed")
    model_flag(p)
    p.add_argument("-p", "--n-prompt", type=_positive("-p"), default=None,
                   help="prompt tokens (default 512; with --batch, 128 per sequence)")
    p.add_argument("-n", "--n-gen", type=_positive("-n"), default=None,
                   help="generated tokens (default 128; with --batch, 64 per sequence)")
    p.add_argument("-t", "--threads", type=_positive("threads"), default=None, help="threads (default: all cores)")
    p.add_argument("-r", "--repetitions", type=_positive("-r"), default=3, help="repetitions (default 3)")
    p.add_argument("--batch", type=_batch_sizes, default=None, metavar="B1,B2,...",
                   help="batched decoding instead: B sequences at once through the scheduler, for each B "
                        "(e.g. 1,2,4,8,16); aggregate decode and prefill tok/s")
    p.add_argument("--step-tokens", type=_positive("--step-tokens"), default=512,
                   help="with --batch: the scheduler's tokens per step (default 512)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("serve", cmd_serve, "OpenAI-compatible HTTP server (continuous batching)")
    model_flag(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    p.add_argument("-np", "--parallel", type=_positive("--parallel"), default=8,
                   help="sequences decoded at once, and the largest n (default 8)")
    p.add_argument("-c", "--ctx-size", "--ctx", dest="ctx", type=_positive("context size"), default=None,
                   help="context size (default: model's, at most 4096)")
    p.add_argument("-t", "--threads", type=_positive("threads"), default=None, help="threads (default: all cores)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (not on /health)")
    p.add_argument("--max-queue", type=_non_negative_int, default=None,
                   help="answer 503 beyond this many waiting sequences (a request counts n per prompt; "
                        "default: no limit)")
    p.add_argument("--shutdown-timeout", type=_seconds, default=10.0,
                   help="on SIGTERM / Ctrl-C, seconds that requests in flight have to finish before they "
                        "are cancelled (default 10)")
    p.add_argument("--quiet", action="store_true", help="no access log line per request")
    p.add_argument("--ray", action="store_true",
                   help="serve replicas of the app on Ray Serve (the ray extra; RAY_ADDRESS picks a cluster, "
                        "default: a local Ray instance)")
    p.add_argument("--replicas", type=_positive("--replicas"), default=None,
                   help="with --ray: replicas, each loading the model (default 2)")

    _register_perplexity(command, model_flag)


# -- `ignis perplexity` -----------------------------------------------------------------------

def cmd_perplexity(args) -> int:
    """`ignis perplexity`: the running PPL per chunk, then the estimate with its error."""
    import ignis
    from ignis.cli import _model_path
    from ignis.runtime.perplexity import chunk_count, perplexity, text_ids
    text = _read_text(args.file, "-f", strip_newline=False, errors="replace")
    model = ignis.load(_model_path(args), n_ctx=args.ctx, threads=args.threads)
    try:
        ids = text_ids(model, text)
        n_chunks = chunk_count(len(ids), args.ctx, args.chunks)
        sys.stderr.write(f"ignis: {len(ids)} tokens, {n_chunks} chunks of {args.ctx} "
                         f"(scoring the last {args.ctx - 1 - args.ctx // 2} of each)\n")
        t0 = time.perf_counter()

        def show(k, running):
            sys.stdout.write(f"{',' if k > 1 else ''}[{k}]{running:.4f}")
            sys.stdout.flush()

        try:
            ppl, err, n, _ = perplexity(model, ids, args.ctx, max_chunks=args.chunks, on_chunk=show)
        finally:
            sys.stdout.write("\n")
        secs = time.perf_counter() - t0
        print(f"Final estimate: PPL = {ppl:.4f} +/- {err:.5f}")
        print(f"scored {n} tokens in {n_chunks} chunks of {args.ctx}")
        sys.stderr.write(f"ignis: {secs:.2f} s, {n_chunks * args.ctx / secs:.1f} tokens/s evaluated\n")
    finally:
        model.close()
    return 0


def _register_perplexity(command, model_flag) -> None:
    """`ignis perplexity` (llama-perplexity's form)."""
    p = command("perplexity", cmd_perplexity,
                "perplexity of a text file, in chunks of -c tokens (llama-perplexity's method)")
    model_flag(p)
    p.add_argument("-f", "--file", required=True, help="the text file ('-' reads stdin)")
    p.add_argument("-c", "--ctx-size", "--ctx", dest="ctx", type=_positive("context size"), default=512,
                   help="tokens per chunk; the second half of each chunk is scored (default 512)")
    p.add_argument("-b", "--batch-size", type=_positive("batch size"), default=None,
                   help="accepted for llama-perplexity compatibility and ignored: ignis evaluates each "
                        "chunk in one call, splitting it internally")
    p.add_argument("-t", "--threads", type=_positive("threads"), default=None, help="threads (default: all cores)")
    p.add_argument("--chunks", type=_positive("--chunks"), default=None,
                   help="score at most this many chunks (default: all)")
