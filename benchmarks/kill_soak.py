"""kill -9 soak of `dmcodec encode CORPUS -o X.h5 --commit-every 1`: interrupted runs must complete to the
store of an uninterrupted one, and two runs at once must not both write.

    .venv/bin/python benchmarks/kill_soak.py [--trials 40] [--points 0.3] [--concurrent 5] [--clips 6]
                                             [--seed 0] [--json FILE]

Each trial starts the CLI (a real process, tiny model ``tests/fixtures/reference/dmcodec_small.pt``,
short clips from ``tests/fixtures/speech``) on a fresh output and SIGKILLs it: at a random time while it
writes (from the moment it holds its lock to the time an uninterrupted run takes), or, for a share
``--points`` of trials, at a named point of a commit / the final merge / the clean-up (the test-only
hook ``DMCODEC_TEST_KILL_AT``). The resuming run is itself killed at a random time with probability 0.3;
then a last run completes. The trial passes when every run that was not killed exited 0 without a
traceback and the store equals the uninterrupted one (attributes, ids, codes, num_samples, offsets)
with nothing else left beside it. A concurrency trial starts two runs at once on a fresh output: one
must be refused (exit 2, one line) or wait its turn, and the store must equal the uninterrupted one.
Prints a JSON summary (trials, kills, what the kills left, stores equal, refused concurrent runs, failures).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "tests" / "fixtures" / "reference" / "dmcodec_small.pt"
SPEECH = REPO / "tests" / "fixtures" / "speech"
POINTS = ["commit:codes-tmp", "commit:codes", "commit:json-tmp", "commit:json", "finalize:writing",
          "finalize:renamed", "remove:mark"]
REPEATED = {"commit:codes-tmp", "commit:codes", "commit:json-tmp", "commit:json", "remove:mark"}  # once a segment


def command(corpus: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "dmcodec_cli", "encode", str(corpus), "-o", str(out), "--model", str(MODEL),
            "--device", "cpu", "--workers", "0", "--batch-seconds", "4", "--commit-every", "1", "--json"]


def start(corpus: Path, out: Path, point: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("DMCODEC_TEST_KILL_AT", None)
    if point:
        env["DMCODEC_TEST_KILL_AT"] = point
    return subprocess.Popen(command(corpus, out), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_lock(process: subprocess.Popen, out: Path, timeout: float = 120.0) -> float:
    """Seconds until the run holds its lock (its lock file appears), or until it ended."""
    begin = time.monotonic()
    lock = out.with_name(out.name + ".lock")
    while not lock.exists() and process.poll() is None and time.monotonic() - begin < timeout:
        time.sleep(0.005)
    return time.monotonic() - begin


def store_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with h5py.File(path, "r") as f:
        for key in sorted(f.attrs):
            digest.update(f"{key}={f.attrs[key]!r}".encode())
        for key in ("codes", "offsets", "ids", "num_samples"):
            digest.update(repr(f[key][:].tolist()).encode())
    return digest.hexdigest()


def left_behind(out: Path) -> str:
    """What a kill left: journal segments, temporary store, store, lock."""
    work = out.with_name(out.name + ".work")
    parts = [f"{len(list(work.glob('seg-*.json')))} marks/{len(list(work.glob('seg-*.codes.npy')))} codes"
             if work.is_dir() else "no journal"]
    parts += [name for name, p in (("temporary store", out.with_name(f".{out.name}.tmp")), ("store", out))
              if p.exists()]
    return ", ".join(parts)


def finish(process: subprocess.Popen, label: str, failures: list[str]) -> int:
    stdout, stderr = process.communicate(timeout=600)
    if process.returncode not in (0, -signal.SIGKILL) or "Traceback" in stderr:
        failures.append(f"{label}: exit {process.returncode}: {stderr.strip().splitlines()[-1:]} ")
    return process.returncode


def clean_output(out: Path) -> list[str]:
    """Anything beside the finished store (a journal, a temporary store, a lock file) is a failure."""
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


class Soak:
    def __init__(self, corpus: Path, root: Path, rng: random.Random):
        self.corpus, self.root, self.rng = corpus, root, rng
        self.n = len(list(corpus.iterdir()))
        self.failures: list[str] = []
        self.kills = 0
        self.left: collections.Counter = collections.Counter()
        out = root / "reference" / "c.h5"
        out.parent.mkdir()
        process = start(corpus, out)
        self.lock_seconds = wait_for_lock(process, out)
        begin = time.monotonic()
        if finish(process, "reference", self.failures) != 0:
            raise SystemExit(f"the uninterrupted run failed: {self.failures}")
        self.work_seconds = time.monotonic() - begin  #: from holding the lock to the end
        self.reference = store_digest(out)

    def kill_randomly(self, out: Path, label: str) -> bool:
        """Start a run, SIGKILL it at a random time while it writes; True if the kill landed."""
        process = start(self.corpus, out)
        wait_for_lock(process, out)
        time.sleep(self.rng.uniform(0, self.work_seconds))
        process.send_signal(signal.SIGKILL)
        return self._count(finish(process, label, self.failures), out)

    def _count(self, code: int, out: Path) -> bool:
        if code == -signal.SIGKILL:
            self.kills += 1
            self.left[left_behind(out)] += 1
            return True
        return False

    def trial(self, index: int, point: str | None) -> bool:
        out = self.root / f"t{index:03d}" / "c.h5"
        out.parent.mkdir()
        label = f"trial {index} ({point or 'random'})"
        before = len(self.failures)
        if point:
            self._count(finish(start(self.corpus, out, point), label, self.failures), out)
        else:
            self.kill_randomly(out, label)
        if self.rng.random() < 0.3:
            self.kill_randomly(out, label + " resume")
        finish(last := start(self.corpus, out), label + " last run", self.failures)
        if last.returncode != 0:
            self.failures.append(f"{label}: the last run exited {last.returncode}")
        elif store_digest(out) != self.reference:
            self.failures.append(f"{label}: the store differs from the uninterrupted one")
        elif leftovers := clean_output(out):
            self.failures.append(f"{label}: left {leftovers}")
        shutil.rmtree(out.parent)
        return len(self.failures) == before

    def concurrent(self, index: int) -> str:
        """Two runs at once on one fresh output -> 'refused' (one said so), 'serial' (one waited) or 'failed'."""
        out = self.root / f"c{index:03d}" / "c.h5"
        out.parent.mkdir()
        processes = [start(self.corpus, out), start(self.corpus, out)]
        results = []
        for p in processes:
            stdout, stderr = p.communicate(timeout=600)
            results.append((p.returncode, stdout, stderr))
        codes = sorted(code for code, _, _ in results)
        refused = [err for code, _, err in results if code == 2]
        outcome = "failed"
        if codes == [0, 2] and "another dmcodec run" in refused[0] and len(refused[0].strip().splitlines()) == 1:
            outcome = "refused"
        elif codes == [0, 0]:
            outcome = "serial"  # the second took the lock after the first let go: a resume that skips all
        if outcome == "failed" or store_digest(out) != self.reference or clean_output(out):
            self.failures.append(f"concurrent {index}: exits {codes}, {[e.strip()[-300:] for _, _, e in results]}")
            outcome = "failed"
        shutil.rmtree(out.parent)
        return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--points", type=float, default=0.3, help="share of trials killed at a named point")
    parser.add_argument("--concurrent", type=int, default=5)
    parser.add_argument("--clips", type=int, default=6, help="the shortest N fixture clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kill_soak_") as tmp:
        root = Path(tmp)
        import soundfile as sf

        clips = sorted((p for p in SPEECH.iterdir() if p.suffix in (".wav", ".flac")),
                       key=lambda p: sf.info(p).duration)[: args.clips]
        (root / "corpus").mkdir()
        for clip in clips:
            shutil.copy(clip, root / "corpus" / clip.name)
        soak = Soak(root / "corpus", root, rng)
        equal, points = 0, collections.Counter()
        for i in range(args.trials):
            point = None
            if rng.random() < args.points:
                point = rng.choice(POINTS)
                if point in REPEATED:
                    point += f"@{rng.randint(1, len(clips))}"
                points[point.partition("@")[0]] += 1
            ok = soak.trial(i, point)
            equal += ok
            print(f"trial {i + 1}/{args.trials} ({point or 'random'}): {'equal' if ok else 'FAILED'}, "
                  f"{soak.kills} kills so far, {time.monotonic() - begin:.0f} s", file=sys.stderr, flush=True)
        concurrency = collections.Counter(soak.concurrent(i) for i in range(args.concurrent))
    summary = {"trials": args.trials, "kills": soak.kills, "stores_equal": equal,
               "named_point_trials": dict(points), "kills_left": dict(soak.left.most_common()),
               "concurrent_trials": args.concurrent, "concurrent_refused": concurrency["refused"],
               "concurrent_serial": concurrency["serial"], "concurrent_failed": concurrency["failed"],
               "failures": soak.failures, "clips": len(clips),
               "uninterrupted_work_seconds": round(soak.work_seconds, 2),
               "wall_seconds": round(time.monotonic() - begin, 1)}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    sys.exit(1 if soak.failures else 0)


if __name__ == "__main__":
    main()
