"""Where a model computes: the device a user names, the device of a loaded model, and moving a batch's tensors
there and back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from ..errors import DmcodecError
from ..model import DMCodec


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DmcodecError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DmcodecError(f"unknown --device {name!r}; use auto, cpu or cuda[:N]") from None


def model_device(model: DMCodec) -> torch.device:
    """The device of the model's weights."""
    return next(model.parameters()).device


def to_device(tensors: list[Tensor], device: torch.device, pinned: bool) -> list[Tensor]:
    """Host tensors [..., L_i] (equal but for the last axis) -> the same on ``device``. ``pinned`` (CUDA): in
    one copy, from pinned memory and asynchronous, instead of one blocking copy each."""
    if not (pinned and device.type == "cuda" and tensors):
        return [t.to(device) for t in tensors]
    joined = torch.cat(tensors, dim=-1).pin_memory().to(device, non_blocking=True)
    return list(joined.split([t.shape[-1] for t in tensors], dim=-1))


def to_host(tensors: list[Tensor]) -> list[Tensor]:
    """Tensors [..., L_i] (equal but for the last axis) -> the same on the CPU; from a GPU in one copy."""
    if not tensors or tensors[0].device.type == "cpu":
        return [t.cpu() for t in tensors]
    return list(torch.cat(tensors, dim=-1).cpu().split([t.shape[-1] for t in tensors], dim=-1))


@contextlib.contextmanager
def exact_convs(device: torch.device) -> Iterator[None]:
    """On CUDA, for the calls inside: cuDNN convolutions in true float32 (no TF32) with deterministic
    algorithms, so that a signal's codes do not depend on what else ran; the previous flags come back
    after. Elsewhere nothing."""
    if device.type != "cuda":
        yield
        return
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        yield
