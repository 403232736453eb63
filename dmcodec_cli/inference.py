"""Encoding and decoding of single signals and files with a loaded model (numpy out).

Encoding goes through the corpus engine, so a long signal is encoded in windows with bounded memory;
up to ``WindowPlan().whole_seconds`` (32 s) it is the model's own whole-input encoding. ``encode_file``
reads a file block by block as well: an hour-long input is never held whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from .audio import AudioReader
from .corpus.engine import BatchEncoder, EngineOptions
from .corpus.windows import stitch, stream_pieces
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


@torch.inference_mode()
def decode_codes(model: DMCodec, codes: np.ndarray) -> np.ndarray:
    """Codes [K, T] -> mono samples [T * hop] float32 (codebooks 0..K-1)."""
    tensor = torch.from_numpy(np.asarray(codes, dtype=np.int64)).to(model_device(model))
    return model.decode(tensor[:, None]).view(-1).float().cpu().numpy()
