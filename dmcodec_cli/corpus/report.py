"""Looking into a code store: summary statistics and decoding back to audio."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DmcodecError
from ..inference import decode_file
from ..model import DMCodec
from ..outputs import id_path, is_empty_folder, read_record, write_error, write_record
from .progress import Quiet
from .runner import Failure, check_failures_file, write_failures
from .store import CodeStore, model_fingerprint


def codebook_stats(store: CodeStore) -> list[dict]:
    """Per codebook: codes used (count and fraction of the codebook) and perplexity exp(entropy)."""
    size, n_q = store.meta.codebook_size, store.meta.n_q
    counts = np.zeros((n_q, size), dtype=np.int64)
    for block in store.iter_code_blocks():
        for k in range(n_q):
            counts[k] += np.bincount(block[:, k].astype(np.int64), minlength=size)[:size]
    stats = []
    for k in range(n_q):
        total = counts[k].sum()
        p = counts[k][counts[k] > 0] / max(total, 1)
        entropy = float(-(p * np.log(p)).sum()) if total else 0.0
        used = int((counts[k] > 0).sum())
        stats.append({"codebook": k, "used": used, "usage": used / size, "perplexity": math.exp(entropy)})
    return stats


def store_summary(path: str | os.PathLike) -> dict:
    """What ``dmcodec info corpus.h5`` shows."""
    with CodeStore(path) as store:
        meta = store.meta
        seconds = float(store.num_samples.sum()) / meta.sample_rate
        return {"store": str(path), "utterances": len(store), "hours": seconds / 3600, "frames": store.total_frames,
                "sample_rate": meta.sample_rate, "frame_rate": meta.frame_rate, "n_q": meta.n_q,
                "codebook_size": meta.codebook_size, "model_fingerprint": meta.model_fingerprint, "dtype": meta.dtype,
                "codebooks": codebook_stats(store)}


AUDIO_RECORD = ".dmcodec-audio.json"
AUDIO_FORMAT = "dmcodec-audio"


@dataclass
class DecodeSummary:
    written: list[Path] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    failures_file: str | None = None


def _target(outdir: Path, name: str, extension: str, ours: bool, overwrite: bool) -> Path:
    """Where utterance ``name`` goes; BadId / DmcodecError (a failed item) for a bad id or a file not ours."""
    target = id_path(outdir, name, extension)
    if os.path.lexists(target) and not (ours or overwrite):
        raise DmcodecError(f"{target}: exists and was not written by dmcodec; pass --overwrite to replace it or "
                           "choose another -o")
    if target.is_dir():
        raise DmcodecError(f"{target}: is a folder; not replaced")
    return target


def decode_store(model: DMCodec, path: str | os.PathLike, outdir: str | os.PathLike, ids: list[str] | None = None,
                 extension: str = ".wav", progress: Quiet = Quiet(), overwrite: bool = False) -> DecodeSummary:
    """Write ``outdir/<id><extension>`` for the listed ids (default: all), trimmed to ``num_samples``.

    The folder is filled, never wiped. ``outdir/.dmcodec-audio.json``, written into a new or empty folder,
    marks it as dmcodec's: there existing files are replaced; elsewhere an existing ``<id>.wav`` is a failed
    item unless ``overwrite``. An id that cannot be a path inside ``outdir`` is a failed item too. Failures are
    listed in ``outdir/failures.tsv`` (id, store, reason); the others are written.
    """
    outdir = Path(outdir)
    summary = DecodeSummary()
    with CodeStore(path) as store:
        if store.meta.model_fingerprint != model_fingerprint(model):
            raise DmcodecError(f"{path}: was made by model {store.meta.model_fingerprint[:16]}, not the given one "
                               f"({model_fingerprint(model)[:16]}); pass the model that made it with --model")
        missing = [name for name in ids or [] if name not in store]
        if missing:
            raise DmcodecError(f"{path}: no utterance {missing[0]!r} ({len(missing)} ids not found); "
                               "see `dmcodec info` for what the store holds")
        failures_path = outdir / "failures.tsv"
        check_failures_file(failures_path, overwrite)
        ours = read_record(outdir, AUDIO_RECORD, AUDIO_FORMAT) is not None
        if ours or overwrite or is_empty_folder(outdir):
            write_record(outdir, AUDIO_RECORD, {"format": AUDIO_FORMAT, "format_version": 1})
            ours = True  # a new / empty folder, or taken over with --overwrite
        chosen = ids or store.ids
        progress.start(len(chosen), "decode")
        try:
            for name in chosen:
                i = store.index(name)
                try:
                    target = _target(outdir, name, extension, ours, overwrite)
                    decode_file(model, store[i], target, int(store.num_samples[i]))  # window by window
                except DmcodecError as exc:
                    summary.failures.append(Failure(name, str(path), str(exc)))
                    progress.advance(1, 0.0, failed=1)
                    continue
                except OSError as exc:
                    summary.failures.append(Failure(name, str(path), write_error(exc)))
                    progress.advance(1, 0.0, failed=1)
                    continue
                summary.written.append(target)
                progress.advance(1, int(store.num_samples[i]) / model.sample_rate)
        finally:
            progress.stop()
    summary.failures_file = write_failures(failures_path, summary.failures)
    return summary
