"""`ignis tokenize | graph | plan`: what the compiler sees of a model (its tokens, its SSA
graph and what each pass does to it, the activation memory plan)."""
import json

from ignis.cli.common import model_config, model_flag, model_path, positive
from ignis.errors import IgnisError


def tokenize_args(p) -> None:
    model_flag(p)
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--ids", action="store_true", help="print only the ids")
    p.add_argument("--no-special", action="store_true", help="treat special-token text as plain text")


def cmd_tokenize(args) -> int:
    from ignis.tokenizer import Tokenizer
    tok = Tokenizer.from_gguf(model_path(args))
    ids = tok.encode(args.text, parse_special=not args.no_special)
    if args.ids:
        print(" ".join(map(str, ids)))
    else:
        for i in ids:
            # the piece as text ('\n' and friends escaped; bytes of a split UTF-8 character: U+FFFD)
            print(f"{i:8d} {tok.token_to_piece(i).decode('utf-8', errors='replace')!r}")
    return 0


def graph_args(p) -> None:
    model_flag(p)
    p.add_argument("--tokens", type=positive("--tokens"), default=1, help="tokens per step (1 = decode)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--no-fuse", action="store_true", help="run no pass")
    group.add_argument("--passes", help="comma-separated passes to run, in order")
    p.add_argument("--dot", metavar="FILE", help="write the final graph as Graphviz DOT")
    p.add_argument("--print", action="store_true", help="print the final graph, one op per line")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_graph(args) -> int:
    from ignis.ir import format_graph, to_dot
    from ignis.models import build_graph
    from ignis.passes import run_pipeline
    config = model_config(model_path(args))
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


def plan_args(p) -> None:
    model_flag(p)
    p.add_argument("--tokens", type=positive("--tokens"), default=1, help="tokens per step (1 = decode)")
    p.add_argument("--svg", metavar="FILE", help="draw the plan (x: program point, y: arena offset)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_plan(args) -> int:
    from ignis.models import build_graph
    from ignis.passes import plan_memory, plan_svg, run_pipeline
    config = model_config(model_path(args))
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
