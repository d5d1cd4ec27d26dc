"""`ignis serve --ray`: the same ASGI app as `ignis serve`, as a Ray Serve deployment of N
replicas (needs the `ray` extra: `pip install 'ignis[ray]'`).

Each replica is a Ray actor that loads the model in its constructor and serves the Starlette
app of ignis.serve.app (its own continuous-batching scheduler) as its ingress; Ray Serve's HTTP
proxy spreads the requests over the replicas (to the less loaded of two picked at random) and
streams the SSE responses through. A replica that dies is replaced by Ray; the requests that were
on it fail (a 5xx before the response started, a cut stream after), the others go on. Responses
carry `x-ignis-replica: <pid>` (the replica's process id), so a client can see which served it.

Without RAY_ADDRESS (or with RAY_ADDRESS=local) a local Ray instance is started and stopped with
the server; with RAY_ADDRESS=HOST:PORT (or `auto`, a cluster started with `ray start` here) the
deployment goes on that cluster, whose nodes share the replicas.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading

import ray
from ray import serve

from ignis.errors import IgnisError

log = logging.getLogger("ignis.serve")

APP_NAME = "ignis"
REPLICA_HEADER = b"x-ignis-replica"


class ReplicaHeader:
    """ASGI middleware: adds `x-ignis-replica: <pid>` to every HTTP response."""

    def __init__(self, app):
        self.app = app
        self.value = str(os.getpid()).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (REPLICA_HEADER, self.value)]
            await send(message)

        return await self.app(scope, receive, send_with_header)


@serve.deployment(name="ignis", health_check_period_s=2, health_check_timeout_s=30,
                  graceful_shutdown_timeout_s=10)
@serve.ingress()
class IgnisDeployment:
    """One replica: the model (loaded here, off the event loop) and the ignis serve app."""

    async def __init__(self, model_path: str, n_ctx: int | None = None, threads: int | None = None,
                     max_batch: int = 8, api_key: str | None = None, max_queue: int | None = None,
                     model_name: str | None = None):
        import ignis
        self.model = await asyncio.to_thread(ignis.load, model_path, n_ctx=n_ctx, threads=threads)
        self.options = dict(max_batch=max_batch, api_key=api_key, max_queue=max_queue, model_name=model_name)
        self.app = None

    def __serve_build_asgi_app__(self):
        from ignis.serve.app import create_app
        self.app = create_app(self.model, **self.options)
        return ReplicaHeader(self.app)

    def check_health(self):
        """Ray's periodic health check: a replica whose model is gone is restarted."""
        state = self.app.state.ignis if self.app is not None else None
        if state is not None and state.load_error is not None:
            raise RuntimeError(f"the model failed to load: {state.load_error}")


def _init_ray(replicas: int, cpus_per_replica: float) -> bool:
    """Start or join Ray; True when this process started a local instance (stopped at exit)."""
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(address=address, include_dashboard=False, logging_level=logging.WARNING)
    if address == "local" or (address is None and not _running_cluster()):
        # a local instance: enough (logical) CPUs for every replica, whatever the core count
        need = int(replicas * cpus_per_replica + 0.999)
        ray.init(num_cpus=max(need, os.cpu_count() or 1), **kwargs)
        return True
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise IgnisError(f"could not join the Ray cluster at {address or 'auto'}: {exc}") from None
    return False


def _running_cluster() -> bool:
    """Whether `ray start` left a cluster address on this machine (ray.init() would join it)."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:               # another Ray layout: ray.init() decides alone
        return False
    return os.path.exists(get_ray_address_file(None))


def run(model_path: str, *, replicas: int = 2, host: str = "127.0.0.1", port: int = 8080,
        n_ctx: int | None = None, threads: int | None = None, max_batch: int = 8,
        api_key: str | None = None, max_queue: int | None = None, model_name: str | None = None,
        max_ongoing_requests: int | None = None) -> int:
    """Deploy `replicas` replicas of the ignis serve app on Ray Serve, HTTP on host:port, and
    block until SIGINT / SIGTERM; then delete the deployment (and stop a local Ray)."""
    if replicas < 1:
        raise IgnisError(f"--replicas must be at least 1, got {replicas}")
    model_path = os.path.abspath(model_path)
    cpus = float(threads) if threads else 1.0
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    local = _init_ray(replicas, cpus)
    try:
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        # each replica decodes max_batch sequences at once and queues the rest itself
        ongoing = max_ongoing_requests or max_batch * 4
        app = IgnisDeployment.options(num_replicas=replicas, max_ongoing_requests=ongoing,
                                      ray_actor_options={"num_cpus": cpus}).bind(
            model_path, n_ctx=n_ctx, threads=threads, max_batch=max_batch, api_key=api_key,
            max_queue=max_queue, model_name=model_name)
        if not stop.is_set():
            serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
            print(f"ignis serve --ray: {replicas} replicas of {os.path.basename(model_path)} ready on "
                  f"http://{host}:{port}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
        return 0
    except IgnisError:
        raise
    except Exception as exc:      # noqa: BLE001 - a deploy failure is reported as one line
        raise IgnisError(f"ignis serve --ray: the deployment failed: {type(exc).__name__}: {exc}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            serve.delete(APP_NAME)          # on a shared cluster, only this deployment goes
            if local:
                serve.shutdown()
        finally:
            ray.shutdown()
