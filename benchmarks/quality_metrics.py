"""Time each quality metric on a real clip, or score a folder of clips against two degraded copies.

    .venv/bin/python benchmarks/quality_metrics.py [CLIP] [--repeat 3] [--without-numba]
    .venv/bin/python benchmarks/quality_metrics.py --corpus ../shared/data/speech

With a clip: milliseconds per call and per second of audio for every metric at 16 kHz (against the
band-limited noisy copy), and the spectrogram PNG. ``--without-numba`` times ViSQOL alone with numba
hidden (its pure-Python path; librosa, under DNSMOS and Resemblyzer, needs numba), to compare two runs.

With ``--corpus``: every clip against ``band8k`` (resampled to 8 kHz and back: a 4 kHz band limit) and
``band8k_noise`` (the same plus white noise of sigma 0.01), in one process: mean ± 95 % CI of each
metric per condition, and the mean seconds per clip of each metric, as markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT = Path(__file__).resolve().parents[1] / "tests/fixtures/speech/librispeech_test-other_3080-5032-0009.flac"
RATE = 16000


def band8k(signal: np.ndarray) -> np.ndarray:
    from dmcodec_cli.audio import resample

    return resample(resample(signal.astype(np.float32), RATE, 8000), 8000, RATE)[: len(signal)].astype(np.float64)


def band8k_noise(signal: np.ndarray) -> np.ndarray:
    return band8k(signal) + np.random.default_rng(0).normal(0, 0.01, len(signal))


def metric_functions() -> dict:
    """{name: f(reference, degraded) -> {metric: value}} for every metric group, each timed on its own."""
    from dmcodec_cli.quality import metrics
    from dmcodec_cli.quality.dnsmos import dnsmos
    from dmcodec_cli.quality.speaker import load_speaker_similarity
    from dmcodec_cli.quality.visqol import visqol

    speaker = load_speaker_similarity()
    groups = {name: (lambda f, n: lambda r, d: {n: f(r, d)})(getattr(metrics, name), name)
              for name in metrics.SIGNAL_METRICS}
    return {**groups, "visqol": lambda r, d: {"visqol": visqol(r, d)}, "dnsmos": lambda r, d: dnsmos(d),
            "speaker_similarity": lambda r, d: {"speaker_similarity": speaker(r, d)}}


def best_of(repeat: int, function, *args) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def time_one_clip(clip: Path, repeat: int, only: set[str] | None = None) -> None:
    from dmcodec_cli.audio import load_audio
    from dmcodec_cli.quality import plots

    reference = load_audio(clip, RATE).samples.astype(np.float64)
    degraded = band8k_noise(reference)
    seconds = len(reference) / RATE
    functions = {name: f for name, f in metric_functions().items() if only is None or name in only}
    for function in functions.values():  # build filterbanks, models and JIT code outside the timing
        function(reference, degraded)
    print(f"{clip.name}: {seconds:.2f} s at 16 kHz, best of {repeat}")
    print(f"{'metric':<20}{'ms / call':>12}{'ms / s audio':>14}")
    for name, function in functions.items():
        elapsed = best_of(repeat, function, reference, degraded)
        print(f"{name:<20}{elapsed * 1000:>12.1f}{elapsed * 1000 / seconds:>14.1f}")
    if only is not None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        elapsed = best_of(repeat, plots.spectrogram_png, Path(tmp) / "x.png", reference, degraded)
        size = (Path(tmp) / "x.png").stat().st_size
    print(f"{'spectrogram':<20}{elapsed * 1000:>12.1f}{elapsed * 1000 / seconds:>14.1f}  ({size / 1024:.0f} KiB PNG)")


def score_corpus(folder: Path) -> None:
    from dmcodec_cli.audio import load_audio
    from dmcodec_cli.inputs import audio_files
    from dmcodec_cli.quality.metrics import Missing
    from dmcodec_cli.quality.report import LABELS, describe

    clips = [load_audio(found.path, RATE).samples.astype(np.float64) for found in audio_files(folder)]
    functions = metric_functions()
    for function in functions.values():  # build filterbanks, models and JIT code outside the timing
        function(clips[0], band8k(clips[0]))
    original = [functions["dnsmos"](reference, reference)["dnsmos_ovrl"] for reference in clips]
    values: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, list[float]] = {}
    for condition, degrade in (("band8k", band8k), ("band8k_noise", band8k_noise)):
        rows = values.setdefault(condition, {})
        for reference in clips:
            degraded = degrade(reference)
            for group, function in functions.items():
                start = time.perf_counter()
                result = function(reference, degraded)
                seconds.setdefault(group, []).append(time.perf_counter() - start)
                for name, value in result.items():
                    rows.setdefault(name, []).append(None if isinstance(value, Missing) else value)
        rows["original_dnsmos_ovrl"] = [None if isinstance(v, Missing) else v for v in original]
    minutes = sum(len(c) for c in clips) / RATE / 60
    print(f"{len(clips)} clips, {minutes:.1f} min at 16 kHz; mean ± 95 % CI (n)\n")
    names = list(values["band8k"])
    print("| condition | " + " | ".join(LABELS[n] for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for condition, rows in values.items():
        cells = []
        for name in names:
            stats = describe(rows[name])
            cells.append(f"{stats['mean']:.3f} ± {stats['ci95']:.3f}" + ("" if stats["n"] == len(clips)
                                                                          else f" (n={stats['n']})"))
        print(f"| {condition} | " + " | ".join(cells) + " |")
    mean_length = sum(len(c) for c in clips) / RATE / len(clips)
    print(f"\nseconds per clip (mean clip {mean_length:.1f} s, both conditions)\n")
    print("| " + " | ".join(seconds) + " |")
    print("|---" * len(seconds) + "|")
    print("| " + " | ".join(f"{np.mean(s):.3f}" for s in seconds.values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--corpus", type=Path, help="score every clip of this folder against two degraded copies")
    parser.add_argument("--without-numba", action="store_true", help="ViSQOL's pure-Python path")
    args = parser.parse_args()
    if args.without_numba:
        sys.modules["numba"] = None  # visqol falls back to plain Python when numba cannot be imported
        time_one_clip(args.clip, args.repeat, only={"visqol"})
    elif args.corpus:
        score_corpus(args.corpus)
    else:
        time_one_clip(args.clip, args.repeat)


if __name__ == "__main__":
    main()
