"""Prometheus metrics of `ignis serve` (one registry per app, so several apps can live in
one process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, state):
        """state: the server's state (queue depth, running sequences, the model's KV cache)."""
        self.registry = r = CollectorRegistry()
        self.requests = Counter("ignis_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.finished = Counter("ignis_completions_finished", "completions finished, by finish reason",
                                ["reason"], registry=r)
        self.prompt_tokens = Counter("ignis_prompt_tokens", "prompt tokens of accepted requests", registry=r)
        self.generated_tokens = Counter("ignis_generated_tokens", "tokens generated", registry=r)
        self.ttft = Histogram("ignis_time_to_first_token_seconds", "from submission to the first text",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("ignis_inter_token_latency_seconds", "between consecutive generated tokens "
                             "(a piece of several tokens spreads its wait over them)",
                             buckets=_LATENCY_BUCKETS, registry=r)
        Gauge("ignis_requests_waiting", "sequences submitted and waiting for a batch slot",
              registry=r).set_function(lambda: state.waiting)
        Gauge("ignis_requests_running", "sequences in the running batch",
              registry=r).set_function(lambda: state.running)
        Gauge("ignis_kv_blocks_used", "KV cache blocks in use", registry=r).set_function(
            lambda: _kv(state, "n_used_blocks"))
        Gauge("ignis_kv_blocks_free", "KV cache blocks free", registry=r).set_function(
            lambda: _kv(state, "n_free_blocks"))
        Gauge("ignis_kv_blocks_reserved", "KV cache blocks held for no request: the prefix cache's finished "
              "sequences and the engine's own; with nothing running, every used block is one of these",
              registry=r).set_function(lambda: _reserved_blocks(state))
        Gauge("ignis_ready", "1 once the model is loaded", registry=r).set_function(lambda: 1 if state.ready else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _kv(state, name: str) -> float:
    model = state.model
    engine = getattr(model, "engine", None) if model is not None else None
    if engine is None:
        return 0
    return getattr(engine.kv, name)


def _reserved_blocks(state) -> float:
    """Distinct blocks of the scheduler's cached sequences and of the engine's own (padding,
    the single-caller sequence), read without the model's lock (a step may run meanwhile: a
    sequence freed under us is skipped, a changed dict re-read)."""
    scheduler, model = state.scheduler, state.model
    engine = getattr(model, "engine", None) if model is not None else None
    if engine is None:
        return 0
    own = [getattr(engine, name) for name in ("_pad_seq", "seq") if getattr(engine, name, None) is not None]
    cached = getattr(scheduler, "_cached", None) or {}
    for _ in range(5):
        try:
            seqs = own + list(cached)
            break
        except RuntimeError:         # resized by the engine thread while we copied it
            continue
    else:
        return 0
    blocks = set()
    for seq in seqs:
        try:
            blocks.update(int(b) for b in engine.kv.table(seq) if b >= 0)
        except Exception:            # noqa: BLE001 - freed meanwhile
            continue
    return len(blocks)
