"""How the engine computes on a device, as data: one plan for CPUs, one for CUDA GPUs.

CPU (measured, docs/corpus.md): the convs as time-major matrix products (``time_major``) in tiles whose
intermediates stay in cache (2 s of audio for the encoder's conv stack, 1 s for the decoder's upsampling
stack); the LSTM over at most 16 slots, cut into stretches of at most 256 steps (oneDNN holds every step's
gates of a call); signals moved as they are.

CUDA (written for GPUs, not measured here: no GPU was lent while it was written; ``benchmarks/
gpu_throughput.py`` measures it): whole signals, no tiles (a tile costs a kernel launch per layer, and a
GPU's memory holds a 32 s piece's intermediates many times over); the convs as the model's own modules,
so cuDNN's, with TF32 off and deterministic algorithms (``torch.backends.cudnn.flags`` around the engine's
calls, restored after them); the LSTM over up to 64 slots in calls as long as the starts allow; signals
copied to the device in one pinned, asynchronous transfer per batch, and codes or samples back in one.
``conv_form="time-major"`` is the alternative for a GPU on which cuDNN's codes turn out to differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CONV_FORMS = ("time-major", "modules")


@dataclass(frozen=True)
class DevicePlan:
    """What the engine does on a device; ``for_device`` picks it, a caller may pass another."""

    conv_form: str  #: "time-major" (``time_major``'s matrix products) or "modules" (the model's convs: cuDNN)
    encoder_tile_frames: int | None  #: frames per tile of the encoder's conv stack; None: whole signals
    decoder_tile_frames: int | None  #: frames per tile of the decoder's upsampling stack; None: whole
    max_slots: int  #: sequences run side by side in the LSTM, at most
    stretch_steps: int | None  #: LSTM steps per call at most (None: from one start to the next)
    pinned: bool  #: host -> device copies from pinned memory, asynchronous (CUDA only)

    def __post_init__(self) -> None:
        """Refuse values that cannot be meant (ValueError naming the field and what is allowed)."""
        if self.conv_form not in CONV_FORMS:
            raise ValueError(f"conv_form must be one of {', '.join(CONV_FORMS)}, got {self.conv_form!r}")
        for name in ("encoder_tile_frames", "decoder_tile_frames", "stretch_steps"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a whole number >= 1 or None, got {value!r}")
        if self.conv_form == "modules" and (self.encoder_tile_frames or self.decoder_tile_frames):
            raise ValueError("the model's modules run on whole signals: tile frames must be None with them")
        if not (isinstance(self.max_slots, int) and self.max_slots >= 2):
            raise ValueError(f"max_slots must be a whole number >= 2 (a batch of one rounds differently), "
                             f"got {self.max_slots!r}")

    @classmethod
    def for_device(cls, device: torch.device | str) -> "DevicePlan":
        """``CUDA_PLAN`` for a CUDA device, else ``CPU_PLAN``."""
        return CUDA_PLAN if torch.device(device).type == "cuda" else CPU_PLAN


CPU_PLAN = DevicePlan(conv_form="time-major", encoder_tile_frames=100, decoder_tile_frames=50, max_slots=16,
                      stretch_steps=256, pinned=False)
CUDA_PLAN = DevicePlan(conv_form="modules", encoder_tile_frames=None, decoder_tile_frames=None, max_slots=64,
                       stretch_steps=None, pinned=True)
