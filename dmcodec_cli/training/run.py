"""One training run end to end: set up (or resume) an experiment folder, loop, validate, save, export."""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_text_atomic
from ..checkpoint import save_release
from ..config import ConfigFile
from ..errors import DmcodecError
from ..model import DMCodec
from . import state as saved
from .config import TrainOptions
from .data import Augment, BatchOrder, SegmentDataset, StepSampler, check_features, collate, load_segments
from .monitor import Monitor, truncate_metrics
from .trainer import (
    Trainer,
    build_trainer,
    ema_weights,
    load_state_dict,
    make_accelerator,
    state_dict,
    train_step,
    validate,
)

#: Options that may change between a run and its resumption (they do not change the trajectory).
#: ``ema_decay`` only changes what is exported beside the run (the average starts where it is switched on).
RESUMABLE_CHANGES = {"max_steps", "epochs", "log_every", "valid_every", "valid_items", "save_every",
                     "keep_checkpoints", "showpiece_num", "num_workers", "ema_decay"}


@dataclass
class Paths:
    """Everything a run writes under its experiment folder."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def run(self) -> Path:
        return self.root / "run.json"

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def last(self) -> Path:
        return self.root / "last"

    @property
    def ema(self) -> Path:
        return self.root / "ema"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"


@dataclass
class TrainResult:
    steps: int
    best_valid: float | None  #: best validation mel error (None without a validation split)
    last: Path  #: release directory of the last generator
    best: Path | None  #: release directory of the best generator
    metrics: Path
    is_main: bool = True  #: False in the other processes of a multi-process run (they print nothing)


def _run_record(config: ConfigFile, options: TrainOptions, manifest: Path, features: Path | None,
                init: str | None, world: int, segments: int) -> dict[str, Any]:
    """``codec_config``: the trained model's config file (the recipe's, or the ``--init`` model's)."""
    return {"codec_config": config.to_dict(), "options": json.loads(json.dumps(options.to_dict())),
            "manifest": str(manifest), "features": str(features) if features else None, "init": init,
            "world_size": world, "train_segments": segments}


def _check_resumable(old: dict[str, Any], new: dict[str, Any], path: Path) -> None:
    """Refuse other settings than the recorded ones; an option the record does not hold (it was written when the
    option did not exist) is not compared."""
    keys = ("codec_config", "manifest", "features", "init", "world_size", "train_segments")
    changed = [k for k in keys if old.get(k) != new.get(k)]
    changed += [f"options.{k}" for k in new["options"]
                if k not in RESUMABLE_CHANGES and old["options"].get(k, new["options"][k]) != new["options"][k]]
    if changed:
        raise DmcodecError(f"{path}: --resume with other settings than the run being resumed ({', '.join(changed)}); "
                           "give the same --config, data and options, or start a new -o folder")


def _loader(dataset: SegmentDataset, sampler, options: TrainOptions, hop: int):
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=options.num_workers,
                                       collate_fn=functools.partial(collate, hop=hop),
                                       generator=torch.Generator())  # keeps the global RNG untouched


def _valid_loader(dataset: SegmentDataset, hop: int):
    """One validation segment per batch, cropped from its start (None without a validation split)."""
    if not len(dataset):
        return None
    return torch.utils.data.DataLoader(dataset, batch_sampler=[[(i, -1)] for i in range(len(dataset))],
                                       collate_fn=functools.partial(collate, hop=hop), generator=torch.Generator())


def _total_steps(options: TrainOptions, order: BatchOrder) -> int:
    return options.max_steps or options.epochs * order.batches_per_epoch


def read_run_record(path: Path) -> dict[str, Any]:
    """The ``run.json`` of a run folder; DmcodecError for a file that is not one (damaged, or another program's)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DmcodecError(f"{path}: not a readable training record ({exc}); this folder holds no dmcodec run to "
                           "resume: choose another -o folder") from None
    if not (isinstance(record, dict) and isinstance(record.get("codec_config"), dict)
            and isinstance(record.get("options"), dict)):
        raise DmcodecError(f"{path}: not the record of a dmcodec training run (no codec_config and options); "
                           "choose another -o folder")
    return record


def _start(paths: Paths, resume: bool, record: dict[str, Any]) -> Path | None:
    """The checkpoint to resume from (None: a fresh run). Refuses to overwrite a run without --resume."""
    checkpoints = saved.list_checkpoints(paths.checkpoints)
    if paths.run.is_file():
        previous = read_run_record(paths.run)
        if not resume:
            raise DmcodecError(f"{paths.root}: already holds a training run; pass --resume to continue it "
                               "or choose another -o folder")
        _check_resumable(previous, record, paths.root)
    return checkpoints[-1][1] if resume and checkpoints else None


def _resume(trainer: Trainer, checkpoint: Path, rank: int) -> None:
    """Load a checkpoint's state into the trainer; a state that does not fit this run is one line."""
    state, rng = saved.load(checkpoint, rank)
    try:
        load_state_dict(trainer, state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise DmcodecError(f"{checkpoint}: the training state does not fit this run ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); delete this checkpoint folder "
                           "to resume from the one before") from None
    if rng is not None:
        saved.set_rng_state(rng)


def _save(trainer: Trainer, paths: Paths) -> None:
    acc = trainer.accelerator
    saved.write_rng(paths.checkpoints, trainer.step, acc.process_index)
    acc.wait_for_everyone()
    if acc.is_main_process:
        saved.commit(paths.checkpoints, trainer.step, state_dict(trainer), trainer.options.keep_checkpoints)
        save_release(trainer.codec, paths.last)
        if trainer.ema is not None:
            with ema_weights(trainer) as averaged:
                save_release(averaged, paths.ema)
    acc.wait_for_everyone()


def _validate(trainer: Trainer, loader, paths: Paths, monitor: Monitor) -> None:
    acc = trainer.accelerator
    if acc.is_main_process and loader is not None:
        values, shows = validate(trainer, loader)
        if trainer.ema is not None:
            with ema_weights(trainer):
                averaged, _ = validate(trainer, loader)
            values.update({f"ema_{name}": value for name, value in averaged.items()})
        monitor.scalars(trainer.step, "valid", values)
        monitor.showpieces(trainer.step, shows, trainer.codec.sample_rate, trainer.mel_loss.mels[0])
        if values["mel_error"] < trainer.best:
            trainer.best = values["mel_error"]
            save_release(trainer.codec, paths.best)
    acc.wait_for_everyone()


def train(config: ConfigFile, options: TrainOptions, manifest: str | os.PathLike, out: str | os.PathLike,
          features: str | os.PathLike | None = None, init_model: DMCodec | None = None, init: str | None = None,
          resume: bool = False, cpu: bool = False, progress: bool = True) -> TrainResult:
    """Train a codec and export ``out/last`` (and ``out/best`` when there is a validation split).

    ``init_model`` (loaded from ``init``) replaces a freshly initialised model built from the recipe
    ``config``; its releases carry the config file of the model trained (the recipe's, or ``init_model``'s).
    """
    paths, manifest = Paths(Path(out)), Path(manifest)
    if options.teachers and features is None:
        raise DmcodecError(f"--teacher {options.teacher} needs --features (a file from `dmcodec extract`); "
                           "or train with --teacher none")
    acc = make_accelerator(options, cpu)
    model_file = init_model.config_file if init_model is not None else config
    codec_config = model_file.codec
    ConfigFile(codec_config, options.training_keys)  # the recipe's mel loss must fit the model's sample rate
    train_segments, root = load_segments(manifest, "train")
    valid_segments, _ = load_segments(manifest, "valid")
    groups = options.teachers
    if groups and features is not None:  # teachers without features were refused above
        check_features(features, groups, train_segments + valid_segments, codec_config)
    record = _run_record(model_file, options, manifest.resolve(), Path(features).resolve() if features else None,
                         init, acc.num_processes, len(train_segments))
    checkpoint = _start(paths, resume, record)
    torch.manual_seed(options.seed)
    codec = init_model if init_model is not None else DMCodec(config.codec, config.training)
    trainer = build_trainer(codec, options, acc)
    if checkpoint is not None:  # before anything is written: a checkpoint that cannot be resumed changes nothing
        _resume(trainer, checkpoint, acc.process_index)
    acc.wait_for_everyone()  # every process has looked at the folder before the main one writes to it
    if acc.is_main_process:
        paths.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(paths.run, json.dumps(record, indent=2) + "\n")  # a killed run never leaves half of it
        if checkpoint is not None:
            truncate_metrics(paths.metrics, trainer.step)
        else:
            paths.metrics.unlink(missing_ok=True)

    order = BatchOrder(len(train_segments), options.batch_size, options.seed, acc.process_index, acc.num_processes)
    total = _total_steps(options, order)
    make = functools.partial(SegmentDataset, root=root, config=codec_config, segment_size=options.segment_size,
                             features=features, groups=groups)
    augment = Augment(options.augment_speed, options.augment_gain_db)
    loader = _loader(make(train_segments, augment=augment), StepSampler(order, trainer.step, total), options,
                     codec_config.hop_length)
    valid_loader = _valid_loader(make(valid_segments[:options.valid_items]), codec_config.hop_length)
    monitor = Monitor(paths.root, acc.is_main_process)
    try:
        _loop(trainer, loader, valid_loader, total, paths, monitor, progress and acc.is_main_process)
    finally:
        monitor.close()
    best = trainer.best if math.isfinite(trainer.best) else None
    return TrainResult(trainer.step, best, paths.last, paths.best if best is not None else None, paths.metrics,
                       acc.is_main_process)


def _loop(trainer: Trainer, loader, valid_loader, total: int, paths: Paths, monitor: Monitor, show: bool) -> None:
    from .progress import TrainProgress

    opts = trainer.options
    with TrainProgress(total, trainer.step, enabled=show) as bar:
        for batch in loader:
            values = train_step(trainer, batch.to(trainer.accelerator.device))
            bar.update(trainer.step, values)
            if trainer.step % opts.log_every == 0 or trainer.step == total:
                monitor.scalars(trainer.step, "train", values)
            if trainer.step % opts.valid_every == 0 or trainer.step == total:
                _validate(trainer, valid_loader, paths, monitor)
            if trainer.step % opts.save_every == 0 or trainer.step == total:
                _save(trainer, paths)
    if not paths.last.is_dir():  # resumed at the end already: still export the generator
        if trainer.accelerator.is_main_process:
            save_release(trainer.codec, paths.last)
