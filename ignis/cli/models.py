"""`ignis pull | list | rm | inspect | quantize`: the model files (the catalogue, the cache,
one file's metadata, requantization)."""
import json
import sys

from ignis.cli.common import model_path
from ignis.errors import IgnisError


def _catalogue_names() -> tuple:
    from ignis.hub import CATALOGUE, DEFAULT_MODEL
    return ", ".join(CATALOGUE), DEFAULT_MODEL.name


def pull_args(p) -> None:
    names, default = _catalogue_names()
    p.add_argument("name", nargs="?", metavar="NAME", help=f"{names} (default {default})")
    p.add_argument("--q8_0", action="store_true", help="also make (and print) its Q8_0 requantization")


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


def list_args(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


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


def rm_args(p) -> None:
    names, _ = _catalogue_names()
    p.add_argument("name", metavar="NAME", help=f"a name 'ignis list' shows ({names}, or NAME:q8_0)")


def cmd_rm(args) -> int:
    from ignis.hub import remove
    print(f"removed {remove(args.name)}")
    return 0


def inspect_args(p) -> None:
    p.add_argument("model", nargs="?", metavar="FILE", help="GGUF file or model name (default: the default model)")
    p.add_argument("-m", "--model", dest="model_flag", metavar="MODEL", help="the same, as a flag")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_inspect(args) -> int:
    from ignis.gguf import GGUFFile
    from ignis.inspect import describe, format_report
    if args.model and args.model_flag:
        sys.stderr.write("ignis inspect: error: give the model once, as FILE or with -m (see 'ignis inspect --help')\n")
        return 2
    with GGUFFile(model_path(args), allow_unknown_types=True) as gguf:
        print(json.dumps(describe(gguf), ensure_ascii=False) if args.json else format_report(gguf))
    return 0


def quantize_args(p) -> None:
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--type", default="q8_0", help="target type: q8_0 (default), f16, f32")


def cmd_quantize(args) -> int:
    from ignis.quantize import quantize_file
    quantize_file(args.input, args.output, args.type, progress=True)
    print(args.output)
    return 0
