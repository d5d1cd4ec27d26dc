"""Ctrl-C at every point of a caller's hand-offs to the engine loop, deterministically.

A KeyboardInterrupt from a signal handler is raised where the interpreter checks for
pending signals: on entering a Python function and right after a C call returns. Those are
sys.setprofile's "call" and "c_return" events, so a profile function that raises at the
k-th of them puts a Ctrl-C exactly there (the interpreter then turns profiling off: one
interrupt per run). k runs over every such point of a submission and of waiting for or
streaming its result. After each, the Model must answer as a fresh one does, and the loop
must drain: an interrupt inside queue.Queue/threading.Event (Python code over a Condition)
used to leave the Condition's lock held, and the next hand-off blocked for ever.

Everything runs in a worker thread watched from the test's thread, so a hang fails the test
(with the worker's and the loop's stacks) instead of hanging the suite."""
import sys
import threading
import time
import traceback

import pytest

import ignis

IDS = [(7 * i + 3) % 256 for i in range(12)]
NO_PROGRESS = 20.0        # seconds without a finished run before the worker counts as hung

# a Ctrl-C landing in PieceStream.__del__ is ignored (and reported) by the interpreter, as it is
# for any finaliser: expected here, where one lands at every point
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def path(tiny_model):
    return tiny_model(n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=5)


class InterruptAt:
    """A profile function raising KeyboardInterrupt at its k-th signal-check point."""

    def __init__(self, k: int):
        self.k, self.seen = k, 0

    def __call__(self, frame, event, arg):
        if event in ("call", "c_return"):
            self.seen += 1
            if self.seen == self.k:
                raise KeyboardInterrupt


def in_thread_start(exc: BaseException) -> bool:
    return any(frame.f_code is threading.Thread.start.__code__ for frame, _ in traceback.walk_tb(exc.__traceback__))


def interrupted(k: int, action) -> bool:
    """Run action() with a Ctrl-C at its k-th point; False when it has fewer points (it ran
    to its end uninterrupted)."""
    at = InterruptAt(k)
    sys.setprofile(at)
    try:
        action()
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        # CPython's Thread.start waits on a threading.Event: a Ctrl-C inside that Condition.wait
        # surfaces as "release unlocked lock" (the thread runs; what follows must still work)
        if not (isinstance(exc.__context__, KeyboardInterrupt) and in_thread_start(exc)):
            raise
    finally:
        sys.setprofile(None)
    return at.seen >= at.k


def settles(sched) -> bool:
    """The loop has nothing left (an interrupted submission's request runs to its end)."""
    end = time.monotonic() + NO_PROGRESS
    while sched.n_waiting or sched.n_running:
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def run_watched(work) -> int:
    """work(progress) in a worker thread; fail if it raises or stops making progress."""
    progress, errors, runs = [0], [], [0]

    def worker():
        try:
            runs[0] = work(progress)
        except BaseException as exc:        # noqa: BLE001 -- reported below
            errors.append(exc)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    seen, last = -1, time.monotonic()
    while thread.is_alive():
        thread.join(0.2)
        if progress[0] != seen:
            seen, last = progress[0], time.monotonic()
        elif time.monotonic() - last > NO_PROGRESS:
            stacks = sys._current_frames()
            dump = "".join(f"\n--- {t.name}\n" + "".join(traceback.format_stack(stacks[t.ident]))
                           for t in threading.enumerate() if t.ident in stacks and t is not threading.current_thread())
            pytest.fail(f"hung after a Ctrl-C at point {progress[0]}:{dump}")
    if errors:
        raise errors[0]
    return runs[0]


def every_point(action, check, progress) -> int:
    """Interrupt action() at point 1, 2, ... until it runs uninterrupted; check() after each."""
    k = 1
    while interrupted(k, action):
        check()
        progress[0] = k
        k += 1
    return k


def test_ctrl_c_anywhere_in_submit_and_wait(path):
    model = ignis.load(path, n_ctx=64, threads=1)
    request = model.request(IDS, max_tokens=4, temperature=0.0, ignore_eos=True)
    want = ignis.load(path, n_ctx=64, threads=1).generate(IDS, max_tokens=4, temperature=0.0, ignore_eos=True)
    sched = model.scheduler(max_batch=4, step_tokens=64)

    def check():
        assert sched.submit(request).text() == want
        assert model._lock.acquire(timeout=NO_PROGRESS), "an interrupt left the Model's lock held"
        model._lock.release()

    def work(progress):
        check()          # the loop's thread is running
        points = every_point(lambda: sched.submit(request).text(), check, progress)
        points += every_point(lambda: "".join(sched.submit(request)), check, progress)
        # a cancel() interrupted, then the same handle cancelled and waited for again (a second
        # Ctrl-C: the stream's close() and generate()'s own handler both cancel)
        handles = [sched.submit(request)]

        def cancel_again():
            handles[-1].cancel()
            handles[-1].wait()
            check()
        points += every_point(lambda: handles.append(sched.submit(request)) or handles[-1].cancel(),
                              cancel_again, progress)
        assert settles(sched), "an interrupted request never ended"
        return points

    assert run_watched(work) > 100          # the interrupts really ran through submit and wait
    sched.close()
    model.close()


def test_ctrl_c_anywhere_in_generate(path):
    """Model.generate, whole and streamed (its own Ctrl-C handling cancels a second time)."""
    model = ignis.load(path, n_ctx=64, threads=1)
    want = ignis.load(path, n_ctx=64, threads=1).generate(IDS, max_tokens=3, temperature=0.0, ignore_eos=True)

    def whole():
        return model.generate(IDS, max_tokens=3, temperature=0.0, ignore_eos=True)

    def streamed():
        return "".join(model.generate(IDS, max_tokens=3, temperature=0.0, ignore_eos=True, stream=True))

    def check():
        assert whole() == want

    def work(progress):
        check()
        points = every_point(whole, check, progress) + every_point(streamed, check, progress)
        assert settles(model._default_scheduler()), "an interrupted request never ended"
        return points

    assert run_watched(work) > 100
    model.close()


def test_ctrl_c_anywhere_in_a_first_submission(path):
    """The first submission starts the loop's thread: an interrupt there leaves a usable scheduler."""
    model = ignis.load(path, n_ctx=64, threads=1)
    request = model.request(IDS, max_tokens=2, temperature=0.0, ignore_eos=True)
    want = ignis.load(path, n_ctx=64, threads=1).generate(IDS, max_tokens=2, temperature=0.0, ignore_eos=True)

    def work(progress):
        k = 1
        while True:
            sched = model.scheduler(max_batch=4, step_tokens=64)
            if not interrupted(k, lambda: sched.submit(request).text()):
                sched.close()
                return k
            assert sched.submit(request).text() == want
            assert settles(sched), "an interrupted request never ended"
            sched.close()
            progress[0] = k
            k += 1

    assert run_watched(work) > 100
    model.close()


def test_ctrl_c_anywhere_in_a_batch_stream(path):
    """generate_batch(stream=True): every request's pieces come through one shared sink."""
    model = ignis.load(path, n_ctx=64, threads=1)
    prompts = [IDS, IDS[:5]]
    fresh = ignis.load(path, n_ctx=64, threads=1)
    want = [fresh.generate(p, max_tokens=2, temperature=0.0, ignore_eos=True) for p in prompts]

    def batch():
        texts = ["", ""]
        for i, piece in model.generate_batch(prompts, max_tokens=2, temperature=0.0, ignore_eos=True, stream=True):
            texts[i] += piece
        return texts

    def check():
        assert batch() == want

    def work(progress):
        check()
        points = every_point(batch, check, progress)
        assert settles(model._default_scheduler()), "an interrupted request never ended"
        return points

    assert run_watched(work) > 100
    model.close()
