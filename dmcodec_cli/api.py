"""The library's face: load a model, encode audio (a file, an array, a tensor), decode codes.

>>> import dmcodec_cli
>>> codec = dmcodec_cli.load()                     # doctest: +SKIP
>>> encoded = codec.encode("speech.flac")          # doctest: +SKIP
>>> audio = codec.decode(encoded)                  # doctest: +SKIP

Audio reaches the model as ``dmcodec encode`` brings it: channels averaged to mono, integer PCM
scaled to [-1, 1), any rate resampled with soxr (HQ) to ``codec.sample_rate``; codes are the CLI's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

from .audio import AudioReader, load_audio, resample, validate_samples
from .codes import EncodedAudio, check_codes, check_encoded
from .config import check_n_q
from .engine.device import pick_device
from .engine.encoder import DTYPES, BatchEncoder, EngineOptions
from .errors import DmcodecError
from .inference import decode_codes, encode_file, encode_samples
from .model import DMCodec
from .registry import load_model

#: The sample rates an array may be given at (Hz): what recordings have, with room on both sides.
MIN_RATE, MAX_RATE = 1000, 1_000_000
#: A path to an audio file, or samples: [L] mono, or [L, C] / [C, L] with the channels on the shorter axis.
AudioInput = Union[str, os.PathLike, np.ndarray, torch.Tensor]


def load(spec: str | os.PathLike | None = None, device: str | torch.device = "cpu", dtype: str = "fp32") -> "Codec":
    """A ``Codec`` for a model: None (the bundled default), a registered name, a release folder, a
    ``.pt`` / ``.safetensors`` checkpoint or a Hugging Face id, on ``device`` (``auto``, ``cpu``,
    ``cuda[:N]``), encoding with ``dtype`` arithmetic (fp32: the reference codes; bf16 / fp16: faster)."""
    if dtype not in DTYPES:
        raise DmcodecError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    device = device if isinstance(device, torch.device) else pick_device(str(device))
    model = load_model(None if spec is None else os.fspath(spec), device)
    return Codec(model, EngineOptions(dtype=dtype))


class Codec:
    """A loaded model that turns audio into ``EncodedAudio`` and codes back into audio (numpy out)."""

    def __init__(self, model: DMCodec, options: EngineOptions = EngineOptions()):
        self.model, self.options = model, options
        self.fingerprint = model.fingerprint

    @property
    def sample_rate(self) -> int:
        """Hz of the audio ``decode`` returns (and that ``encode`` resamples to)."""
        return self.model.sample_rate

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.model.config.frame_rate

    @property
    def n_q(self) -> int:
        """Codebooks per frame (at most; ``encode(..., n_q=k)`` keeps the first k)."""
        return self.model.n_q

    def encode(self, audio: AudioInput, sample_rate: int | None = None, n_q: int | None = None) -> EncodedAudio:
        """A file or samples -> ``EncodedAudio`` (codes int64 [n_q, ceil(num_samples / hop)]).

        ``sample_rate`` is required for samples and refused for a file (its header has it). A file is
        read block by block, so memory does not grow with its length.
        """
        options = self._options(n_q)
        if isinstance(audio, (str, os.PathLike)):
            _no_rate_for_files(sample_rate)
            with AudioReader(audio, self.sample_rate) as reader:
                codes = encode_file(self.model, reader, options.n_q, options)
            return self._encoded(codes, reader.samples_read)
        samples = to_mono(audio, sample_rate, self.sample_rate)
        return self._encoded(encode_samples(self.model, samples, options.n_q, options), len(samples))

    def encode_batch(self, audios: Sequence[AudioInput], sample_rate: int | None = None,
                     n_q: int | None = None) -> list[EncodedAudio]:
        """Many inputs (all files, or samples all at ``sample_rate``) encoded together by the corpus
        engine; each result equals ``encode`` of that input alone."""
        signals = []
        for audio in audios:
            if isinstance(audio, (str, os.PathLike)):
                _no_rate_for_files(sample_rate)
                signals.append(load_audio(audio, self.sample_rate).samples)
            else:
                signals.append(to_mono(audio, sample_rate, self.sample_rate))
        codes = BatchEncoder(self.model, self._options(n_q)).encode([torch.from_numpy(s) for s in signals])
        return [self._encoded(c.numpy(), len(s)) for c, s in zip(codes, signals, strict=True)]

    def decode(self, encoded: EncodedAudio | np.ndarray | torch.Tensor, force: bool = False) -> np.ndarray:
        """``EncodedAudio`` -> float32 [num_samples] at ``sample_rate``; bare codes [K, T] -> [T * hop].

        Codes another model made are refused (DmcodecError) unless ``force``.
        """
        if isinstance(encoded, EncodedAudio):
            codes = check_encoded(encoded, self.model.config, self.fingerprint, force)
            return decode_codes(self.model, codes)[:encoded.num_samples]
        if isinstance(encoded, torch.Tensor):
            encoded = encoded.detach().cpu().numpy()
        return decode_codes(self.model, check_codes(np.asarray(encoded), self.model.config))

    def _options(self, n_q: int | None) -> EngineOptions:
        return dataclasses.replace(self.options, n_q=check_n_q(n_q, self.n_q))

    def _encoded(self, codes: np.ndarray, num_samples: int) -> EncodedAudio:
        return EncodedAudio(codes, num_samples, self.sample_rate, self.fingerprint, self.options.dtype)


def _no_rate_for_files(sample_rate: int | None) -> None:
    if sample_rate is not None:
        raise DmcodecError("sample_rate is for arrays: a file's own rate is read from it; leave it out")


def to_mono(audio: np.ndarray | torch.Tensor, sample_rate: int | None, target_rate: int) -> np.ndarray:
    """Samples -> mono float32 [L] at ``target_rate``, as the CLI reads a file.

    ``audio``: [L] mono, or 2-D with the channels on the shorter axis ([L, C] as soundfile gives, [C, L]
    as torch gives; a square array is refused). Integer PCM is scaled to [-1, 1) (int16 / 32768, uint8
    centred on 128); the channels are averaged; then soxr (HQ) resamples ``sample_rate`` -> ``target_rate``.
    """
    if not (isinstance(sample_rate, (int, np.integer)) and not isinstance(sample_rate, bool) and sample_rate > 0):
        raise DmcodecError(f"an array needs its sample rate: codec.encode(samples, sample_rate=16000); "
                           f"got sample_rate={sample_rate!r}")
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise DmcodecError(f"sample_rate={sample_rate}: a recording's rate is {MIN_RATE}..{MAX_RATE} Hz")
    data = _to_float(audio)
    if data.ndim == 2:
        data = _mix_down(data)
    elif data.ndim != 1:
        raise DmcodecError(f"audio must be [samples] or [samples, channels] / [channels, samples], "
                           f"got shape {list(data.shape)}")
    validate_samples(data, "audio array")
    return np.ascontiguousarray(resample(data, int(sample_rate), target_rate), dtype=np.float32)


def _to_float(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    """float32 samples of any shape; integer PCM scaled to [-1, 1)."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        audio = (audio.float() if audio.is_floating_point() else audio).numpy()
    data = np.asarray(audio)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128) / 128
    if np.issubdtype(data.dtype, np.signedinteger):
        return (data / float(2 ** (8 * data.itemsize - 1))).astype(np.float32)
    if np.issubdtype(data.dtype, np.floating):
        return data.astype(np.float32, copy=False)
    raise DmcodecError(f"audio samples must be float or signed integer PCM (or uint8), got {data.dtype}")


def _mix_down(data: np.ndarray) -> np.ndarray:
    """[L, C] or [C, L] (the shorter axis is the channels) -> [L], the mean of the channels."""
    rows, columns = data.shape
    if rows == columns:
        raise DmcodecError(f"audio of shape {list(data.shape)}: cannot tell channels from samples; "
                           "give [samples] or [samples, channels]")
    frames = data if rows > columns else data.T
    return frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
