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

import contextlib
import logging
import os
import signal
import sys
import threading
import time

import ray
from ray import serve

from ignis.errors import IgnisError


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


_replica_app = None     # this replica process's app (one replica per Ray actor process)


class _ReplicaIngress:
    """The deployment's ASGI app: forwards to the app that the replica's constructor built
    (Ray Serve copies the ingress app when the class is defined, before any model is known)."""

    async def __call__(self, scope, receive, send):
        await _replica_app(scope, receive, send)


@serve.deployment(name="ignis", health_check_period_s=2, health_check_timeout_s=30,
                  graceful_shutdown_timeout_s=10)
@serve.ingress(_ReplicaIngress())
class IgnisDeployment:
    """One replica: loads the model, then builds the ignis serve app over it, with its
    lifespan (the scheduler) run by Ray Serve after this constructor."""

    def __init__(self, model_path: str, n_ctx: int | None = None, threads: int | None = None,
                 max_batch: int = 8, api_key: str | None = None, max_queue: int | None = None,
                 model_name: str | None = None):
        import ignis
        from ignis.serve import ray as this_module    # this class is pickled by value: its globals
        from ignis.serve.app import create_app        # are a copy, the module's are not
        model = ignis.load(model_path, n_ctx=n_ctx, threads=threads)
        self.ignis_app = create_app(model, max_batch=max_batch, api_key=api_key, max_queue=max_queue,
                                    model_name=model_name)
        this_module._replica_app = ReplicaHeader(self.ignis_app)

    def check_health(self):
        """Ray's periodic health check: a replica whose model is gone is restarted."""
        state = self.ignis_app.state.ignis
        if state.load_error is not None:
            raise RuntimeError(f"the model failed to load: {state.load_error}")


def _init_ray(replicas: int, cpus_per_replica: float) -> bool:
    """Start or join Ray; True when this process started a local instance (stopped at exit)."""
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(address=address, include_dashboard=False, logging_level=logging.WARNING)
    if address == "local" or (address is None and not _running_cluster()):
        # a local instance: enough (logical) CPUs for every replica, whatever the core count
        need = int(replicas * cpus_per_replica + 0.999)
        # a local instance is one node: its processes talk over loopback (Ray would otherwise use
        # the machine's network address, which a cluster needs and a local instance does not)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        kwargs["address"] = "local"
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
    signals = (signal.SIGINT, signal.SIGTERM)
    def on_signal(*_):
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    local = _init_ray(replicas, cpus)
    for sig in signals:             # again: ray.init installs a handler of its own
        signal.signal(sig, on_signal)
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
        started = _descendants(os.getpid()) if local else []
        try:
            serve.delete(APP_NAME)          # on a shared cluster, only this deployment goes
            if local:
                serve.shutdown()
        finally:
            ray.shutdown()
            _reap(started)


def _stat_fields(pid) -> list:
    """The fields of /proc/PID/stat after the command name: [state, ppid, ...] (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _descendants(pid: int) -> list[int]:
    """The processes under pid (Linux /proc; elsewhere none): the local Ray instance's."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(entry)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def _reap(pids: list[int], timeout: float = 5.0) -> None:
    """Stop what ray.shutdown() left of a local instance (its agents can outlive the raylet)."""
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in pids:
        if _alive(p):
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
