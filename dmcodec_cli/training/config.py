"""Training options: ours, kept under the config's ``extra`` key, beside the official training keys.

A recipe is a codec ``config.json`` (the official file loads as it is): its training keys
(``config.TrainingKeys``: loss weights, the mel loss, optimiser defaults) are read where they are, and its
``extra`` object may set any field of :class:`TrainOptions`; command-line options override the recipe.
Unknown keys are an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

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
    # optimisation
    learning_rate: float = 1e-4
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
        problems = []
        if self.teacher not in TEACHERS:
            problems.append(f"teacher must be one of {', '.join(TEACHERS)}, got {self.teacher!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            problems.append(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        for name in ("batch_size", "segment_size", "log_every", "valid_every", "save_every", "decay_every"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if isinstance(self.stft_loss_weight, bool) or not (isinstance(self.stft_loss_weight, (int, float))
                                                            and self.stft_loss_weight >= 0):
            problems.append(f"stft_loss_weight must be >= 0, got {self.stft_loss_weight}")
        if not (isinstance(self.stft_loss_n_ffts, tuple) and self.stft_loss_n_ffts
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 16 and not n & (n - 1)
                        for n in self.stft_loss_n_ffts)):
            problems.append(f"stft_loss_n_ffts must be powers of two >= 16, got {list(self.stft_loss_n_ffts)}")
        if min(self.sm_weight, self.lm_weight) < 0:
            problems.append("teacher weights must be >= 0")
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
    values["betas"] = tuple(values["betas"])
    if isinstance(values.get("stft_loss_n_ffts"), list):
        values["stft_loss_n_ffts"] = tuple(values["stft_loss_n_ffts"])
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
