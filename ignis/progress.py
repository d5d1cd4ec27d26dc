"""A small progress bar on stderr: redrawn in place on a terminal, a few plain lines otherwise."""
import sys
import time


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """Progress(total, label).update(done) ... .close(). `unit="bytes"` formats sizes."""

    def __init__(self, total: int, label: str, unit: str = "bytes", stream=None, enabled: bool = True):
        self.total = max(int(total), 1)
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.done = 0
        self._last_draw = 0.0
        self._last_decile = -1

    def _fmt(self, n: float) -> str:
        return _human(n) if self.unit == "bytes" else f"{int(n)}"

    def _line(self) -> str:
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = self.done / elapsed
        rate_s = f"{_human(rate)}/s" if self.unit == "bytes" else f"{rate:.1f} {self.unit}/s"
        return f"{self.label} [{bar:<30}] {frac * 100:5.1f}% {self._fmt(self.done)}/{self._fmt(self.total)} {rate_s}"

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw > 0.1 or done >= self.total:
                self.stream.write("\r" + self._line())
                self.stream.flush()
                self._last_draw = now
        else:
            decile = int(10 * min(done / self.total, 1.0))
            if decile != self._last_decile and decile % 5 == 0:
                self.stream.write(self._line() + "\n")
                self.stream.flush()
                self._last_decile = decile

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r" + self._line() + "\n")
            self.stream.flush()
