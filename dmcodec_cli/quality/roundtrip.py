"""Encode -> decode -> score: how much a model loses, per file and per number of codebooks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..audio import load_audio, save_audio
from ..errors import DmcodecError
from ..inference import decode_codes, encode_samples
from ..inputs import audio_files, audio_id
from ..model import DMCodec
from ..outputs import BadId, id_path
from . import plots
from .dnsmos import dnsmos
from .metrics import (
    DNSMOS_METRICS,
    METRIC_RATE,
    METRICS,
    TEXT_METRICS,
    MetricValue,
    Missing,
    log_mel_module,
    to_metric_rate,
)
from .report import levels as report_levels
from .scoring import (
    Journal,
    Pair,
    PendingRow,
    Progress,
    Scorers,
    error_row,
    metrics_row,
    plot_pair,
    score_arrays,
    text_reference,
)

#: What a decoded code store has without its audio: everything but the reference-free DNSMOS.
REFERENCE_METRICS = tuple(name for name in METRICS if name not in DNSMOS_METRICS)

if TYPE_CHECKING:
    from ..corpus.store import CodeStore, Entry

#: An utterance of a code store by id: its codes [K, T] and the length of its audio (``store_reader``).
StoredCodes = Callable[[str], "Entry"]
#: The reason of the reference metrics of a code store roundtripped without its audio.
NO_ORIGINAL = "no original audio (a code store without --audio)"


def parse_n_q(value: str | None, available: int) -> list[int]:
    """``None`` -> [all codebooks]; "1,2,4,8" -> [1, 2, 4, 8] (sorted, unique, each in 1..available)."""
    if value is None:
        return [available]
    try:
        levels = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise DmcodecError(f"--n-q {value!r}: give a number or a comma-separated list such as 1,2,4,8") from None
    if not levels or levels[0] < 1 or levels[-1] > available:
        raise DmcodecError(f"--n-q {value!r}: each value must be between 1 and {available} for this model")
    return levels


def output_path(outdir: Path, stem: str, n_q: int, several: bool, suffix: str) -> Path:
    """OUTDIR/<stem><suffix> for one n_q, OUTDIR/nq<K>/<stem><suffix> for several; ``BadId`` for a stem (a code
    store's id) that would not stay a plain path inside that folder."""
    return id_path(outdir / f"nq{n_q}" if several else outdir, stem, suffix)


def refuse_overwriting_inputs(files: Sequence[Pair], outdir: Path, levels: Sequence[int]) -> None:
    """Raise DmcodecError when a reconstruction would be written over one of the input files (a pair whose
    stem cannot be a path is left to fail on its own)."""
    inputs = {pair.reference.resolve() for pair in files if pair.reference is not None}
    for pair in files:
        for k in levels:
            try:
                target = output_path(outdir, pair.stem, k, len(levels) > 1, ".wav").resolve()
            except BadId:
                continue
            if target in inputs:
                raise DmcodecError(f"{target}: the reconstruction would overwrite this input file; "
                                   "give another -o folder")


def reconstruct(model: DMCodec, samples: np.ndarray, levels: Sequence[int],
                codes: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Samples [L] at the model rate -> {n_q: reconstruction [L]} for each n_q in ``levels``.

    Encodes once with max(levels) codebooks (or uses ``codes`` [K, T], e.g. from a code store);
    residual quantisation makes the first K of those the codes an encode with K codebooks gives, so
    each level decodes a prefix.
    """
    if codes is None:
        codes = encode_samples(model, samples, max(levels))
    return {k: decode_codes(model, codes[:k])[: len(samples)] for k in levels}


def roundtrip_files(files: Sequence[Pair], model: DMCodec, levels: Sequence[int], journal: Journal,
                    outdir: Path | None = None, scorers: Scorers | None = None, progress: Progress | None = None,
                    notes: list[str] | None = None, stored_codes: StoredCodes | None = None) -> dict:
    """Roundtrip and score every (file, n_q) not already in the journal; writes reconstructions, a
    spectrogram PNG per reconstruction and, for several n_q, ``bitrate_quality.png`` into ``outdir``.

    With ``stored_codes`` (name -> codes [K, T]) the codes come from there instead of an encode."""
    notes = notes if notes is not None else []
    scorers = scorers or Scorers()
    if outdir is not None:
        refuse_overwriting_inputs(files, outdir, levels)
    try:
        for pair in files:
            todo = [k for k in levels if not journal.done(pair.name, k)]
            if todo:
                for row in _roundtrip_one(pair, model, todo, len(levels) > 1, outdir, scorers, notes, stored_codes):
                    journal.add(row)
            if progress:
                progress(pair.name)
        journal.settle()
    finally:
        result = journal.flush()
    by_level = report_levels(result)
    if outdir is not None and len(by_level) > 1:
        reason = plots.unavailable()
        if reason is None:
            plots.bitrate_png(outdir / "bitrate_quality.png", by_level)
        elif f"plots skipped: {reason}" not in notes:
            notes.append(f"plots skipped: {reason}")
    return result


def _roundtrip_one(pair: Pair, model: DMCodec, levels: Sequence[int], several: bool, outdir: Path | None,
                   scorers: Scorers, notes: list[str], stored_codes: StoredCodes | None) -> Sequence[dict | PendingRow]:
    """The rows of one file (or store id) at each level; what cannot be read or written is a failed row."""
    try:
        if pair.problem:
            raise DmcodecError(pair.problem)
        if outdir is not None:  # an id that cannot be a path under -o fails before any work
            for k in levels:
                output_path(outdir, pair.stem, k, several, ".wav")
        if pair.reference is None:
            assert stored_codes is not None  # only a code store gives pairs without audio
            return _decode_only(pair, model, levels, several, outdir, scorers, stored_codes(pair.name))
        audio = load_audio(pair.reference, model.sample_rate)
        reference16 = to_metric_rate(audio.samples, model.sample_rate)
        check_long_enough(pair.reference, reference16)
        codes = stored_codes(pair.name).codes if stored_codes is not None else None  # checked when read
    except DmcodecError as exc:
        return [error_row(pair.name, k, str(exc)) for k in levels]
    text = text_reference(pair.name, reference16, scorers)
    original = scorers.original_metrics(reference16)
    rows = []
    for k, decoded in reconstruct(model, audio.samples, levels, codes).items():
        degraded16 = to_metric_rate(decoded, model.sample_rate)
        if outdir is not None:
            save_audio(output_path(outdir, pair.stem, k, several, ".wav"), decoded, model.sample_rate)
            plot_pair(output_path(outdir, pair.stem, k, several, ".png"), reference16, degraded16,
                      f"{pair.name} (n_q={k}, {model.config.bitrate(k) / 1000:g} kbps)", notes)
        pending = score_arrays(pair.name, k, reference16, degraded16, scorers, text, original)
        pending.scored["bitrate_bps"] = model.config.bitrate(k)
        rows.append(pending)
    return rows


def _decode_only(pair: Pair, model: DMCodec, levels: Sequence[int], several: bool, outdir: Path | None,
                 scorers: Scorers, entry: "Entry") -> list[dict]:
    """Rows of a store id without its audio: the reference-free metrics (DNSMOS) of each decoded level."""
    rows = []
    for k in levels:
        decoded = decode_codes(model, entry.codes[:k])[: entry.num_samples]
        if outdir is not None:
            save_audio(output_path(outdir, pair.stem, k, several, ".wav"), decoded, model.sample_rate)
        values: dict[str, MetricValue] = {name: Missing(NO_ORIGINAL) for name in REFERENCE_METRICS
                                          if name not in TEXT_METRICS or scorers.asr is not None}
        if scorers.dnsmos:
            values.update(dnsmos(to_metric_rate(decoded, model.sample_rate)))
        row = metrics_row(pair.name, k, values)
        rows.append({**row, "duration_s": round(entry.num_samples / model.sample_rate, 3), "length_difference_s": 0.0,
                     "length_mismatch": False, "bitrate_bps": model.config.bitrate(k)})
    return rows


def check_long_enough(path: Path, reference16: np.ndarray) -> None:
    """Refuse a clip [L] at 16 kHz too short to score: the mel distance and the plots need more samples
    than half their FFT (the reflect padding). The caller makes it a failed row; the folder goes on."""
    shortest = log_mel_module().n_fft // 2
    if len(reference16) <= shortest:
        raise DmcodecError(f"{path}: too short to roundtrip ({len(reference16)} samples at {METRIC_RATE} Hz); "
                           f"a clip needs more than {shortest} samples ({shortest / METRIC_RATE * 1000:g} ms)")


def store_inputs(store: "CodeStore", audio_dir: Path | None) -> list[Pair]:
    """One pair per utterance of a code store, its reference the audio file of ``audio_dir`` with that id
    (``inputs.audio_id``: ``<id>.<ext>``, as ``encode`` named it); without ``audio_dir`` no reference (only
    the reference-free metrics)."""
    if not store.ids:
        raise DmcodecError(f"{store.path}: holds no utterances; nothing to roundtrip")
    if audio_dir is None:
        return [Pair(name, None, None, stem=name) for name in store.ids]
    if not audio_dir.is_dir():
        raise DmcodecError(f"{audio_dir}: no such folder (--audio must be the folder the store was encoded from)")
    by_id = {audio_id(file.relative): file.path for file in audio_files(audio_dir)}
    # an id is looked up among the folder's files, never joined to it as a path (an id may hold '..')
    return [Pair(name, by_id.get(name), None, stem=name,
                 problem="" if name in by_id else f"{audio_dir}: no audio file for id {name!r} in this folder")
            for name in store.ids]


def store_reader(store: "CodeStore") -> StoredCodes:
    """The ``StoredCodes`` of an open store."""
    from ..corpus.store import Entry

    return lambda name: Entry(name, int(store.num_samples[store.index(name)]), store[name])


def check_store_model(store: "CodeStore", model: DMCodec, levels: Sequence[int]) -> None:
    """Refuse a store made by another model, or fewer codebooks in it than asked for."""
    store.check_model(model)
    if max(levels) > store.meta.n_q:
        raise DmcodecError(f"{store.path}: holds {store.meta.n_q} codebooks; --n-q can be at most {store.meta.n_q}")
