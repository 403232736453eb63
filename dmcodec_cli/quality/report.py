"""Summary statistics and rich tables of scored files."""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .metrics import DNSMOS_SCALES, HIGHER_IS_BETTER, METRICS, NOT_ASKED

_DNSMOS_LABELS = {"sig": "SIG", "bak": "BAK", "ovrl": "OVRL", "p808": "P.808"}
LABELS = {"stoi": "STOI", "pesq_wb": "PESQ-WB", "si_sdr": "SI-SDR dB", "mel_distance": "mel dist",
          "visqol": "ViSQOL", **{f"dnsmos_{s}": f"DNSMOS {_DNSMOS_LABELS[s]}" for s in DNSMOS_SCALES},
          **{f"original_dnsmos_{s}": f"orig. DNSMOS {_DNSMOS_LABELS[s]}" for s in DNSMOS_SCALES},
          "speaker_similarity": "speaker sim", "wer": "WER", "wil": "WIL"}
#: The columns of the per-file and bitrate tables (the summary table and the JSON have every metric).
TABLE_METRICS = ("stoi", "pesq_wb", "si_sdr", "mel_distance", "visqol", "dnsmos_ovrl", "original_dnsmos_ovrl",
                 "speaker_similarity", "wer", "wil")


def t_quantile_975(dof: int) -> float:
    """The 97.5 % quantile of Student's t with ``dof`` degrees of freedom (two-sided 95 % interval)."""
    from scipy.stats import t  # the eval extra

    return float(t.ppf(0.975, dof))


def describe(values: Iterable[float | None]) -> dict:
    """mean, sample std (ddof 1), ci95 = half-width of the Student-t 95 % interval of the mean, n.

    std and ci95 are None for fewer than two values; all but n are None for none.
    """
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(data.size)
    if n == 0:
        return {"mean": None, "std": None, "ci95": None, "n": 0}
    if n == 1:
        return {"mean": float(data[0]), "std": None, "ci95": None, "n": 1}
    std = float(data.std(ddof=1))
    return {"mean": float(data.mean()), "std": std, "ci95": t_quantile_975(n - 1) * std / math.sqrt(n), "n": n}


def summarize(rows: list[dict], metrics: Iterable[str] = METRICS) -> dict:
    """{metric: describe(values of the scored rows)} for every metric."""
    scored = [row for row in rows if "error" not in row]
    return {name: describe(row.get(name) for row in scored) for name in metrics}


def corpus_text_metrics(rows: list[dict]) -> dict | None:
    """WER / WIL over all words of all files at once (how papers report WER), from the rows' normalised
    texts: {"wer", "wil", "n"}; None without transcripts (or without jiwer)."""
    pairs = [(row["reference_text"], row["transcript"]) for row in rows
             if "error" not in row and row.get("reference_text") and "transcript" in row]
    try:
        import jiwer
    except ImportError:
        return None
    if not pairs:
        return None
    references, hypotheses = [list(texts) for texts in zip(*pairs)]
    return {"wer": float(jiwer.wer(references, hypotheses)), "wil": float(jiwer.wil(references, hypotheses)),
            "n": len(pairs)}


def summarize_by_n_q(rows: list[dict], bitrate_of: dict[int, float]) -> dict:
    """{str(n_q): {"n_q", "bitrate_bps", "summary", "corpus"}} for each n_q among the rows, ascending."""
    levels = sorted({row["n_q"] for row in rows if row.get("n_q") is not None})
    by_n_q = {}
    for k in levels:
        level_rows = [row for row in rows if row.get("n_q") == k]
        by_n_q[str(k)] = {"n_q": k, "bitrate_bps": bitrate_of.get(k), "summary": summarize(level_rows),
                          "corpus": corpus_text_metrics(level_rows)}
    return by_n_q


def levels(result: dict) -> list[dict]:
    """The per-n_q blocks of a roundtrip result as [{"n_q", "bitrate_bps", "summary", "corpus"}], ascending
    n_q; [] for a ``score`` result (one pooled summary)."""
    if "bitrate_bps" not in result:
        return []
    return [{"n_q": int(k), "bitrate_bps": result["bitrate_bps"][k], "summary": result["summary"][k],
             "corpus": result["corpus"][k]} for k in sorted(result["summary"], key=int)]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _present(rows: list[dict], metrics: Iterable[str] = TABLE_METRICS) -> list[str]:
    """Metrics worth a column: all but those not asked for (WER / WIL without ASR, skipped ones)."""
    return [m for m in metrics if any(row.get(m) is not None or row.get("missing", {}).get(m) not in NOT_ASKED
                                      for row in rows)]


def _label(name: str) -> str:
    return LABELS[name] + (" ↑" if HIGHER_IS_BETTER[name] else " ↓")


def files_table(rows: list[dict], title: str = "per file") -> Table:
    """One row per file (and n_q); a "Δ length s" column flags pairs whose lengths differ by more than a frame."""
    metrics = _present(rows)
    with_n_q = any(row.get("n_q") is not None for row in rows)
    mismatched = any(row.get("length_mismatch") for row in rows)
    table = Table(title=title)
    table.add_column("file", overflow="fold", min_width=24)
    if with_n_q:
        table.add_column("n_q", justify="right")
    if mismatched:
        table.add_column("Δ length s", justify="right")
    for name in metrics:
        table.add_column(_label(name), justify="right")
    for row in rows:
        cells = [escape(row["file"])] + ([str(row.get("n_q", ""))] if with_n_q else [])
        if mismatched:
            cells.append(f"[yellow]{row['length_difference_s']:+.3f}[/]" if row.get("length_mismatch") else "")
        if "error" in row:
            table.add_row(*cells, f"[red]error: {escape(row['error'])}[/]", *[""] * (len(metrics) - 1))
            continue
        table.add_row(*cells, *[_fmt(row.get(name)) for name in metrics])
    return table


def summary_table(summary: dict, title: str = "summary") -> Table:
    table = Table(title=title)
    for column in ("metric", "mean", "std", "95 % CI", "n"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, stats in summary.items():
        if stats["n"] == 0:
            continue
        ci = "—" if stats["ci95"] is None else f"± {stats['ci95']:.3f}"
        table.add_row(LABELS[name], _fmt(stats["mean"]), _fmt(stats["std"]), ci, str(stats["n"]))
    return table


def bitrate_table(by_level: list[dict]) -> Table:
    """One row per n_q (``levels``): bitrate and mean ± ci95 of each metric."""
    metrics = [m for m in TABLE_METRICS if any(level["summary"][m]["n"] for level in by_level)]
    table = Table(title="bitrate → quality (mean ± 95 % CI)")
    table.add_column("n_q", justify="right")
    table.add_column("kbps", justify="right")
    for name in metrics:
        table.add_column(_label(name), justify="right")
    for level in by_level:
        cells = []
        for name in metrics:
            stats = level["summary"][name]
            ci = "" if stats["ci95"] is None else f" ± {stats['ci95']:.2f}"
            cells.append("—" if stats["mean"] is None else f"{stats['mean']:.3f}{ci}")
        kbps = "—" if level["bitrate_bps"] is None else f"{level['bitrate_bps'] / 1000:g}"
        table.add_row(str(level["n_q"]), kbps, *cells)
    return table


def missing_notes(rows: list[dict]) -> list[str]:
    """One line per reason and number of files: which metrics lack a value for that many files, and why."""
    counts = Counter((name, reason) for row in rows for name, reason in row.get("missing", {}).items()
                     if reason not in NOT_ASKED)
    grouped: dict[tuple[str, int], list[str]] = {}
    for (name, reason), count in counts.items():
        grouped.setdefault((reason, count), []).append(name)
    return [f"{', '.join(LABELS[n] for n in sorted(names, key=METRICS.index))} missing for {count} file(s): "
            f"{reason}" for (reason, count), names in sorted(grouped.items())]


def print_report(console: Console, result: dict, show_files: bool = True) -> None:
    """Per-file table (unless ``show_files`` is False), missing-metric notes, summary, bitrate table."""
    rows = result["files"]
    if show_files:
        console.print(files_table(rows))
    for line in missing_notes(rows):
        console.print(f"[yellow]note:[/] {escape(line)}")
    mismatched = sum(bool(row.get("length_mismatch")) for row in rows)
    if mismatched:
        console.print(f"[yellow]{mismatched} file(s) differ in length from their reference by more than one "
                      "frame[/]: their reference metrics are not computed (see Δ length)")
    errors = [row for row in rows if "error" in row]
    if errors:
        console.print(f"[red]{len(errors)} file(s) failed[/] (see the error column / JSON)")
    by_level = levels(result)
    if len(by_level) > 1:
        console.print(bitrate_table(by_level))
    else:
        summary = by_level[0]["summary"] if by_level else result["summary"]
        console.print(summary_table(summary) if summary else "no file scored")
    corpus = {level["n_q"]: level["corpus"] for level in by_level} if by_level else {None: result["corpus"]}
    for n_q, stats in corpus.items():
        if stats:
            at = "" if n_q is None or len(corpus) == 1 else f" at n_q={n_q}"
            console.print(f"corpus WER{at} (all words pooled, {stats['n']} files): {stats['wer']:.4f}, "
                          f"WIL {stats['wil']:.4f}")
