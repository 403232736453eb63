"""Where one CPU training step of a recipe spends its time: each model part's forward and backward, the mel
loss, each discriminator family, the rest (optimizers, loss glue) and, separately, data loading.

    .venv/bin/python benchmarks/train_profile.py --config train/configs/mini_campaign_recon.json --steps 5
    .venv/bin/python benchmarks/train_profile.py --config train/configs/mini_campaign_gan_stft.json --gan
    .venv/bin/python benchmarks/train_profile.py --config ... --data ~/.cache/dmcodec/campaign-mini/prep/manifest.jsonl

Forward and backward times come from module hooks (a part's backward runs from the moment its outputs' gradients
are ready to the moment its inputs' are), so they add up to a little less than the step. The codec runs in
training mode on random speech-like input; the cost does not depend on the values. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict

import torch
from torch import nn

from dmcodec_cli.config import CodecConfig, ConfigFile
from dmcodec_cli.model import DMCodec
from dmcodec_cli.training.config import build_options
from dmcodec_cli.training.data import Batch
from dmcodec_cli.training.trainer import build_trainer, make_accelerator, train_step


class PartTimer:
    """Accumulates forward and backward seconds of named modules through hooks."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._started: dict[tuple[str, int], float] = {}

    def watch(self, name: str, module: nn.Module) -> None:
        def start(kind):
            return lambda *_: self._started.__setitem__((kind, id(module)), time.perf_counter())

        def stop(kind):
            def hook(*_):
                self.seconds[f"{name}.{kind}"] += time.perf_counter() - self._started.pop((kind, id(module)))
            return hook

        module.register_forward_pre_hook(start("forward"))
        module.register_forward_hook(stop("forward"))
        module.register_full_backward_pre_hook(start("backward"))
        module.register_full_backward_hook(stop("backward"))

    def reset(self) -> None:
        self.seconds.clear()


def watched_parts(trainer) -> dict[str, nn.Module]:
    codec, disc = trainer.codec, trainer.plain_discriminators
    parts = {"encoder": codec.encoder, "quantizer": codec.quantizer, "decoder": codec.decoder,
             "mel_loss": trainer.mel_loss}
    families = {"mpd": disc.periods, "msd": disc.scales, "ms_stft": disc.stfts}
    parts.update({f"disc_{name}": modules for name, modules in families.items() if len(modules)})
    return parts


def data_seconds(manifest: str, config: CodecConfig, options, batches: int) -> float:
    """Seconds per batch of the real loader (segments read, cropped and collated in the main process)."""
    import functools

    from dmcodec_cli.training.data import BatchOrder, SegmentDataset, StepSampler, collate, load_segments

    segments, root = load_segments(manifest, "train")
    dataset = SegmentDataset(segments, root=root, config=config, segment_size=options.segment_size,
                             features=None, groups=())
    order = BatchOrder(len(segments), options.batch_size, options.seed, 0, 1)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=StepSampler(order, 0, batches), num_workers=0,
                                         collate_fn=functools.partial(collate, hop=config.hop_length))
    start = time.perf_counter()
    count = sum(1 for _ in loader)
    return (time.perf_counter() - start) / max(count, 1)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="recipe config.json")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one untimed step: k-means)")
    parser.add_argument("--gan", action="store_true", help="time steps with the adversarial terms on")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", help="a prep manifest.jsonl: also time data loading per batch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    recipe = ConfigFile.from_json(args.config)
    config = recipe.codec
    options = build_options(recipe, {"teacher": "none", "adversarial_start": 0 if args.gan else 10**9})
    torch.manual_seed(0)
    trainer = build_trainer(DMCodec(config), options, make_accelerator(options, cpu=True))
    timer = PartTimer()
    for name, module in watched_parts(trainer).items():
        for part in module if isinstance(module, nn.ModuleList) else [module]:
            timer.watch(name, part)
    # an input that needs its gradient makes the encoder's backward hook span the encoder's whole backward
    batch = Batch((0.1 * torch.randn(options.batch_size, 1, options.segment_size)).requires_grad_(), {}, [])

    train_step(trainer, batch)  # k-means initialisation of the codebooks
    timer.reset()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step(trainer, batch)
    step = (time.perf_counter() - start) / args.steps
    parts = {name: round(seconds / args.steps, 4) for name, seconds in sorted(timer.seconds.items())}
    result = {
        "config": args.config, "gan": args.gan,
        "batch": [options.batch_size, options.segment_size / config.sample_rate],
        "threads": torch.get_num_threads(), "cpu": cpu_name(),
        "loadavg": os.getloadavg(), "step_seconds": round(step, 4), "parts_seconds": parts,
        "rest_seconds": round(step - sum(parts.values()), 4),
    }
    if args.data:
        result["data_seconds_per_batch"] = round(data_seconds(args.data, config, options, 20), 4)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
