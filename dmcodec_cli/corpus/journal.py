"""Crash-safe record of finished utterances while a run is in progress.

Each commit writes a segment: ``seg-<tag>.codes.npy`` (int16 [frames, n_q]) then ``seg-<tag>.json``
(ids, lengths, offsets, model), each through a temporary file renamed into place. The JSON is the
commit mark. A segment counts only if its JSON is valid and its codes file is complete and consistent
with it (int16, shape [offsets[-1], n_q], exact size); anything else a ``kill -9`` (or a damaged disk)
can leave, a codes file without its JSON, a JSON without its codes, temporary files, a truncated file,
is discarded by ``recover()`` and its utterances are encoded again. A kill therefore loses at most the
utterances since the last commit; an utterance is never torn or twice (an id is taken once).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..atomic import atomic_path
from ..errors import DmcodecError
from .store import Entry, StoreMeta

_reached: dict[str, int] = {}


def kill_point(name: str) -> None:
    """Test-only crash hook: ``DMCODEC_TEST_KILL_AT=NAME[@N]`` SIGKILLs this process the N-th time (default
    the first) it passes the point ``NAME``. Unset (always, outside tests) it does nothing."""
    wanted = os.environ.get("DMCODEC_TEST_KILL_AT")
    if not wanted or wanted.partition("@")[0] != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(wanted.partition("@")[2] or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def _write_atomic(path: Path, write, point: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
        kill_point(point + "-tmp")
    kill_point(point)


@dataclass
class Segment:
    """One committed segment: codes int16 [offsets[-1], n_q] (memory-mapped) and its index."""

    index: dict
    codes: np.ndarray


def _is_index(index: object) -> bool:
    """The JSON of a segment has the expected fields, types and consistent lengths / offsets."""
    if not isinstance(index, dict):
        return False
    ids, lengths, offsets = index.get("ids"), index.get("num_samples"), index.get("offsets")
    if not (isinstance(index.get("model_fingerprint"), str) and type(index.get("n_q")) is int
            and isinstance(ids, list) and isinstance(lengths, list) and isinstance(offsets, list)):
        return False
    return (len(lengths) == len(ids) and len(offsets) == len(ids) + 1 and len(set(ids)) == len(ids)
            and all(isinstance(i, str) for i in ids)
            and all(type(n) is int and n >= 0 for n in lengths)
            and all(type(o) is int for o in offsets) and offsets[0] == 0
            and all(a <= b for a, b in zip(offsets, offsets[1:])))


def _codes_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.name[: -len(".json")] + ".codes.npy")


def read_segment(index_path: Path) -> Segment | None:
    """The segment whose commit mark is ``index_path``, or None if it is not whole and consistent."""
    try:
        index = json.loads(index_path.read_bytes())
        if not _is_index(index):
            return None
        path = _codes_path(index_path)
        codes = np.load(path, mmap_mode="r", allow_pickle=False)
        whole = (isinstance(codes, np.memmap) and codes.dtype == np.int16 and codes.ndim == 2
                 and codes.shape == (index["offsets"][-1], index["n_q"])
                 and os.path.getsize(path) == codes.offset + codes.nbytes)
    except (OSError, ValueError, EOFError, TypeError, KeyError, IndexError, OverflowError):
        return None  # unreadable, truncated, not JSON / not .npy (ValueError covers both, and pickles)
    return Segment(index, codes) if whole else None


class Journal:
    """Segments of committed results in ``work_dir``, shared by all ranks of a run (and its re-runs)."""

    def __init__(self, work_dir: str | os.PathLike, meta: StoreMeta, rank: int = 0,
                 commit_every: int = 256, commit_seconds: float = 60.0):
        self.dir = Path(work_dir)
        self.meta, self.rank = meta, rank
        self.commit_every, self.commit_seconds = commit_every, commit_seconds
        self._pending: list[Entry] = []
        self._last_commit = time.monotonic()
        self._run_tag = f"r{rank:04d}-{uuid.uuid4().hex[:12]}"
        self._count = 0

    # -- reading -------------------------------------------------------------------------------
    def _indexes(self) -> list[Path]:
        return sorted(self.dir.glob("seg-*.json")) if self.dir.is_dir() else []

    def _check_model(self, segment: Segment) -> None:
        index = segment.index
        if (index["model_fingerprint"] != self.meta.model_fingerprint or index["n_q"] != self.meta.n_q
                or index.get("dtype", "fp32") != self.meta.dtype):
            raise DmcodecError(f"{self.dir}: holds codes of an unfinished run with another model, --n-q or --dtype; "
                               "finish it with the same options, or delete the folder")

    def segments(self) -> Iterator[Segment]:
        """Every whole segment, in name order (a damaged one is skipped: ``recover()`` deletes it)."""
        for path in self._indexes():
            if (segment := read_segment(path)) is not None:
                self._check_model(segment)
                yield segment

    def done_ids(self) -> set[str]:
        return {name for segment in self.segments() for name in segment.index["ids"]}

    def entries(self) -> Iterator[Entry]:
        """Every committed utterance once (codes memory-mapped, not loaded); the first segment's copy wins."""
        seen: set[str] = set()
        for segment in self.segments():
            index, codes = segment.index, segment.codes
            offsets = index["offsets"]
            for i, name in enumerate(index["ids"]):
                if name not in seen:
                    seen.add(name)
                    yield Entry(name, index["num_samples"][i], codes[offsets[i]:offsets[i + 1]].T)

    # -- writing -------------------------------------------------------------------------------
    def add(self, entry: Entry) -> None:
        self._pending.append(entry)
        if (len(self._pending) >= self.commit_every
                or time.monotonic() - self._last_commit >= self.commit_seconds):
            self.commit()

    def commit(self) -> None:
        """Make the pending utterances durable (one segment)."""
        self._last_commit = time.monotonic()
        if not self._pending:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = self.dir / f"seg-{self._run_tag}-{self._count:06d}"
        block = np.concatenate([np.asarray(e.codes, dtype=np.int16).T for e in self._pending])
        offsets = np.cumsum([0] + [e.codes.shape[1] for e in self._pending]).tolist()
        index = {"model_fingerprint": self.meta.model_fingerprint, "n_q": self.meta.n_q, "dtype": self.meta.dtype,
                 "ids": [e.id for e in self._pending], "num_samples": [int(e.num_samples) for e in self._pending],
                 "offsets": offsets}
        _write_atomic(stem.with_suffix(".codes.npy"), lambda f: np.save(f, block), "commit:codes")
        _write_atomic(stem.with_suffix(".json"), lambda f: f.write(json.dumps(index).encode()), "commit:json")
        self._pending = []
        self._count += 1

    def recover(self) -> None:
        """Delete what a kill left: temporary files, codes without their commit mark, damaged segments.

        Only the process that holds the store's lock calls this (before any rank reads the journal)."""
        if not self.dir.is_dir():
            return
        for path in self.dir.glob(".*.tmp"):
            path.unlink(missing_ok=True)
        for path in self._indexes():
            if read_segment(path) is None:
                path.unlink(missing_ok=True)  # the mark first: a kill between the two leaves an orphan
                _codes_path(path).unlink(missing_ok=True)
        for codes in self.dir.glob("seg-*.codes.npy"):
            if not codes.with_name(codes.name[: -len(".codes.npy")] + ".json").exists():
                codes.unlink(missing_ok=True)


    def remove(self) -> None:
        """Delete the journal (its utterances are in the store): commit marks first, then the rest.

        A kill at any point leaves segments that are either whole (their ids are in the store, so
        they are skipped) or not (discarded by ``recover()``)."""
        for path in self._indexes():
            path.unlink(missing_ok=True)
            kill_point("remove:mark")
        for path in [*self.dir.glob("seg-*"), *self.dir.glob(".*.tmp")]:  # only what a journal writes
            path.unlink(missing_ok=True)
        try:
            self.dir.rmdir()
        except OSError:  # gone already, or holds files dmcodec did not write: those are left alone
            pass
