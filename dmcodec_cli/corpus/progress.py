"""Progress reporting: for corpus commands a no-op default and a rich bar (utterances, hours, RTF, ETA);
for one long input a bar over its audio seconds."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text


class Quiet:
    """The interface: ``start(total)``, ``advance(utterances, seconds, failed)``, ``stop()``."""

    def start(self, total: int, description: str = "") -> None: ...

    def advance(self, utterances: int = 1, seconds: float = 0.0, failed: int = 0) -> None: ...

    def stop(self) -> None: ...


class _AudioColumn(ProgressColumn):
    """Audio hours processed and the real-time factor (audio seconds per wall second)."""

    def render(self, task: Task) -> Text:
        seconds = task.fields.get("audio", 0.0)
        wall = max(time.monotonic() - task.fields.get("t0", time.monotonic()), 1e-9)
        failed = task.fields.get("failed", 0)
        text = f"{seconds / 3600:.3f} h audio, {seconds / wall:.1f}x real time"
        return Text(text + (f", {failed} failed" if failed else ""))


class RichProgress(Quiet):
    """A rich progress bar on ``console`` (stderr by default, so ``--json`` output stays clean)."""

    def __init__(self, console: Console | None = None, disable: bool = False):
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TextColumn("{task.completed}/{task.total} utt"), _AudioColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(),
                                  console=console or Console(stderr=True), disable=disable, transient=False)
        self._task = None

    def start(self, total: int, description: str = "encode") -> None:
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, audio=0.0, failed=0, t0=time.monotonic())

    def advance(self, utterances: int = 1, seconds: float = 0.0, failed: int = 0) -> None:
        task = self._progress.tasks[self._task]
        self._progress.update(self._task, advance=utterances, audio=task.fields["audio"] + seconds,
                              failed=task.fields["failed"] + failed)

    def stop(self) -> None:
        self._progress.stop()


class SecondsProgress:
    """A rich bar over one input's audio seconds (seconds done, real-time factor, ETA); a context manager."""

    def __init__(self, total_seconds: float, description: str, console: Console | None = None,
                 disable: bool = False):
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), _AudioColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(), console=console or Console(stderr=True),
                                  disable=disable, transient=False)
        self._task = self._progress.add_task(description, total=total_seconds, audio=0.0, t0=time.monotonic())

    def __enter__(self) -> "SecondsProgress":
        self._progress.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:  # the error's one line is all that should remain
            self._progress.update(self._task, visible=False)
        self._progress.stop()

    def advance(self, seconds: float) -> None:
        task = self._progress.tasks[self._task]
        self._progress.update(self._task, advance=seconds, audio=task.fields["audio"] + seconds)
