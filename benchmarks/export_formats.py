"""Export speed (tokens per second) and size on disk per hour of audio, for each format of ``dmcodec export``.

    .venv/bin/dmcodec encode ../shared/data/train-mini -o /tmp/train-mini.h5 --model dmcodec-mini
    .venv/bin/python benchmarks/export_formats.py /tmp/train-mini.h5 [--layouts flat,delay,parallel] [--repeat 3]

Every format and layout is exported in this one run, each ``--repeat`` times into a fresh folder (the
median time is kept), so the numbers compare with each other; the store itself is the size reference.
Prints one JSON object; ``--markdown`` also prints a table for docs/export.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from dmcodec_cli.corpus.store import CodeStore
from dmcodec_cli.lm.export import export_store
from dmcodec_cli.lm.formats import FORMATS


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(store: Path, fmt: str, layout: str, repeat: int, shard_size: int) -> dict:
    FORMATS[fmt].check_available()  # imports its library: not timed
    times, size, tokens = [], 0, 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="dmcodec-export-bench-") as tmp:
            out = Path(tmp) / "out"
            start = time.perf_counter()
            summary = export_store(store, out, fmt, layout, shard_size=shard_size)
            times.append(time.perf_counter() - start)
            size, tokens = folder_bytes(out), summary.tokens
    seconds = statistics.median(times)
    return {"format": fmt, "layout": layout, "seconds": round(seconds, 3), "seconds_all": [round(t, 3) for t in times],
            "tokens": tokens, "tokens_per_second": round(tokens / seconds), "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path, help="code store (.h5) to export")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--layouts", default="flat,delay,parallel")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=100, help="utterances per shard")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    with CodeStore(args.store) as store:
        hours = float(store.num_samples.sum()) / store.meta.sample_rate / 3600
        info = {"utterances": len(store), "hours": round(hours, 4), "frames": store.total_frames,
                "n_q": store.meta.n_q, "codebook_size": store.meta.codebook_size}
    rows = []
    for fmt in args.formats.split(","):
        for layout in args.layouts.split(","):
            if layout in FORMATS[fmt].layouts:
                rows.append(measure(args.store, fmt, layout, args.repeat, args.shard_size))
    store_bytes = os.path.getsize(args.store)
    for row in rows:
        row["mb_per_hour"] = round(row["bytes"] / 1e6 / hours, 2)
    result = {"store": str(args.store), **info, "store_mb_per_hour": round(store_bytes / 1e6 / hours, 2),
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "threads": os.environ.get("OMP_NUM_THREADS"), "results": rows}
    print(json.dumps(result, indent=2))
    if args.markdown:
        print("\n| format | layout | tokens / s | MB per hour of audio |\n|---|---|---:|---:|")
        print(f"| (the .h5 store) | codes | | {result['store_mb_per_hour']} |")
        for row in rows:
            print(f"| {row['format']} | {row['layout']} | {row['tokens_per_second']:,} | {row['mb_per_hour']} |")


if __name__ == "__main__":
    main()
