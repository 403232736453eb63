"""Where a loaded model computes."""

from __future__ import annotations

import torch

from ..model import DMCodec


def model_device(model: DMCodec) -> torch.device:
    """The device of the model's weights (its first codebook's)."""
    return model.quantizer.vq.layers[0]._codebook.embed.device
