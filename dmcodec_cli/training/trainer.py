"""One training step (a discriminator update, then a generator update), validation and the training state.

``train_step`` is the step; ``run.train`` is the whole run. The same code runs on one CPU, one GPU or many
processes (``accelerate launch`` / ``torchrun``) through an accelerate ``Accelerator``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..errors import DmcodecError
from ..model import CodecOutput, DMCodec
from .config import TrainOptions
from .data import Batch
from .discriminators import Discriminators
from .losses import (
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    discriminator_loss,
    distill_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    tensor_sum,
)


class DistillCodec(nn.Module):
    """The codec plus one distillation feature [B, T, semantic_dim] per teacher group.

    Each group's feature is ``transform`` of the sum of its own quantizer layers (0-based), so LM -> RVQ-1
    and SM -> RVQ-1:8 can be trained together from one forward pass.
    """

    def __init__(self, codec: DMCodec, layers: dict[str, tuple[int, ...]]):
        super().__init__()
        self.codec, self.layers = codec, dict(layers)

    def forward(self, audio: Tensor) -> tuple[CodecOutput, dict[str, Tensor]]:
        first = next(iter(self.layers.values()), (0,))
        out = self.codec(audio, distill_layers=first)
        features = {group: out.feature if layers == first else self.codec.distill_feature(out.layer_outputs, layers)
                    for group, layers in self.layers.items()}
        return out, features


@dataclass
class Trainer:
    """What one training step needs (built by ``build_trainer``)."""

    options: TrainOptions
    accelerator: Any
    generator: nn.Module  #: DistillCodec, possibly wrapped for distributed training
    discriminators: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LRScheduler
    sched_d: torch.optim.lr_scheduler.LRScheduler
    mel_loss: MultiScaleMelLoss
    stft_loss: MultiResolutionSTFTLoss | None  #: None when its weight is 0
    step: int = 0
    best: float = math.inf  #: best validation mel error
    ema: dict[str, Tensor] | None = None  #: moving average of the codec's parameters (when ema_decay > 0)

    @property
    def codec(self) -> DMCodec:
        return self.accelerator.unwrap_model(self.generator).codec

    @property
    def plain_discriminators(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.discriminators)


# -- losses of one batch --------------------------------------------------------------------------

def distill_terms(options: TrainOptions, features: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """``distill_<group>`` for each teacher and ``distill``, their weighted sum."""
    keys = options.training_keys
    terms = {f"distill_{g}": distill_loss(keys.distill_type, features[g], targets[g], keys.lambda_sim)
             for g in options.teachers}
    if terms:
        terms["distill"] = tensor_sum(options.teacher_weight(g) * terms[f"distill_{g}"] for g in options.teachers)
    return terms


def generator_terms(trainer: Trainer, real: Tensor, fake: Tensor, out: CodecOutput, features: dict[str, Tensor],
                    targets: dict[str, Tensor], adversarial: bool) -> dict[str, Tensor]:
    """Every generator loss of one batch, unweighted (the multi-scale mel term carries its own weights)."""
    mel, per_scale = trainer.mel_loss(real, fake)
    terms = {"recon": nn.functional.l1_loss(fake, real), "mel": mel, "mel_error": per_scale[0],
             "commit": out.commit_loss, **distill_terms(trainer.options, features, targets)}
    if trainer.stft_loss is not None:
        terms["stft"] = trainer.stft_loss(real, fake)
    if adversarial:
        disc = trainer.plain_discriminators  # no gradient sync: its parameters are frozen in this step
        real_scores, real_maps = disc(real)
        fake_scores, fake_maps = disc(fake)
        terms["feature"] = feature_matching_loss(real_maps, fake_maps)
        terms["adversarial"] = generator_adversarial_loss(fake_scores)
    return terms


def total_generator_loss(options: TrainOptions, terms: dict[str, Tensor]) -> Tensor:
    keys = options.training_keys
    weights = {"recon": keys.recon_loss_lambda, "mel": 1.0, "commit": keys.commitment_loss_lambda,
               "distill": keys.distill_loss_lambda, "feature": options.feature_weight,
               "adversarial": options.adversarial_weight, "stft": options.stft_loss_weight}
    return tensor_sum(w * terms[name] for name, w in weights.items() if name in terms)


def _optimise(trainer: Trainer, optimizer: torch.optim.Optimizer, scheduler, loss: Tensor,
              params: Callable[[], Any]) -> float | None:
    optimizer.zero_grad(set_to_none=True)
    trainer.accelerator.backward(loss)
    norm = None
    if trainer.options.grad_clip > 0:
        norm = float(trainer.accelerator.clip_grad_norm_(params(), trainer.options.grad_clip))
    optimizer.step()
    scheduler.step()
    return norm


def train_step(trainer: Trainer, batch: Batch) -> dict[str, float]:
    """One discriminator step and one generator step on ``batch``; returns every loss as a float."""
    acc, opts = trainer.accelerator, trainer.options
    adversarial = trainer.step >= opts.adversarial_start
    real = batch.audio
    with acc.autocast():
        out, features = trainer.generator(real)
    fake = out.audio[..., :real.shape[-1]]
    logged: dict[str, float] = {}
    if adversarial:
        with acc.autocast():
            scores, _ = trainer.discriminators(torch.cat([real, fake.detach()]))
            d_loss = discriminator_loss([s[:len(real)] for s in scores], [s[len(real):] for s in scores])
        norm = _optimise(trainer, trainer.opt_d, trainer.sched_d, d_loss, trainer.discriminators.parameters)
        logged["discriminator"] = float(d_loss.detach())
        if norm is not None:
            logged["grad_norm_d"] = norm
    trainer.plain_discriminators.requires_grad_(False)
    try:
        with acc.autocast():
            terms = generator_terms(trainer, real, fake, out, features, batch.features, adversarial)
            loss = total_generator_loss(opts, terms)
        norm = _optimise(trainer, trainer.opt_g, trainer.sched_g, loss, trainer.generator.parameters)
    finally:
        trainer.plain_discriminators.requires_grad_(True)
    if norm is not None:
        logged["grad_norm_g"] = norm
    logged.update({name: float(value.detach()) for name, value in terms.items()})
    logged["generator"] = float(loss.detach())
    logged["lr"] = float(trainer.sched_g.get_last_lr()[0])
    if trainer.ema is not None:
        update_ema(trainer)
    trainer.step += 1
    return logged


# -- the moving average of the generator's weights --------------------------------------------------

def start_ema(trainer: Trainer) -> None:
    """Begin the average at the codec's current weights (a fresh run, or a checkpoint saved without one).

    Only parameters are averaged: the codebooks are buffers that are already moving averages.
    """
    trainer.ema = {name: value.detach().clone() for name, value in trainer.codec.named_parameters()}


def _average(trainer: Trainer) -> dict[str, Tensor]:
    if trainer.ema is None:
        raise RuntimeError("no moving average of the weights: start_ema was not called (ema_decay is 0)")
    return trainer.ema


@torch.no_grad()
def update_ema(trainer: Trainer) -> None:
    live = dict(trainer.codec.named_parameters())
    for name, average in _average(trainer).items():
        average.lerp_(live[name], 1.0 - trainer.options.ema_decay)


@contextmanager
def ema_weights(trainer: Trainer) -> Iterator[DMCodec]:
    """The codec with the averaged weights swapped in (the live ones are swapped back on exit)."""
    averages = _average(trainer)

    @torch.no_grad()
    def swap() -> None:
        live = dict(trainer.codec.named_parameters())
        for name, average in averages.items():
            held = live[name].clone()
            live[name].copy_(average)
            average.copy_(held)

    swap()
    try:
        yield trainer.codec
    finally:
        swap()


# -- validation -----------------------------------------------------------------------------------

@torch.no_grad()
def validate(trainer: Trainer, loader) -> tuple[dict[str, float], list[tuple[Tensor, Tensor]]]:
    """Mean mel error (L1 of log-mel at the first scale) and distillation losses over the validation set.

    Returns the means and (real, reconstruction) pairs of the first ``showpiece_num`` clips.
    """
    codec = trainer.codec
    model = DistillCodec(codec, trainer.accelerator.unwrap_model(trainer.generator).layers)
    codec.eval()
    sums: dict[str, float] = {}
    shows: list[tuple[Tensor, Tensor]] = []
    count = 0
    try:
        for batch in loader:
            batch = batch.to(trainer.accelerator.device)
            out, features = model(batch.audio)
            fake = out.audio[..., :batch.audio.shape[-1]]
            _, per_scale = trainer.mel_loss(batch.audio, fake)
            values = {"mel_error": per_scale[0], **distill_terms(trainer.options, features, batch.features)}
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            count += 1
            if len(shows) < trainer.options.showpiece_num:
                shows.append((batch.audio[0, 0].float().cpu(), fake[0, 0].float().cpu()))
    finally:
        codec.train()
    return {name: value / max(count, 1) for name, value in sums.items()}, shows


# -- building a run -------------------------------------------------------------------------------

def lr_factor(options: TrainOptions, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then ``lr_decay`` every ``decay_every`` steps."""
    warm = min(1.0, (step + 1) / options.warmup_steps) if options.warmup_steps else 1.0
    return warm * options.lr_decay ** (step / options.decay_every)


def _optimizer(options: TrainOptions, params, lr: float) -> tuple[torch.optim.Optimizer,
                                                                   torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(params, lr, betas=options.betas, weight_decay=options.weight_decay) \
        if options.weight_decay else torch.optim.Adam(params, lr, betas=options.betas)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_factor, options))


def make_accelerator(options: TrainOptions, cpu: bool = False):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    use_cpu = cpu or not torch.cuda.is_available()
    if use_cpu and options.mixed_precision != "no":
        raise DmcodecError(f"mixed_precision {options.mixed_precision!r} needs a GPU; use 'no' on CPU")
    # with no teacher the distillation projection gets no gradient
    ddp = DistributedDataParallelKwargs(find_unused_parameters=options.teacher == "none")
    return Accelerator(cpu=use_cpu, mixed_precision=options.mixed_precision, kwargs_handlers=[ddp])


def build_trainer(codec: DMCodec, options: TrainOptions, accelerator) -> Trainer:
    """Discriminators, optimizers and schedulers around ``codec`` (training mode), prepared for the devices."""
    codec.train()
    generator = DistillCodec(codec, {g: options.layers(g) for g in options.teachers})
    discriminators = Discriminators(options.discriminator)
    opt_g, sched_g = _optimizer(options, generator.parameters(), options.learning_rate)
    opt_d, sched_d = _optimizer(options, discriminators.parameters(),
                                options.discriminator_lr or options.learning_rate)
    generator, discriminators, opt_g, opt_d = accelerator.prepare(generator, discriminators, opt_g, opt_d)
    mel = MultiScaleMelLoss(codec.sample_rate, options.training_keys).to(accelerator.device)
    stft = (MultiResolutionSTFTLoss(options.stft_loss_n_ffts).to(accelerator.device) if options.stft_loss_weight
            else None)
    trainer = Trainer(options, accelerator, generator, discriminators, opt_g, opt_d, sched_g, sched_d, mel, stft)
    if options.ema_decay:
        start_ema(trainer)
    return trainer


def state_dict(trainer: Trainer) -> dict[str, Any]:
    return {"generator": trainer.codec.state_dict(), "discriminators": trainer.plain_discriminators.state_dict(),
            "opt_g": trainer.opt_g.state_dict(), "opt_d": trainer.opt_d.state_dict(),
            "sched_g": trainer.sched_g.state_dict(), "sched_d": trainer.sched_d.state_dict(),
            "scaler": trainer.accelerator.scaler.state_dict() if trainer.accelerator.scaler else None,
            "best": trainer.best, "ema": trainer.ema}


def load_state_dict(trainer: Trainer, state: dict[str, Any]) -> None:
    trainer.codec.load_state_dict(state["generator"])
    trainer.plain_discriminators.load_state_dict(state["discriminators"])
    for name in ("opt_g", "opt_d", "sched_g", "sched_d"):
        getattr(trainer, name).load_state_dict(state[name])
    if state.get("scaler") and trainer.accelerator.scaler:
        trainer.accelerator.scaler.load_state_dict(state["scaler"])
    trainer.step, trainer.best = int(state["step"]), float(state["best"])
    if trainer.options.ema_decay:
        if state.get("ema") is None:
            start_ema(trainer)
        else:
            trainer.ema = {name: value.to(trainer.accelerator.device) for name, value in state["ema"].items()}
