"""Seconds per training step (generator + discriminator update, combined distillation) of a DM-Codec config.

    .venv/bin/python benchmarks/train_step.py                       # full-size model, batch 6 x 3 s, 1 step
    .venv/bin/python benchmarks/train_step.py --steps 3 --warmup 1  # steady state (the first step runs k-means)
    .venv/bin/python benchmarks/train_step.py --config train/configs/tiny_cpu.json --batch-size 4 --seconds 1

Prints one JSON object: per-step seconds, the mean over timed steps, parameter counts, device and threads.
Random speech-like input and random 768-d teacher features: the cost does not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from dmcodec_cli.config import ConfigFile
from dmcodec_cli.model import DMCodec
from dmcodec_cli.training.config import build_options
from dmcodec_cli.training.data import Batch
from dmcodec_cli.training.trainer import build_trainer, make_accelerator, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="recipe / codec config.json (default: the official full-size config)")
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=1, help="timed steps")
    parser.add_argument("--warmup", type=int, default=0, help="untimed steps first (k-means runs in the first)")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-gan", action="store_true", help="time steps before adversarial_start (no discriminators)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    recipe = ConfigFile.from_json(args.config) if args.config else ConfigFile()
    config = recipe.codec
    options = build_options(recipe, {"teacher": "combined", "lm_layers": "1", "sm_layers": f"1:{min(8, config.n_q)}",
                                     "mixed_precision": args.mixed_precision,
                                     "adversarial_start": 10**9 if args.no_gan else 0})
    accelerator = make_accelerator(options, cpu=args.cpu)
    torch.manual_seed(0)
    trainer = build_trainer(DMCodec(config), options, accelerator)
    samples = int(args.seconds * config.sample_rate) // config.hop_length * config.hop_length
    frames, dim = samples // config.hop_length, config.semantic_dimension
    batch = Batch(0.1 * torch.randn(args.batch_size, 1, samples),
                  {g: torch.randn(args.batch_size, frames, dim) for g in ("sm", "lm")}, []).to(accelerator.device)

    def one_step() -> float:
        start = time.perf_counter()
        train_step(trainer, batch)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    warmup = [one_step() for _ in range(args.warmup)]
    timed = [one_step() for _ in range(args.steps)]

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    device = torch.cuda.get_device_name() if accelerator.device.type == "cuda" else platform.processor() or "cpu"
    print(json.dumps({
        "config": args.config or "official full-size", "batch_size": args.batch_size,
        "seconds": samples / config.sample_rate,
        "device": device, "threads": torch.get_num_threads(), "loadavg": os.getloadavg(),
        "mixed_precision": args.mixed_precision, "gan": not args.no_gan, "generator_params": count(trainer.codec),
        "discriminator_params": count(trainer.plain_discriminators),
        "warmup_step_seconds": [round(t, 3) for t in warmup], "step_seconds": [round(t, 3) for t in timed],
        "mean_step_seconds": round(sum(timed) / len(timed), 3) if timed else None,
    }, indent=2))


if __name__ == "__main__":
    main()
