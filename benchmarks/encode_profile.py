"""Where the encoder's time goes, part by part, against each part's arithmetic ceiling.

    .venv/bin/python benchmarks/encode_profile.py [--clips DIR] [--corpus-seconds 240] [--threads 2]
                          [--dtype fp32] [--repeat 3] [--clock wall|cpu] [--json FILE]

Full-size DM-Codec config with random weights (``corpus_throughput.full_size_model``), in one process. Each
run is the corpus runner itself (``tokenize_corpus`` into a code store, reading in this process:
``workers=0``) over real 3-20 s clips, with a clock around each part where the engine runs it:
  reading       opening and decoding the file, mixing down, resampling to 16 kHz (``AudioReader``)
  conv stack    each step of the conv stack (``TimeMajorEncoder.front_steps``), tiles and halos included
  LSTM          the BiLSTM over the batch's slots (``StreamLSTM``)
  last conv     ELU and the last conv (``TimeMajorEncoder.last``)
  quantizer     the residual quantizer's distances and argmins (``quantizer.encode``)
  store writes  the journal and the final store (``StoreSink``)
  other         the rest of the run: batching, slot packing, the skip connection, stitching, Python
For each part: seconds (median of --repeat runs, wall and CPU), GFLOP (its multiply-adds per frame counted
from the model, x 2, times the frames encoded: tiles' halos are not useful work), the speed, and the
fraction of the ceiling: the time its arithmetic would take at the speed of a 2048^3 matrix product in
--dtype, measured in the same run by the same clock, over the time it took. Reading and writing hold no
arithmetic: their share of the run is what they cost. --clock cpu computes speeds and fractions from CPU
seconds, which at --threads 1 leave out the time other processes held the core (on a shared machine the
only steady measure; at 2 threads CPU seconds count OpenMP's spinning).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

from corpus_throughput import SPEECH, TRAIN_MINI, encoder_parts, full_size_model, make_corpus, matmul_gflops
from decode_throughput import cpu_name


class Clock:
    """Wall and CPU seconds spent inside wrapped calls, per part name."""

    def __init__(self):
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, call):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return call(*args, **kwargs)
            finally:
                self.wall[name] += time.perf_counter() - wall
                self.cpu[name] += time.process_time() - cpu
        return timed

    def wrap_generator(self, name: str, function):
        """A generator function whose own time (between the values it gives) counts for ``name``."""
        def timed(*args, **kwargs):
            values = self.wrap(name, function)(*args, **kwargs)
            step = self.wrap(name, next)
            while True:
                try:
                    value = step(values)
                except StopIteration:
                    return
                yield value
        return timed


def profile_run(model, inputs: Path, output: Path, dtype: str,
                batch_seconds: float) -> tuple[Clock, float, float, float]:
    """One corpus run with every part timed: (clock, audio seconds, wall seconds, CPU seconds)."""
    from dmcodec_cli.audio import AudioReader
    from dmcodec_cli.corpus import runner
    from dmcodec_cli.corpus.inputs import collect_inputs
    from dmcodec_cli.engine.encoder import BatchEncoder, EngineOptions

    clock = Clock()
    names = [name for name, _ in encoder_parts(model)]

    def instrumented(model, options):
        engine = BatchEncoder(model, options)
        inner = engine.encoder
        inner.front_steps = [clock.wrap(name, step) for name, step in zip(names, inner.front_steps)]
        inner.lstm = clock.wrap("LSTM", inner.lstm)
        inner.last = clock.wrap("last conv", inner.last)
        return engine

    sink = runner.StoreSink
    with mock.patch.object(runner, "BatchEncoder", instrumented), \
            mock.patch.object(model.quantizer, "encode", clock.wrap("quantizer", model.quantizer.encode)), \
            mock.patch.object(AudioReader, "__init__", clock.wrap("reading", AudioReader.__init__)), \
            mock.patch.object(AudioReader, "blocks", clock.wrap_generator("reading", AudioReader.blocks)), \
            mock.patch.multiple(sink, add=clock.wrap("store writes", sink.add),
                                close=clock.wrap("store writes", sink.close),
                                finalize=clock.wrap("store writes", sink.finalize)):
        options = runner.RunOptions(EngineOptions(batch_seconds=batch_seconds, dtype=dtype), workers=0)
        wall, cpu = time.perf_counter(), time.process_time()
        summary = runner.tokenize_corpus(model, collect_inputs(inputs), output, options)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    clock.wall["other"] = wall - sum(clock.wall.values())
    clock.cpu["other"] = cpu - sum(clock.cpu.values())
    return clock, summary.audio_seconds, wall, cpu


def table(runs: list[tuple[Clock, float, float, float]], model, peak: float, by_cpu: bool) -> list[dict]:
    """Per part: median seconds over the runs, GFLOP, GFLOP/s, fraction of the ceiling and of the run (the
    last three by CPU seconds if ``by_cpu``, else by wall seconds)."""
    audio = runs[0][1]
    frames = audio * model.config.frame_rate
    macs = dict(encoder_parts(model))
    total = statistics.median(run[3 if by_cpu else 2] for run in runs)
    rows = []
    for part in [*macs, "reading", "store writes", "other"]:
        wall = statistics.median(clock.wall[part] for clock, *_ in runs)
        cpu = statistics.median(clock.cpu[part] for clock, *_ in runs)
        seconds = cpu if by_cpu else wall
        gflop = 2 * macs.get(part, 0) * frames / 1e9
        rows.append({"part": part, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                     "share": round(seconds / total, 4), "gflop": round(gflop, 1),
                     "gflops": round(gflop / seconds, 1) if gflop else None,
                     "of_ceiling": round(gflop / peak / seconds, 3) if gflop else None})
    conv = [r for r in rows if r["part"][:2].strip().isdigit()]
    stack = {"part": "conv stack (all steps)", "seconds": round(sum(r["seconds"] for r in conv), 3),
             "cpu_seconds": round(sum(r["cpu_seconds"] for r in conv), 3),
             "share": round(sum(r["share"] for r in conv), 4), "gflop": round(sum(r["gflop"] for r in conv), 1)}
    seconds = stack["cpu_seconds" if by_cpu else "seconds"]
    stack["gflops"] = round(stack["gflop"] / seconds, 1)
    stack["of_ceiling"] = round(stack["gflop"] / peak / seconds, 3)
    return [*rows, stack, {"part": "run", "seconds": round(total, 3), "audio_seconds": round(audio, 2),
                           "x_real_time": round(audio / total, 2),
                           "of_ceiling": round(2 * sum(macs.values()) * frames / 1e9 / peak / total, 3)}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=TRAIN_MINI if TRAIN_MINI.is_dir() else SPEECH,
                        help="folder of .wav / .flac clips whose 3-20 s ones make the corpus")
    parser.add_argument("--corpus-seconds", type=float, default=240.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--batch-seconds", type=float, default=240.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="the seconds that speeds and fractions are computed from (cpu: for --threads 1)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model = full_size_model()
    with tempfile.TemporaryDirectory(prefix="dmcodec-encode-profile-") as tmp:
        files = make_corpus(Path(tmp) / "clips", args.corpus_seconds, args.clips)
        peak = matmul_gflops(args.dtype, time.process_time if args.clock == "cpu" else time.perf_counter)
        print(f"{cpu_name()}, threads {args.threads}, cpus {os.cpu_count()}, {args.dtype}, {args.clock} clock; "
              f"corpus: {len(files)} "
              f"clips; matrix product {peak:.1f} GFLOP/s; load average {os.getloadavg()[0]:.1f}", flush=True)
        runs = []
        for i in range(args.repeat):
            runs.append(profile_run(model, Path(tmp) / "clips", Path(tmp) / f"run{i}.h5", args.dtype,
                                    args.batch_seconds))
            print(f"run {i + 1}: {runs[-1][1]:.1f} s of audio in {runs[-1][2]:.2f} s ({runs[-1][3]:.2f} CPU s)",
                  flush=True)
    rows = table(runs, model, peak, args.clock == "cpu")
    print(f"\n{'part':<38}{'s':>8}{'CPU s':>8}{'share':>8}{'GFLOP':>8}{'GFLOP/s':>9}{'of ceiling':>12}")
    for r in rows[:-1]:
        speed = f"{r['gflops']:>9}" if r.get("gflops") else f"{'':>9}"
        fraction = f"{r['of_ceiling']:>12.0%}" if r.get("of_ceiling") else f"{'':>12}"
        print(f"{r['part']:<38}{r['seconds']:>8}{r['cpu_seconds']:>8}{r['share']:>8.1%}{r['gflop']:>8}{speed}"
              f"{fraction}")
    run = rows[-1]
    print(f"run: {run['audio_seconds']} s of audio in {run['seconds']} {args.clock} s = {run['x_real_time']}x real "
          f"time, {run['of_ceiling']:.0%} of the ceiling; load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "threads": args.threads, "dtype": args.dtype,
                                         "clock": args.clock,
                                         "matmul_gflops": round(peak, 1), "parts": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
