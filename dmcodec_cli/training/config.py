"""Training options: ours, kept under the config's ``extra`` key, beside the official training keys.

A recipe is a codec ``config.json`` (the official file loads as it is): its training keys
(``config.TrainingKeys``: loss weights, the mel loss, optimiser defaults) are read where they are, and its
``extra`` object may set any field of :class:`TrainOptions`; command-line options override the recipe.
Unknown keys are an error.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..config import TRAINING_KEYS, ConfigError, ConfigFile, TrainingKeys
from ..errors import DmcodecError
from .discriminators import DiscriminatorConfig

TEACHERS = ("combined", "lm", "sm", "none")


def parse_layers(spec: str | int | list[int], n_q: int) -> tuple[int, ...]:
    """1-based quantizer layers as users write them -> 0-based indices for ``DMCodec.forward``.

    ``"1"`` -> (0,) the first quantizer; ``"8"`` -> (7,); ``"1:8"`` -> (0, ..., 7) summed; ``"1,3"`` -> (0, 2).
    """
    if isinstance(spec, int):
        spec = str(spec)
    if isinstance(spec, list):
        spec = ",".join(str(s) for s in spec)
    try:
        layers: list[int] = []
        for part in str(spec).replace(" ", "").split(","):
            if ":" in part:
                first, last = (int(v) for v in part.split(":"))
                layers.extend(range(first, last + 1))
            else:
                layers.append(int(part))
    except ValueError:
        raise DmcodecError(f"quantizer layers {spec!r}: write a layer (1), a range (1:8) or a list (1,3)") from None
    if not layers or min(layers) < 1 or max(layers) > n_q:
        raise DmcodecError(f"quantizer layers {spec!r}: layers are numbered 1 to {n_q} for this model")
    return tuple(sorted({layer - 1 for layer in layers}))


@dataclass(frozen=True)
class TrainOptions:
    """Everything the trainer reads besides the codec architecture (see docs/training.md): the recipe's
    official ``training_keys`` (the loss weights and the mel loss are read there) and our options."""

    training_keys: TrainingKeys = field(default_factory=TrainingKeys)
    teacher: str = "combined"  #: combined | lm | sm | none
    sm_weight: float = 0.5  #: lambda_SM of the combined teacher
    lm_weight: float = 0.5  #: lambda_LM of the combined teacher
    lm_layers: tuple[int, ...] = (0,)  #: 0-based quantizer layers summed for the LM feature
    sm_layers: tuple[int, ...] = tuple(range(8))  #: 0-based quantizer layers summed for the SM feature
    # the GAN's loss weights (the others are training_keys')
    feature_weight: float = 1.0  #: on top of feature matching's built-in x2
    adversarial_weight: float = 1.0
    adversarial_start: int = 0  #: steps of reconstruction-only training before the GAN terms start
    stft_loss_weight: float = 0.0  #: weight of the multi-resolution log-STFT loss (0 = off, not computed)
    stft_loss_n_ffts: tuple[int, ...] = (2048, 1024, 512)  #: its resolutions
    # augmentation of the training crops (validation crops are left as they are)
    augment_speed: float = 0.0  #: resample each crop by a random factor in [1 - s, 1 + s] (teacher none only)
    augment_gain_db: float = 0.0  #: scale each crop by a random gain in [-g, +g] dB
    # optimisation
    learning_rate: float = 1e-4
    discriminator_lr: float = 0.0  #: the discriminators' learning rate (0 = ``learning_rate``)
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_decay: float = 0.98  #: multiplied into the learning rate every ``decay_every`` steps
    decay_every: int = 1000
    grad_clip: float = 0.0  #: max gradient norm (0 = off)
    ema_decay: float = 0.0  #: 0 = off; else an exponential moving average of the generator's weights is kept
    mixed_precision: str = "no"  #: no | bf16 | fp16 (GPU only)
    seed: int = 1234
    batch_size: int = 6
    segment_size: int = 48000
    max_steps: int = 0  #: 0 = ``epochs`` passes over the training split
    epochs: int = 10
    num_workers: int = 0
    # logging, validation and checkpoints
    log_every: int = 10
    valid_every: int = 1000
    valid_items: int = 16
    save_every: int = 1000
    keep_checkpoints: int = 3
    showpiece_num: int = 2  #: validation clips written to TensorBoard as audio and mel images
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self) -> None:
        problems = list(_type_problems(self))  # ranges only once every option has its type
        if not problems:
            problems = list(_value_problems(self))
        if problems:
            raise DmcodecError("invalid training options: " + "; ".join(problems))

    @property
    def teachers(self) -> tuple[str, ...]:
        """The feature groups this run reads: ``sm`` and / or ``lm``."""
        return {"combined": ("sm", "lm"), "lm": ("lm",), "sm": ("sm",), "none": ()}[self.teacher]

    def teacher_weight(self, group: str) -> float:
        return {"sm": self.sm_weight, "lm": self.lm_weight}[group] if self.teacher == "combined" else 1.0

    def layers(self, group: str) -> tuple[int, ...]:
        return self.lm_layers if group == "lm" else self.sm_layers

    def replace(self, **changes: Any) -> "TrainOptions":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the training keys as ``config.json`` writes them."""
        return {**dataclasses.asdict(self), "training_keys": self.training_keys.to_dict()}


#: options by kind: integers >= 0, integers > 0, numbers >= 0 (all finite; NaN and infinities are refused)
_COUNTS = ("adversarial_start", "warmup_steps", "max_steps", "epochs", "num_workers", "valid_items",
           "keep_checkpoints", "showpiece_num")
_POSITIVE = ("batch_size", "segment_size", "log_every", "valid_every", "save_every", "decay_every")
_AMOUNTS = ("sm_weight", "lm_weight", "feature_weight", "adversarial_weight", "learning_rate", "discriminator_lr",
            "weight_decay", "grad_clip", "lr_decay", "ema_decay", "stft_loss_weight", "augment_speed",
            "augment_gain_db")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _ints(values: Any, low: int, empty: bool = False) -> bool:
    return isinstance(values, tuple) and (empty or len(values) > 0) and all(_is_int(v) and v >= low for v in values)


def _type_problems(options: "TrainOptions") -> Iterator[str]:
    for name in (*_COUNTS, *_POSITIVE, "seed"):
        if not _is_int(getattr(options, name)):
            yield f"{name} must be an integer, got {getattr(options, name)!r}"
    for name in _AMOUNTS:
        if not _is_number(getattr(options, name)):
            yield f"{name} must be a finite number, got {getattr(options, name)!r}"
    for name in ("teacher", "mixed_precision"):
        if not isinstance(getattr(options, name), str):
            yield f"{name} must be a string, got {getattr(options, name)!r}"
    betas = options.betas
    if not (isinstance(betas, tuple) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas)):
        yield f"betas must be two numbers in [0, 1), got {betas!r}"
    for name in ("lm_layers", "sm_layers"):
        if not _ints(getattr(options, name), 0):
            yield f"{name} must be quantizer layers, got {getattr(options, name)!r}"
    if not _ints(options.stft_loss_n_ffts, 16) or any(n & (n - 1) for n in options.stft_loss_n_ffts):
        yield f"stft_loss_n_ffts must be powers of two >= 16, got {options.stft_loss_n_ffts!r}"
    yield from _discriminator_problems(options.discriminator)


def _discriminator_problems(disc: Any) -> Iterator[str]:
    if not isinstance(disc, DiscriminatorConfig):
        yield f"discriminator must be an object, got {disc!r}"
        return
    if not _ints(disc.periods, 1, empty=True) or not _ints(disc.stft_n_ffts, 2, empty=True):  # [] leaves one out
        yield f"discriminator periods and stft_n_ffts must be lists of positive integers, got {disc.periods!r} and " \
              f"{disc.stft_n_ffts!r}"
    if not (_is_int(disc.scales) and disc.scales >= 0 and _is_int(disc.stft_filters) and disc.stft_filters >= 1):
        yield f"discriminator scales must be an integer >= 0 and stft_filters >= 1, got {disc.scales!r} and " \
              f"{disc.stft_filters!r}"
    if not (_is_number(disc.width) and disc.width > 0):
        yield f"discriminator width must be a finite number > 0, got {disc.width!r}"


def _value_problems(options: "TrainOptions") -> Iterator[str]:
    if options.teacher not in TEACHERS:
        yield f"teacher must be one of {', '.join(TEACHERS)}, got {options.teacher!r}"
    if options.mixed_precision not in ("no", "bf16", "fp16"):
        yield f"mixed_precision must be no, bf16 or fp16, got {options.mixed_precision!r}"
    for name in _POSITIVE:
        if getattr(options, name) <= 0:
            yield f"{name} must be positive, got {getattr(options, name)}"
    for name in (*_COUNTS, *_AMOUNTS):
        if getattr(options, name) < 0:
            yield f"{name} must be >= 0, got {getattr(options, name)}"
    if options.lr_decay == 0:
        yield "lr_decay must be > 0 (1 keeps the learning rate), got 0"
    if not options.ema_decay < 1.0:
        yield f"ema_decay must be in [0, 1), got {options.ema_decay}"
    if not options.augment_speed <= 0.5 or not options.augment_gain_db <= 40:
        yield (f"augment_speed must be in [0, 0.5] and augment_gain_db in [0, 40], got {options.augment_speed} and "
               f"{options.augment_gain_db}")
    if options.augment_speed and options.teacher != "none":
        yield "augment_speed changes the crops' length and so moves them off their teacher's frames; use it " \
              "with teacher none"


def _defaults(keys: TrainingKeys) -> dict[str, Any]:
    """The options whose defaults are official training keys (``extra`` may set them under these names)."""
    return dict(learning_rate=keys.learning_rate, betas=tuple(keys.betas), weight_decay=float(keys.wd),
                warmup_steps=keys.num_warmup_steps, lr_decay=keys.lr_decay, seed=keys.seed,
                batch_size=keys.batch_size, segment_size=keys.segment_size, epochs=keys.epochs,
                log_every=keys.log_steps, save_every=keys.save_model_steps, keep_checkpoints=keys.num_ckpt_keep,
                showpiece_num=keys.showpiece_num)


def build_options(config: ConfigFile, overrides: dict[str, Any] | None = None) -> TrainOptions:
    """Options from the recipe's training keys, then its ``extra`` object, then ``overrides`` (non-None values).

    ``overrides`` may also replace training keys by their attribute name (``--distill-loss``: ``distill_type``).
    Layer lists may be given 1-based as strings ("1:8") in ``extra`` and ``overrides``.
    """
    keys, n_q = config.training, config.codec.n_q
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    official = {f.name for f in dataclasses.fields(TrainingKeys)} - {"extra", "absent"}
    if given.keys() & official:
        keys = _replace_keys(keys, {k: given.pop(k) for k in given.keys() & official})
    values = {**_defaults(keys), "training_keys": keys}
    known = {f.name for f in dataclasses.fields(TrainOptions)} - {"training_keys"}
    for source, name in ((keys.extra, "the config's extra"), (given, "the options")):
        unknown = sorted(set(source) - known)
        if unknown:
            raise DmcodecError(f"unknown training option(s) in {name}: {', '.join(unknown)}{_hint(unknown)}")
        values.update({k: v for k, v in source.items() if v is not None})
    for key in ("lm_layers", "sm_layers"):
        if key in values and not isinstance(values[key], tuple):
            values[key] = parse_layers(values[key], n_q)
    values.setdefault("lm_layers", (0,))
    values.setdefault("sm_layers", tuple(range(min(8, n_q))))
    if isinstance(values.get("discriminator"), dict):
        try:
            disc: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                    for k, v in values["discriminator"].items()}
            values["discriminator"] = DiscriminatorConfig(**disc)
        except TypeError as exc:
            raise DmcodecError(f"invalid discriminator options: {exc}") from None
    for key in ("betas", "stft_loss_n_ffts"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    for group in ("lm_layers", "sm_layers"):
        if max(values[group]) >= n_q:
            raise DmcodecError(f"{group}: layer {max(values[group]) + 1} does not exist in a model with "
                               f"{n_q} quantizers")
    return TrainOptions(**values)


def _replace_keys(keys: TrainingKeys, changes: dict[str, Any]) -> TrainingKeys:
    try:
        return keys.replace(**changes)
    except ConfigError as exc:
        raise DmcodecError(f"invalid training options: {'; '.join(exc.problems)}") from None


def _hint(unknown: list[str]) -> str:
    """Official training keys are set at the config's top level, under their own names."""
    official = sorted(set(unknown) & TRAINING_KEYS)
    return f" ({', '.join(official)}: set at the top level of the config, not in extra)" if official else ""
