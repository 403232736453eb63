"""Encode -> decode -> score: how much a model loses, per file and per number of codebooks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..audio import load_audio, save_audio
from ..errors import DmcodecError
from ..inference import decode_codes, encode_samples
from ..model import DMCodec
from . import plots
from .asr import Transcriber
from .metrics import METRIC_RATE, log_mel_module, to_metric_rate
from .scoring import Journal, Pair, Progress, audio_files, error_row, plot_pair, score_arrays, text_reference

if TYPE_CHECKING:
    from ..corpus.store import CodeStore

#: Codes [K, T] of an input by name (a code store's reader).
StoredCodes = Callable[[str], np.ndarray]


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
    """OUTDIR/<stem><suffix> for one n_q, OUTDIR/nq<K>/<stem><suffix> for several."""
    relative = f"{stem}{suffix}"
    return outdir / f"nq{n_q}" / relative if several else outdir / relative


def refuse_overwriting_inputs(files: Sequence[Pair], outdir: Path, levels: Sequence[int]) -> None:
    """Raise DmcodecError when a reconstruction would be written over one of the input files."""
    inputs = {pair.reference.resolve() for pair in files}
    for pair in files:
        for k in levels:
            target = output_path(outdir, pair.stem, k, len(levels) > 1, ".wav").resolve()
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
                    outdir: Path | None = None, asr: Transcriber | None = None, texts: dict[str, str] | None = None,
                    progress: Progress | None = None, notes: list[str] | None = None,
                    stored_codes: StoredCodes | None = None) -> dict:
    """Roundtrip and score every (file, n_q) not already in the journal; writes reconstructions, a
    spectrogram PNG per reconstruction and, for several n_q, ``bitrate_quality.png`` into ``outdir``.

    With ``stored_codes`` (name -> codes [K, T]) the codes come from there instead of an encode."""
    notes = notes if notes is not None else []
    if outdir is not None:
        refuse_overwriting_inputs(files, outdir, levels)
    try:
        for pair in files:
            todo = [k for k in levels if not journal.done(pair.name, k)]
            if todo:
                for row in _roundtrip_one(pair, model, todo, len(levels) > 1, outdir, asr, texts or {}, notes,
                                          stored_codes):
                    journal.add(row)
            if progress:
                progress(pair.name)
    finally:
        result = journal.flush()
    if outdir is not None and len(result.get("by_n_q", {})) > 1:
        reason = plots.unavailable()
        if reason is None:
            plots.bitrate_png(outdir / "bitrate_quality.png", result["by_n_q"])
        elif f"plots skipped: {reason}" not in notes:
            notes.append(f"plots skipped: {reason}")
    return result


def _roundtrip_one(pair: Pair, model: DMCodec, levels: Sequence[int], several: bool, outdir: Path | None,
                   asr: Transcriber | None, texts: dict[str, str], notes: list[str],
                   stored_codes: StoredCodes | None) -> list[dict]:
    try:
        audio = load_audio(pair.reference, model.sample_rate)
        reference16 = to_metric_rate(audio.samples, model.sample_rate)
        check_long_enough(pair.reference, reference16)
    except DmcodecError as exc:
        return [error_row(pair.name, k, str(exc)) for k in levels]
    text = text_reference(pair.name, reference16, asr, texts) if asr is not None else None
    rows = []
    codes = stored_codes(pair.name) if stored_codes is not None else None
    for k, decoded in reconstruct(model, audio.samples, levels, codes).items():
        degraded16 = to_metric_rate(decoded, model.sample_rate)
        if outdir is not None:
            save_audio(output_path(outdir, pair.stem, k, several, ".wav"), decoded, model.sample_rate)
            plot_pair(output_path(outdir, pair.stem, k, several, ".png"), reference16, degraded16,
                      f"{pair.name} (n_q={k}, {model.config.bitrate(k) / 1000:g} kbps)", notes)
        row = score_arrays(pair.name, k, reference16, degraded16, asr, text)
        rows.append({**row, "bitrate_bps": model.config.bitrate(k)})
    return rows


def check_long_enough(path: Path, reference16: np.ndarray) -> None:
    """Refuse a clip [L] at 16 kHz too short to score: the mel distance and the plots need more samples
    than half their FFT (the reflect padding). The caller makes it a failed row; the folder goes on."""
    shortest = log_mel_module().n_fft // 2
    if len(reference16) <= shortest:
        raise DmcodecError(f"{path}: too short to roundtrip ({len(reference16)} samples at {METRIC_RATE} Hz); "
                           f"a clip needs more than {shortest} samples ({shortest / METRIC_RATE * 1000:g} ms)")


def store_inputs(store: "CodeStore", audio_dir: Path) -> list[Pair]:
    """One pair per utterance of a code store, its reference the audio file ``audio_dir/<id>.<ext>``
    (the store's ids are paths relative to the encoded folder, without extension)."""
    if not audio_dir.is_dir():
        raise DmcodecError(f"{audio_dir}: no such folder (--audio must be the folder the store was encoded from)")
    by_id = {Path(file.relative).with_suffix("").as_posix(): file.path for file in audio_files(audio_dir)}
    return [Pair(name, by_id.get(name, audio_dir / name), None, stem=name) for name in store.ids]


def check_store_model(store: "CodeStore", model: DMCodec, levels: Sequence[int]) -> None:
    """Refuse a store made by another model, or fewer codebooks in it than asked for."""
    from ..corpus.store import model_fingerprint

    if store.meta.model_fingerprint != model_fingerprint(model):
        raise DmcodecError(f"{store.path}: was made by model {store.meta.model_fingerprint[:16]}, not the given one "
                           f"({model_fingerprint(model)[:16]}); pass the model that made it with --model")
    if max(levels) > store.meta.n_q:
        raise DmcodecError(f"{store.path}: holds {store.meta.n_q} codebooks; --n-q can be at most {store.meta.n_q}")
