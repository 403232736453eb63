"""Encoding and decoding of single signals with a loaded model (numpy in, numpy out)."""

from __future__ import annotations

import numpy as np
import torch

from .model import DMCodec


def model_device(model: DMCodec) -> torch.device:
    return model.quantizer.vq.layers[0]._codebook.embed.device


@torch.inference_mode()
def encode_samples(model: DMCodec, samples: np.ndarray, n_q: int | None = None) -> np.ndarray:
    """Mono samples [L] at the model rate -> codes [n_q, ceil(L / hop)] int64."""
    audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)).to(model_device(model))
    return model.encode(audio.view(1, 1, -1), n_q)[:, 0].cpu().numpy()


@torch.inference_mode()
def decode_codes(model: DMCodec, codes: np.ndarray) -> np.ndarray:
    """Codes [K, T] -> mono samples [T * hop] float32 (codebooks 0..K-1)."""
    tensor = torch.from_numpy(np.asarray(codes, dtype=np.int64)).to(model_device(model))
    return model.decode(tensor[:, None]).view(-1).float().cpu().numpy()
