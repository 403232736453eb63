"""The console progress of a training run, showing the main losses: a rich bar on a terminal, else (a log,
a pipe) a plain line every few seconds and one at the end."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..loglines import LogLines, eta

console_err = Console(stderr=True, highlight=False)

SHOWN = ("generator", "mel_error", "distill", "discriminator")


class TrainProgress:
    def __init__(self, total: int, start: int, enabled: bool = True, console: Console = console_err):
        self.total, self.start, self.step, self.losses = total, start, start, ""
        self.lines = LogLines(console) if enabled and not console.is_terminal else None
        self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                                 console=console, disable=not enabled or self.lines is not None, transient=False)
        self.task = self.progress.add_task("train", total=total, completed=start, losses="")

    def update(self, step: int, values: dict[str, float]) -> None:
        self.step = step
        self.losses = "  ".join(f"{name} {values[name]:.3f}" for name in SHOWN if name in values)
        self.progress.update(self.task, completed=step, losses=self.losses)
        lines = self.lines
        if lines is not None:
            lines.tick(lambda: self.line(lines.elapsed))

    def line(self, elapsed: float) -> str:
        left = eta(self.step - self.start, self.total - self.start, elapsed)
        return f"train: step {self.step}/{self.total}, ETA {left}" + (f", {self.losses}" if self.losses else "")

    def __enter__(self) -> "TrainProgress":
        self.progress.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.progress.stop()
        lines = self.lines
        if lines is not None and exc_type is None:
            lines.final(lambda: self.line(lines.elapsed))
