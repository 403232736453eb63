"""The codec configuration: every key of the official DM-Codec ``config.json``, validated."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DmcodecError

#: Allowed ranges of the integer fields: wide enough for any model that can be meant, narrow enough that a
#: config is refused with a line before anything is allocated. Codes are int16 in code files and stores,
#: so a codebook holds at most 32768 codes (values 0..32767).
RANGES: dict[str, tuple[int, int]] = {
    "n_filters": (1, 1024), "dimension": (1, 8192), "semantic_dimension": (1, 8192), "dilation_base": (1, 16),
    "residual_kernel_size": (1, 31), "n_residual_layers": (0, 8), "lstm_layers": (1, 8),
    "codebook_size": (2, 32768), "n_q": (1, 64), "sample_rate": (8000, 192000),
    "num_mels": (1, 512), "num_freq": (1, 65537), "n_fft": (16, 65536), "hop_size": (1, 65536),
    "win_size": (1, 65536), "fmin": (0, 96000), "fmax": (1, 96000),
    "segment_size": (1, 192000 * 600), "batch_size": (1, 1 << 16), "epochs": (0, 1 << 31),
    "num_workers": (0, 1024), "showpiece_num": (0, 1 << 16), "num_warmup_steps": (0, 1 << 40),
    "num_ckpt_keep": (0, 1 << 16), "log_steps": (1, 1 << 40), "stdout_steps": (1, 1 << 40),
    "save_model_steps": (1, 1 << 40), "seed": (-(1 << 63), (1 << 63) - 1),
}
#: A config whose model would hold more numbers (parameters and buffers) than this is refused (8 GB in float32;
#: the official model holds 120 M).
MAX_PARAMETERS = 2e9

_INT, _FLOAT, _BOOL, _STR = "an integer", "a finite number", "true or false", "a string"
_KINDS: dict[str, str] = {
    **{name: _INT for name in RANGES}, "bidirectional": _BOOL,
    **{name: _STR for name in ("activation", "distill_type", "project_name")},
    **{name: _FLOAT for name in ("recon_loss_lambda", "commitment_loss_lambda", "distill_loss_lambda", "lambda_sim",
                                 "adam_b2", "lr_decay", "wd", "learning_rate", "intial_learning_rate")},
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _kind_ok(kind: str, value: Any) -> bool:
    return {_INT: _is_int, _FLOAT: _is_number, _BOOL: lambda v: isinstance(v, bool),
            _STR: lambda v: isinstance(v, str)}[kind](value)


def _type_problems(config: "CodecConfig"):
    """Strict JSON types: no string for a number, no bool for an int, no 3.5 for an int, no NaN."""
    for name, kind in _KINDS.items():
        value = getattr(config, name)
        if not _kind_ok(kind, value):
            yield f"{name} must be {kind}, got {value!r}"
    if config.fmax_for_loss is not None and not _is_int(config.fmax_for_loss):
        yield f"fmax_for_loss must be an integer or null, got {config.fmax_for_loss!r}"
    for name, check, kind in (("strides", _is_int, "integers"), ("mel_loss_lambdas", _is_number, "finite numbers"),
                              ("betas", _is_number, "finite numbers")):
        value = getattr(config, name)
        if not isinstance(value, (list, tuple)) or not all(check(v) for v in value):
            yield f"{name} must be a list of {kind}, got {value!r}"
    if not isinstance(config.extra, dict):
        yield f"extra must be a JSON object, got {config.extra!r}"


def _conv(c_in: int, c_out: int, kernel: int) -> int:
    """Weight-normed conv: weight_v, weight_g and bias."""
    return c_in * c_out * kernel + 2 * c_out


def _lstm(channels: int, layers: int, directions: int) -> int:
    first = 4 * channels * (channels + channels + 2)
    later = 4 * channels * (channels * directions + channels + 2)
    return directions * (first + (layers - 1) * later)


def parameter_estimate(config: "CodecConfig") -> int:
    """Parameters and buffers of ``DMCodec(config)``, counted from the config without building it."""
    c = config

    def residual(channels: int) -> int:
        half = channels // 2
        return c.n_residual_layers * (_conv(channels, half, c.residual_kernel_size) + _conv(half, channels, 1)
                                      + _conv(channels, channels, 1))

    total, channels = _conv(1, c.n_filters, 7) + _conv(c.n_filters, 1, 7), c.n_filters
    for stride in reversed(c.strides):  # an encoder stage and its mirror in the decoder
        total += 2 * residual(channels) + 2 * _conv(channels, 2 * channels, 2 * stride) - channels
        channels *= 2
    directions = 2 if c.bidirectional else 1
    total += _lstm(channels, c.lstm_layers, directions) + _conv(channels * directions, c.dimension, 7)
    total += _lstm(channels, c.lstm_layers, 1) + _conv(c.dimension, channels, 7)
    if c.semantic_dimension != c.dimension:  # the projection exists only then
        total += c.dimension * c.semantic_dimension + c.semantic_dimension
    total += c.n_q * (2 * c.codebook_size * c.dimension + c.codebook_size + 1)
    return total


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
        problems = list(_type_problems(self))
        if not problems:  # ranges and sizes only once every field has its type
            for name in ("strides", "mel_loss_lambdas", "betas"):
                object.__setattr__(self, name, tuple(getattr(self, name)))
            problems = list(self._problems())
        if problems:
            raise DmcodecError("invalid codec config: " + "; ".join(problems))

    def _problems(self):
        sizes_ok = True
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:
                sizes_ok = False
                yield f"{name} must be from {low} to {high}, got {value}"
        if self.fmax_for_loss is not None and not 0 < self.fmax_for_loss <= self.sample_rate / 2:
            yield f"fmax_for_loss must be null or in (0, sample_rate / 2], got {self.fmax_for_loss}"
        if not 1 <= len(self.strides) <= 8 or any(not 1 <= s <= 64 for s in self.strides):
            sizes_ok = False
            yield f"strides must be 1 to 8 integers from 1 to 64, got {list(self.strides)}"
        elif self.hop_length > self.sample_rate:
            yield (f"strides {list(self.strides)} make a hop of {self.hop_length} samples, more than one second "
                   f"at {self.sample_rate} Hz; the hop (product of the strides) must be at most sample_rate")
        if self.activation != "ELU":
            yield f"only activation 'ELU' is supported, got {self.activation!r}"
        if self.distill_type not in ("d_axis", "t_axis"):
            yield f"distill_type must be 'd_axis' or 't_axis', got {self.distill_type!r}"
        if len(self.betas) != 2:
            yield f"betas must be two numbers, got {list(self.betas)}"
        if not self.mel_loss_lambdas:
            yield "mel_loss_lambdas must hold at least one number"
        if not self.fmin < self.fmax <= self.sample_rate / 2:
            yield f"fmin < fmax <= sample_rate / 2 is needed, got fmin {self.fmin}, fmax {self.fmax}"
        if self.win_size > self.n_fft:
            yield f"win_size ({self.win_size}) must not exceed n_fft ({self.n_fft})"
        if sizes_ok:
            params = parameter_estimate(self)
            if params > MAX_PARAMETERS:
                yield (f"this architecture would have about {params:,.0f} parameters, more than the "
                       f"{MAX_PARAMETERS:,.0f} allowed; check n_filters, strides, dimension and lstm_layers")

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
    def from_dict(cls, data: dict[str, Any], source: str = "codec config") -> "CodecConfig":
        """Build from a dict; unknown keys are an error (a typo must not pass silently).

        Errors name ``source`` (the file) and say what is allowed."""
        if not isinstance(data, dict):
            raise DmcodecError(f"{source}: a codec config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DmcodecError(f"{source}: unknown codec config keys: {', '.join(unknown)} (a typo? the keys "
                               "are those of the official config.json, plus 'extra')")
        try:
            return cls(**data)
        except DmcodecError as exc:
            raise DmcodecError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise DmcodecError(f"{source}: invalid codec config: {exc}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "CodecConfig":
        """Read a ``config.json``; every error names the file."""
        try:
            data = json.loads(Path(path).read_bytes().decode("utf-8"))
        except OSError as exc:
            raise DmcodecError(f"{path}: cannot read codec config ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise DmcodecError(f"{path}: a codec config must be UTF-8 JSON text "
                               f"(byte {exc.start} is not UTF-8)") from None
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DmcodecError(f"{path}: not valid JSON ({exc}); a codec config is one JSON object") from None
        return cls.from_dict(data, str(path))

    def replace(self, **changes: Any) -> "CodecConfig":
        return dataclasses.replace(self, **changes)
