"""Crash-safe record of finished utterances while a run is in progress.

Each commit writes a segment: ``seg-<tag>.codes.npy`` (int16 [frames, n_q]) then ``seg-<tag>.json``
(ids, lengths, offsets, model), each through a temporary file renamed into place. The JSON is the
commit mark: a segment without it is ignored and deleted. A ``kill -9`` therefore loses at most the
utterances since the last commit, which the next run encodes again; an utterance is never torn or twice.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np

from ..atomic import atomic_path
from ..errors import DmcodecError
from .store import Entry, StoreMeta


def _write_atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


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

    def _read_index(self, path: Path) -> dict:
        try:
            index = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DmcodecError(f"{path}: unreadable journal segment ({exc}); delete {self.dir} to start over")
        if index["model_fingerprint"] != self.meta.model_fingerprint or index["n_q"] != self.meta.n_q:
            raise DmcodecError(f"{self.dir}: holds codes of an unfinished run with another model or --n-q; "
                               "finish it with the same options, or delete the folder")
        return index

    def done_ids(self) -> set[str]:
        return {name for path in self._indexes() for name in self._read_index(path)["ids"]}

    def entries(self) -> Iterator[Entry]:
        """Every committed utterance (codes memory-mapped, not loaded)."""
        for path in self._indexes():
            index = self._read_index(path)
            codes = np.load(path.with_suffix(".codes.npy"), mmap_mode="r", allow_pickle=False)
            offsets = index["offsets"]
            for i, name in enumerate(index["ids"]):
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
        index = {"model_fingerprint": self.meta.model_fingerprint, "n_q": self.meta.n_q,
                 "ids": [e.id for e in self._pending], "num_samples": [int(e.num_samples) for e in self._pending],
                 "offsets": offsets}
        _write_atomic(stem.with_suffix(".codes.npy"), lambda f: np.save(f, block))
        _write_atomic(stem.with_suffix(".json"), lambda f: f.write(json.dumps(index).encode()))
        self._pending = []
        self._count += 1

    def clean_orphans(self) -> None:
        """Delete code files whose commit mark never came, and temporary files (left by a kill)."""
        if not self.dir.is_dir():
            return
        for path in self.dir.glob(".*.tmp"):
            path.unlink(missing_ok=True)
        for codes in self.dir.glob("seg-*.codes.npy"):
            if not codes.with_name(codes.name.replace(".codes.npy", ".json")).exists():
                codes.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
