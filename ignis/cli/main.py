"""The `ignis` command: a static table of subcommands, each a function of its command group's
module. Errors a user can cause print one line (`ignis: error: ...`) and exit non-zero;
`--debug` shows the traceback instead."""
import argparse
import sys
from typing import Callable, NamedTuple

from ignis.cli import chat, compiler, machine, models, perplexity, run, serve
from ignis.cli.common import Parser
from ignis.errors import IgnisError


class Command(NamedTuple):
    name: str
    run: Callable          # args -> exit code
    add_args: Callable     # parser -> None
    help: str


COMMANDS = (
    Command("info", machine.cmd_info, machine.info_args, "show the CPU, its features and the kernel level in use"),
    Command("pull", models.cmd_pull, models.pull_args, "fetch a model of the catalogue into the cache"),
    Command("list", models.cmd_list, models.list_args, "show the cached models"),
    Command("rm", models.cmd_rm, models.rm_args, "remove a cached model"),
    Command("inspect", models.cmd_inspect, models.inspect_args, "show a GGUF file's metadata and tensors"),
    Command("quantize", models.cmd_quantize, models.quantize_args, "requantize a GGUF file"),
    Command("tokenize", compiler.cmd_tokenize, compiler.tokenize_args, "show the token ids of a text"),
    Command("graph", compiler.cmd_graph, compiler.graph_args, "show the SSA graph and what each pass does to it"),
    Command("plan", compiler.cmd_plan, compiler.plan_args, "show the activation memory plan of the fused graph"),
    Command("run", run.cmd_run, run.run_args, "complete a prompt, streaming to stdout"),
    Command("chat", chat.cmd_chat, chat.chat_args, "interactive chat with the model's chat template"),
    Command("bench", machine.cmd_bench, machine.bench_args, "measure prompt processing and generation speed"),
    Command("serve", serve.cmd_serve, serve.serve_args, "OpenAI-compatible HTTP server (continuous batching)"),
    Command("perplexity", perplexity.cmd_perplexity, perplexity.perplexity_args,
            "perplexity of a text file, in chunks of -c tokens (llama-perplexity's method)"),
)


def _version() -> str:
    """The installed distribution's version, else ignis.__version__ (a source checkout)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("ignis")
    except (ImportError, PackageNotFoundError):
        import ignis
        return getattr(ignis, "__version__", "unknown")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ignis", description="An LLM inference engine built like a compiler.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"ignis {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        p.set_defaults(func=command.run, parser=p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        command.add_args(p)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:     # reported by the command's own parser, which knows its flags (and the closest one)
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except IgnisError as e:
        if args.debug:
            raise
        sys.stderr.write(f"ignis: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\nignis: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:        # a path given on the command line: missing directory, no permission, disk full
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        sys.stderr.write(f"ignis: error: {where}{e.strerror or e}\n")
        return 1
    except MemoryError as e:
        if args.debug:
            raise
        sys.stderr.write(f"ignis: error: out of memory ({str(e).strip() or 'allocation failed'})\n")
        return 1
