"""The configuration of a DM-Codec model, validated: ``CodecConfig`` (the architecture, what rebuilds the
model), ``TrainingKeys`` (the official ``config.json``'s training keys and our ``extra`` object) and
``ConfigFile`` (a ``config.json``: both, read and written back with the same keys and values).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DmcodecError

#: Allowed ranges of the integer keys (by their name in ``config.json``): wide enough for any model that can
#: be meant, narrow enough that a config is refused with a line before anything is allocated. Codes are int16
#: in code files and stores, so a codebook holds at most 32768 codes (values 0..32767).
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
#: The distillation losses: ``d_axis`` (the paper's, cosine over time) and ``t_axis`` (cosine over features).
DISTILL_TYPES = ("d_axis", "t_axis")

_INT, _FLOAT, _BOOL, _STR = "an integer", "a finite number", "true or false", "a string"
_FLOATS = ("recon_loss_lambda", "commitment_loss_lambda", "distill_loss_lambda", "lambda_sim", "adam_b2",
           "lr_decay", "wd", "learning_rate", "intial_learning_rate")
#: The JSON type of every scalar key; lists (``strides``, ``mel_loss_lambdas``, ``betas``), ``fmax_for_loss``
#: (an integer or null) and ``extra`` are checked on their own.
_KINDS: dict[str, str] = {**{name: _INT for name in RANGES}, "bidirectional": _BOOL,
                          **{name: _STR for name in ("activation", "distill_type", "project_name")},
                          **{name: _FLOAT for name in _FLOATS}}


class ConfigError(DmcodecError):
    """A config refused, with every problem found (``problems``)."""

    def __init__(self, problems: list[str]):
        super().__init__("invalid codec config: " + "; ".join(problems))
        self.problems = problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _kind_ok(kind: str, value: Any) -> bool:
    return {_INT: _is_int, _FLOAT: _is_number, _BOOL: lambda v: isinstance(v, bool),
            _STR: lambda v: isinstance(v, str)}[kind](value)


_LISTS = {"strides": (_is_int, "integers"), "mel_loss_lambdas": (_is_number, "finite numbers"),
          "betas": (_is_number, "finite numbers")}


def _json_fields(cls: type) -> dict[str, str]:
    """JSON key -> attribute name of a config dataclass (``metadata["json"]`` where the two differ)."""
    return {f.metadata.get("json", f.name): f.name for f in dataclasses.fields(cls) if f.init and f.name != "absent"}


def _json_values(config: Any) -> dict[str, Any]:
    return {key: getattr(config, name) for key, name in _json_fields(type(config)).items()}


def _type_problems(values: dict[str, Any]) -> Iterator[str]:
    """Strict JSON types: no string for a number, no bool for an int, no 3.5 for an int, no NaN."""
    for key, value in values.items():
        if key in _KINDS and not _kind_ok(_KINDS[key], value):
            yield f"{key} must be {_KINDS[key]}, got {value!r}"
        elif key in _LISTS and (not isinstance(value, (list, tuple)) or not all(map(_LISTS[key][0], value))):
            yield f"{key} must be a list of {_LISTS[key][1]}, got {value!r}"
    if "fmax_for_loss" in values and values["fmax_for_loss"] is not None and not _is_int(values["fmax_for_loss"]):
        yield f"fmax_for_loss must be an integer or null, got {values['fmax_for_loss']!r}"
    if "extra" in values and not isinstance(values["extra"], dict):
        yield f"extra must be a JSON object, got {values['extra']!r}"


def _range_problems(values: dict[str, Any]) -> Iterator[str]:
    for key, value in values.items():
        if key in RANGES and not RANGES[key][0] <= value <= RANGES[key][1]:
            yield f"{key} must be from {RANGES[key][0]} to {RANGES[key][1]}, got {value}"


def _validate(config: Any, more_problems: Callable[[Any], Iterator[str]]) -> None:
    """Types first; ranges and ``more_problems(config)`` only once every field has its type. Lists become tuples."""
    values = _json_values(config)
    problems = list(_type_problems(values))
    if not problems:
        for key in _LISTS.keys() & values.keys():
            object.__setattr__(config, _json_fields(type(config))[key], tuple(values[key]))
        problems = list(_range_problems(values)) + list(more_problems(config))
    if problems:
        raise ConfigError(problems)


# -- the architecture ---------------------------------------------------------------------------------

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
    """The architecture of a DM-Codec model: what ``DMCodec(config)`` is built from.

    Field names are the official ``config.json`` keys. Derived values (hop length, frame rate, bitrate)
    are properties. The defaults are the official full-size model.
    """

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

    def __post_init__(self) -> None:
        _validate(self, CodecConfig._problems)

    def _problems(self) -> Iterator[str]:
        sizes_ok = not any(_range_problems(_json_values(self)))
        if not 1 <= len(self.strides) <= 8 or any(not 1 <= s <= 64 for s in self.strides):
            sizes_ok = False
            yield f"strides must be 1 to 8 integers from 1 to 64, got {list(self.strides)}"
        elif self.hop_length > self.sample_rate:
            yield (f"strides {list(self.strides)} make a hop of {self.hop_length} samples, more than one second "
                   f"at {self.sample_rate} Hz; the hop (product of the strides) must be at most sample_rate")
        if self.activation != "ELU":
            yield f"only activation 'ELU' is supported, got {self.activation!r}"
        if sizes_ok:
            params = parameter_estimate(self)
            if params > MAX_PARAMETERS:
                yield (f"this architecture would have about {params:,.0f} parameters, more than the "
                       f"{MAX_PARAMETERS:,.0f} allowed; check n_filters, strides, dimension and lstm_layers")

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

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in _json_values(self).items()}

    @classmethod
    def from_dict(cls, data: Any, source: str = "codec config") -> "CodecConfig":
        """The architecture of a whole ``config.json`` object (every key validated, see ``ConfigFile``)."""
        return ConfigFile.from_dict(data, source).codec

    @classmethod
    def from_json(cls, path: str | Path) -> "CodecConfig":
        """The architecture of a ``config.json`` file (every key validated; every error names the file)."""
        return ConfigFile.from_json(path).codec

    def replace(self, **changes: Any) -> "CodecConfig":
        return dataclasses.replace(self, **changes)


def check_n_q(n_q: int | None, available: int, name: str = "n_q") -> int | None:
    """Codebooks to keep: None (all) or 1..``available``; anything else is a DmcodecError naming ``name``."""
    if n_q is not None and not (isinstance(n_q, int) and not isinstance(n_q, bool) and 1 <= n_q <= available):
        raise DmcodecError(f"{name} must be between 1 and {available} for this model, got {n_q!r}")
    return n_q


#: The frame geometry of the official model (16 kHz, hop 320, 50 frames/s): prepared data and teacher
#: features are made for it.
OFFICIAL = CodecConfig()


# -- the training keys --------------------------------------------------------------------------------

def _key(default: Any, json_name: str) -> Any:
    """A field written in ``config.json`` under another name than its attribute."""
    return field(default=default, metadata={"json": json_name})


@dataclass(frozen=True)
class TrainingKeys:
    """The official ``config.json``'s training keys and our ``extra`` object (training options, see
    ``training.config``). The model never reads them; training does, and a release carries them.

    Attributes are the JSON keys except where a key would be mistaken for the codec's: the mel loss's STFT
    is ``mel_n_fft`` / ``mel_hop_length`` / ``mel_win_length`` (JSON ``n_fft`` / ``hop_size`` /
    ``win_size``; its hop is not the codec's ``hop_length``), and ``initial_learning_rate`` is the
    misspelt ``intial_learning_rate``. ``num_freq``, ``adam_b2``, ``num_workers`` (``extra`` has ours),
    ``project_name``, ``initial_learning_rate`` and ``stdout_steps`` are kept only to be written back.
    ``absent``: the JSON keys the file did not hold, which are written back absent too.
    """

    # the multi-scale mel loss (its first scale; the others halve n_fft, hop and window)
    num_mels: int = 80
    num_freq: int = 1025
    mel_n_fft: int = _key(1024, "n_fft")
    mel_hop_length: int = _key(240, "hop_size")
    mel_win_length: int = _key(1024, "win_size")
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
    # optimisation and bookkeeping (the trainer's defaults; ``extra`` may set them under our names)
    betas: tuple[float, ...] = (0.9, 0.99)
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
    initial_learning_rate: float = _key(1e-3, "intial_learning_rate")
    log_steps: int = 10
    stdout_steps: int = 10
    save_model_steps: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = field(default=frozenset({"extra"}), repr=False)

    def __post_init__(self) -> None:
        _validate(self, TrainingKeys._problems)

    def _problems(self) -> Iterator[str]:
        if self.distill_type not in DISTILL_TYPES:
            yield f"distill_type must be 'd_axis' or 't_axis', got {self.distill_type!r}"
        if len(self.betas) != 2:
            yield f"betas must be two numbers, got {list(self.betas)}"
        if not self.mel_loss_lambdas:
            yield "mel_loss_lambdas must hold at least one number"
        if self.mel_win_length > self.mel_n_fft:
            yield f"win_size ({self.mel_win_length}) must not exceed n_fft ({self.mel_n_fft})"

    def to_dict(self) -> dict[str, Any]:
        """The keys as ``config.json`` holds them: those read (all, when built in code), ``extra`` when given
        or not empty."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in _json_values(self).items()
                if key not in self.absent or (key == "extra" and value)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingKeys":
        """From the training keys of a ``config.json`` object (JSON names; every one known)."""
        names = _json_fields(cls)
        return cls(**{names[key]: value for key, value in data.items()}, absent=frozenset(names.keys() - data.keys()))

    def replace(self, **changes: Any) -> "TrainingKeys":
        """Changed attributes; each is then written (no longer absent)."""
        written = {key for key, name in _json_fields(TrainingKeys).items() if name in changes}
        return dataclasses.replace(self, **changes, absent=self.absent - written)


# -- config.json ------------------------------------------------------------------------------------

#: The keys of ``config.json`` (as written there) that ``CodecConfig`` and ``TrainingKeys`` hold.
ARCHITECTURE_KEYS = frozenset(_json_fields(CodecConfig))
TRAINING_KEYS = frozenset(_json_fields(TrainingKeys))


@dataclass(frozen=True)
class ConfigFile:
    """A ``config.json``: the architecture and the training keys, checked together (the mel loss's band
    must lie below the codec's Nyquist frequency). ``to_dict`` gives back the keys and values read (the
    architecture always in full)."""

    codec: CodecConfig = field(default_factory=CodecConfig)
    training: TrainingKeys = field(default_factory=TrainingKeys)

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ConfigError(problems)

    def _problems(self) -> Iterator[str]:
        nyquist, loss = self.codec.sample_rate / 2, self.training
        if loss.fmax_for_loss is not None and not 0 < loss.fmax_for_loss <= nyquist:
            yield f"fmax_for_loss must be null or in (0, sample_rate / 2], got {loss.fmax_for_loss}"
        if not loss.fmin < loss.fmax <= nyquist:
            yield f"fmin < fmax <= sample_rate / 2 is needed, got fmin {loss.fmin}, fmax {loss.fmax}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.codec.to_dict(), **self.training.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "codec config") -> "ConfigFile":
        """Build from a JSON object; unknown keys are an error (a typo must not pass silently).

        Errors name ``source`` (the file) and say what is allowed; every problem of the file is listed."""
        if not isinstance(data, dict):
            raise DmcodecError(f"{source}: a codec config must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - ARCHITECTURE_KEYS - TRAINING_KEYS)
        if unknown:
            raise DmcodecError(f"{source}: unknown codec config keys: {', '.join(unknown)} (a typo? the keys "
                               "are those of the official config.json, plus 'extra')")
        problems: list[str] = []
        codec = _attempt(lambda: CodecConfig(**{k: v for k, v in data.items() if k in ARCHITECTURE_KEYS}), problems)
        training = _attempt(lambda: TrainingKeys.from_dict({k: v for k, v in data.items() if k in TRAINING_KEYS}),
                            problems)
        config = _attempt(lambda: cls(codec, training), problems) if codec and training else None
        if config is None:
            raise DmcodecError(f"{source}: {ConfigError(problems)}")
        return config

    @classmethod
    def from_json(cls, path: str | Path) -> "ConfigFile":
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

    def replace(self, **changes: Any) -> "ConfigFile":
        """Another file: architecture keys change ``codec``, training keys (attribute names) ``training``."""
        codec = {k: v for k, v in changes.items() if k in {f.name for f in dataclasses.fields(CodecConfig)}}
        training = {k: v for k, v in changes.items() if k not in codec}
        return ConfigFile(self.codec.replace(**codec) if codec else self.codec,
                          self.training.replace(**training) if training else self.training)


def _attempt(build, problems: list[str]):
    """``build()``, or None with its problems added to ``problems``."""
    try:
        return build()
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
