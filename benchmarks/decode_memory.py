"""Decoding long code files: peak memory and speed through the CLI, and what the window boundaries cost.

    .venv/bin/python benchmarks/decode_memory.py memory [--minutes 1,10,60] [--repo DIR] [--threads 2] [--json FILE]
    .venv/bin/python benchmarks/decode_memory.py boundaries [--contexts 0,0.1,0.25,0.5,1,2] [--window 16]

memory: the full-size DM-Codec config with random weights (103.7 M parameters; speed and memory do not
depend on the weights), saved once as a release directory, decodes random codes of each length with
`dmcodec decode codes.npy -o out.wav --model DIR` in its own process; printed: x real time, the process's
peak RSS and its CPU seconds (on a shared machine the wall time is not its own). ``--repo DIR`` runs another
checkout's code with this venv (e.g. ``git archive HEAD | tar -x -C /tmp/before``), for before / after.
The default --window of boundaries is that of decoding (``DECODE_WINDOWS``).

boundaries: real speech (the test fixture clips, joined end to end to about --seconds) encoded and then
decoded by the decode engine whole and in windows of --window seconds with each context, by the bundled
model and the reference small model; printed: max and RMS difference between windowed and whole decoding,
and the largest sample-to-sample jump at the window boundaries against the largest elsewhere (a click
would show there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "tests" / "fixtures" / "speech"
SMALL = REPO / "tests" / "fixtures" / "reference" / "dmcodec_small.pt"


def full_size_release(folder: Path) -> Path:
    """The full-size config with random weights (codebooks initialised), as a release directory."""
    import torch

    from dmcodec_cli.checkpoint import save_release
    from dmcodec_cli.config import CodecConfig
    from dmcodec_cli.model import DMCodec

    torch.manual_seed(0)
    model = DMCodec(CodecConfig()).eval()
    for layer in model.quantizer.vq.layers:
        layer._codebook.embed.normal_()
        layer._codebook.inited.fill_(1)
    save_release(model, folder, torch.float32, True)
    return folder


def random_codes(path: Path, minutes: float, seed: int = 0) -> int:
    """int16 codes [8, frames] of ``minutes`` at 50 frames/s, as `dmcodec encode` writes them."""
    frames = int(minutes * 60 * 50)
    codes = np.random.default_rng(seed).integers(0, 1024, (8, frames), dtype=np.int16)
    np.save(path, codes)
    return frames


def decode_once(repo: Path, model_dir: Path, codes: Path, out: Path, threads: int) -> dict:
    """One `dmcodec decode` in a child process of a child (so RUSAGE_CHILDREN is that decode's alone)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    probe = ("import resource, subprocess, sys, time\n"
             "start = time.perf_counter()\n"
             "cli = 'from dmcodec_cli.cli import main; main()'\n"
             "done = subprocess.run([sys.executable, '-c', cli, *sys.argv[1:]])\n"
             "wall = time.perf_counter() - start\n"
             "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
             "print(f'{done.returncode} {wall} {usage.ru_maxrss / 1024} {usage.ru_utime + usage.ru_stime}')\n")
    command = [sys.executable, "-c", probe, "decode", str(codes), "-o", str(out), "--model", str(model_dir),
               "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or lines[-1].split()[0] != "0":
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    _, wall, peak, cpu = lines[-1].split()
    return {"wall_s": float(wall), "peak_rss_mib": float(peak), "cpu_s": float(cpu)}


def memory(args: argparse.Namespace) -> list[dict]:
    repo = Path(args.repo).resolve()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = full_size_release(Path(tmp) / "full-size")
        for minutes in [float(m) for m in args.minutes.split(",")]:
            codes = Path(tmp) / f"codes_{minutes:g}min.npy"
            frames = random_codes(codes, minutes)
            out = Path(tmp) / f"out_{minutes:g}min.wav"  # a new file: decode never replaces one it did not write
            result = decode_once(repo, model_dir, codes, out, args.threads)
            row = {"repo": str(repo), "minutes": minutes, "frames": frames, **result}
            if "wall_s" in result:
                row["x_real_time"] = minutes * 60 / result["wall_s"]
                print(f"{repo.name:>10} {minutes:6g} min: {row['x_real_time']:5.2f}x real time, "
                      f"peak RSS {row['peak_rss_mib']:,.0f} MiB ({row['wall_s']:.0f} s wall, "
                      f"{row['cpu_s']:.0f} s CPU)", flush=True)
            else:
                print(f"{repo.name:>10} {minutes:6g} min: failed: {result['error']}", flush=True)
            rows.append(row)
            codes.unlink()
            out.unlink(missing_ok=True)
    return rows


def long_speech(seconds: float) -> np.ndarray:
    """The fixture clips at 16 kHz, joined end to end (repeated) to at least ``seconds``."""
    from dmcodec_cli.audio import load_audio

    clips = [load_audio(p, 16000).samples for p in sorted(SPEECH.iterdir()) if p.suffix in (".wav", ".flac")]
    joined, total = [], 0
    while total < seconds * 16000:
        for clip in clips:
            joined.append(clip)
            total += len(clip)
    return np.concatenate(joined)[: int(seconds * 16000)]


def boundary_row(name: str, context: float, whole: np.ndarray, windowed: np.ndarray, starts: list[int]) -> dict:
    """Differences windowed - whole, and jumps |x[n] - x[n - 1]| at window starts vs everywhere else."""
    diff = windowed - whole
    jumps = np.abs(np.diff(windowed))
    at = np.zeros(len(jumps), bool)
    at[[s - 1 for s in starts]] = True
    whole_jumps = np.abs(np.diff(whole))
    return {"model": name, "context_s": context, "max_diff": float(np.abs(diff).max()),
            "rms_diff": float(np.sqrt(np.mean(diff ** 2))), "signal_rms": float(np.sqrt(np.mean(whole ** 2))),
            "max_jump_at_boundaries": float(jumps[at].max()), "whole_jump_there": float(whole_jumps[at].max()),
            "max_jump_elsewhere": float(jumps[~at].max()),
            "boundary_max_diff": float(max(np.abs(diff[s - 8:s + 8]).max() for s in starts))}


def boundaries(args: argparse.Namespace) -> list[dict]:
    import torch

    from dmcodec_cli.checkpoint import load_checkpoint
    from dmcodec_cli.engine.decoder import BatchDecoder
    from dmcodec_cli.engine.windows import WindowPlan, plan_pieces
    from dmcodec_cli.inference import encode_samples, iter_decode
    from dmcodec_cli.registry import load_model

    torch.set_num_threads(args.threads)
    speech = long_speech(args.seconds)
    models = {"dmcodec-mini": load_model("dmcodec-mini"),
              "reference small": load_checkpoint(SMALL).eval().fold_weight_norm()}
    rows = []
    for name, model in models.items():
        codes = encode_samples(model, speech)
        whole = BatchDecoder(model).decode([codes])[0].numpy()  # the engine's whole decoding, no windows
        for context in [float(c) for c in args.contexts.split(",")]:
            plan = WindowPlan(window_seconds=args.window, context_seconds=context)
            windowed = np.concatenate(list(iter_decode(model, codes, plan)))
            pieces = plan_pieces(codes.shape[1] * model.hop_length, model.hop_length, model.sample_rate, plan)
            starts = [p.start + p.keep_start * model.hop_length for p in pieces[1:]]
            row = boundary_row(name, context, whole, windowed, starts)
            print(f"{name:>16} context {context:4g} s: max diff {row['max_diff']:.2e}, RMS {row['rms_diff']:.2e} "
                  f"(signal RMS {row['signal_rms']:.3f}); jump at boundaries {row['max_jump_at_boundaries']:.4f} "
                  f"(whole there {row['whole_jump_there']:.4f}), elsewhere {row['max_jump_elsewhere']:.4f}",
                  flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("--minutes", default="1,10,60")
    mem.add_argument("--repo", default=str(REPO), help="checkout whose dmcodec_cli runs (default: this one)")
    bound = sub.add_parser("boundaries")
    bound.add_argument("--contexts", default="0,0.1,0.25,0.5,1,2")
    bound.add_argument("--window", type=float, default=16.0, help="kept seconds per window (decode's: 16)")
    bound.add_argument("--seconds", type=float, default=100.0)
    for p in (mem, bound):
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = memory(args) if args.mode == "memory" else boundaries(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
