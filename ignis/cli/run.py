"""`ignis run`: complete one prompt, streaming to stdout, with llama.cpp's timings on stderr."""
import sys
import time

from ignis.cli.common import (constraint, constraint_flags, load, model_flag, read_text, report_context_limit,
                              sampling, sampling_flags, spec_error, unescape, usage_error)
from ignis.errors import IgnisError

EPILOG = ("Positional arguments: two are MODEL PROMPT. One is the PROMPT, unless -p/-f gives the prompt "
          "or it names an existing .gguf file or a catalogue model (then it is the MODEL). "
          "Keep positionals together (not split by flags).")


def run_args(p) -> None:
    p.usage = "%(prog)s [MODEL] [PROMPT] [-m MODEL] [-p PROMPT | -f FILE] [options]"
    p.epilog = EPILOG
    p.add_argument("words", nargs="*", metavar="[MODEL] [PROMPT]",
                   help="a GGUF file or model name, then the prompt (see below)")
    model_flag(p)
    p.add_argument("-p", "--prompt", default=None,
                   help="the prompt (special tokens like <|im_start|> are parsed); '-' reads stdin")
    p.add_argument("-f", "--file", metavar="FILE", default=None, help="read the prompt from FILE")
    p.add_argument("-e", "--escape", action="store_true",
                   help="process escapes in the prompt (\\n \\t \\r \\\\ \\\" \\' \\xHH ...), as llama.cpp")
    sampling_flags(p)
    constraint_flags(p)
    p.add_argument("--stop", "-r", "--reverse-prompt", dest="stop", action="append",
                   help="stop string (repeatable)")
    p.add_argument("--ignore-eos", action="store_true", help="do not stop at end-of-generation tokens")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    p.add_argument("--echo", action="store_true", help="print the prompt before the completion")


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


def _looks_like_model(word: str) -> bool:
    """One word with a ':' (ollama's NAME:TAG) or ending in .gguf: meant as a model, not a prompt."""
    return " " not in word and (":" in word or word.lower().endswith(".gguf"))


def _not_a_model(word: str) -> str:
    from ignis.hub import CATALOGUE
    return (f"{word!r} is not a model ignis knows: give a .gguf file or one of {', '.join(CATALOGUE)} "
            f"(add :q8_0 for the Q8_0 requantization)")


def _run_prompt(args):
    """Sort out [MODEL] [PROMPT], -m, -p and -f: sets args.model, returns the prompt text, or an
    error message (str) and None."""
    words = list(args.words or [])
    given = [flag for flag, value in (("-p", args.prompt), ("-f", args.file)) if value is not None]
    if len(given) > 1:
        return "give the prompt once: -p and -f both given", None
    if len(words) > 2:
        return f"at most two positional arguments (MODEL PROMPT), got {len(words)}", None
    if words and not _is_model_name(words[0]) and _looks_like_model(words[0]) and (len(words) == 2 or not given):
        return _not_a_model(words[0]), None
    if len(words) == 2 or (len(words) == 1 and (given or _is_model_name(words[0]))):
        if args.model:
            return f"give the model once: -m {args.model!r} and {words[0]!r}", None
        args.model = words.pop(0)
    if words:
        if given:
            return f"give the prompt once: {given[0]} and a positional PROMPT", None
        return None, words[0]
    if args.file is not None:
        return None, read_text(args.file, "-f")
    if args.prompt == "-":
        return None, read_text("-", "-p -")
    if args.prompt is None:
        chat = f"ignis chat -m {args.model}" if args.model else "ignis chat"
        return ("no prompt: give one as PROMPT, with -p/--prompt or with -f FILE; to talk with the model, "
                f"use '{chat}'"), None
    return None, args.prompt


def print_timings(result, load_seconds=None) -> None:
    def line(name, n, secs):
        head = f"ignis: {name:18s} = {1000 * secs:10.2f} ms / {n:5d} tokens"
        if n == 0 or secs <= 0:         # no rate to speak of (e.g. -n 0): no "inf tokens per second"
            return head + "\n"
        return f"{head} ({1000 * secs / n:8.2f} ms per token, {n / secs:8.2f} tokens per second)\n"
    if load_seconds is not None:
        sys.stderr.write(f"ignis: {'load time':18s} = {1000 * load_seconds:10.2f} ms\n")
    sys.stderr.write(line("prompt eval time", result.prompt_tokens, result.prompt_seconds))
    sys.stderr.write(line("eval time", result.decode_tokens, result.decode_seconds))
    if result.drafted:
        sys.stderr.write(f"ignis: {'speculative':18s} = {result.drafted} drafted, {result.accepted} accepted "
                         f"({100 * result.accepted / result.drafted:.1f} %)\n")


def cmd_run(args) -> int:
    error, prompt = _run_prompt(args)
    error = error or spec_error(args)
    if error:
        return usage_error("run", error)
    if args.escape:
        prompt = unescape(prompt)
    t0 = time.perf_counter()
    model = load(args)
    load_seconds = time.perf_counter() - t0
    shown = prompt
    if args.chat:
        prompt = model.render_chat([{"role": "user", "content": prompt}])
    budget = model.n_ctx if args.n_predict is None else args.n_predict     # -1: the context ends it
    pieces = model.generate(prompt, max_tokens=budget, stream=True, ignore_eos=args.ignore_eos,
                            stop=args.stop or None, speculative=args.spec, **sampling(args), **constraint(args))
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
        print_timings(model.last_result, load_seconds)
    return 0
