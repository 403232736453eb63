"""Audio file I/O: soundfile to read and write, soxr to resample, mix-down to mono by averaging."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .atomic import atomic_path
from .errors import DmcodecError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


@dataclass
class Audio:
    """Mono audio at the model rate, with what was done to it on the way in."""

    samples: np.ndarray  #: [L] float32
    sample_rate: int
    source_rate: int
    source_channels: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def describe(self) -> str:
        steps = []
        if self.source_channels > 1:
            steps.append(f"mixed {self.source_channels} channels down to mono (mean)")
        if self.source_rate != self.sample_rate:
            steps.append(f"resampled {self.source_rate} -> {self.sample_rate} Hz (soxr HQ)")
        return ", ".join(steps) or "used as is"


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample [L] or [L, C] float audio with soxr (high quality)."""
    if source_rate == target_rate:
        return samples
    return soxr.resample(samples, source_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def validate_samples(samples: np.ndarray, path: str | os.PathLike) -> None:
    """Refuse audio no model can use: empty, or with NaN / inf samples."""
    if samples.size == 0:
        raise DmcodecError(f"{path}: the audio is empty (0 samples); give a file with sound in it")
    if not np.isfinite(samples).all():
        raise DmcodecError(f"{path}: the audio has NaN or infinite samples; fix or re-export the file")


def load_audio(path: str | os.PathLike, sample_rate: int) -> Audio:
    """Read an audio file as mono float32 at ``sample_rate``. Raises DmcodecError on any bad input."""
    path = Path(path)
    if not path.is_file():
        raise DmcodecError(f"{path}: no such file")
    try:
        data, source_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DmcodecError(f"{path}: not a readable audio file ({reason})") from None
    except OSError as exc:
        raise DmcodecError(f"{path}: cannot read ({exc.strerror or exc})") from None
    validate_samples(data, path)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    samples = np.ascontiguousarray(resample(mono, source_rate, sample_rate), dtype=np.float32)
    return Audio(samples, sample_rate, source_rate, data.shape[1])


def save_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono audio [L] atomically (a temporary file renamed into place): never a torn file.

    The format follows the extension (.wav is written as 16-bit PCM, .flac as 16-bit FLAC). Samples
    beyond [-1, 1] are clipped by the integer formats.
    """
    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise DmcodecError(f"{path}: cannot write audio with extension {path.suffix!r}; use .wav, .flac or .ogg")
    subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    with atomic_path(path) as tmp:
        sf.write(tmp, np.asarray(samples, dtype=np.float32), sample_rate, format=fmt, subtype=subtype)
