"""`ignis perplexity`: llama-perplexity's method (chunks of -c tokens, the second half of each
scored), the running PPL per chunk, then the estimate with its error."""
import sys
import time

from ignis.cli.common import ctx_flag, load, model_flag, positive, read_text, threads_flag


def perplexity_args(p) -> None:
    model_flag(p)
    p.add_argument("-f", "--file", required=True, help="the text file ('-' reads stdin)")
    ctx_flag(p, default=512, help_text="tokens per chunk; the second half of each chunk is scored (default 512)")
    p.add_argument("-b", "--batch-size", type=positive("batch size"), default=None,
                   help="accepted for llama-perplexity compatibility and ignored: ignis evaluates each "
                        "chunk in one call, splitting it internally")
    threads_flag(p)
    p.add_argument("--chunks", type=positive("--chunks"), default=None,
                   help="score at most this many chunks (default: all)")


def cmd_perplexity(args) -> int:
    from ignis.runtime.perplexity import chunk_count, perplexity, text_ids
    text = read_text(args.file, "-f", strip_newline=False, errors="replace")
    model = load(args)
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
