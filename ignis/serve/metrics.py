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
        self.drafted_tokens = Counter("ignis_speculative_drafted_tokens", "tokens drafted by speculative decoding "
                                      "(ngram or the draft model)", registry=r)
        self.accepted_tokens = Counter("ignis_speculative_accepted_tokens", "drafted tokens that verification "
                                       "accepted", registry=r)
        self.ttft = Histogram("ignis_time_to_first_token_seconds", "from submission to the first text",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("ignis_inter_token_latency_seconds", "between consecutive generated tokens "
                             "(a piece of several tokens spreads its wait over them)",
                             buckets=_LATENCY_BUCKETS, registry=r)
        Gauge("ignis_requests_waiting", "sequences submitted and waiting for a batch slot",
              registry=r).set_function(lambda: state.waiting)
        Gauge("ignis_requests_running", "sequences in the running batch",
              registry=r).set_function(lambda: state.running)
        Gauge("ignis_kv_blocks_used", "KV cache blocks held by sequences", registry=r).set_function(
            lambda: _kv(state, "n_used_blocks"))
        Gauge("ignis_kv_blocks_free", "KV cache blocks an allocation can take (free or idle cached)",
              registry=r).set_function(lambda: _kv(state, "n_free_blocks"))
        Gauge("ignis_kv_blocks_cached", "KV cache blocks in the prefix cache (held or idle)",
              registry=r).set_function(lambda: _kv(state, "n_cached_blocks"))
        Gauge("ignis_preemptions", "sequences preempted (freed and recomputed later) for memory",
              registry=r).set_function(lambda: _loop(state, "preemptions"))
        Gauge("ignis_prefix_hit_tokens", "prompt tokens not computed thanks to the prefix cache",
              registry=r).set_function(lambda: _loop(state, "cached_tokens"))
        Gauge("ignis_kv_blocks_reserved", "KV cache blocks held for no request (the engine's own): with "
              "nothing running, ignis_kv_blocks_used equals this", registry=r).set_function(
            lambda: _reserved_blocks(state))
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
    """Blocks of the engine's own sequences (where padding rows write), which no request
    holds and none frees."""
    model = state.model
    engine = getattr(model, "engine", None) if model is not None else None
    if engine is None:
        return 0
    blocks = set()
    for name in ("_pad_seq", "seq"):
        seq = getattr(engine, name, None)
        if seq is not None and seq in engine.kv:
            blocks.update(int(b) for b in engine.kv.table(seq) if b >= 0)
    return len(blocks)


def _loop(state, name: str) -> float:
    sched = state.scheduler
    return 0 if sched is None else getattr(sched, name)
