"""Encoding and decoding of single signals with a loaded model (numpy in, numpy out).

Encoding goes through the corpus engine, so a long signal is encoded in windows with bounded memory;
up to ``WindowPlan().whole_seconds`` (32 s) it is the model's own whole-input encoding.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .corpus.engine import EngineOptions, encode_signal
from .model import DMCodec


def model_device(model: DMCodec) -> torch.device:
    return model.quantizer.vq.layers[0]._codebook.embed.device


@torch.inference_mode()
def encode_samples(model: DMCodec, samples: np.ndarray, n_q: int | None = None,
                   options: EngineOptions | None = None) -> np.ndarray:
    """Mono samples [L] at the model rate -> codes [n_q, ceil(L / hop)] int64."""
    options = options or EngineOptions()
    if n_q is not None:
        options = dataclasses.replace(options, n_q=n_q)
    audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    return encode_signal(model, audio, options).numpy()


@torch.inference_mode()
def decode_codes(model: DMCodec, codes: np.ndarray) -> np.ndarray:
    """Codes [K, T] -> mono samples [T * hop] float32 (codebooks 0..K-1)."""
    tensor = torch.from_numpy(np.asarray(codes, dtype=np.int64)).to(model_device(model))
    return model.decode(tensor[:, None]).view(-1).float().cpu().numpy()
