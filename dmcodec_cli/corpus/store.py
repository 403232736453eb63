"""The HDF5 code store: every utterance's codes in one file that plain h5py can read.

Layout (format ``dmcodec-codes``, version 1)::

    attrs: format, format_version, sample_rate, frame_rate, n_q, codebook_size, model_fingerprint, config (JSON)
    codes        int16 [total_frames, n_q]   chunked, maxshape (None, n_q)
    offsets      int64 [N + 1]               utterance i is codes[offsets[i]:offsets[i + 1]]
    ids          UTF-8 strings [N]
    num_samples  int64 [N]                   original length at the model's sample rate

A store is only ever written whole into a temporary file that is renamed into place, so a reader (or
a crash) never sees half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np

from ..errors import DmcodecError

FORMAT = "dmcodec-codes"
FORMAT_VERSION = 1
CHUNK_FRAMES = 16384
_STR = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class StoreMeta:
    """What makes codes comparable: the model (fingerprint, config) and how many codebooks were kept."""

    sample_rate: int
    frame_rate: float
    n_q: int
    codebook_size: int
    model_fingerprint: str
    config: str  #: the model's CodecConfig as JSON

    @classmethod
    def for_model(cls, model, n_q: int | None = None) -> "StoreMeta":
        c = model.config
        return cls(c.sample_rate, c.frame_rate, n_q or c.n_q, c.codebook_size, model_fingerprint(model),
                   json.dumps(c.to_dict(), sort_keys=True))

    def check_compatible(self, other: "StoreMeta", source: str) -> None:
        """Refuse to mix codes of another model or another number of codebooks."""
        if other.model_fingerprint != self.model_fingerprint:
            raise DmcodecError(f"{source}: was made by another model (fingerprint {other.model_fingerprint[:16]}, "
                               f"this one {self.model_fingerprint[:16]}); write to a new store")
        if other.n_q != self.n_q:
            raise DmcodecError(f"{source}: holds {other.n_q} codebooks per frame, this run makes {self.n_q}; "
                               "use the same --n-q or a new store")


def model_fingerprint(model) -> str:
    """The loader's fingerprint; for a model built in code, one computed from its weights."""
    if model.fingerprint:
        return model.fingerprint
    from ..checkpoint import fingerprint

    model.fingerprint = fingerprint(model.state_dict())
    return model.fingerprint


@dataclass
class Entry:
    """One utterance: its id, original length at the model rate and codes [n_q, frames]."""

    id: str
    num_samples: int
    codes: np.ndarray


class CodeStore:
    """Read-only access to a store: ``len``, ``ids``, ``store[i]`` / ``store["id"]`` -> int16 [n_q, T]."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DmcodecError(f"{self.path}: no such code store")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise DmcodecError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        attrs = self._file.attrs
        if attrs.get("format") != FORMAT:
            self._file.close()
            raise DmcodecError(f"{self.path}: not a dmcodec code store (format {attrs.get('format')!r})")
        if int(attrs["format_version"]) > FORMAT_VERSION:
            self._file.close()
            raise DmcodecError(f"{self.path}: code store version {attrs['format_version']} is newer than this "
                               "dmcodec reads; upgrade dmcodec")
        self.meta = StoreMeta(int(attrs["sample_rate"]), float(attrs["frame_rate"]), int(attrs["n_q"]),
                              int(attrs["codebook_size"]), str(attrs["model_fingerprint"]), str(attrs["config"]))
        self.offsets = self._file["offsets"][:]
        self.num_samples = self._file["num_samples"][:]
        self.ids = [s.decode() if isinstance(s, bytes) else s for s in self._file["ids"][:]]
        self._index = {name: i for i, name in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def index(self, key: str | int) -> int:
        if isinstance(key, str):
            if key not in self._index:
                raise KeyError(f"{self.path}: no utterance {key!r}")
            return self._index[key]
        if not -len(self) <= key < len(self):
            raise IndexError(f"{self.path}: index {key} out of range ({len(self)} utterances)")
        return key % len(self)

    def __getitem__(self, key: str | int) -> np.ndarray:
        i = self.index(key)
        return np.ascontiguousarray(self._file["codes"][self.offsets[i]:self.offsets[i + 1]].T)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for i, name in enumerate(self.ids):
            yield name, self[i]

    def entries(self) -> Iterator[Entry]:
        for i, (name, codes) in enumerate(self):
            yield Entry(name, int(self.num_samples[i]), codes)

    def iter_code_blocks(self, frames: int = 1 << 20) -> Iterator[np.ndarray]:
        """All codes in blocks of at most ``frames`` rows [t, n_q] (for statistics over a big store)."""
        codes = self._file["codes"]
        for start in range(0, codes.shape[0], frames):
            yield codes[start:start + frames]

    @property
    def total_frames(self) -> int:
        return int(self.offsets[-1])

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "CodeStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_meta(path: str | os.PathLike) -> StoreMeta:
    with CodeStore(path) as store:
        return store.meta


class StoreWriter:
    """Writes a new store at ``path`` through a temporary file, renamed into place by ``commit()``."""

    def __init__(self, path: str | os.PathLike, meta: StoreMeta):
        self.path = Path(path)
        self.meta = meta
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.tmp.unlink(missing_ok=True)
        self._file = h5py.File(self.tmp, "w")
        for key, value in vars(meta).items():
            self._file.attrs[key] = value
        self._file.attrs["format"] = FORMAT
        self._file.attrs["format_version"] = FORMAT_VERSION
        self._codes = self._file.create_dataset("codes", (0, meta.n_q), np.int16, maxshape=(None, meta.n_q),
                                                chunks=(CHUNK_FRAMES, meta.n_q))
        self._ids: list[str] = []
        self._num_samples: list[int] = []
        self._offsets = [0]
        self._pending: list[np.ndarray] = []
        self._pending_frames = 0

    def add(self, entry: Entry) -> None:
        codes = np.asarray(entry.codes)
        if codes.ndim != 2 or codes.shape[0] != self.meta.n_q:
            raise ValueError(f"{entry.id}: codes must be [{self.meta.n_q}, frames], got {list(codes.shape)}")
        self._ids.append(entry.id)
        self._num_samples.append(int(entry.num_samples))
        self._offsets.append(self._offsets[-1] + codes.shape[1])
        self._pending.append(codes.T.astype(np.int16))
        self._pending_frames += codes.shape[1]
        if self._pending_frames >= 8 * CHUNK_FRAMES:
            self._flush()

    def add_all(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.add(entry)

    def _flush(self) -> None:
        if not self._pending:
            return
        block = np.concatenate(self._pending)
        start = self._codes.shape[0]
        self._codes.resize(start + len(block), axis=0)
        self._codes[start:] = block
        self._pending, self._pending_frames = [], 0

    def commit(self) -> Path:
        """Finish the file and rename it into place; returns the store's path."""
        self._flush()
        self._file.create_dataset("offsets", data=np.asarray(self._offsets, dtype=np.int64))
        self._file.create_dataset("ids", data=np.asarray(self._ids, dtype=object), dtype=_STR)
        self._file.create_dataset("num_samples", data=np.asarray(self._num_samples, dtype=np.int64))
        self._file.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._file.id.valid:
            self._file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_store(path: str | os.PathLike, meta: StoreMeta, entries: Iterable[Entry]) -> Path:
    """Write ``entries`` as a new store (atomically)."""
    with StoreWriter(path, meta) as writer:
        writer.add_all(entries)
    return Path(path)


def merge_stores(output: str | os.PathLike, inputs: list[str | os.PathLike]) -> dict:
    """Concatenate stores of the same model into ``output``; an id already taken is skipped (counted)."""
    if not inputs:
        raise DmcodecError("merge: give at least one store to merge")
    metas = [(str(p), read_meta(p)) for p in inputs]
    meta = metas[0][1]
    for source, other in metas[1:]:
        meta.check_compatible(other, source)
    seen: set[str] = set()
    duplicates = 0

    def entries() -> Iterator[Entry]:
        nonlocal duplicates
        for source in inputs:
            with CodeStore(source) as store:
                for entry in store.entries():
                    if entry.id in seen:
                        duplicates += 1
                        continue
                    seen.add(entry.id)
                    yield entry

    write_store(output, meta, entries())
    return {"output": str(output), "inputs": [str(p) for p in inputs], "utterances": len(seen),
            "duplicates_skipped": duplicates}
