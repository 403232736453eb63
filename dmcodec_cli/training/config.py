"""Training options: the codec config's training keys plus ours, kept under the config's ``extra`` key.

A recipe is a codec ``config.json`` (the official file loads as it is) whose ``extra`` object may set any
field of :class:`TrainOptions`; command-line options override the recipe. Unknown keys are an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import CodecConfig
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
    """Everything the trainer reads besides the codec architecture (see docs/training.md)."""

    teacher: str = "combined"  #: combined | lm | sm | none
    sm_weight: float = 0.5  #: lambda_SM of the combined teacher
    lm_weight: float = 0.5  #: lambda_LM of the combined teacher
    lm_layers: tuple[int, ...] = (0,)  #: 0-based quantizer layers summed for the LM feature
    sm_layers: tuple[int, ...] = tuple(range(8))  #: 0-based quantizer layers summed for the SM feature
    distill_loss: str = "d_axis"
    lambda_sim: float = 1.0
    # loss weights (defaults: the official config)
    recon_weight: float = 500.0
    mel_weights: tuple[float, ...] = (45.0, 1.0, 1.0, 1.0)
    commit_weight: float = 10.0
    distill_weight: float = 120.0
    feature_weight: float = 1.0  #: on top of feature matching's built-in x2
    adversarial_weight: float = 1.0
    adversarial_start: int = 0  #: steps of reconstruction-only training before the GAN terms start
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
        if self.distill_loss not in ("d_axis", "t_axis"):
            problems.append(f"distill_loss must be d_axis or t_axis, got {self.distill_loss!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            problems.append(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        for name in ("batch_size", "segment_size", "log_every", "valid_every", "save_every", "decay_every"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
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
        return dataclasses.asdict(self)


def _from_codec(config: CodecConfig) -> dict[str, Any]:
    """The training keys of the official config, under our names."""
    return dict(distill_loss=config.distill_type, lambda_sim=config.lambda_sim,
                recon_weight=float(config.recon_loss_lambda), mel_weights=tuple(map(float, config.mel_loss_lambdas)),
                commit_weight=float(config.commitment_loss_lambda), distill_weight=float(config.distill_loss_lambda),
                learning_rate=config.learning_rate, betas=tuple(config.betas), weight_decay=float(config.wd),
                warmup_steps=config.num_warmup_steps, lr_decay=config.lr_decay, seed=config.seed,
                batch_size=config.batch_size, segment_size=config.segment_size, epochs=config.epochs,
                log_every=config.log_steps, save_every=config.save_model_steps, keep_checkpoints=config.num_ckpt_keep,
                showpiece_num=config.showpiece_num)


def build_options(config: CodecConfig, overrides: dict[str, Any] | None = None) -> TrainOptions:
    """Options from the codec config, then its ``extra`` object, then ``overrides`` (non-None values).

    Layer lists may be given 1-based as strings ("1:8") in ``extra`` and ``overrides``.
    """
    values = _from_codec(config)
    known = {f.name for f in dataclasses.fields(TrainOptions)}
    for source, name in ((config.extra, "the config's extra"), (overrides or {}, "the options")):
        unknown = sorted(set(source) - known)
        if unknown:
            raise DmcodecError(f"unknown training option(s) in {name}: {', '.join(unknown)}")
        values.update({k: v for k, v in source.items() if v is not None})
    for key in ("lm_layers", "sm_layers"):
        if key in values and not isinstance(values[key], tuple):
            values[key] = parse_layers(values[key], config.n_q)
    values.setdefault("lm_layers", (0,))
    values.setdefault("sm_layers", tuple(range(min(8, config.n_q))))
    if isinstance(values.get("discriminator"), dict):
        try:
            disc = {k: tuple(v) if isinstance(v, list) else v for k, v in values["discriminator"].items()}
            values["discriminator"] = DiscriminatorConfig(**disc)
        except TypeError as exc:
            raise DmcodecError(f"invalid discriminator options: {exc}") from None
    for key in ("mel_weights", "betas"):
        values[key] = tuple(values[key])
    for group in ("lm_layers", "sm_layers"):
        if max(values[group]) >= config.n_q:
            raise DmcodecError(f"{group}: layer {max(values[group]) + 1} does not exist in a model with "
                               f"{config.n_q} quantizers")
    return TrainOptions(**values)
