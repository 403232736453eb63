"""Where the encoder's time goes, part by part, against each part's arithmetic ceiling.

    .venv/bin/python benchmarks/encode_profile.py [--clips DIR] [--corpus-seconds 240] [--threads 2]
                          [--dtype fp32] [--repeat 3] [--clock wall|cpu] [--decode] [--json FILE]

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
--decode profiles the decode engine the same way instead: ``decode_store`` of a code store of random codes
for the clips' lengths (as ``decode_throughput.py`` makes it), parts: store reads, the quantizer's lookups,
the first conv, the LSTM, each step of the upsampling stack (``TimeMajorDecoder.back_steps``, tiles
included), audio writes, other.
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

import corpus_throughput
import decode_throughput
from corpus_throughput import SPEECH, TRAIN_MINI, encoder_parts, make_corpus, matmul_gflops
from decode_throughput import cpu_name, decoder_parts


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


Run = tuple[Clock, float, float, float]  #: a run's clock, audio seconds, wall seconds and CPU seconds


def encode_run(model, inputs: Path, output: Path, dtype: str, batch_seconds: float) -> Run:
    """One corpus run with every part timed."""
    from dmcodec_cli.audio import AudioReader
    from dmcodec_cli.corpus import runner
    from dmcodec_cli.engine.encoder import BatchEncoder, EngineOptions
    from dmcodec_cli.inputs import collect_inputs

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


def decode_run(model, store: Path, output: Path) -> Run:
    """One run of ``decode_store`` with every part timed."""
    from dmcodec_cli.corpus import report
    from dmcodec_cli.corpus.store import CodeStore
    from dmcodec_cli.engine.decoder import BatchDecoder

    clock = Clock()
    names = [name for name, _ in decoder_parts(model)][2:]

    def instrumented(model):
        engine = BatchDecoder(model)
        inner = engine.decoder
        inner.first = clock.wrap("first conv", inner.first)
        inner.lstm = clock.wrap("LSTM", inner.lstm)
        inner.back_steps = [clock.wrap(name, step) for name, step in zip(names, inner.back_steps)]
        return engine

    with mock.patch.object(report, "BatchDecoder", instrumented), \
            mock.patch.object(model.quantizer, "decode", clock.wrap("quantizer", model.quantizer.decode)), \
            mock.patch.object(CodeStore, "__getitem__", clock.wrap("store reads", CodeStore.__getitem__)), \
            mock.patch.object(report, "save_audio", clock.wrap("audio writes", report.save_audio)):
        wall, cpu = time.perf_counter(), time.process_time()
        summary = report.decode_store(model, store, output)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    clock.wall["other"] = wall - sum(clock.wall.values())
    clock.cpu["other"] = cpu - sum(clock.cpu.values())
    with CodeStore(store) as codes:
        audio = float(codes.num_samples.sum()) / model.sample_rate
    assert len(summary.written) == len(codes.ids)
    return clock, audio, wall, cpu


def table(runs: list[Run], parts: list[tuple[str, int]], rest: list[str], stack_name: str, frame_rate: float,
          peak: float, by_cpu: bool) -> list[dict]:
    """Per part (``parts``: name and multiply-adds per frame; ``rest``: parts without arithmetic): median
    seconds over the runs, GFLOP, GFLOP/s, fraction of the ceiling and of the run (the last three by CPU
    seconds if ``by_cpu``, else by wall seconds)."""
    audio = runs[0][1]
    frames = audio * frame_rate
    macs = dict(parts)
    total = statistics.median(run[3 if by_cpu else 2] for run in runs)
    rows = []
    for part in [*macs, *rest, "other"]:
        wall = statistics.median(clock.wall[part] for clock, *_ in runs)
        cpu = statistics.median(clock.cpu[part] for clock, *_ in runs)
        seconds = cpu if by_cpu else wall
        gflop = 2 * macs.get(part, 0) * frames / 1e9
        rows.append({"part": part, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                     "share": round(seconds / total, 4), "gflop": round(gflop, 1),
                     "gflops": round(gflop / seconds, 1) if gflop else None,
                     "of_ceiling": round(gflop / peak / seconds, 3) if gflop else None})
    conv = [r for r in rows if r["part"][:2].strip().isdigit()]
    stack = {"part": stack_name, "seconds": round(sum(r["seconds"] for r in conv), 3),
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
    parser.add_argument("--decode", action="store_true", help="profile the decode engine instead (fp32)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    dtype = "fp32" if args.decode else args.dtype
    model = (decode_throughput if args.decode else corpus_throughput).full_size_model()
    with tempfile.TemporaryDirectory(prefix="dmcodec-engine-profile-") as tmp:
        files = make_corpus(Path(tmp) / "clips", args.corpus_seconds, args.clips)
        if args.decode:
            decode_throughput.write_store(Path(tmp) / "codes.h5", files)
        peak = matmul_gflops(dtype, time.process_time if args.clock == "cpu" else time.perf_counter)
        print(f"{cpu_name()}, threads {args.threads}, cpus {os.cpu_count()}, {dtype}, {args.clock} clock, "
              f"{'decode' if args.decode else 'encode'}; corpus: {len(files)} clips; matrix product {peak:.1f} "
              f"GFLOP/s; load average {os.getloadavg()[0]:.1f}", flush=True)
        runs = []
        for i in range(args.repeat):
            runs.append(decode_run(model, Path(tmp) / "codes.h5", Path(tmp) / f"audio{i}") if args.decode else
                        encode_run(model, Path(tmp) / "clips", Path(tmp) / f"run{i}.h5", dtype, args.batch_seconds))
            print(f"run {i + 1}: {runs[-1][1]:.1f} s of audio in {runs[-1][2]:.2f} s ({runs[-1][3]:.2f} CPU s)",
                  flush=True)
    parts, rest = ((decoder_parts(model), ["store reads", "audio writes"]) if args.decode else
                   (encoder_parts(model), ["reading", "store writes"]))
    stack = "upsampling stack (its steps)" if args.decode else "conv stack (its steps)"
    rows = table(runs, parts, rest, stack, model.config.frame_rate, peak, args.clock == "cpu")
    print(f"\n{'part':<46}{'s':>8}{'CPU s':>8}{'share':>8}{'GFLOP':>8}{'GFLOP/s':>9}{'of ceiling':>12}")
    for r in rows[:-1]:
        speed = f"{r['gflops']:>9}" if r.get("gflops") else f"{'':>9}"
        fraction = f"{r['of_ceiling']:>12.0%}" if r.get("of_ceiling") else f"{'':>12}"
        print(f"{r['part']:<46}{r['seconds']:>8}{r['cpu_seconds']:>8}{r['share']:>8.1%}{r['gflop']:>8}{speed}"
              f"{fraction}")
    run = rows[-1]
    print(f"run: {run['audio_seconds']} s of audio in {run['seconds']} {args.clock} s = {run['x_real_time']}x real "
          f"time, {run['of_ceiling']:.0%} of the ceiling; load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "threads": args.threads, "dtype": dtype,
                                         "engine": "decode" if args.decode else "encode",
                                         "clock": args.clock,
                                         "matmul_gflops": round(peak, 1), "parts": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
