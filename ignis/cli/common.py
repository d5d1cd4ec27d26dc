"""What every `ignis` command shares: the argument parser, model resolution, argument types,
the flag groups (each flag defined once), text input and the context-limit notice."""
import argparse
import difflib
import os
import re
import sys

from ignis.errors import IgnisError


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr and exit code 2, and an unknown flag
    names the closest known one."""

    def error(self, message):
        hint = self._closest_flag(message)
        sys.stderr.write(f"{self.prog}: error: {message}{hint} (see '{self.prog} --help')\n")
        raise SystemExit(2)

    def _closest_flag(self, message: str) -> str:
        match = re.match(r"unrecognized arguments: (.*)", message)
        if not match:
            return ""
        known = [s for action in self._actions for s in action.option_strings if s.startswith("--")]
        for word in match.group(1).split():
            if word.startswith("--"):
                close = difflib.get_close_matches(word.partition("=")[0], known, n=1, cutoff=0.6)
                if close:
                    return f"; did you mean {close[0]}?"
        return ""


def usage_error(command: str, message: str) -> int:
    """A usage error found after parsing: one line, exit code 2 (as argparse's own)."""
    sys.stderr.write(f"ignis {command}: error: {message} (see 'ignis {command} --help')\n")
    return 2


def say(message: str) -> None:
    """A notice: one line on stderr."""
    sys.stderr.write(f"ignis: {message}\n")
    sys.stderr.flush()


# -- the model ---------------------------------------------------------------------------------

def model_path(args) -> str:
    """-m MODEL (a GGUF file, or a catalogue name pulled on first use), else the default
    model (fetched on first use)."""
    from ignis.hub import pull, resolve
    model = getattr(args, "model", None) or getattr(args, "model_flag", None)
    if model:
        return resolve(model, progress=True)
    return str(pull(progress=True))


def model_config(path):
    from ignis.gguf import GGUFFile
    from ignis.models import config_from_file
    with GGUFFile(path) as gguf:
        return config_from_file(gguf)


def load(args):
    """The model of -m with -c and -t; then a warning for a -t or -c beyond what is there (after
    the load, which refuses what cannot work at all)."""
    import ignis
    path = model_path(args)
    model = ignis.load(path, n_ctx=args.ctx, threads=args.threads, draft_model=draft_path(args))
    warn_limits(args, path)
    return model


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def warn_limits(args, path) -> None:
    """One line each when -t asks for more threads than there are cores, or -c for more context
    than the model was trained on (both run, slower or with degraded text)."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads > cores():
        say(f"warning: -t {threads} is more threads than the {cores()} cores here (slower, not faster)")
    ctx = getattr(args, "ctx", None)
    if ctx is not None:
        try:
            trained = model_config(path).context_length
        except (IgnisError, OSError, AttributeError):
            return
        if trained and ctx > trained:
            say(f"warning: -c {ctx} is more than the {trained} tokens this model was trained on "
                f"(text beyond that degrades)")


# -- argument types --------------------------------------------------------------------------

def raise_arg(message):
    raise argparse.ArgumentTypeError(message)


def positive(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise_arg(f"{name} must be a positive integer, got {text!r}")
        return value
    return parse


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise_arg(f"expected a non-negative integer, got {text!r}")
    return value


def token_budget(text):
    """-n: a non-negative integer, or -1 for "until the end or the context" (None)."""
    if text.strip() == "-1":
        return None
    return non_negative_int(text)


# -- flag groups (each flag defined here once) --------------------------------------------------

def model_flag(p) -> None:
    p.add_argument("-m", "--model", help="GGUF file or model name, e.g. smollm2-135m (default: the "
                                         "default model; a named model is fetched on first use)")


def spec_flags(p, help_text: str) -> None:
    """--spec and -md / --model-draft (llama.cpp's spelling)."""
    p.add_argument("--spec", choices=("ngram", "draft"), default=None, help=help_text)
    p.add_argument("-md", "--model-draft", dest="model_draft", metavar="MODEL", default=None,
                   help="draft model for --spec draft (a GGUF file or model name sharing the model's vocabulary, "
                        "e.g. the default model for qwen2.5-coder-1.5b); -md alone means --spec draft")


def spec_error(args) -> str | None:
    """Settle args.spec (-md alone means draft); the usage error of --spec draft without -md."""
    if getattr(args, "model_draft", None) and args.spec is None:
        args.spec = "draft"
    if args.spec == "draft" and not getattr(args, "model_draft", None):
        return "--spec draft needs a draft model: -md MODEL (--model-draft)"
    return None


def draft_path(args):
    """-md MODEL resolved (a file, or a catalogue name pulled on first use), or None."""
    if not getattr(args, "model_draft", None):
        return None
    from ignis.hub import resolve
    return resolve(args.model_draft, progress=True)


def threads_flag(p) -> None:
    p.add_argument("-t", "--threads", type=positive("threads"), default=None, help="threads (default: all cores)")


def ctx_flag(p, default=None, help_text="context size (default: model's, at most 4096)") -> None:
    p.add_argument("-c", "--ctx-size", "--ctx", dest="ctx", type=positive("context size"), default=default,
                   help=help_text)


def sampling_flags(p, n_predict: int = 128, n_help: str = "tokens to generate") -> None:
    """-n, the sampling settings, -t and -c of `run` and `chat`."""
    p.add_argument("-n", "--n-predict", type=token_budget, default=n_predict,
                   help=f"{n_help} (default {n_predict}); -1: until the end or the context")
    p.add_argument("--temp", "--temperature", dest="temp", type=float, default=0.8,
                   help="temperature; 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=non_negative_int, default=40, help="top-k, 0 = off (default 40)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    p.add_argument("--min-p", type=float, default=0.05, help="min-p (default 0.05)")
    p.add_argument("--repeat-penalty", type=float, default=1.0, help="repetition penalty (default 1.0 = off)")
    p.add_argument("--presence-penalty", type=float, default=0.0,
                   help="subtract this from the logit of each token in the recent context (default 0 = off)")
    p.add_argument("--frequency-penalty", type=float, default=0.0,
                   help="subtract this times its count in the recent context from a token's logit (default 0 = off)")
    p.add_argument("-s", "--seed", type=int, default=None, help="RNG seed (same seed, same output)")
    spec_flags(p, "speculative decoding, verified exactly (the same text, fewer steps): ngram = prompt-lookup "
                  "drafts, draft = the draft model's (-md)")
    threads_flag(p)
    ctx_flag(p)


def sampling(args) -> dict:
    return dict(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repeat_penalty=args.repeat_penalty, presence_penalty=args.presence_penalty,
                frequency_penalty=args.frequency_penalty, seed=args.seed)


def constraint_flags(p) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-j", "--json-schema", metavar="SCHEMA|FILE", default=None,
                       help="constrain the output to this JSON Schema (JSON text, or a file holding it)")
    group.add_argument("--json-schema-file", metavar="FILE", default=None, help="the JSON Schema, from FILE")
    group.add_argument("--regex", metavar="RE", default=None, help="the whole output matches this regex")
    group.add_argument("--grammar", metavar="GRAMMAR|FILE", default=None,
                       help="constrain the output to a Lark or GBNF grammar (text, or a file holding it)")
    group.add_argument("--grammar-file", metavar="FILE", default=None, help="the grammar, from FILE")


def constraint(args) -> dict:
    """json_schema / regex / grammar keyword arguments from the structured-output flags
    (text given inline, or a file named by the flag: llama.cpp's --json-schema takes text,
    its --grammar-file a file; ignis takes either where that is unambiguous)."""
    if args.json_schema_file is not None:
        return {"json_schema": read_text(args.json_schema_file, "--json-schema-file")}
    if args.json_schema is not None:
        text = args.json_schema
        if not text.lstrip().startswith(("{", "true", "false")) and os.path.isfile(text):
            text = read_text(text, "--json-schema")
        return {"json_schema": text}
    if args.grammar_file is not None:
        return {"grammar": read_text(args.grammar_file, "--grammar-file", strip_newline=False)}
    if args.grammar is not None:
        text = args.grammar
        if "\n" not in text and os.path.isfile(text):
            text = read_text(text, "--grammar", strip_newline=False)
        return {"grammar": text}
    if args.regex is not None:
        return {"regex": args.regex}
    return {}


# -- text input --------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v", "0": "\0", "?": "?"}


def unescape(text: str) -> str:
    """-e: \\n \\t \\r \\\\ \\" \\' \\a \\b \\f \\v \\0 \\? and \\xHH, as llama.cpp does; any other
    backslash is kept as it is."""
    def one(m):
        body = m.group(1)
        if body[0] == "x":
            return chr(int(body[1:], 16))
        return _ESCAPES[body]
    return re.sub(r"\\(x[0-9a-fA-F]{2}|[ntr\\\"'abfv0?])", one, text)


def read_text(path: str, what: str, strip_newline: bool = True, errors: str = "strict") -> str:
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


# -- notices -----------------------------------------------------------------------------------

def report_context_limit(result, max_tokens, n_ctx: int) -> None:
    """One line on stderr when generation ended because the context was full (before the -n
    budget, None: none, and any stop), so a cut-off text is not mistaken for a finished one."""
    if result.finish_reason == "length" and (max_tokens is None or len(result.tokens) < max_tokens):
        sys.stderr.write(f"ignis: generation stopped at the context limit of {n_ctx} tokens after "
                         f"{len(result.tokens)} tokens (raise --ctx-size)\n")
