"""Progress for logs: where stderr is not a terminal (nohup, a batch scheduler's log, a pipe), a plain line
every few seconds instead of a live bar that a log would only show at the end."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console

LOG_EVERY_SECONDS = 5.0  #: at most one progress line this often


class LogLines:
    """Plain progress lines on ``console``: ``tick(line)`` prints ``line()`` when ``every`` seconds have passed
    since the last one (``line`` is only called then); ``final(line)`` prints it whatever the time."""

    def __init__(self, console: Console, every: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.console, self.clock = console, clock
        self.every = LOG_EVERY_SECONDS if every is None else every
        self.started = self._last = clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def tick(self, line: Callable[[], str]) -> None:
        if self.clock() - self._last >= self.every:
            self.final(line)

    def final(self, line: Callable[[], str]) -> None:
        self._last = self.clock()
        self.console.print(line(), markup=False, highlight=False, soft_wrap=True)


def eta(done: float, total: float | None, elapsed: float) -> str:
    """Time left at the pace so far, as h:mm:ss ("?" before any progress or without a total)."""
    if not total or done <= 0:
        return "?"
    left = max(0, round((total - done) * elapsed / done))
    return f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
