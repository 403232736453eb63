"""Audio file I/O: soundfile to read and write, soxr to resample, mix-down to mono by averaging."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .atomic import atomic_path
from .errors import DmcodecError, printable

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}  #: extensions audio is written as


@dataclass
class AudioFormat:
    """Where mono audio at ``sample_rate`` came from: the file's rate and channels."""

    sample_rate: int
    source_rate: int
    source_channels: int

    def describe(self) -> str:
        steps = []
        if self.source_channels > 1:
            steps.append(f"mixed {self.source_channels} channels down to mono (mean)")
        if self.source_rate != self.sample_rate:
            steps.append(f"resampled {self.source_rate} -> {self.sample_rate} Hz (soxr HQ)")
        return ", ".join(steps) or "used as is"


@dataclass
class Audio(AudioFormat):
    """Mono audio at the model rate, with what was done to it on the way in."""

    samples: np.ndarray  #: [L] float32

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample [L] or [L, C] float audio with soxr (high quality)."""
    if source_rate == target_rate:
        return samples
    return soxr.resample(samples, source_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


#: The largest peak level accepted, 60 dB above full scale. Float files may go somewhat past 1.0 (an
#: unnormalised mix, inter-sample overs), but no recording is meant at 1000x full scale: such levels come
#: from a wrong scale (int samples stored as float, a gain bug), and the codec then gives codes of
#: silence without a word, so they are refused.
MAX_PEAK = 1000.0


def check_levels(samples: np.ndarray, path: str | os.PathLike) -> None:
    """Refuse samples (any shape) that are NaN / inf or whose peak exceeds ``MAX_PEAK``; empty passes."""
    if samples.size == 0:
        return
    peak = float(np.max(np.abs(samples)))
    if not np.isfinite(peak):
        raise DmcodecError(f"{printable(path)}: the audio has NaN or infinite samples; fix or re-export it")
    if peak > MAX_PEAK:
        raise DmcodecError(f"{printable(path)}: the audio's peak level is {peak:.4g}, more than {MAX_PEAK:g} (60 dB "
                           "above full scale); samples must lie in about [-1, 1]: rescale or re-export the file")


def validate_samples(samples: np.ndarray, path: str | os.PathLike) -> None:
    """Refuse audio no model can use: empty, with NaN / inf samples, or a peak beyond ``MAX_PEAK``."""
    if samples.size == 0:
        raise DmcodecError(f"{printable(path)}: the audio is empty (0 samples); give a file with sound in it")
    check_levels(samples, path)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Decoder and file-system errors -> DmcodecError naming the file."""
    try:
        yield
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DmcodecError(f"{printable(path)}: not a readable audio file ({reason})") from None
    except OSError as exc:
        raise _os_error(path, exc) from None


def _os_error(path: Path, exc: OSError) -> DmcodecError:
    if isinstance(exc, PermissionError):
        return DmcodecError(f"{printable(path)}: permission denied; make the file readable (chmod) or give "
                            "another one")
    return DmcodecError(f"{printable(path)}: cannot read ({exc.strerror or exc})")


def _special_kind(mode: int) -> str | None:
    """What a path that is not a regular file is, in words (None for a regular file)."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def _check_openable(path: Path) -> None:
    """Refuse a path that is missing, not a regular file, or not readable, with the cause named.

    A FIFO or a device is refused before it is opened (reading one could block for ever)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DmcodecError(f"{printable(path)}: no such file") from None
    except OSError as exc:
        raise _os_error(path, exc) from None
    kind = _special_kind(info.st_mode)
    if kind is not None:
        raise DmcodecError(f"{printable(path)}: is {kind}, not an audio file; give a regular audio file")
    with _reading(path):
        os.close(os.open(path, os.O_RDONLY))


class AudioReader:
    """An open audio file, read as mono float32 at ``sample_rate``: whole (``read``) or block by block
    (``blocks``). Raises DmcodecError for any bad input, on opening or while reading. A context manager.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int):
        self.path = Path(path)
        _check_openable(self.path)
        with _reading(self.path):
            self.file = sf.SoundFile(os.fsencode(self.path))  # bytes: names that are not UTF-8 open too
        self.format = AudioFormat(sample_rate, self.file.samplerate, self.file.channels)
        self.samples_read = 0  #: at ``sample_rate``, so far

    @property
    def duration(self) -> float:
        """Seconds, from the file's header (an estimate for some compressed formats)."""
        return self.file.frames / self.file.samplerate

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def read(self) -> Audio:
        """The whole file."""
        data = self._next(-1)
        validate_samples(data, self.path)
        samples = np.ascontiguousarray(resample(_mono(data), self.format.source_rate, self.format.sample_rate),
                                       dtype=np.float32)
        self.samples_read += len(samples)
        return Audio(**vars(self.format), samples=samples)

    def blocks(self, seconds: float = 10.0) -> Iterator[np.ndarray]:
        """The file from where it stands, as consecutive blocks [l] of about ``seconds``.

        Joined, the blocks equal ``read().samples`` bit for bit (soxr's stream resampler computes what
        its one-shot resampler does; tested), so a long file need never be held whole.
        """
        source_rate, rate = self.format.source_rate, self.format.sample_rate
        stream = (soxr.ResampleStream(source_rate, rate, 1, dtype="float32", quality="HQ")
                  if source_rate != rate else None)
        frames = max(1, int(seconds * source_rate))
        while True:
            data = self._next(frames)
            check_levels(data, self.path)
            last = len(data) < frames
            block = _mono(data) if stream is None else stream.resample_chunk(_mono(data), last=last)
            self.samples_read += len(block)
            if len(block):
                yield block
            if last:
                break
        if self.samples_read == 0:
            validate_samples(np.zeros(0, np.float32), self.path)

    def _next(self, frames: int) -> np.ndarray:
        with _reading(self.path):
            return self.file.read(frames, dtype="float32", always_2d=True)


def _mono(data: np.ndarray) -> np.ndarray:
    """[L, C] -> [L]: the mean of the channels."""
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]


def load_audio(path: str | os.PathLike, sample_rate: int) -> Audio:
    """Read an audio file as mono float32 at ``sample_rate``. Raises DmcodecError on any bad input."""
    with AudioReader(path, sample_rate) as reader:
        return reader.read()


def save_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono audio [L] atomically (a temporary file renamed into place): never a torn file.

    The format follows the extension (.wav is written as 16-bit PCM, .flac as 16-bit FLAC). Samples
    beyond [-1, 1] are clipped by the integer formats.
    """
    path = Path(path)
    fmt, subtype = _write_format(path)
    with atomic_path(path) as tmp:
        sf.write(tmp, np.asarray(samples, dtype=np.float32), sample_rate, format=fmt, subtype=subtype)


def _write_format(path: Path) -> tuple[str, str]:
    """(soundfile format, subtype) that ``path``'s extension asks for; DmcodecError for any other."""
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DmcodecError(f"{path}: cannot write audio with extension {path.suffix!r}; use .wav, .flac or .ogg")
    return fmt, "VORBIS" if fmt == "OGG" else "PCM_16"


class AudioWriter:
    """Mono audio written block by block, as ``save_audio`` writes it whole (same formats, subtype and
    clipping), so a long signal need never be held. A context manager: the blocks go to a temporary
    name beside ``path``, renamed into place when the ``with`` block ends without an error and removed
    when it raises, so ``path`` is whole or untouched.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int):
        self.path = Path(path)
        self.format, self.subtype = _write_format(self.path)
        self.sample_rate = sample_rate
        self.samples_written = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "AudioWriter":
        with self._stack:
            tmp = self._stack.enter_context(atomic_path(self.path))
            with self._writing():
                self.file = self._stack.enter_context(
                    sf.SoundFile(tmp, "w", self.sample_rate, 1, self.subtype, format=self.format))
            self._stack = self._stack.pop_all()  # opened: kept open until __exit__
        return self

    def write(self, samples: np.ndarray) -> None:
        """Append samples [l] (float; beyond [-1, 1] clipped by the integer formats)."""
        with self._writing():
            self.file.write(np.asarray(samples, dtype=np.float32))
        self.samples_written += len(samples)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """libsndfile's errors (and its short writes, which soundfile only asserts) -> DmcodecError."""
        try:
            yield
        except (sf.LibsndfileError, AssertionError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "fewer samples written than given"
            raise DmcodecError(f"{self.path}: cannot write the audio ({reason}); check the folder's "
                               "permissions and free space") from None

    def __exit__(self, *exc) -> bool | None:
        # closes the file first, then atomic_path renames (no exception) or removes the temporary
        return self._stack.__exit__(*exc)
