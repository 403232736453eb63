"""Encoding and decoding of single signals and files with a loaded model (numpy out).

Encoding goes through the corpus engine, so a long signal is encoded in windows with bounded memory;
up to ``WindowPlan().whole_seconds`` (32 s) it is the model's own whole-input encoding. ``encode_file``
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
from .corpus.engine import BatchEncoder, EngineOptions
from .corpus.windows import WindowPlan, plan_pieces, stitch, stream_pieces
from .model import DMCodec


def model_device(model: DMCodec) -> torch.device:
    return model.quantizer.vq.layers[0]._codebook.embed.device


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


#: Codes up to 32 s (1600 frames, as for encoding) are decoded whole, as the model does; longer ones in
#: windows keeping 16 s with 2 s of context on each side: 20 s decoded at once, so that the full-size model
#: stays within 1.5 GB (its activations take about 27 MB per second decoded at once; 32 s windows: 1.76 GB).
DECODE_WINDOWS = WindowPlan(window_seconds=16.0, context_seconds=2.0)
#: |windowed - whole| on real speech, at most (samples in [-1, 1]); measured on 100 s by
#: ``benchmarks/decode_memory.py boundaries``: max 2.3e-7 / RMS 2.0e-8 (dmcodec-mini), max 4.3e-6 / RMS 4.8e-7
#: (reference small model); with 1 s of context 2.9e-4 for the latter, without any 0.16 / 2.4.
DECODE_MAX_DIFF, DECODE_RMS_DIFF = 1e-4, 1e-5


def iter_decode(model: DMCodec, codes: np.ndarray, plan: WindowPlan = DECODE_WINDOWS) -> Iterator[np.ndarray]:
    """Codes [K, T] (any integer array, e.g. memory-mapped) -> consecutive blocks of mono samples, float32,
    joined [T * hop] (codebooks 0..K-1).

    Up to ``plan.longest_whole_seconds`` of frames the one block is the model's whole decoding. Longer
    codes are decoded window by window: each window keeps ``plan.window_seconds`` of frames and decodes
    ``plan.context_seconds`` more on each side, which are thrown away (the decoder's LSTM is
    unidirectional: the left context lets its state settle, the right one covers the convolutions). With
    ``DECODE_WINDOWS`` the samples differ from whole decoding by at most ``DECODE_MAX_DIFF`` (1e-4; RMS
    ``DECODE_RMS_DIFF``, 1e-5) on real speech, and the windows are joined by a plain cut: the step at a
    boundary is the signal's own within that bound, so no crossfade is needed. Only one window's codes are
    converted to int64 and decoded at a time, so memory does not grow with T.
    """
    hop = model.hop_length
    for piece in plan_pieces(codes.shape[1] * hop, hop, model.sample_rate, plan):
        audio = _decode_frames(model, codes[:, piece.start // hop:piece.stop // hop])
        yield audio[piece.keep_start * hop:piece.keep_stop * hop]


@torch.inference_mode()
def _decode_frames(model: DMCodec, codes: np.ndarray) -> np.ndarray:
    """Codes [K, t] -> samples [t * hop] float32."""
    tensor = torch.from_numpy(np.asarray(codes, dtype=np.int64)).to(model_device(model))
    return model.decode(tensor[:, None]).view(-1).float().cpu().numpy()


def decode_codes(model: DMCodec, codes: np.ndarray) -> np.ndarray:
    """Codes [K, T] -> mono samples [T * hop] float32 (codebooks 0..K-1), as ``iter_decode`` gives them."""
    blocks = list(iter_decode(model, codes))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def decode_file(model: DMCodec, codes: np.ndarray, path: str | os.PathLike, num_samples: int | None = None) -> int:
    """Decode codes [K, T] into the audio file ``path`` window by window (``iter_decode``), written as it
    comes (``AudioWriter``: whole or absent). ``num_samples`` trims to the original length. Returns the
    samples written.
    """
    limit = codes.shape[1] * model.hop_length if num_samples is None else num_samples
    with AudioWriter(path, model.sample_rate) as writer:
        for block in iter_decode(model, codes):
            writer.write(block[:limit - writer.samples_written])
            if writer.samples_written >= limit:
                break
    return writer.samples_written
