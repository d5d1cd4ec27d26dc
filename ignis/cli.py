"""The `ignis` command. Each subcommand is a small function; errors a user can cause print one
line (`ignis: error: ...`) and exit non-zero; `--debug` shows the traceback instead."""
import argparse
import json
import sys

from ignis.errors import IgnisError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr and exit code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def _model_path(args) -> str:
    """-m MODEL (a GGUF file, or a catalogue name pulled on first use), else the default
    model (fetched on first use)."""
    from ignis.hub import pull, resolve
    model = getattr(args, "model", None) or getattr(args, "model_flag", None)
    if model:
        return resolve(model, progress=True)
    return str(pull(progress=True))


# -- subcommands ---------------------------------------------------------------------------

def cmd_pull(args) -> int:
    from ignis.hub import DEFAULT_MODEL, lookup, pull, pull_q8_0
    source, q8_0 = lookup(args.name) if args.name else (DEFAULT_MODEL, False)
    if args.q8_0 or q8_0:
        if source.q8_0_tensor_sha256 is None:
            raise IgnisError(f"--q8_0: {source.name} has no Q8_0 requantization (only {DEFAULT_MODEL.name})")
        print(pull_q8_0(source, progress=True))
    else:
        print(pull(source, progress=True))
    return 0


def cmd_list(args) -> int:
    from ignis.gguf import GGUFFile
    from ignis.hub import CATALOGUE, cache_dir, cached
    rows = []
    for name, path in cached():
        try:
            with GGUFFile(str(path)) as gguf:
                arch = gguf.architecture or "?"
        except (OSError, IgnisError):
            arch = "?"                  # not a readable GGUF file any more
        rows.append({"name": name, "architecture": arch, "size": path.stat().st_size, "path": str(path)})
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        sys.stderr.write(f"no models cached in {cache_dir() / 'models'}; 'ignis pull NAME' fetches one of: "
                         f"{', '.join(CATALOGUE)}\n")
        return 0
    from ignis.progress import _human
    width = max(len("NAME"), *(len(r["name"]) for r in rows))
    arch_width = max(len("ARCH"), *(len(r["architecture"]) for r in rows))
    print(f"{'NAME':<{width}}  {'ARCH':<{arch_width}}  {'SIZE':>9}  PATH")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['architecture']:<{arch_width}}  {_human(r['size']):>9}  {r['path']}")
    return 0


def cmd_rm(args) -> int:
    from ignis.hub import remove
    print(f"removed {remove(args.name)}")
    return 0


def cmd_inspect(args) -> int:
    from ignis.gguf import GGUFFile
    from ignis.inspect import describe, format_report
    if args.model and args.model_flag:
        sys.stderr.write("ignis inspect: error: give the model once, as FILE or with -m (see 'ignis inspect --help')\n")
        return 2
    with GGUFFile(_model_path(args), allow_unknown_types=True) as gguf:
        print(json.dumps(describe(gguf), ensure_ascii=False) if args.json else format_report(gguf))
    return 0


def cmd_quantize(args) -> int:
    from ignis.quantize import quantize_file
    quantize_file(args.input, args.output, args.type, progress=True)
    print(args.output)
    return 0


def cmd_tokenize(args) -> int:
    from ignis.tokenizer import Tokenizer
    tok = Tokenizer.from_gguf(_model_path(args))
    ids = tok.encode(args.text, parse_special=not args.no_special)
    if args.ids:
        print(" ".join(map(str, ids)))
    else:
        for i in ids:
            # the piece as text ('\n' and friends escaped; bytes of a split UTF-8 character: U+FFFD)
            print(f"{i:8d} {tok.token_to_piece(i).decode('utf-8', errors='replace')!r}")
    return 0


def cmd_info(args) -> int:
    """What ignis sees of this machine and which kernel level it runs."""
    import os
    import platform
    from ignis import _kernels as K
    from ignis.runtime.bench import cpu_model
    from ignis.runtime.engine import default_threads
    K.check_isa()
    levels = K.isa_levels()
    forced = os.environ.get("IGNIS_ISA", "").strip()
    info = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "features": K.cpu_features(),
        "level": K.isa(),
        "chosen_by": f"IGNIS_ISA={forced}" if forced else "best level this CPU runs",
        "build_levels": [name for name, _ in levels],
        "runnable_levels": [name for name, ok in levels if ok],
        "threads": default_threads(),
        "openmp_threads": K.openmp_threads(),
    }
    if args.json:
        print(json.dumps(info))
        return 0
    amx = ""
    if "amx (cpuid)" in info["features"] and "amx (os)" not in info["features"]:
        amx = "  (AMX: advertised by CPUID, tile state not enabled by the OS: never used)"
    rows = [
        ("cpu", f"{info['cpu']} ({info['machine']})"),
        ("features", (", ".join(info["features"]) or "none beyond the baseline") + amx),
        ("kernel level", f"{info['level']}  ({info['chosen_by']})"),
        ("build levels", ", ".join(f"{n}{'' if ok else ' (not on this CPU)'}" for n, ok in levels)),
        ("threads", f"{info['threads']} by default; OpenMP "
                    + (f"allows {info['openmp_threads']}" if info["openmp_threads"] else "not in this build: 1")),
    ]
    for key, value in rows:
        print(f"{key:<13} {value}")
    return 0


# -- wiring ----------------------------------------------------------------------------------

def _version() -> str:
    """The installed distribution's version, else ignis.__version__ (a source checkout)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("ignis")
    except (ImportError, PackageNotFoundError):
        import ignis
        return getattr(ignis, "__version__", "unknown")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ignis", description="An LLM inference engine built like a compiler.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"ignis {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        return p

    def model_flag(p):
        p.add_argument("-m", "--model", help="GGUF file or model name, e.g. smollm2-135m (default: the "
                                             "default model; a named model is fetched on first use)")

    p = command("info", cmd_info, "show the CPU, its features and the kernel level in use")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    from ignis.hub import CATALOGUE, DEFAULT_MODEL
    names = ", ".join(CATALOGUE)
    p = command("pull", cmd_pull, "fetch a model of the catalogue into the cache")
    p.add_argument("name", nargs="?", metavar="NAME", help=f"{names} (default {DEFAULT_MODEL.name})")
    p.add_argument("--q8_0", action="store_true", help="also make (and print) its Q8_0 requantization")

    p = command("list", cmd_list, "show the cached models")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("rm", cmd_rm, "remove a cached model")
    p.add_argument("name", metavar="NAME", help=f"a name 'ignis list' shows ({names}, or NAME:q8_0)")

    p = command("inspect", cmd_inspect, "show a GGUF file's metadata and tensors")
    p.add_argument("model", nargs="?", metavar="FILE", help="GGUF file or model name (default: the default model)")
    p.add_argument("-m", "--model", dest="model_flag", metavar="MODEL", help="the same, as a flag")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("quantize", cmd_quantize, "requantize a GGUF file")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--type", default="q8_0", help="target type: q8_0 (default), f16, f32")

    p = command("tokenize", cmd_tokenize, "show the token ids of a text")
    model_flag(p)
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--ids", action="store_true", help="print only the ids")
    p.add_argument("--no-special", action="store_true", help="treat special-token text as plain text")

    _add_later_commands(command, model_flag)
    return parser


def _add_later_commands(command, model_flag) -> None:
    """Compiler and runtime commands live in their own module to keep this one small."""
    try:
        from ignis import cli_runtime
    except ImportError:
        return
    cli_runtime.register(command, model_flag)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
