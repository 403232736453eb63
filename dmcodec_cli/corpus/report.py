"""Looking into a code store: summary statistics and decoding back to audio."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import save_audio
from ..engine.decoder import BatchDecoder
from ..engine.windows import budget_groups
from ..errors import DmcodecError
from ..inference import decode_file
from ..model import DMCodec
from ..outputs import id_path, is_empty_folder, read_record, write_error, write_record
from .progress import Quiet
from .runner import Failure, check_failures_file, write_failures
from .store import CodeStore


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


@dataclass
class _Job:
    """One utterance to decode: its codes [n_q, frames], where it goes and its length in samples."""

    name: str
    target: Path
    codes: np.ndarray
    num_samples: int


def _fail(summary: DecodeSummary, progress: Quiet, name: str, store: str, reason: str) -> None:
    summary.failures.append(Failure(name, store, reason))
    progress.advance(1, 0.0, failed=1)


def _jobs(store: CodeStore, source: str, chosen: list[str], target: Callable[[str], Path],
          summary: DecodeSummary, progress: Quiet) -> Iterator[_Job]:
    """The chosen utterances, read one at a time; a bad id, a file not ours or unreadable codes is a failure."""
    for name in chosen:
        i = store.index(name)
        try:
            job = _Job(name, target(name), store[i], int(store.num_samples[i]))
        except DmcodecError as exc:
            _fail(summary, progress, name, source, str(exc))
            continue
        yield job


def _decode_jobs(decoder: BatchDecoder, jobs: Iterable[_Job], frames: list[int], source: str,
                 summary: DecodeSummary, progress: Quiet) -> None:
    """Decode utterances (``frames``: each one's length, in order) in batches of
    ``decoder.options.batch_seconds`` of audio, the last taking up to half a batch more rather than leave
    it to a small one (``budget_groups``); one too long to decode whole goes alone, window by window
    (``decode_file``), so memory does not grow with it."""
    model = decoder.model
    longest = int(decoder.options.windows.longest_whole_seconds * model.sample_rate) // model.hop_length
    budget = int(decoder.options.batch_seconds * model.sample_rate) // model.hop_length

    def size_of(length: int) -> int:
        return length if length <= longest else budget + 1  # a long one alone

    def size(job: _Job) -> int:
        return size_of(job.codes.shape[1])

    def write(job: _Job, action: Callable[[], object]) -> None:
        try:
            action()
        except DmcodecError as exc:
            _fail(summary, progress, job.name, source, str(exc))
        except OSError as exc:
            _fail(summary, progress, job.name, source, write_error(exc))
        else:
            summary.written.append(job.target)
            progress.advance(1, job.num_samples / model.sample_rate)

    for group in budget_groups(jobs, size, budget, total=sum(map(size_of, frames))):
        if size(group[0]) > budget:
            job = group[0]
            write(job, lambda: decode_file(model, job.codes, job.target, job.num_samples, decoder))
            continue
        for job, signal in zip(group, decoder.decode([job.codes for job in group]), strict=True):
            write(job, lambda: save_audio(job.target, signal[:job.num_samples].numpy(), model.sample_rate))


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
        store.check_model(model)
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
            target = functools.partial(_target, outdir, extension=extension, ours=ours, overwrite=overwrite)
            jobs = _jobs(store, str(path), chosen, target, summary, progress)
            lengths = np.diff(store.offsets)
            frames = [int(lengths[store.index(name)]) for name in chosen]
            _decode_jobs(BatchDecoder(model), jobs, frames, str(path), summary, progress)
        finally:
            progress.stop()
    summary.failures_file = write_failures(failures_path, summary.failures)
    return summary
