"""The learning curve of a training campaign: steps vs validation mel error and held-out STOI / PESQ-wb.

    python train/plot_campaign.py ~/.cache/dmcodec/campaign-mini -o docs/mini_curve.png \
        [--run RUN] [--start-step 14260] [--table]

Reads RUN.curve.jsonl (written by train/campaign.sh, one row per chunk) and RUN/metrics.jsonl (every
validation of the run); RUN defaults to CAMPAIGN/run-recon100, the main run. ``--start-step`` shifts the
steps by those of the model the run started from; ``--table`` also prints the curve as a Markdown table
(for docs/training.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _cells(row: dict, prefix: str = "") -> str:
    """Validation mel error, STOI, PESQ-wb, SI-SDR, mel distance, ViSQOL of the live (or ``ema_``) weights."""
    if prefix + "stoi" not in row:
        return "| | | | | | "
    visqol = row.get(prefix + "visqol")
    return (f"{row[prefix + 'valid_mel_error']:.4f} | {row[prefix + 'stoi']:.3f} | {row[prefix + 'pesq_wb']:.3f} | "
            f"{row[prefix + 'si_sdr']:.2f} | {row[prefix + 'mel_distance']:.3f} | "
            f"{'' if visqol is None else f'{visqol:.2f}'} ")


def print_table(curve: list[dict], shift: int) -> None:
    """One row per chunk; rows with a moving average of the weights get a second line for it."""
    print("| step | hours | weights | validation mel error | STOI | PESQ-wb | SI-SDR (dB) | mel distance | ViSQOL |")
    print("|---|---|---|---|---|---|---|---|---|")
    hours = 0.0
    for row in curve:
        hours += row.get("chunk_seconds", 0) / 3600
        print(f"| {row['step'] + shift:,} | {hours:.2f} | live | {_cells(row)}|")
        if "ema_stoi" in row:
            print(f"| | | average | {_cells(row, 'ema_')}|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("campaign", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--run", type=Path, help="run folder (default: CAMPAIGN/run-recon100)")
    parser.add_argument("--start-step", type=int, default=0, help="steps of the model the run started from")
    parser.add_argument("--table", action="store_true", help="print the curve as a Markdown table")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = args.run or args.campaign / "run-recon100"
    curve = read_jsonl(run.with_name(run.name + ".curve.jsonl"))
    if args.table:
        print_table(curve, args.start_step)
    valid = [r for r in read_jsonl(run / "metrics.jsonl") if r.get("split") == "valid"]
    shift = args.start_step
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot([r["step"] + shift for r in valid], [r["mel_error"] for r in valid], ".-")
    top.set_ylabel("validation mel error")
    top.grid(alpha=0.3)
    steps = [r["step"] + shift for r in curve]
    bottom.plot(steps, [r.get("stoi") for r in curve], "o-", label="STOI")
    bottom.set_ylabel("held-out STOI (8 codebooks)")
    bottom.grid(alpha=0.3)
    pesq = bottom.twinx()
    pesq.plot(steps, [r.get("pesq_wb") for r in curve], "s--", color="tab:red", label="PESQ-wb")
    averaged = [r for r in curve if "ema_stoi" in r]
    if averaged:  # the moving average of the weights, where the recipe keeps one
        ema_steps = [r["step"] + shift for r in averaged]
        bottom.plot(ema_steps, [r["ema_stoi"] for r in averaged], "o:", color="tab:green", label="STOI, average")
        pesq.plot(ema_steps, [r["ema_pesq_wb"] for r in averaged], "s:", color="tab:purple", label="PESQ-wb, average")
        bottom.legend(loc="lower left", fontsize=8)
        pesq.legend(loc="lower right", fontsize=8)
    pesq.set_ylabel("held-out PESQ-wb", color="tab:red")
    bottom.set_xlabel("training step")
    fig.suptitle(f"{args.campaign.name}/{run.name}: {len(curve)} chunks, "
                 f"{sum(r.get('chunk_seconds', 0) for r in curve) / 3600:.1f} h of training")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(args.output)


if __name__ == "__main__":
    main()
