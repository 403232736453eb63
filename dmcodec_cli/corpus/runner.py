"""Tokenizing a corpus: read in workers, encode in length-sorted batches, record, resume, merge ranks."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from ..atomic import write_text_atomic
from ..codes import save_codes
from ..engine.allocator import tune_allocator
from ..engine.encoder import BatchEncoder, EngineOptions
from ..engine.windows import stitch, stream_pieces
from ..errors import DmcodecError, printable
from ..inputs import Item
from ..model import DMCodec
from ..outputs import STORE_SUFFIXES, BadId, id_path, is_empty_folder, read_record, write_record
from .distributed import Rank
from .journal import Journal, kill_point
from .loader import Failed, Loaded, length_batches, read_audio
from .lock import StoreLock
from .progress import Quiet
from .store import CodeStore, Entry, StoreMeta, StoreWriter


@dataclass(frozen=True)
class RunOptions:
    engine: EngineOptions = EngineOptions()
    workers: int = 1  #: DataLoader worker processes (0: read in the main process)
    pool_factor: float = 4.0  #: length-sorting pool = pool_factor x batch_seconds of audio
    commit_every: int = 256  #: utterances per journal segment (what a crash can cost)
    commit_seconds: float = 60.0  #: ... or wall seconds between commits


@dataclass
class Failure:
    id: str
    path: str
    reason: str


@dataclass
class RunSummary:
    output: str
    total: int = 0  #: items given (all ranks)
    encoded: int = 0  #: encoded by this run (all ranks)
    skipped: int = 0  #: already done before this run
    failures: list[Failure] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures_file: str | None = None

    @property
    def real_time_factor(self) -> float:
        return self.audio_seconds / max(self.wall_seconds, 1e-9)

    def to_dict(self) -> dict:
        return {"output": self.output, "total": self.total, "encoded": self.encoded, "skipped": self.skipped,
                "failed": len(self.failures), "failures_file": self.failures_file,
                "audio_seconds": round(self.audio_seconds, 3), "wall_seconds": round(self.wall_seconds, 3),
                "real_time_factor": round(self.real_time_factor, 2)}


def is_store_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in STORE_SUFFIXES


# -- where results go ------------------------------------------------------------------------------

@dataclass
class Prepared:
    """What a sink found before the work: the ids already done, and the items it refuses (bad id, a file
    that is not ours), which are failed items of the run."""

    done: set[str]
    refused: list[Failure] = field(default_factory=list)


class Sink(Protocol):
    """Where a run's codes go: a code store (``StoreSink``) or a folder of ``.npy`` files (``NpyTreeSink``)."""

    failures_path: Path

    def prepare(self, items: list[Item]) -> Prepared:
        """Before the work (every rank): take the output, recover what a kill left, tell what is done."""

    def add(self, entry: Entry) -> None:
        """One input's codes."""

    def close(self) -> None:
        """This rank's last codes are added."""

    def finalize(self, items: list[Item]) -> None:
        """Main rank, after every rank closed: make the output whole."""

    def release(self) -> None:
        """Let go of the output (after the failures file is written, or when the run fails)."""


class StoreSink:
    """Results -> journal segments in ``<store>.work/``; the main rank merges them into the store."""

    def __init__(self, path: Path, meta: StoreMeta, rank: Rank, options: RunOptions):
        self.path, self.meta, self.rank = path, meta, rank
        self.journal = Journal(path.with_name(path.name + ".work"), meta, rank.rank,
                               options.commit_every, options.commit_seconds)
        self.failures_path = path.with_name(path.stem + ".failures.tsv")
        self.lock = StoreLock(path)

    @property
    def owner(self) -> bool:
        """The process that locks the store, recovers the journal and writes the store (rank 0 of a run)."""
        return self.rank.is_main or not self.rank.launched

    def prepare(self, items: list[Item]) -> Prepared:
        """Lock the store, check its model, recover what a kill left; the ids already done (every id can be
        stored: none is refused).

        Refused (DmcodecError, on every rank) without touching the store or journal when another run
        holds the lock."""
        error = None
        if self.owner:
            try:
                self.lock.acquire()
                self._recover()
            except DmcodecError as exc:
                error = str(exc)
        errors = [e for e in self.rank.gather(error) if e]  # also the meeting point: recovered before read
        if errors:
            self.lock.release()
            raise DmcodecError(errors[0])
        done = self.journal.done_ids()
        if self.path.exists():
            with CodeStore(self.path) as store:
                done.update(store.ids)
        return Prepared(done)

    def _recover(self) -> None:
        """Under the lock: refuse a store of another model; delete a kill's temporary store and damaged segments."""
        if self.path.exists():
            with CodeStore(self.path) as store:
                self.meta.check_compatible(store.meta, str(self.path))
        self.path.with_name(f".{self.path.name}.tmp").unlink(missing_ok=True)  # StoreWriter's temporary file
        self.journal.recover()
        self.journal.done_ids()  # another model's unfinished journal is refused here, on the owner

    def add(self, entry: Entry) -> None:
        self.journal.add(entry)

    def close(self) -> None:
        self.journal.commit()

    def finalize(self, items: list[Item]) -> None:
        """Existing store + journal -> new store (renamed into place), new entries in input order; then the
        journal is removed. A kill at any point: the next run completes to the same store."""
        self._write_store({item.id: i for i, item in enumerate(items)})
        kill_point("finalize:renamed")
        self.journal.remove()

    def release(self) -> None:
        """Let go of the store's lock (after the failures file is written, or when the run fails)."""
        self.lock.release()

    def _write_store(self, position: dict[str, int]) -> None:
        old = CodeStore(self.path) if self.path.exists() else None
        try:
            taken = set(old.ids) if old else set()
            new = {e.id: e for e in self.journal.entries() if e.id not in taken}
            if new or old is None:
                order = sorted(new, key=lambda name: (position.get(name, len(position)), name))
                with StoreWriter(self.path, self.meta) as writer:
                    if old:
                        writer.add_all(old.entries())
                    writer.add_all(new[name] for name in order)
                    kill_point("finalize:writing")
        finally:
            if old:
                old.close()


TREE_RECORD = ".dmcodec-codes.json"
TREE_FORMAT = "dmcodec-codes-tree"
FAILURES_HEADER = "id\tpath\treason"


class NpyTreeSink:
    """Results -> ``DIR/<id>.npy`` (int16 [n_q, frames]), each written atomically.

    ``DIR/.dmcodec-codes.json`` (format, model fingerprint, n_q; written at the start into a new or empty
    folder) says dmcodec made the folder: there an existing ``<id>.npy`` is done (resumed), and a run of
    another model or ``n_q`` is refused. In a folder without it an existing ``<id>.npy`` is not ours: a
    failed item unless ``overwrite``. Ids that cannot be paths inside ``DIR`` are failed items.
    """

    def __init__(self, root: Path, meta: StoreMeta, rank: Rank = Rank(), overwrite: bool = False):
        self.root, self.meta, self.rank, self.overwrite = root, meta, rank, overwrite
        self.failures_path = root / "failures.tsv"
        self.paths: dict[str, Path] = {}

    def _record(self) -> dict:
        return {"format": TREE_FORMAT, "format_version": 1, "model_fingerprint": self.meta.model_fingerprint,
                "n_q": self.meta.n_q, "codebook_size": self.meta.codebook_size}

    def check(self) -> bool:
        """Refuse a folder made by another model / n_q; True when the folder is ours (or new / empty)."""
        if self.root.exists() and not self.root.is_dir():
            raise DmcodecError(f"{self.root}: exists and is a file, not a folder; give -o DIR/ or -o NAME.h5")
        record = read_record(self.root, TREE_RECORD, TREE_FORMAT)
        if record is None:
            return is_empty_folder(self.root)
        for key, what in (("model_fingerprint", "model (--model)"), ("n_q", "number of codebooks (--n-q)")):
            if record.get(key) != self._record()[key]:
                theirs, ours = str(record.get(key))[:16], str(self._record()[key])[:16]
                raise DmcodecError(f"{self.root}: holds codes of another {what} ({theirs}, this run {ours}; see "
                                   f"{TREE_RECORD}); write to a new folder or make the same codes")
        return True

    def prepare(self, items: list[Item]) -> Prepared:
        """The ids already done, and the items refused (bad id, or an existing file that is not ours)."""
        ours = self.check()
        if (ours or self.overwrite) and (self.rank.is_main or not self.rank.launched):  # --overwrite takes it over
            write_record(self.root, TREE_RECORD, self._record())
        done, refused = set(), []
        for item in items:
            try:
                path = id_path(self.root, item.id, ".npy")
            except BadId as exc:
                refused.append(Failure(item.id, str(item.path), str(exc)))
                continue
            if os.path.lexists(path) and not self.overwrite:
                if not ours:
                    refused.append(Failure(item.id, str(item.path), f"{path}: exists and was not written by "
                                           "dmcodec; pass --overwrite to replace it or choose another -o"))
                    continue
                if path.is_file():
                    done.add(item.id)
            self.paths[item.id] = path
        return Prepared(done, refused)

    def add(self, entry: Entry) -> None:
        save_codes(self.paths[entry.id], entry.codes)

    def close(self) -> None: ...

    def finalize(self, items: list[Item]) -> None: ...

    def release(self) -> None: ...


def _cell(text: str) -> str:
    """A TSV cell: tabs and line breaks (possible in ids of a manifest) written as escapes."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def is_failures_file(path: Path) -> bool:
    """True for a failures list dmcodec wrote (its header line), the only kind it replaces or removes."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\n") == FAILURES_HEADER
    except (OSError, UnicodeDecodeError):
        return False


def check_failures_file(path: Path, overwrite: bool) -> None:
    """Before the work: an existing failures file that dmcodec did not write is not replaced unless told."""
    if os.path.lexists(path) and not overwrite and not is_failures_file(path):
        raise DmcodecError(f"{path}: exists and was not written by dmcodec (the run would write its failures "
                           "there); pass --overwrite to replace it or choose another -o")


def write_failures(path: Path, failures: list[Failure]) -> str | None:
    """The failures of this run as TSV (id, path, reason), or no file when none failed (an old list dmcodec
    wrote is removed; any other file of that name is left alone)."""
    if not failures:
        if is_failures_file(path):
            path.unlink(missing_ok=True)
        return None
    lines = [FAILURES_HEADER] + [f"{_cell(printable(f.id))}\t{_cell(printable(f.path))}\t"
                                 f"{' '.join(printable(f.reason).split())}" for f in failures]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return str(path)


# -- the run ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PieceCodes:
    """The kept codes [n_q, t] of one piece of an input."""

    entry: Loaded
    codes: torch.Tensor


def _encode_batch(encoder: BatchEncoder, batch: list[Loaded]) -> list[PieceCodes | Failed]:
    """The kept codes of each item's piece, or why it has none: it failed alone (a failing batch, e.g. out of
    memory, is retried one item at a time)."""
    try:
        codes = encoder.encode_pieces((e.part.piece, e.samples) for e in batch)
        return [PieceCodes(entry, kept) for entry, kept in zip(batch, codes, strict=True)]
    except (RuntimeError, ValueError) as exc:
        if len(batch) == 1:
            entry = batch[0]
            reason = f"{entry.item.path}: encoding failed ({str(exc).splitlines()[0]})"
            return [Failed(entry.position, entry.item, reason, entry.part)]
    return [result for entry in batch for result in _encode_batch(encoder, [entry])]


class _Pieces:
    """The kept codes of inputs' pieces, as they come -> each input's codes once all have come."""

    def __init__(self) -> None:
        self.kept: dict[int, dict[int, torch.Tensor]] = {}
        self.failed: set[int] = set()

    def add(self, entry: Loaded, kept_codes: torch.Tensor) -> torch.Tensor | None:
        """Kept codes [n_q, t] of one piece -> the whole input's [n_q, T] if this was its last piece."""
        if entry.position in self.failed:
            return None
        part = entry.part
        kept = self.kept.setdefault(entry.position, {})
        kept[part.index] = kept_codes
        if not part.last:
            return None
        del self.kept[entry.position]
        return stitch([kept[i] for i in range(part.index + 1)])

    def fail(self, entry: Failed) -> bool:
        """Forget a failed input's pieces; True the first time (so that it is reported once)."""
        self.kept.pop(entry.position, None)
        first = entry.position not in self.failed
        self.failed.add(entry.position)
        return first


@dataclass
class RankResult:
    """What one rank did: inputs encoded, their seconds of audio, its failures, and its inputs already done."""

    encoded: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    skipped: int = 0


def _results(model: DMCodec, todo: list[Item], options: RunOptions) -> Iterator[PieceCodes | Failed]:
    """Every piece of ``todo``, read in workers and encoded in length-sorted batches, as it comes."""
    tune_allocator()  # a long run: the engine's allocator policy, for the whole process
    encoder = BatchEncoder(model, options.engine)
    rate = model.sample_rate
    batch_samples = int(options.engine.batch_seconds * rate)
    cut = functools.partial(stream_pieces, hop=model.hop_length, sample_rate=rate, plan=options.engine.windows)
    loaded = read_audio(todo, rate, cut, options.workers)
    for batch in length_batches(loaded, batch_samples, int(options.pool_factor * batch_samples)):
        yield from [batch] if isinstance(batch, Failed) else _encode_batch(encoder, batch)


def _encode_items(model: DMCodec, todo: list[Item], sink: Sink, options: RunOptions, progress: Quiet) -> RankResult:
    done, pieces, rate = RankResult(), _Pieces(), model.sample_rate
    for result in _results(model, todo, options):
        if isinstance(result, Failed):
            if pieces.fail(result):
                done.failures.append(Failure(result.item.id, str(result.item.path), result.reason))
                progress.advance(1, 0.0, failed=1)
            continue
        entry = result.entry
        if (codes := pieces.add(entry, result.codes)) is None:
            continue
        sink.add(Entry(entry.item.id, entry.num_samples, codes.numpy()))
        done.encoded += 1
        done.seconds += entry.num_samples / rate
        progress.advance(1, entry.num_samples / rate)
    sink.close()
    return done


def _run(model: DMCodec, items: list[Item], output: Path, sink: Sink, done: set[str], options: RunOptions,
         rank: Rank, progress: Quiet) -> RunSummary:
    """Encode this rank's share of ``items`` not in ``done``; the summary of all ranks."""
    mine = rank.share(items)
    todo = [item for item in mine if item.id not in done]
    progress.start(len(mine), "encode" if rank.world == 1 else f"encode (rank {rank.rank}/{rank.world})")
    progress.advance(len(mine) - len(todo), 0.0)
    try:
        result = _encode_items(model, todo, sink, options, progress)
    finally:
        progress.stop()
    result.skipped = len(mine) - len(todo)
    results = rank.gather(result)
    rank.barrier()
    return RunSummary(str(output), len(items), sum(r.encoded for r in results), sum(r.skipped for r in results),
                      [f for r in results for f in r.failures], sum(r.seconds for r in results))


def tokenize_corpus(model: DMCodec, items: list[Item], output: str | os.PathLike, options: RunOptions = RunOptions(),
                    rank: Rank = Rank(), progress: Quiet = Quiet(), overwrite: bool = False) -> RunSummary:
    """Encode every item not yet in ``output`` (a ``.h5`` store, else a folder of ``.npy`` files).

    ``overwrite``: replace existing ``.npy`` files (and a failures file) that dmcodec did not write.

    With several ranks each encodes its share; the main rank then writes the store. Failed items are
    listed in the summary and a failures file; they are tried again by the next run.
    """
    start = time.monotonic()
    output = Path(output)
    meta = StoreMeta.for_model(model, options.engine.n_q, options.engine.dtype)
    store = is_store_path(output)
    check_failures_file(output.with_name(output.stem + ".failures.tsv") if store else output / "failures.tsv",
                        overwrite)  # before the store's lock is taken
    sink: Sink = StoreSink(output, meta, rank, options) if store else NpyTreeSink(output, meta, rank, overwrite)
    prepared = sink.prepare(items)
    refused = {failure.id for failure in prepared.refused}
    items = [item for item in items if item.id not in refused]
    try:
        summary = _run(model, items, output, sink, prepared.done, options, rank, progress)
        summary.total += len(prepared.refused)
        summary.failures[:0] = prepared.refused
        if rank.is_main or not rank.launched:
            sink.finalize(items)
            position = {item.id: i for i, item in enumerate(items)}
            summary.failures.sort(key=lambda f: position.get(f.id, 0))
            summary.failures_file = write_failures(sink.failures_path, summary.failures)
    finally:
        sink.release()  # the store stays locked until its failures file is written too
    rank.barrier()
    summary.wall_seconds = time.monotonic() - start
    return summary
