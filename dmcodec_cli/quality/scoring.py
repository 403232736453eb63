"""Scoring of (reference, degraded) pairs and of codec roundtrips, into a resumable JSON journal.

A row per scored file (and n_q): ``{"file", "n_q", <metrics>, "missing": {metric: reason}, ...}`` or
``{"file", "n_q", "error"}`` for a file that could not be read. Re-running with the same JSON skips
the (file, n_q) pairs already scored; failed ones are tried again.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..atomic import atomic_path
from ..audio import AUDIO_EXTENSIONS, load_audio
from ..errors import DmcodecError, printable
from ..inputs import audio_files, audio_id, transcript_for
from ..outputs import id_path
from . import plots
from .asr import Transcriber, normalize_text
from .dnsmos import dnsmos
from .metrics import (
    METRIC_RATE,
    METRICS,
    NO_ASR,
    SKIPPED,
    TEXT_METRICS,
    MetricValue,
    Missing,
    length_mismatch,
    log_mel_module,
    signal_metrics,
    to_metric_rate,
    wer,
    wil,
)
from .report import corpus_text_metrics, summarize, summarize_by_n_q
from .speaker import SpeakerSimilarity
from .visqol import VisqolWorkers

FORMAT = "dmcodec-quality"
VERSION = 1
Progress = Callable[[str], None]


# ---------------------------------------------------------------- inputs


@dataclass
class Pair:
    name: str  #: relative path of the reference (or a code store id), the row's "file"
    reference: Path | None  #: None for a code store id roundtripped without its audio
    degraded: Path | None  #: None when no degraded file matches
    stem: str = ""  #: where outputs go, relative, without extension (default "": the id of name)
    problem: str = ""  #: why this pair cannot be scored (a failed row), e.g. a store id with no audio file

    def __post_init__(self) -> None:
        self.stem = self.stem or audio_id(self.name)


def match_pairs(reference: Path, degraded: Path) -> tuple[list[Pair], list[Path]]:
    """Pairs from two files or two folders (matched by id: the relative path less the extension).

    Returns the pairs (a reference without a match has ``degraded`` None) and the degraded files that
    match no reference.
    """
    if reference.is_file() and degraded.is_file():
        return [Pair(printable(reference.name), reference, degraded)], []
    if not (reference.is_dir() and degraded.is_dir()):
        for path in (reference, degraded):
            if not path.exists():
                raise DmcodecError(f"{path}: no such file or folder")
        raise DmcodecError(f"{reference}, {degraded}: give two audio files or two folders, not one of each")
    candidates: dict[str, list[Path]] = {}
    for file in audio_files(degraded):
        candidates.setdefault(audio_id(file.relative), []).append(file.path)
    pairs, used = [], set()
    for file in audio_files(reference):
        path = file.path
        found = sorted(candidates.get(audio_id(file.relative), []), key=lambda p: p.suffix != path.suffix)
        pairs.append(Pair(file.relative, path, found[0] if found else None))
        used.update(found[:1])
    if not pairs:
        raise DmcodecError(f"{reference}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
    unmatched = [p for paths in candidates.values() for p in paths if p not in used]
    return pairs, sorted(unmatched)


def roundtrip_inputs(source: Path, outdir: Path | None = None) -> list[Pair]:
    """Audio files to roundtrip: the file itself or the audio files of a folder (``degraded`` None); files
    under ``outdir`` (the reconstructions of an earlier run, when it lies inside the folder) are not inputs."""
    if source.is_file():
        return [Pair(printable(source.name), source, None)]
    if source.is_dir():
        files = audio_files(source)
        if outdir is not None:
            written = outdir.resolve()
            files = [file for file in files if not file.path.resolve().is_relative_to(written)]
        if not files:
            raise DmcodecError(f"{source}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
        return [Pair(file.relative, file.path, None) for file in files]
    raise DmcodecError(f"{source}: no such file or folder")


# ---------------------------------------------------------------- journal


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json_atomic(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=_json_default, allow_nan=False)
        f.write("\n")


@dataclass
class Journal:
    """The rows scored so far, kept in a JSON file (if ``path``) that a re-run resumes from."""

    path: Path | None
    settings: dict
    bitrates: dict[int, float] = field(default_factory=dict)
    rows: dict[tuple[str, int | None], dict] = field(default_factory=dict)
    flush_every_s: float = 5.0
    _last_flush: float = 0.0
    _pending: list[PendingRow] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path | None, settings: dict, bitrates: dict[int, float] | None = None) -> "Journal":
        journal = cls(path, settings, dict(bitrates or {}))
        if path is not None and path.exists():
            journal._resume(path)
        return journal

    def _resume(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DmcodecError(f"{path}: exists but is not a readable JSON file ({exc}); "
                               "give another --json file or delete it") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), list):
            raise DmcodecError(f"{path}: exists but is not a dmcodec quality JSON; give another --json file")
        if data.get("settings") != self.settings:
            theirs = data.get("settings") or {}
            differ = sorted(k for k in set(theirs) | set(self.settings) if theirs.get(k) != self.settings.get(k))
            raise DmcodecError(f"{path}: was written with other settings ({', '.join(differ)} differ); "
                               "use another --json file or delete it to start over")
        for row in data["files"]:
            if "error" not in row:
                self.rows[(row["file"], row.get("n_q"))] = row

    def done(self, name: str, n_q: int | None = None) -> bool:
        row = self.rows.get((name, n_q))
        return row is not None and "error" not in row

    def add(self, row: "dict | PendingRow") -> None:
        """Record a row, or a row whose ViSQOL is still computing (recorded once it is done)."""
        self._pending.append(row if isinstance(row, PendingRow) else PendingRow(row))
        self._collect()
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def _collect(self, wait: bool = False) -> None:
        waiting = []
        for pending in self._pending:
            if wait or pending.done():
                row = pending.row()
                self.rows[(row["file"], row.get("n_q"))] = row
            else:
                waiting.append(pending)
        self._pending = waiting

    def settle(self) -> None:
        """Wait for the rows still computing and record them."""
        self._collect(wait=True)

    def result(self) -> dict:
        """The JSON document. ``roundtrip`` rows (with n_q) are summarised per n_q: ``summary[K]``,
        ``corpus[K]`` and ``bitrate_bps[K]`` for K = str(n_q); ``score`` rows once: ``summary[metric]``."""
        rows = sorted(self.rows.values(), key=lambda r: (r["file"], r.get("n_q") or 0))
        result = {"format": FORMAT, "version": VERSION, "settings": self.settings, "files": rows}
        if self.bitrates:
            levels = summarize_by_n_q(rows, self.bitrates)
            return {**result, **{key: {k: level[key] for k, level in levels.items()}
                                 for key in ("summary", "corpus", "bitrate_bps")}}
        return {**result, "summary": summarize(rows), "corpus": corpus_text_metrics(rows)}

    def flush(self) -> dict:
        """Write the rows that are complete (those still computing are left out until done)."""
        self._collect()
        result = self.result()
        if self.path is not None:
            write_json_atomic(self.path, result)
        self._last_flush = time.monotonic()
        return result


# ---------------------------------------------------------------- scoring


def metrics_row(name: str, n_q: int | None, values: dict[str, MetricValue]) -> dict:
    """A JSON row: every metric as a number or null, and the reason of each null under "missing"."""
    row: dict = {"file": name, "n_q": n_q}
    missing = {}
    for metric in METRICS:
        value = values.get(metric, Missing(NO_ASR if metric in TEXT_METRICS else SKIPPED))
        row[metric] = None if isinstance(value, Missing) else value
        if isinstance(value, Missing):
            missing[metric] = value.reason
    row["missing"] = missing
    return row


def error_row(name: str, n_q: int | None, message: str) -> dict:
    """The row of a file that could not be scored: every metric null, the error message under "error"."""
    row = metrics_row(name, n_q, {metric: Missing("file could not be scored (see error)") for metric in METRICS})
    return {**row, "error": printable(message)}  # a path that is not UTF-8 must still print and save


@dataclass
class PendingRow:
    """A scored row whose ViSQOL value may still be computing in a worker process."""

    scored: dict
    visqol: Future | None = None

    def done(self) -> bool:
        return self.visqol is None or self.visqol.done()

    def row(self) -> dict:
        """The complete row (waits for ViSQOL). A crashed worker makes it a failed row, tried again on resume."""
        if self.visqol is None:
            return self.scored
        try:
            value = self.visqol.result()
        except Exception as exc:  # a worker that died or raised: this file fails, the batch goes on
            return error_row(self.scored["file"], self.scored["n_q"], f"ViSQOL worker failed ({exc!r})")
        missing = {k: v for k, v in self.scored["missing"].items() if k != "visqol"}
        if isinstance(value, Missing):
            missing["visqol"] = value.reason
        return {**self.scored, "visqol": None if isinstance(value, Missing) else value, "missing": missing}


@dataclass
class Scorers:
    """The metrics beyond the signal metrics and what they need; a metric left None / False here is
    reported as skipped. WER / WIL need ``asr``; ``texts`` are the given transcripts by file."""

    visqol: VisqolWorkers | None = None
    dnsmos: bool = False
    speaker: SpeakerSimilarity | None = None
    asr: Transcriber | None = None
    texts: dict[str, str] = field(default_factory=dict)

    def original_metrics(self, reference16: np.ndarray) -> dict[str, MetricValue]:
        """The reference-free metrics of the original [L] (computed once per file)."""
        if not self.dnsmos:
            return {}
        return {f"original_{name}": value for name, value in dnsmos(reference16).items()}


@dataclass
class TextReference:
    """The normalised text a file's transcripts are compared with, and where it came from."""

    text: str
    source: str  #: "transcripts" (given) or "asr" (ASR of the original audio)


def text_reference(name: str, reference16: np.ndarray, scorers: Scorers) -> TextReference | None:
    """What the transcript of ``name`` is compared with: its line in the transcripts, else the ASR of the original."""
    if scorers.asr is None:
        return None
    given = transcript_for(name, scorers.texts)
    if given is not None:
        return TextReference(normalize_text(given), "transcripts")
    return TextReference(normalize_text(scorers.asr.transcribe(reference16)), "asr")


def score_arrays(name: str, n_q: int | None, reference16: np.ndarray, degraded16: np.ndarray,
                 scorers: Scorers | None = None, text: TextReference | None = None,
                 original: dict[str, MetricValue] | None = None) -> PendingRow:
    """One row for two 16 kHz signals [L1], [L2]; ``original``: ``scorers.original_metrics`` of the
    reference when already computed. ViSQOL may still be computing when this returns."""
    scorers = scorers or Scorers()
    values: dict[str, MetricValue] = dict(signal_metrics(reference16, degraded16))
    values.update(original if original is not None else scorers.original_metrics(reference16))
    if scorers.dnsmos:
        values.update(dnsmos(degraded16))
    if scorers.speaker is not None:
        values["speaker_similarity"] = scorers.speaker(reference16, degraded16)
    row_extra = {}
    if scorers.asr is not None and text is not None:
        hypothesis = normalize_text(scorers.asr.transcribe(degraded16))
        values["wer"], values["wil"] = wer(text.text, hypothesis), wil(text.text, hypothesis)
        row_extra = {"reference_text": text.text, "reference_text_source": text.source, "transcript": hypothesis}
    row = metrics_row(name, n_q, values)
    row["duration_s"] = round(len(reference16) / METRIC_RATE, 3)
    row["length_difference_s"] = round((len(degraded16) - len(reference16)) / METRIC_RATE, 3)
    row["length_mismatch"] = length_mismatch(len(reference16), len(degraded16)) is not None
    visqol = scorers.visqol.submit(reference16, degraded16) if scorers.visqol is not None else None
    return PendingRow({**row, **row_extra}, visqol)


def plot_pair(path: Path, reference16: np.ndarray, degraded16: np.ndarray, title: str, notes: list[str]) -> None:
    """Spectrogram PNG of a pair, or a note (once) that plots are skipped."""
    reason = plots.unavailable()
    if reason is not None:
        if f"plots skipped: {reason}" not in notes:
            notes.append(f"plots skipped: {reason}")
        return
    shortest = log_mel_module().n_fft // 2
    if min(len(reference16), len(degraded16)) <= shortest:  # the spectrogram's reflect padding needs more
        notes.append(f"{title}: no plot, too short for a spectrogram (needs more than {shortest} samples)")
        return
    plots.spectrogram_png(path, reference16, degraded16, title)


def score_pairs(pairs: Iterable[Pair], journal: Journal, scorers: Scorers | None = None,
                plot_dir: Path | None = None, progress: Progress | None = None,
                notes: list[str] | None = None) -> dict:
    """Score each pair not already in the journal; returns the journal's final result (also written)."""
    notes = notes if notes is not None else []
    scorers = scorers or Scorers()
    try:
        for pair in pairs:
            if not journal.done(pair.name):
                journal.add(_score_pair(pair, scorers, plot_dir, notes))
            if progress:
                progress(pair.name)
        journal.settle()
    finally:
        result = journal.flush()
    return result


def _score_pair(pair: Pair, scorers: Scorers, plot_dir: Path | None, notes: list[str]) -> dict | PendingRow:
    if pair.degraded is None:
        return error_row(pair.name, None, "no degraded file with this relative path")
    if pair.reference is None:
        return error_row(pair.name, None, "no reference audio to score against")
    try:
        plot = id_path(plot_dir, pair.stem, ".png") if plot_dir is not None else None  # never through a link out
        reference = to_metric_rate(load_audio(pair.reference, METRIC_RATE).samples, METRIC_RATE)
        degraded = to_metric_rate(load_audio(pair.degraded, METRIC_RATE).samples, METRIC_RATE)
    except DmcodecError as exc:
        return error_row(pair.name, None, str(exc))
    text = text_reference(pair.name, reference, scorers)
    if plot is not None:
        plot_pair(plot, reference, degraded, pair.name, notes)
    return score_arrays(pair.name, None, reference, degraded, scorers, text)
