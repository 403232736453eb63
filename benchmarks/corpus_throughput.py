"""Corpus encoding throughput and peak memory: this engine vs a naive one-file-at-a-time loop.

    .venv/bin/python benchmarks/corpus_throughput.py [--clips DIR] [--corpus-seconds 240] [--long-seconds 3600]
                          [--threads 2] [--dtype bf16] [--modes engine,naive,long,file] [--repeat 3]

Full-size DM-Codec config with random weights (speed does not depend on the weights). Each measurement
runs in its own process so that its peak RSS is its own; printed as a table and as JSON (--json FILE).
  (a) engine: ``tokenize_corpus`` (DataLoader worker, length-sorted packed-LSTM batches, HDF5 store)
  (b) naive:  for each file: load_audio, model.encode at batch 1, save .npy
With --dtype bf16 the engine computes in bf16 and the naive loop runs under bf16 autocast.
  (c) long:   one file of --long-seconds through the corpus engine (windowed), for its peak RSS
  (d) file:   the same file through single-file encoding (``encode_file``, as `dmcodec encode X.wav -o X.npy`)
It also prints the arithmetic ceiling: the encoder's multiply-adds per second of audio against this machine's
matrix-product speed in --dtype, the real-time factor no implementation of the model can pass here.
The corpus is real speech of 3-20 s taken from --clips DIR (default: the project's train-mini set when it lies
beside the repository, else the test fixture clips).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN_MINI = REPO.parent / "shared" / "data" / "train-mini"
SPEECH = REPO / "tests" / "fixtures" / "speech"


def full_size_model():
    import torch

    from dmcodec_cli.config import CodecConfig
    from dmcodec_cli.model import DMCodec

    torch.manual_seed(0)
    model = DMCodec(CodecConfig()).eval()
    for layer in model.quantizer.vq.layers:
        layer._codebook.embed.normal_()
        layer._codebook.inited.fill_(1)
    model.load_weights(model.state_dict())  # named once by its (seeded) weights, not at every store write
    model.decoder = torch.nn.Identity()  # encoding only, as `dmcodec encode` does: both modes alike
    return model.fold_weight_norm()


def audio_clips(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".wav", ".flac"))


def make_corpus(folder: Path, seconds: float, clips: Path) -> list[Path]:
    """Real 3-20 s utterances totalling about ``seconds`` (copied as they are)."""
    import shutil

    import soundfile as sf

    sources = audio_clips(clips)
    folder.mkdir(parents=True, exist_ok=True)
    chosen, total = [], 0.0
    for path in sources:
        duration = sf.info(path).duration
        if 3.0 <= duration <= 20.0:
            shutil.copy(path, folder / path.name)
            chosen.append(folder / path.name)
            total += duration
        if total >= seconds:
            break
    return chosen


def make_long_file(path: Path, seconds: float) -> None:
    """Speech clips repeated to ``seconds``, written block by block as 16 kHz 16-bit wav."""
    import soundfile as sf

    from dmcodec_cli.audio import load_audio

    clips = [load_audio(p, 16000).samples for p in audio_clips(SPEECH)]
    block = np.concatenate(clips)
    remaining = int(seconds * 16000)
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:
        while remaining > 0:
            f.write(block[:remaining])
            remaining -= min(len(block), remaining)


def peak_rss_mb() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own, 1), "peak_rss_workers_mb": round(children, 1)}


def multiply_adds_per_frame(model) -> int:
    """Multiply-adds to encode one frame: the encoder's convs, LSTM and last conv, and the quantizer's distances."""
    return sum(macs for _, macs in encoder_parts(model))


def encoder_parts(model) -> list[tuple[str, int]]:
    """(part, multiply-adds per frame) in the order the engine runs them: each conv-stack step (``front_steps``),
    the LSTM (input and recurrent products), the last conv and the quantizer's distances."""
    from dmcodec_cli.engine.time_major import TimeMajorEncoder, TimeMajorResidual

    encoder = TimeMajorEncoder(model.encoder)
    parts, rows = [], encoder.hop  # rows per frame at the current conv's output
    for i, step in enumerate(encoder.front_steps):
        if isinstance(step, TimeMajorResidual):
            channels = step.shortcut.taps.shape[-1]
            macs = rows * sum(conv.taps.numel() for conv in (step.first, step.second, step.shortcut))
            name = f"residual {channels} ch"
        else:
            rows //= step.func.stride
            macs = rows * step.func.taps.numel()  # taps [kernel / stride, stride * C, O]
            channels = step.func.taps.shape[-1]
            name = f"conv k{step.func.kernel_size}/{step.func.stride} -> {channels} ch"
        parts.append((f"{i:2d} {name} @ {rows * model.config.frame_rate / 1000:g} kHz", macs))
    parts.append(("LSTM", sum(w.numel() for layer in encoder.lstm.params for d in layer for w in d[:2])))
    parts.append(("last conv", encoder.last.taps.numel()))
    parts.append(("quantizer", sum(layer._codebook.embed.numel() for layer in model.quantizer.vq.layers)))
    return parts


def matmul_gflops(dtype: str, clock=time.perf_counter) -> float:
    """The best speed of a large matrix product (2048 x 2048 x 2048) in ``dtype``, GFLOP/s, timed by ``clock``."""
    import torch

    from dmcodec_cli.engine.encoder import DTYPES

    a, b = (torch.randn(2048, 2048, dtype=DTYPES[dtype]) for _ in range(2))
    best = float("inf")
    for _ in range(8):
        start = clock()
        a @ b
        best = min(best, clock() - start)
    return 2 * 2048 ** 3 / best / 1e9


def ceiling(threads: int, dtype: str) -> dict:
    """Runs in a child process: the real-time factor at which the encoder's arithmetic alone fills the cores."""
    import torch

    torch.set_num_threads(threads)
    model = full_size_model()
    gflop = 2 * multiply_adds_per_frame(model) * model.config.frame_rate / 1e9  # per second of audio
    peak = matmul_gflops(dtype)
    return {"mode": "ceiling", "dtype": dtype, "gflop_per_audio_second": round(gflop, 2),
            "matmul_gflops": round(peak, 1), "x_real_time": round(peak / gflop, 2)}


def measure(mode: str, inputs: Path, threads: int, workers: int, batch_seconds: float, dtype: str) -> dict:
    """Runs in a child process: encode ``inputs`` (a folder) one way, report speed and memory."""
    import torch

    from dmcodec_cli.audio import load_audio
    from dmcodec_cli.codes import save_codes
    from dmcodec_cli.corpus.runner import RunOptions, tokenize_corpus
    from dmcodec_cli.engine.encoder import EngineOptions
    from dmcodec_cli.inputs import collect_inputs

    torch.set_num_threads(threads)
    model = full_size_model()
    items = collect_inputs(inputs)
    out = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-"))
    start = time.perf_counter()
    if mode == "file":
        from dmcodec_cli.audio import AudioReader
        from dmcodec_cli.inference import encode_file

        with AudioReader(items[0].path, 16000) as reader:
            save_codes(out / "file.npy", encode_file(model, reader, options=EngineOptions(dtype=dtype)))
        seconds = reader.samples_read / 16000
    elif mode == "naive":
        seconds = 0.0
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == "bf16"):
            for item in items:
                samples = load_audio(item.path, 16000).samples
                codes = model.encode(torch.from_numpy(samples).view(1, 1, -1))[:, 0].numpy()
                save_codes(out / f"{item.id}.npy", codes)
                seconds += len(samples) / 16000
    else:
        options = RunOptions(EngineOptions(batch_seconds=batch_seconds, dtype=dtype), workers=workers)
        seconds = tokenize_corpus(model, items, out / "corpus.h5", options).audio_seconds
    wall = time.perf_counter() - start
    return {"mode": mode, "dtype": dtype, "files": len(items), "audio_seconds": round(seconds, 2),
            "wall_seconds": round(wall, 2),
            "x_real_time": round(seconds / wall, 2), **peak_rss_mb()}


def run_child(mode: str, folder: Path, args) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--inputs", str(folder), "--threads", str(args.threads),
               "--workers", str(args.workers), "--batch-seconds", str(args.batch_seconds), "--dtype", args.dtype]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args) -> None:
    """Runs every measurement in its own process; prints the table, the ratio and the ceiling."""
    results = []
    with tempfile.TemporaryDirectory(prefix="dmcodec-bench-") as tmp:
        corpus = Path(tmp) / "corpus"
        files = make_corpus(corpus, args.corpus_seconds, args.clips)
        print(f"corpus: {len(files)} files of 3-20 s; {args.dtype}; threads {args.threads}, workers {args.workers}, "
              f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
        modes = args.modes.split(",")
        for _ in range(args.repeat):  # alternated, so that a slow spell of the machine hits both modes
            for mode in ("engine", "naive"):
                if mode in modes:
                    results.append(run_child(mode, corpus, args))
                    print(json.dumps(results[-1]), flush=True)
        long_modes = [m for m in ("long", "file") if m in modes and args.long_seconds > 0]
        if long_modes:
            long_dir = Path(tmp) / "long"
            long_dir.mkdir()
            make_long_file(long_dir / "long.wav", args.long_seconds)
        for mode in long_modes:
            child = "engine" if mode == "long" else mode
            results.append({**run_child(child, long_dir, args), "mode": f"{mode} {args.long_seconds:g} s"})
            print(json.dumps(results[-1]), flush=True)
    roof = run_child("ceiling", Path("."), args)
    print(f"\n{'mode':<14}{'audio s':>9}{'wall s':>9}{'x real time':>13}{'peak RSS MB':>13}{'workers MB':>12}")
    for r in results:
        print(f"{r['mode']:<14}{r['audio_seconds']:>9}{r['wall_seconds']:>9}{r['x_real_time']:>13}"
              f"{r['peak_rss_mb']:>13}{r['peak_rss_workers_mb']:>12}")
    print(f"ceiling ({args.dtype}): {roof['gflop_per_audio_second']} GFLOP per audio second at the matrix-product "
          f"speed of {roof['matmul_gflops']} GFLOP/s = {roof['x_real_time']}x real time at most")
    results.append(roof)
    compare_engine_and_naive(results, roof, args.json)


def compare_engine_and_naive(results: list[dict], roof: dict, json_path: Path | None) -> None:
    """Print the medians of the engine and naive runs against each other and the ceiling; save the results."""
    speeds = {mode: sorted(r["x_real_time"] for r in results if r["mode"] == mode) for mode in ("engine", "naive")}
    if speeds["engine"] and speeds["naive"]:
        engine, naive = (statistics.median(speeds[mode]) for mode in ("engine", "naive"))
        print(f"engine / naive speed (medians of {len(speeds['engine'])}): {engine:.2f}x / {naive:.2f}x = "
              f"{engine / naive:.2f}x")
        print(f"  of the ceiling: engine {engine / roof['x_real_time']:.0%}, naive {naive / roof['x_real_time']:.0%}; "
              f"2x naive would be {2 * naive / roof['x_real_time']:.0%}")
        cpu = {mode: [r["cpu_seconds"] for r in results if r["mode"] == mode and "cpu_seconds" in r]
               for mode in ("engine", "naive")}
        if cpu["engine"] and cpu["naive"]:  # at 1 thread: the work, whatever else ran on the machine
            engine_cpu, naive_cpu = (statistics.median(cpu[mode]) for mode in ("engine", "naive"))
            print(f"  by CPU seconds (medians): engine {engine_cpu:.1f} s, naive {naive_cpu:.1f} s = "
                  f"{naive_cpu / engine_cpu:.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other processes share these cores)")
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-seconds", type=float, default=240.0)
    parser.add_argument("--clips", type=Path, default=TRAIN_MINI if TRAIN_MINI.is_dir() else SPEECH,
                        help="folder of .wav / .flac clips to take the 3-20 s corpus from")
    parser.add_argument("--long-seconds", type=float, default=3600.0, help="0 to skip the long file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-seconds", type=float, default=240.0)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="arithmetic of both (a) and (b)")
    parser.add_argument("--modes", default="engine,naive,long,file")
    parser.add_argument("--repeat", type=int, default=1, help="runs of (a) and (b), alternated; medians compared")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "ceiling":
        print(json.dumps(ceiling(args.threads, args.dtype)))
    elif args.child:
        print(json.dumps(measure(args.child, args.inputs, args.threads, args.workers, args.batch_seconds, args.dtype)))
    else:
        compare(args)


if __name__ == "__main__":
    main()
