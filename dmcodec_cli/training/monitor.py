"""What a run reports: ``metrics.jsonl`` (one JSON object per logged step), TensorBoard and the console."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ..atomic import write_text_atomic

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records after ``step`` (the lost tail of an interrupted run, before resuming from ``step``), and any
    line that is not a whole record (the half-written last line of a killed run)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
            if (record := _record(line)) is not None and record["step"] <= step]
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def _record(line: str) -> dict[str, Any] | None:
    """A metrics line as its record, or None when it is not one."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return record if isinstance(step, int) and not isinstance(step, bool) else None


def read_metrics(path: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """Records of one split (``train`` or ``valid``) from a run's ``metrics.jsonl``."""
    lines = Path(path).read_text().splitlines()
    return [r for r in map(json.loads, filter(str.strip, lines)) if r["split"] == split]


def _tensorboard_writer(folder: Path) -> SummaryWriter | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the train extra is missing: metrics.jsonl still records everything
        return None
    return SummaryWriter(str(folder))


class Monitor:
    """Writes metrics of the main process; other processes get a no-op (``enabled=False``)."""

    def __init__(self, root: Path, enabled: bool, tensorboard: bool = True):
        self.enabled, self._shown_real = enabled, False
        self.metrics = root / "metrics.jsonl"
        self.writer = _tensorboard_writer(root / "tensorboard") if enabled and tensorboard else None

    def scalars(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.metrics, "a") as f:
            f.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{split}/{name}", value, step)

    def showpieces(self, step: int, clips: list[tuple[Tensor, Tensor]], sample_rate: int, mel) -> None:
        """Audio and log-mel images of validation clips (the originals once, at the first validation)."""
        if not self.enabled or self.writer is None:
            return
        for i, (real, fake) in enumerate(clips):
            if not self._shown_real:
                self.writer.add_audio(f"valid/{i}/original", real.clamp(-1, 1)[None], step, sample_rate)
            self.writer.add_audio(f"valid/{i}/reconstruction", fake.clamp(-1, 1)[None], step, sample_rate)
            figure = _mel_figure(mel(real[None].to(mel.filters.device))[0].cpu(),
                                 mel(fake[None].to(mel.filters.device))[0].cpu())
            if figure is not None:
                self.writer.add_figure(f"valid/{i}/mel", figure, step)
        self._shown_real = True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _mel_figure(real: Tensor, fake: Tensor):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, mel, title in zip(axes, (real, fake), ("original", "reconstruction"), strict=True):
        ax.imshow(mel.numpy(), origin="lower", aspect="auto", interpolation="none")
        ax.set_title(title)
    figure.tight_layout()
    return figure

