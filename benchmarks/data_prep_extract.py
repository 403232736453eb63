"""Speed and peak memory of ``dmcodec prep`` and ``dmcodec extract`` (tiny random teachers, CPU).

    .venv/bin/python benchmarks/data_prep_extract.py [--corpus ../shared/data/train-mini] [--threads 1] [--json FILE]

Runs the real CLI in subprocesses (so each peak RSS is its own): prep (fresh), prep again (idempotent re-run),
extract with --lm-align pad and with --lm-align ctc (SM + STT + LM each). The teachers are the tiny models of
tests/tiny_teachers.py, so the extract times measure the pipeline (audio reading, batching, alignment, HDF5),
not real-teacher compute: a real HuBERT / wav2vec2 / BERT base is ~95 M parameters each.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def run(args: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    command = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "dmcodec_cli", *args, "--json"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
    return {"wall_s": round(time.monotonic() - started, 2), "peak_rss_mb": int(done.stderr.split()[-1]) // 1024,
            "report": json.loads(done.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "train-mini"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    from tiny_teachers import make_tiny_teachers

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        teachers = {kind: str(path) for kind, path in make_tiny_teachers(tmp / "teachers").items()}
        prep = ["prep", args.corpus, "-o", str(tmp / "prep")]
        manifest = str(tmp / "prep" / "manifest.jsonl")
        extract = ["extract", manifest, "--sm", teachers["sm"], "--stt", teachers["stt"], "--lm", teachers["lm"],
                   "--device", "cpu", "--batch-size", str(args.batch_size)]
        results = {"prep": run(prep, args.threads), "prep_rerun": run(prep, args.threads),
                   "extract_pad": run(extract + ["-o", str(tmp / "pad.h5")], args.threads),
                   "extract_ctc": run(extract + ["-o", str(tmp / "ctc.h5"), "--lm-align", "ctc"], args.threads)}
        segments = sum(p.stat().st_size for p in (tmp / "prep").rglob("*.flac"))
        results["sizes_mb"] = {"segments": round(segments / 1e6, 1),
                               "features_pad_h5": round((tmp / "pad.h5").stat().st_size / 1e6, 1)}
    print(f"{'step':<12} {'wall s':>8} {'peak RSS MB':>12}")
    for name in ("prep", "prep_rerun", "extract_pad", "extract_ctc"):
        print(f"{name:<12} {results[name]['wall_s']:>8} {results[name]['peak_rss_mb']:>12}")
    report = results["prep"]["report"]
    print(f"{report['used_utterances']} utterances -> {report['segments']} segments, {report['seconds'] / 3600:.2f} h; "
          f"sizes {results['sizes_mb']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
