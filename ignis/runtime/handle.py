"""What a caller holds for a submitted request: its handle (pieces as they come, the result,
cancel) and the stream of its pieces. The engine loop's thread fills them; any thread reads.

Every hand-off a caller's thread makes here is signal-atomic: a Ctrl-C (KeyboardInterrupt
from a signal handler) may land between any two bytecodes of the caller's thread, and
queue.Queue and threading.Event are Python code over a Condition, so one landing inside
them can leave the Condition's lock held, and the loop's next put() or set() on it then
blocks for ever (with the Model's lock held). queue.SimpleQueue's put/get are single C
calls, and a flag is one attribute store: an interrupt lands before or after them."""
from __future__ import annotations

import queue
import time

from ignis.runtime.generate import GenerationResult

END_OF_STREAM = object()     # end of a request's piece stream


class Latch:
    """A flag set once and never cleared that any thread may wait for (threading.Event's
    set/is_set/wait), made of signal-atomic parts only (see the module docstring)."""

    RECHECK = 0.25      # seconds: how often a waiter looks at the flag itself, so that it never
                        # depends on a token another waiter took and, interrupted, did not pass on

    def __init__(self):
        self._set = False
        self._wakeups = queue.SimpleQueue()     # one token once set, passed from waiter to waiter

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._wakeups.put(True)

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set:
            left = self.RECHECK if deadline is None else min(self.RECHECK, deadline - time.monotonic())
            if left <= 0:
                break
            try:
                self._wakeups.put(self._wakeups.get(timeout=left))
            except queue.Empty:
                pass
        return self._set


class RequestHandle:
    """A submitted request: iterate it for text pieces as they are generated (blocking),
    or call text() for the whole completion. cancel() stops it at the next step. A score
    request's rows are in `logits` once it is done."""

    def __init__(self, request_id: int, sink=None, tag=None, outbox=None):
        self.id = request_id
        self.result = GenerationResult()
        self.error = None
        self.logits = None
        self.embedding = None     # an embedding request's pooled vector
        self._pieces = queue.SimpleQueue()
        self._done = Latch()
        self._cancel = Latch()
        self._sink, self._tag = sink, tag
        self._outbox = outbox     # the loop's per-step list of sink deliveries (None: at once)

    # engine side
    def _emit(self, piece: str) -> None:
        if piece:
            self._pieces.put(piece)
            self._to_sink(piece)

    def _finish(self, error: Exception | None = None) -> None:
        self.error = error
        self._done.set()
        self._pieces.put(END_OF_STREAM)
        self._to_sink(END_OF_STREAM)

    def _to_sink(self, piece) -> None:
        if self._sink is None:
            return
        if self._outbox is None:
            self._sink.put((self._tag, piece))
        else:
            self._outbox.append((self._sink, (self._tag, piece)))

    # caller side
    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def finish_reason(self) -> str:
        return self.result.finish_reason

    def cancel(self) -> None:
        """Stop generating at the next step boundary (finish_reason "cancelled")."""
        self._cancel.set()

    def __iter__(self):
        """The text pieces as they come (blocking); a stream closed or dropped before its end
        cancels the request."""
        return PieceStream(self)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the request to finish (raises its error). A waiter interrupted (Ctrl-C)
        cancels the request."""
        try:
            finished = self._done.wait(timeout)
        except BaseException:
            self.cancel()
            raise
        if not finished:
            raise TimeoutError(f"request {self.id} did not finish within {timeout} s")
        if self.error is not None:
            raise self.error

    def text(self, timeout: float | None = None) -> str:
        """Wait for the request to finish; its whole text (raises the request's error)."""
        self.wait(timeout)
        return self.result.text


class PieceStream:
    """A handle's pieces as an iterator. Closing it, or dropping it, before the end cancels
    the request: an abandoned stream never keeps the loop generating for nobody."""

    _open = False       # until __init__ has run (a Ctrl-C inside it: __del__ has nothing to close)

    def __init__(self, handle: RequestHandle):
        self._handle = handle
        self._open = True

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if not self._open:
            raise StopIteration
        try:
            piece = self._handle._pieces.get()
        except BaseException:       # interrupted while waiting (Ctrl-C): the consumer is gone
            self.close()
            raise
        if piece is END_OF_STREAM:
            self._open = False
            if self._handle.error is not None:
                raise self._handle.error
            raise StopIteration
        return piece

    def close(self) -> None:
        if self._open:
            self._open = False
            self._handle.cancel()

    def __del__(self):
        self.close()
