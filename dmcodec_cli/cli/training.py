"""``dmcodec train``: a thin shell over ``dmcodec_cli.training`` (imported only when the command runs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from ..errors import DmcodecError
from ..outputs import check_folder_output
from .common import JSON_FILE_HELP, JSON_HELP, check_json_file, console, report_json


def _weights(text: Optional[str]) -> tuple[Optional[float], Optional[float]]:
    if text is None:
        return None, None
    try:
        sm, lm = (float(v) for v in text.split(","))
    except ValueError:
        raise DmcodecError(f"--weights {text!r}: give two numbers SM,LM such as 0.2,0.8") from None
    if not all(math.isfinite(w) and w >= 0 for w in (sm, lm)):
        raise DmcodecError(f"--weights {text!r}: the weights must be finite numbers >= 0, such as 0.2,0.8")
    return sm, lm


def _import_training():
    try:
        from ..training import run
        from ..training.config import build_options
    except ImportError as exc:
        raise DmcodecError(f"training needs the train extra ({exc.name} is missing): "
                           "pip install 'dmcodec[train]'") from None
    return run, build_options


def train(
    config: Path = typer.Option(..., "--config", help="Recipe: a codec config.json, training options under \"extra\"."),
    data: Path = typer.Option(..., "--data", help="Segment manifest (JSONL) from `dmcodec prep`."),
    output: Path = typer.Option(..., "-o", "--output", help="Experiment folder (checkpoints, metrics, tensorboard, "
                                "best/, last/)."),
    features: Optional[Path] = typer.Option(None, "--features", help="Teacher features (HDF5) from `dmcodec extract`."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="combined, lm, sm or none (default: recipe, "
                                         "else combined)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="lambda_SM,lambda_LM of the combined teacher "
                                         "(default 0.5,0.5)."),
    lm_layers: Optional[str] = typer.Option(None, "--lm-layers", help="Quantizers distilled from the LM: 1, 8, "
                                           "1:8 (sum) or 1,3."),
    sm_layers: Optional[str] = typer.Option(None, "--sm-layers", help="Quantizers distilled from the SM "
                                           "(default 1:8, the sum)."),
    distill_loss: Optional[str] = typer.Option(None, "--distill-loss", help="d_axis (the paper's) or t_axis."),
    init: Optional[str] = typer.Option(None, "--init", help="Fine-tune from a model: release folder, official .pt "
                                      "or hub id."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last checkpoint."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many steps (default: the "
                                           "recipe's epochs)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Per-process batch size (default: the "
                                            "recipe's)."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="Data-loading worker processes."),
    device: str = typer.Option("auto", "--device", help="auto (the GPUs when there are, else the CPU), cpu or cuda "
                               "(which GPUs: CUDA_VISIBLE_DEVICES or accelerate launch)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
) -> None:
    """Train or fine-tune a DM-Codec tokenizer with LM / SM distillation (see docs/training.md)."""
    from ..config import ConfigFile

    inputs = [config, data, *([features] if features else [])]
    cpu = _on_cpu(device)
    check_run_folder(output, inputs, resume)
    check_json_file(json_file, inputs)
    run, build_options = _import_training()
    recipe = ConfigFile.from_json(config)
    sm_weight, lm_weight = _weights(weights)
    options = build_options(recipe, dict(
        teacher=teacher, sm_weight=sm_weight, lm_weight=lm_weight, lm_layers=lm_layers, sm_layers=sm_layers,
        distill_type=distill_loss, max_steps=max_steps, batch_size=batch_size, num_workers=num_workers))
    if weights is not None and options.teacher != "combined":
        raise DmcodecError(f"--weights weighs the two teachers of --teacher combined; this run's teacher is "
                           f"{options.teacher!r}: leave --weights out or pass --teacher combined")
    init_model = None
    if init is not None:
        from ..registry import load_model

        init_model = load_model(init, "cpu", for_inference=False)
    result = run.train(recipe, options, data, output, features, init_model, init, resume, cpu,
                       progress=not quiet)
    if not result.is_main:
        return
    summary = {"output": str(output), "steps": result.steps, "best_valid_mel_error": result.best_valid,
               "last": str(result.last), "best": str(result.best) if result.best else None,
               "metrics": str(result.metrics)}
    if report_json(summary, json_out, json_file):
        return
    best = f", best validation mel error {result.best_valid:.4f} -> {result.best}" if result.best else ""
    console.print(f"trained {result.steps} steps; last generator -> {result.last}{best}")


def _on_cpu(device: str) -> bool:
    """``--device``: auto / cpu / cuda (accelerate places each process on its GPU) -> train on the CPU?"""
    from ..engine.device import pick_device

    if device not in ("auto", "cpu", "cuda"):
        raise DmcodecError(f"train --device takes auto, cpu or cuda, got {device!r}; choose the GPUs with "
                           "CUDA_VISIBLE_DEVICES or accelerate launch")
    return pick_device(device).type == "cpu"


RUN_NAMES = ("run.json", "checkpoints", "metrics.jsonl", "best", "last", "tensorboard")


def check_run_folder(out: Path, inputs: list[Path], resume: bool) -> None:
    """Before the work: --output is a folder that can be written, holds none of the inputs, and is either new,
    a training run (run.json: --resume, else refused by the run) or holds none of the names a run writes."""
    check_folder_output(out, inputs=inputs)
    if (out / "run.json").is_file():
        return
    found = [name for name in RUN_NAMES if (out / name).exists()]
    if found:
        raise DmcodecError(f"{out}: holds {found[0]} but is not a dmcodec training run (no run.json); a run would "
                           "write over it; choose a new or empty -o folder")


def register(app: typer.Typer) -> None:
    app.command()(train)
