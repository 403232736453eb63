"""PNG plots with matplotlib's Agg canvas (no pyplot, no global backend switch): spectrograms of a
reference / degraded pair, and quality against bitrate."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from .metrics import EXTRA_HINT, HIGHER_IS_BETTER, METRIC_RATE
from .report import LABELS, TABLE_METRICS


def unavailable() -> str | None:
    """None when plots can be drawn, else why not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"matplotlib not installed ({EXTRA_HINT})"
    return None


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> None:
    """Write the PNG atomically (temporary file renamed into place)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)


def _log_mel(signal: np.ndarray) -> np.ndarray:
    import torch

    from .metrics import log_mel_module

    with torch.inference_mode():
        return log_mel_module()(torch.from_numpy(np.asarray(signal, np.float32))[None])[0].numpy()


def spectrogram_png(path: str | os.PathLike, reference: np.ndarray, degraded: np.ndarray, title: str = "") -> None:
    """Log-mel spectrograms of two 16 kHz signals [L1], [L2], original above, degraded below, on one colour scale."""
    mels = [_log_mel(reference), _log_mel(degraded)]
    low, high = min(m.min() for m in mels), max(m.max() for m in mels)
    seconds = max(len(reference), len(degraded)) / METRIC_RATE
    figure = _figure(10, 5.5)
    axes = figure.subplots(2, 1, sharex=True)
    images = []
    for ax, mel, label in zip(axes, mels, ("original", "reconstructed / degraded"), strict=True):
        frames = mel.shape[1]
        images.append(ax.imshow(mel, origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma",
                                extent=(0, frames * 240 / METRIC_RATE, 0, mel.shape[0])))
        ax.set_title(label, fontsize=10)
        ax.set_ylabel("mel bin")
    axes[1].set_xlabel("time (s)")
    axes[1].set_xlim(0, seconds)
    figure.colorbar(images[-1], ax=axes, label="log magnitude")  # one colour scale: any image will do
    if title:
        figure.suptitle(title, fontsize=11)
    _save(figure, Path(path))


def bitrate_png(path: str | os.PathLike, levels: list[dict]) -> None:
    """Mean ± 95 % CI of each available metric against bitrate (kbps), one panel per metric, from
    ``report.levels`` of a roundtrip result."""
    metrics = [m for m in TABLE_METRICS if any(level["summary"][m]["mean"] is not None for level in levels)]
    figure = _figure(4 * max(len(metrics), 1), 3.4)
    axes = np.atleast_1d(figure.subplots(1, max(len(metrics), 1)))
    for ax, name in zip(axes, metrics):
        points = [(level["bitrate_bps"] / 1000, level["summary"][name]) for level in levels
                  if level["summary"][name]["mean"] is not None]
        kbps = [p[0] for p in points]
        means = [p[1]["mean"] for p in points]
        errors = [p[1]["ci95"] or 0.0 for p in points]
        ax.errorbar(kbps, means, yerr=errors, marker="o", capsize=3)
        for (x, _), level in zip(points, [lv for lv in levels if lv["summary"][name]["mean"] is not None], strict=True):
            ax.annotate(f"n_q={level['n_q']}", (x, level["summary"][name]["mean"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel("bitrate (kbps)")
        ax.set_title(LABELS[name] + (" (higher is better)" if HIGHER_IS_BETTER[name] else " (lower is better)"),
                     fontsize=10)
        ax.grid(alpha=0.3)
    _save(figure, Path(path))
