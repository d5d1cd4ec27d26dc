"""`ignis serve`: the OpenAI-compatible HTTP server (ignis.serve); with --ray, N replicas of it
on Ray Serve (ignis.serve.ray)."""
import sys

from ignis.cli.common import (ctx_flag, draft_path, model_flag, model_path, non_negative_int, positive, raise_arg,
                              spec_error, spec_flags, threads_flag, usage_error)
from ignis.errors import IgnisError


def _port(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise_arg(f"--port must be an integer in [0, 65535], got {text!r}")
    return value


def serve_args(p) -> None:
    model_flag(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    p.add_argument("-np", "--parallel", type=positive("--parallel"), default=8,
                   help="sequences decoded at once, and the largest n (default 8)")
    ctx_flag(p)
    threads_flag(p)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (not on /health)")
    p.add_argument("--max-queue", type=non_negative_int, default=None,
                   help="answer 503 beyond this many waiting sequences (a request counts n per prompt; "
                        "default: no limit)")
    p.add_argument("--shutdown-timeout", type=_seconds, default=10.0,
                   help="on SIGTERM / Ctrl-C, seconds that requests in flight have to finish before they "
                        "are cancelled (default 10)")
    p.add_argument("--quiet", action="store_true", help="no access log line per request")
    spec_flags(p, "speculative decoding for requests that do not set \"speculative\", verified exactly (the "
                  "same text): ngram = prompt-lookup drafts, draft = the draft model's (-md)")
    p.add_argument("--pooling", choices=("mean", "last", "cls"), default=None,
                   help="/v1/embeddings pooling (default: the model file's pooling_type, else mean)")
    p.add_argument("--ray", action="store_true",
                   help="serve replicas of the app on Ray Serve (the ray extra; RAY_ADDRESS picks a cluster, "
                        "default: a local Ray instance)")
    p.add_argument("--replicas", type=positive("--replicas"), default=None,
                   help="with --ray: replicas, each loading the model (default 2)")


def cmd_serve(args) -> int:
    error = spec_error(args)
    if error:
        return usage_error("serve", error)
    if args.replicas is not None and not args.ray:
        sys.stderr.write("ignis serve: error: --replicas needs --ray (see 'ignis serve --help')\n")
        return 2
    if args.ray:
        try:
            from ignis.serve import ray as ray_serve
        except ImportError as exc:
            raise IgnisError("ignis serve --ray needs the ray extra: pip install 'ignis[ray]'"
                             f" ({exc.name} is missing)") from None
        return ray_serve.run(model_path(args), replicas=args.replicas or 2, host=args.host,
                             port=args.port, n_ctx=args.ctx,
                             threads=args.threads, max_batch=args.parallel, api_key=args.api_key,
                             max_queue=args.max_queue)
    try:
        from ignis.serve import serve
    except ImportError as exc:
        raise IgnisError(f"ignis serve needs the serve extra ({exc.name} is missing): "
                         "pip install 'ignis[serve]'") from None
    return serve(model_path(args), host=args.host, port=args.port, n_ctx=args.ctx, threads=args.threads,
                 max_batch=args.parallel, api_key=args.api_key, max_queue=args.max_queue, pooling=args.pooling,
                 shutdown_timeout=args.shutdown_timeout, quiet=args.quiet, spec=args.spec,
                 draft_model=draft_path(args))


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise_arg(f"--shutdown-timeout must be a non-negative number of seconds, got {text!r}")
    return value
