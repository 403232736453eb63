"""The console progress bar of a training run (rich), showing the main losses."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console_err = Console(stderr=True, highlight=False)

SHOWN = ("generator", "mel_error", "distill", "discriminator")


class TrainProgress:
    def __init__(self, total: int, start: int, enabled: bool = True):
        self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                                 console=console_err, disable=not enabled, transient=False)
        self.task = self.progress.add_task("train", total=total, completed=start, losses="")

    def update(self, step: int, values: dict[str, float]) -> None:
        losses = "  ".join(f"{name} {values[name]:.3f}" for name in SHOWN if name in values)
        self.progress.update(self.task, completed=step, losses=losses)

    def __enter__(self) -> "TrainProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
