"""Encoding and decoding of single signals and files with a loaded model (numpy out).

Both go through the inference engine (``dmcodec_cli.engine``), so a long signal is encoded in windows
with bounded memory; up to ``WindowPlan().whole_seconds`` (32 s) it is encoded whole. ``encode_file``
reads a file block by block as well: an hour-long input is never held whole. Decoding is windowed the
same way (``iter_decode``), and ``decode_file`` writes the blocks as they come: memory does not grow
with the length of the codes either.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator

import numpy as np
import torch

from .audio import AudioReader, AudioWriter
from .engine.decoder import DECODE_MAX_DIFF, DECODE_RMS_DIFF, DECODE_WINDOWS, BatchDecoder, DecodeOptions
from .engine.device import model_device
from .engine.encoder import BatchEncoder, EngineOptions
from .engine.windows import WindowPlan, stitch, stream_pieces
from .model import DMCodec

__all__ = ["DECODE_MAX_DIFF", "DECODE_RMS_DIFF", "DECODE_WINDOWS", "decode_codes", "decode_file", "encode_file",
           "encode_samples", "iter_decode", "model_device"]


def _engine(model: DMCodec, n_q: int | None, options: EngineOptions | None) -> BatchEncoder:
    options = options or EngineOptions()
    return BatchEncoder(model, dataclasses.replace(options, n_q=n_q) if n_q is not None else options)


def encode_samples(model: DMCodec, samples: np.ndarray, n_q: int | None = None,
                   options: EngineOptions | None = None) -> np.ndarray:
    """Mono samples [L] at the model rate -> codes [n_q, ceil(L / hop)] int64."""
    audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    return _engine(model, n_q, options).encode([audio])[0].numpy()


def encode_file(model: DMCodec, reader: AudioReader, n_q: int | None = None, options: EngineOptions | None = None,
                progress: Callable[[float], None] = lambda seconds: None) -> np.ndarray:
    """An open audio file -> codes [n_q, ceil(L / hop)] int64, the same as ``encode_samples`` of its samples.

    The file is read in blocks and its windows are encoded as they fill, so memory does not grow with it.
    ``progress`` is called with the seconds of audio each window adds.
    """
    engine = _engine(model, n_q, options)
    windows = stream_pieces(reader.blocks(), model.hop_length, model.sample_rate, engine.options.windows)
    kept = []
    for codes in engine.encode_pieces((p, torch.from_numpy(w)) for p, w, _ in windows):
        kept.append(codes)
        progress(codes.shape[1] * model.hop_length / model.sample_rate)
    return stitch(kept).numpy()


def iter_decode(model: DMCodec, codes: np.ndarray, plan: WindowPlan = DECODE_WINDOWS) -> Iterator[np.ndarray]:
    """Codes [K, T] (any integer array, e.g. memory-mapped) -> consecutive blocks of mono samples, float32,
    joined [T * hop] (codebooks 0..K-1), by the decode engine (``engine.decoder.BatchDecoder``).

    Up to ``plan.longest_whole_seconds`` of frames the one block is the whole decoding. Longer codes are
    decoded window by window: each window keeps ``plan.window_seconds`` of frames and decodes
    ``plan.context_seconds`` more on each side, which are thrown away (the decoder's LSTM is
    unidirectional: the left context lets its state settle, the right one covers the convolutions). With
    ``DECODE_WINDOWS`` the samples differ from whole decoding by at most ``DECODE_MAX_DIFF`` (1e-4; RMS
    ``DECODE_RMS_DIFF``, 1e-5) on real speech, and the windows are joined by a plain cut: the step at a
    boundary is the signal's own within that bound, so no crossfade is needed. Windows are decoded in
    groups of ``DecodeOptions().batch_seconds`` of audio, and only a group's codes are converted to int64
    at a time, so memory does not grow with T.
    """
    return BatchDecoder(model, DecodeOptions(windows=plan)).blocks(codes)


def decode_codes(model: DMCodec, codes: np.ndarray) -> np.ndarray:
    """Codes [K, T] -> mono samples [T * hop] float32 (codebooks 0..K-1), as ``iter_decode`` gives them."""
    blocks = list(iter_decode(model, codes))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def decode_file(model: DMCodec, codes: np.ndarray, path: str | os.PathLike, num_samples: int | None = None,
                decoder: BatchDecoder | None = None) -> int:
    """Decode codes [K, T] into the audio file ``path`` window by window (``iter_decode``), written as it
    comes (``AudioWriter``: whole or absent). ``num_samples`` trims to the original length; windows past it
    are not decoded. ``decoder``: an engine to reuse across files (default: a new one). Returns the
    samples written.
    """
    decoder = decoder or BatchDecoder(model)
    limit = codes.shape[1] * model.hop_length if num_samples is None else num_samples
    with AudioWriter(path, model.sample_rate) as writer:
        for block in decoder.blocks(codes, limit):
            writer.write(block[:limit - writer.samples_written])
    return writer.samples_written
