"""Time each quality metric (and the spectrogram PNG) on a real clip and a degraded copy of it.

    .venv/bin/python benchmarks/quality_metrics.py [CLIP] [--repeat 3]

Prints milliseconds per call and per second of audio, for the signal metrics at 16 kHz.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from dmcodec_cli.audio import load_audio, resample
from dmcodec_cli.quality import metrics, plots

DEFAULT = Path(__file__).resolve().parents[1] / "tests/fixtures/speech/librispeech_test-other_3080-5032-0009.flac"


def best_of(repeat: int, function, *args) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reference = load_audio(args.clip, metrics.METRIC_RATE).samples.astype(np.float64)
    degraded = resample(resample(reference.astype(np.float32), 16000, 8000), 8000, 16000)[: len(reference)]
    degraded = degraded + np.random.default_rng(0).normal(0, 0.01, len(degraded))
    seconds = len(reference) / metrics.METRIC_RATE
    metrics.mel_distance(reference, degraded)  # build the filterbank outside the timing
    print(f"{args.clip.name}: {seconds:.2f} s at 16 kHz, best of {args.repeat}")
    print(f"{'metric':<14}{'ms / call':>12}{'ms / s audio':>14}")
    for name in metrics.SIGNAL_METRICS:
        elapsed = best_of(args.repeat, getattr(metrics, name), reference, degraded)
        print(f"{name:<14}{elapsed * 1000:>12.1f}{elapsed * 1000 / seconds:>14.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        elapsed = best_of(args.repeat, plots.spectrogram_png, Path(tmp) / "x.png", reference, degraded)
        size = (Path(tmp) / "x.png").stat().st_size
    print(f"{'spectrogram':<14}{elapsed * 1000:>12.1f}{elapsed * 1000 / seconds:>14.1f}  ({size / 1024:.0f} KiB PNG)")


if __name__ == "__main__":
    main()
