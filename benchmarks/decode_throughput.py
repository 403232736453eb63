"""Decoding throughput and peak memory: the decode engine vs a naive one-utterance-at-a-time model.decode loop.

    .venv/bin/python benchmarks/decode_throughput.py [--clips DIR] [--corpus-seconds 240] [--long-seconds 120]
                          [--short-seconds 20] [--threads 2] [--modes engine,naive,file,short] [--repeat 1]
                          [--json FILE]

Full-size DM-Codec config with random weights (speed does not depend on the weights or the code values).
The corpus: the lengths of real 3-20 s clips (taken as ``corpus_throughput.py`` takes them, from --clips),
each given random codes, written once as a code store. Each measurement runs in its own process so that
its peak RSS is its own; printed as a table and as JSON (--json FILE).
  (a) engine: ``decode_store`` (as `dmcodec decode corpus.h5 -o DIR`): batches of 240 s through the engine
  (b) naive:  for each utterance: its codes from the store, model.decode at batch 1, save_audio
  (c) file:   one code array of --long-seconds through ``decode_file`` (as `dmcodec decode X.npy -o X.wav`:
              windows of 20 s, decoded in batches)
  (d) short:  one code array of --short-seconds through ``decode_file`` (decoded whole, one sequence), and
      short-naive: the same through model.decode and save_audio
It also prints the arithmetic ceiling: the decoder's multiply-adds per second of audio against this machine's
matrix-product speed, the real-time factor no implementation of the model can pass here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from corpus_throughput import (
    REPO,
    SPEECH,
    TRAIN_MINI,
    compare_engine_and_naive,
    make_corpus,
    matmul_gflops,
    peak_rss_mb,
)

RATE, HOP = 16000, 320


def full_size_model():
    """The full-size config, random weights, weight norm folded; no encoder (decoding only)."""
    import torch

    from dmcodec_cli.config import CodecConfig
    from dmcodec_cli.model import DMCodec

    torch.manual_seed(0)
    model = DMCodec(CodecConfig()).eval()
    model.load_weights(model.state_dict())  # named once by its (seeded) weights: the same in every process
    model.encoder = torch.nn.Identity()
    return model.fold_weight_norm()


def write_store(path: Path, clips: list[Path]) -> float:
    """A code store of random codes [8, frames] for each clip's length; returns its audio seconds."""
    import soundfile as sf

    from dmcodec_cli.corpus.store import Entry, StoreMeta, StoreWriter

    rng = np.random.default_rng(0)
    model, total = full_size_model(), 0
    with StoreWriter(path, StoreMeta.for_model(model)) as writer:
        for clip in clips:
            samples = sf.info(clip).frames * RATE // sf.info(clip).samplerate
            frames = -(-samples // HOP)
            writer.add(Entry(clip.stem, samples, rng.integers(0, 1024, (8, frames), dtype=np.int16)))
            total += samples
    return total / RATE


def multiply_adds_per_frame(model) -> int:
    """Multiply-adds to decode one frame: the first conv, the LSTM and the upsampling conv stack."""
    return sum(macs for _, macs in decoder_parts(model))


def decoder_parts(model) -> list[tuple[str, int]]:
    """(part, multiply-adds per frame) in the order the engine runs them: the first conv, the LSTM (input and
    recurrent products), each step of the upsampling stack (``back_steps``)."""
    from dmcodec_cli.engine.time_major import TimeMajorConvTranspose, TimeMajorDecoder, TimeMajorResidual

    decoder = TimeMajorDecoder(model.decoder)
    parts = [("first conv", decoder.first.taps.numel()),
             ("LSTM", sum(w.numel() for layer in decoder.lstm.params for d in layer for w in d[:2]))]
    rows = 1  # rows per frame at the current step's input
    for i, step in enumerate(decoder.back_steps):
        if isinstance(step, TimeMajorResidual):
            macs = rows * sum(conv.taps.numel() for conv in (step.first, step.second, step.shortcut))
            name = f"residual {step.shortcut.taps.shape[-1]} ch"
        elif isinstance(step.func, TimeMajorConvTranspose):
            macs = rows * step.func.taps.numel()  # taps [2, C, stride * O] per input row
            rows *= step.func.stride
            name = f"transposed conv x{step.func.stride} -> {step.func.taps.shape[-1] // step.func.stride} ch"
        else:
            macs = rows * step.func.taps.numel()
            name = f"conv k{step.func.kernel_size} -> {step.func.taps.shape[-1]} ch"
        parts.append((f"{i:2d} {name} @ {rows * model.config.frame_rate / 1000:g} kHz", macs))
    return parts


def ceiling(threads: int) -> dict:
    """Runs in a child process: the real-time factor at which the decoder's arithmetic alone fills the cores."""
    import torch

    torch.set_num_threads(threads)
    model = full_size_model()
    gflop = 2 * multiply_adds_per_frame(model) * model.config.frame_rate / 1e9  # per second of audio
    peak = matmul_gflops("fp32")
    return {"mode": "ceiling", "gflop_per_audio_second": round(gflop, 2), "matmul_gflops": round(peak, 1),
            "x_real_time": round(peak / gflop, 2)}


def measure(mode: str, store: Path, threads: int, seconds_of: dict[str, float]) -> dict:
    """Runs in a child process: decode ``store`` (or a long code array) one way, report speed and memory."""
    import torch

    torch.set_num_threads(threads)
    model = full_size_model()
    with tempfile.TemporaryDirectory(prefix=f"bench-decode-{mode}-") as folder:
        seconds, files, wall, cpu = decode_into(Path(folder), mode, model, store, seconds_of)
    return {"mode": mode, "files": files, "audio_seconds": round(seconds, 2), "wall_seconds": round(wall, 2),
            "x_real_time": round(seconds / wall, 2), "cpu_seconds": round(cpu, 2),
            "peak_rss_mb": peak_rss_mb()["peak_rss_mb"]}


def decode_into(out: Path, mode: str, model, store: Path, seconds_of: dict[str, float]) -> tuple[float, int, float,
                                                                                               float]:
    """Decode ``store`` (or a long code array) one way into ``out``: (audio seconds, files, wall s, CPU s)."""
    import torch

    from dmcodec_cli.audio import save_audio
    from dmcodec_cli.corpus.report import decode_store
    from dmcodec_cli.corpus.store import CodeStore
    from dmcodec_cli.inference import decode_file

    start, cpu_start = time.perf_counter(), time.process_time()
    if mode == "engine":
        summary = decode_store(model, store, out / "audio")
        seconds, files = sum(sf_frames(p) for p in summary.written) / RATE, len(summary.written)
    elif mode == "naive":
        seconds, files = 0.0, 0
        with torch.inference_mode(), CodeStore(store) as codes:
            for i, name in enumerate(codes.ids):
                tensor = torch.from_numpy(codes[i].astype(np.int64))[:, None]
                samples = model.decode(tensor).view(-1)[:int(codes.num_samples[i])].numpy()
                save_audio(out / f"{name}.wav", samples, RATE)
                seconds, files = seconds + len(samples) / RATE, files + 1
    else:
        frames = int(seconds_of[mode] * model.config.frame_rate)
        codes = np.random.default_rng(1).integers(0, 1024, (8, frames), dtype=np.int16)
        start, cpu_start = time.perf_counter(), time.process_time()
        if mode == "short-naive":
            with torch.inference_mode():
                samples = model.decode(torch.from_numpy(codes.astype(np.int64))[:, None]).view(-1).numpy()
            save_audio(out / "short.wav", samples, RATE)
            seconds, files = len(samples) / RATE, 1
        else:
            seconds, files = decode_file(model, codes, out / "file.wav") / RATE, 1
    return seconds, files, time.perf_counter() - start, time.process_time() - cpu_start


def sf_frames(path: Path) -> int:
    import soundfile as sf

    return sf.info(path).frames


def run_child(mode: str, store: Path, args) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--store", str(store), "--threads", str(args.threads),
               "--long-seconds", str(args.long_seconds), "--short-seconds", str(args.short_seconds)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    except OSError:
        return "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "unknown CPU")


def compare(args) -> None:
    """Runs every measurement in its own process; prints the table, the ratio and the ceiling."""
    results = []
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(prefix="dmcodec-bench-decode-") as tmp:
        clips = make_corpus(Path(tmp) / "clips", args.corpus_seconds, args.clips)
        store = Path(tmp) / "corpus.h5"
        seconds = write_store(store, clips)
        print(f"{cpu_name()}, threads {args.threads}, cpus {os.cpu_count()}; corpus: {len(clips)} utterances, "
              f"{seconds:.1f} s; load average {os.getloadavg()[0]:.1f}", flush=True)
        for _ in range(args.repeat):  # alternated, so that a slow spell of the machine hits both modes
            for mode in ("engine", "naive"):
                if mode in modes:
                    results.append(run_child(mode, store, args))
                    print(json.dumps(results[-1]), flush=True)
        singles = [("file", "file", args.long_seconds)] if "file" in modes and args.long_seconds > 0 else []
        if "short" in modes and args.short_seconds > 0:
            singles += [("short", "short", args.short_seconds), ("short-naive", "short naive", args.short_seconds)]
        for child, name, seconds in singles:
            results.append({**run_child(child, store, args), "mode": f"{name} {seconds:g} s"})
            print(json.dumps(results[-1]), flush=True)
    roof = run_child("ceiling", Path("."), args)
    print(f"\n{'mode':<18}{'audio s':>9}{'wall s':>9}{'CPU s':>9}{'x real time':>13}{'peak RSS MB':>13}")
    for r in results:
        print(f"{r['mode']:<18}{r['audio_seconds']:>9}{r['wall_seconds']:>9}{r['cpu_seconds']:>9}{r['x_real_time']:>13}"
              f"{r['peak_rss_mb']:>13}")
    print(f"ceiling (fp32): {roof['gflop_per_audio_second']} GFLOP per audio second at the matrix-product speed of "
          f"{roof['matmul_gflops']} GFLOP/s = {roof['x_real_time']}x real time at most")
    results.append({**roof, "cpu": cpu_name(), "threads": args.threads})
    compare_engine_and_naive(results, roof, args.json)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-seconds", type=float, default=240.0)
    parser.add_argument("--clips", type=Path, default=TRAIN_MINI if TRAIN_MINI.is_dir() else SPEECH,
                        help="folder of .wav / .flac clips whose 3-20 s lengths make the corpus")
    parser.add_argument("--long-seconds", type=float, default=120.0, help="0 to skip the long code array")
    parser.add_argument("--short-seconds", type=float, default=20.0, help="0 to skip the short code array")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", default="engine,naive,file,short")
    parser.add_argument("--repeat", type=int, default=1, help="runs of (a) and (b), alternated; medians compared")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "ceiling":
        print(json.dumps(ceiling(args.threads)))
    elif args.child:
        seconds_of = {"file": args.long_seconds, "short": args.short_seconds, "short-naive": args.short_seconds}
        print(json.dumps(measure(args.child, args.store, args.threads, seconds_of)))
    else:
        compare(args)


if __name__ == "__main__":
    main()
