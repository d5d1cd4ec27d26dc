"""The fork server: a fresh interpreter that has imported numpy, gguf and ignis._kernels forks
one child per case, so a case costs a fork, a crash or a hang is a report, and the parent
(pytest, or the fuzz runner) never forks at all."""
from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import subprocess
import sys
import time
import traceback

import numpy as np

from fuzz.plan_api.child import execute
from fuzz.plan_api.oracle import CaseFailure
from fuzz.plan_api.specs import KV, Q4_K, Q8_0, Case, Ints, Wt

TIMEOUT = 60.0          # seconds per case (a valid case takes milliseconds)


def _write_msg(f, obj) -> None:
    data = pickle.dumps(obj)
    f.write(len(data).to_bytes(8, "little") + data)
    f.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """n bytes from fd, or None on EOF or when the deadline passes."""
    buf = b""
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _read_msg(fd: int, deadline: float | None):
    head = _read_exact(fd, 8, deadline)
    if head is None:
        return None
    body = _read_exact(fd, int.from_bytes(head, "little"), deadline)
    return None if body is None else pickle.loads(body)


def _serve() -> None:
    """The case server: a fresh interpreter that has imported numpy, gguf and ignis._kernels
    but never runs a case itself (so no OpenMP region: libgomp is not fork-safe after one).
    For each case it receives it forks a child, which runs the case and reports; the server
    sends back the report, or how the child died (signal, exit code, timeout)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                                    # anything printed goes to stderr
    import warnings

    import gguf  # noqa: F401
    import ignis._kernels  # noqa: F401
    warnings.simplefilter("ignore")                  # numpy casts in rejected arguments: not news
    np.seterr(all="ignore")
    _child(WARM_UP)                                  # lazy imports and first-call costs, paid once
    while True:
        msg = _read_msg(0, None)
        if msg is None:
            return
        case, timeout = msg
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                 # the child
            os.close(r)
            code = 0
            try:
                report = _child(case)
                data = pickle.dumps(report)
                os.write(w, len(data).to_bytes(8, "little"))
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view):]
            except BaseException:
                code = 3
            finally:
                os._exit(code)
        os.close(w)
        report = _read_msg(r, time.monotonic() + timeout)
        os.close(r)
        if report is None:
            try:                                     # no report in time (or it died): make sure
                os.kill(pid, signal.SIGKILL)         # it is gone before reaping it
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and report is None:
            sig = os.WTERMSIG(status)
            report = {"status": "crash", "detail": f"child killed by signal {sig} ({signal.Signals(sig).name})"}
            if sig == signal.SIGKILL:
                report = {"status": "timeout", "detail": f"no report within {timeout:.0f}s (killed)"}
        elif report is None or os.WEXITSTATUS(status) != 0:
            report = {"status": "crash", "detail": f"child exited with status {os.WEXITSTATUS(status)} "
                                                   f"without a report"}
        _write_msg(out, report)


# one thread (no OpenMP region), every path of the child once
WARM_UP = Case(plan=(4096, 1, 2), fill=4096, seed=0, ops=[
    ("matmul", [0, 2048, [Wt(Q8_0, 3, 256, 0), Wt(Q4_K, 2, 256, 1)], 2, 256, 5, [Q8_0, Q4_K], "q8_0"]),
    ("rope", [3072, 3072, 2, 4, 1e4])],
    run=(Ints((1, 2)), Ints((0, 1)), KV((1, 4, 2, 4), 0)))


def _child(case) -> dict:
    try:
        return execute(case)
    except CaseFailure as e:
        return {"status": "fail", "detail": str(e)}
    except BaseException:
        return {"status": "fail", "detail": "unexpected exception in the child:\n" + traceback.format_exc()}


class Runner:
    """The parent's handle on a case server (started on first use, restarted if it dies)."""

    def __init__(self):
        self.proc = None

    def _start(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-c", "from fuzz.plan_api.server import _serve; _serve()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, env=env)

    def run(self, case, timeout: float = TIMEOUT) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            _write_msg(self.proc.stdin, (case, timeout))
            report = _read_msg(self.proc.stdout.fileno(), time.monotonic() + timeout + 60)
        except (BrokenPipeError, OSError):
            report = None
        if report is None:                          # the server itself is gone or stuck
            self.close(kill=True)
            return {"status": "crash", "detail": "the case server died or hung"}
        return report

    def close(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


_RUNNER = Runner()
atexit.register(_RUNNER.close)


def run_case(case: Case, timeout: float = TIMEOUT) -> dict:
    """Run a case in a child process: {"status": ok | error | fail | crash | timeout, ...}."""
    return _RUNNER.run(case, timeout)


def check_case(case: Case) -> dict:
    """The property: the child exits normally and reports success or an IgnisError."""
    out = run_case(case)
    if out["status"] not in ("ok", "error"):
        raise AssertionError(f"{out['status']}: {out.get('detail', '')}\ncase: {case!r}")
    return out
