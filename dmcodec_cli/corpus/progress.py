"""Progress reporting: for corpus commands a no-op default and a display of utterances, hours, RTF and
ETA; for one long input the same over its audio seconds. On a terminal the display is a rich bar;
elsewhere (a log, a pipe) a plain line every few seconds (``loglines``) and one at the end."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from ..loglines import LogLines, eta


class Quiet:
    """The interface: ``start(total)``, ``advance(utterances, seconds, failed)``, ``stop()``."""

    def start(self, total: int, description: str = "") -> None: ...

    def advance(self, utterances: int = 1, seconds: float = 0.0, failed: int = 0) -> None: ...

    def stop(self) -> None: ...


def audio_text(seconds: float, wall: float, failed: int = 0) -> str:
    """Audio hours processed and the real-time factor (audio seconds per wall second)."""
    text = f"{seconds / 3600:.3f} h audio, {seconds / max(wall, 1e-9):.1f}x real time"
    return text + (f", {failed} failed" if failed else "")


class _AudioColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        wall = time.monotonic() - task.fields.get("t0", time.monotonic())
        return Text(audio_text(task.fields.get("audio", 0.0), wall, task.fields.get("failed", 0)))


class _Bar:
    """One rich bar on a terminal, else plain lines: the count done of ``total`` (in ``unit``; no count
    without one), audio hours, real-time factor, failures and ETA."""

    def __init__(self, columns: tuple, console: Console | None, disable: bool, unit: str | None):
        self.console = console or Console(stderr=True)
        self.plain = not disable and not self.console.is_terminal
        self.progress = Progress(*columns, console=self.console, disable=disable or self.plain, transient=False)
        self.unit = unit
        self.lines: LogLines | None = None
        self.task: TaskID | None = None
        self.description, self.total, self.completed, self.audio, self.failed = "", 0.0, 0.0, 0.0, 0

    def start(self, total: float, description: str) -> None:
        self.description, self.total = description, total
        self.lines = LogLines(self.console) if self.plain else None
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, audio=0.0, failed=0, t0=time.monotonic())

    def advance(self, completed: float, seconds: float, failed: int) -> None:
        self.completed, self.audio, self.failed = self.completed + completed, self.audio + seconds, self.failed + failed
        assert self.task is not None, "advance() before start()"
        self.progress.update(self.task, advance=completed, audio=self.audio, failed=self.failed)
        lines = self.lines
        if lines is not None:
            lines.tick(lambda: self.line(lines.elapsed))

    def line(self, wall: float) -> str:
        count = [f"{self.completed:g}/{self.total:g} {self.unit}"] if self.unit else []
        parts = [*count, audio_text(self.audio, wall, self.failed), f"ETA {eta(self.completed, self.total, wall)}"]
        return f"{self.description}: {', '.join(parts)}"

    def stop(self, failed: bool = False) -> None:
        if failed and self.task is not None:  # the error's one line is all that should remain
            self.progress.update(self.task, visible=False)
        self.progress.stop()
        lines = self.lines
        if lines is not None and not failed:
            lines.final(lambda: self.line(lines.elapsed))


class RichProgress(Quiet):
    """Corpus progress on ``console`` (stderr by default, so ``--json`` output stays clean)."""

    def __init__(self, console: Console | None = None, disable: bool = False):
        self._bar = _Bar((TextColumn("{task.description}"), BarColumn(),
                          TextColumn("{task.completed}/{task.total} utt"), _AudioColumn(),
                          TextColumn("ETA"), TimeRemainingColumn()), console, disable, "utt")

    def start(self, total: int, description: str = "encode") -> None:
        self._bar.start(total, description)

    def advance(self, utterances: int = 1, seconds: float = 0.0, failed: int = 0) -> None:
        self._bar.advance(utterances, seconds, failed)

    def stop(self) -> None:
        self._bar.stop()


class SecondsProgress:
    """Progress over one input's audio seconds (seconds done, real-time factor, ETA); a context manager."""

    def __init__(self, total_seconds: float, description: str, console: Console | None = None,
                 disable: bool = False):
        self._bar = _Bar((TextColumn("{task.description}"), BarColumn(), _AudioColumn(), TextColumn("ETA"),
                          TimeRemainingColumn()), console, disable, None)
        self._total, self._description = total_seconds, description

    def __enter__(self) -> "SecondsProgress":
        self._bar.start(self._total, self._description)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._bar.stop(failed=exc_type is not None)

    def advance(self, seconds: float) -> None:
        self._bar.advance(seconds, seconds, 0)
