"""The codec configuration: every key of the official DM-Codec ``config.json``, validated."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DmcodecError


@dataclass(frozen=True)
class CodecConfig:
    """Hyper-parameters of a DM-Codec model and its training.

    Field names are those of the official ``config.json`` so that file loads as it is. Derived values
    (hop length, frame rate, bitrate) are properties. The defaults are the official full-size model.
    """

    # architecture
    n_filters: int = 64
    strides: tuple[int, ...] = (8, 5, 4, 2)
    dimension: int = 1024
    semantic_dimension: int = 768
    bidirectional: bool = True
    dilation_base: int = 2
    residual_kernel_size: int = 3
    n_residual_layers: int = 1
    lstm_layers: int = 2
    activation: str = "ELU"
    codebook_size: int = 1024
    n_q: int = 8
    sample_rate: int = 16000
    # mel features of the training loss
    num_mels: int = 80
    num_freq: int = 1025
    n_fft: int = 1024
    hop_size: int = 240
    win_size: int = 1024
    fmin: int = 0
    fmax: int = 8000
    fmax_for_loss: int | None = None
    # loss weights
    mel_loss_lambdas: tuple[float, ...] = (45, 1, 1, 1)
    recon_loss_lambda: float = 500
    commitment_loss_lambda: float = 10
    distill_type: str = "d_axis"
    distill_loss_lambda: float = 120
    lambda_sim: float = 1.0
    # optimisation (read by the trainer)
    betas: tuple[float, float] = (0.9, 0.99)
    adam_b2: float = 0.9
    lr_decay: float = 0.98
    seed: int = 1234
    segment_size: int = 48000
    wd: float = 0
    num_workers: int = 4
    showpiece_num: int = 6
    project_name: str = "codec-dooku"
    epochs: int = 10
    num_warmup_steps: int = 0
    num_ckpt_keep: int = 3
    batch_size: int = 6
    learning_rate: float = 1e-4
    intial_learning_rate: float = 1e-3  # sic: the official key is misspelt
    log_steps: int = 10
    stdout_steps: int = 10
    save_model_steps: int = 1000
    # training-only extensions of ours (absent from the official file, defaults keep its behaviour)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("strides", "mel_loss_lambdas", "betas"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = list(self._problems())
        if problems:
            raise DmcodecError("invalid codec config: " + "; ".join(problems))

    def _problems(self):
        positive = ("n_filters", "dimension", "semantic_dimension", "lstm_layers", "codebook_size", "n_q",
                    "sample_rate", "residual_kernel_size", "dilation_base")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                yield f"{name} must be a positive integer, got {value!r}"
        if self.n_residual_layers < 0:
            yield f"n_residual_layers must be >= 0, got {self.n_residual_layers}"
        if not self.strides or any(not isinstance(s, int) or s <= 0 for s in self.strides):
            yield f"strides must be positive integers, got {list(self.strides)}"
        if self.activation != "ELU":
            yield f"only activation 'ELU' is supported, got {self.activation!r}"
        if self.distill_type not in ("d_axis", "t_axis"):
            yield f"distill_type must be 'd_axis' or 't_axis', got {self.distill_type!r}"
        if self.codebook_size > 32768:
            yield f"codebook_size {self.codebook_size} does not fit the int16 code files"

    # -- derived values -------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples per code frame (product of the strides; 320 for the official model)."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Code frames per second (50 for the official model)."""
        return self.sample_rate / self.hop_length

    @property
    def bits_per_codebook(self) -> float:
        return math.log2(self.codebook_size)

    def bitrate(self, n_q: int | None = None) -> float:
        """Bits per second when ``n_q`` codebooks (default: all) are kept."""
        return (n_q or self.n_q) * self.bits_per_codebook * self.frame_rate

    def num_frames(self, num_samples: int) -> int:
        """Frames the encoder makes of ``num_samples`` samples: ceil(samples / hop)."""
        return -(-num_samples // self.hop_length)

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("strides", "mel_loss_lambdas", "betas"):
            data[name] = list(data[name])
        if not data["extra"]:
            del data["extra"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecConfig":
        """Build from a dict; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DmcodecError(f"unknown codec config keys: {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise DmcodecError(f"invalid codec config: {exc}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "CodecConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DmcodecError(f"{path}: cannot read codec config ({exc})") from None
        if not isinstance(data, dict):
            raise DmcodecError(f"{path}: a codec config must be a JSON object")
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "CodecConfig":
        return dataclasses.replace(self, **changes)
