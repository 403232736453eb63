"""The HDF5 code store: every utterance's codes in one file that plain h5py can read.

Layout (format ``dmcodec-codes``, version 1)::

    attrs: format, format_version, sample_rate, frame_rate, n_q, codebook_size, model_fingerprint, config (JSON),
           dtype (the encoder arithmetic: fp32, bf16 or fp16; a store written without it is read as fp32)
    codes        int16 [total_frames, n_q]   chunked, maxshape (None, n_q)
    offsets      int64 [N + 1]               utterance i is codes[offsets[i]:offsets[i + 1]]
    ids          UTF-8 strings [N]
    num_samples  int64 [N]                   original length at the model's sample rate

A store is only ever written whole into a temporary file that is renamed into place, so a reader (or
a crash) never sees half of one. Its strings (attributes and ids) are fixed-length, so it holds no
variable-length data and no global heap, the part of HDF5 on which damage makes libhdf5 loop, crash or
allocate gigabytes. Stores with variable-length strings are read through ``hdf5_guard``, which refuses a
damaged global heap before libhdf5 parses it.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import h5py
import numpy as np

from ..config import RANGES
from ..engine.encoder import DTYPES
from ..errors import DmcodecError
from ..hdf5_guard import DamagedHeap, open_hdf5
from ..model import DMCodec

FORMAT = "dmcodec-codes"
FORMAT_VERSION = 1
CHUNK_FRAMES = 16384
#: a longer string attribute is variable-length: HDF5 keeps fixed-length ones in the object header, 64 KiB at most
HEADER_STRING_BYTES = 60_000
_ID_CHUNK_BYTES = 1 << 20  #: ids are stored in gzip chunks of about this size ...
_ID_BLOCK_BYTES = 16 << 20  #: ... and read and written this many bytes at a time, whatever their number


@dataclass(frozen=True)
class StoreMeta:
    """What makes codes comparable: the model (fingerprint, config), how many codebooks were kept and the
    encoder arithmetic (bf16 / fp16 codes differ slightly from fp32 ones)."""

    sample_rate: int
    frame_rate: float
    n_q: int
    codebook_size: int
    model_fingerprint: str
    config: str  #: the model's config file (``ConfigFile``) as JSON
    dtype: str = "fp32"  #: encoder arithmetic

    @classmethod
    def for_model(cls, model: DMCodec, n_q: int | None = None, dtype: str = "fp32") -> "StoreMeta":
        c = model.config
        return cls(c.sample_rate, c.frame_rate, n_q or c.n_q, c.codebook_size, model.fingerprint,
                   json.dumps(model.config_file.to_dict(), sort_keys=True), dtype)

    def check_compatible(self, other: "StoreMeta", source: str) -> None:
        """Refuse to mix codes of another model or another number of codebooks."""
        if other.model_fingerprint != self.model_fingerprint:
            raise DmcodecError(f"{source}: was made by another model (fingerprint {other.model_fingerprint[:16]}, "
                               f"this one {self.model_fingerprint[:16]}); write to a new store")
        if other.n_q != self.n_q:
            raise DmcodecError(f"{source}: holds {other.n_q} codebooks per frame, this run makes {self.n_q}; "
                               "use the same --n-q or a new store")
        if other.dtype != self.dtype:
            raise DmcodecError(f"{source}: holds codes of {other.dtype} arithmetic, this run makes {self.dtype} "
                               "ones; use the same --dtype or a new store")


@dataclass
class Entry:
    """One utterance: its id, original length at the model rate and codes [n_q, frames]."""

    id: str
    num_samples: int
    codes: np.ndarray


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


_DAMAGED = "the store is damaged or was not written by dmcodec: re-create it (encode again) or restore a copy"
_REQUIRED_ATTRS = ("format", "format_version", "sample_rate", "frame_rate", "n_q", "codebook_size",
                   "model_fingerprint", "config")
_DATASETS = ("codes", "offsets", "ids", "num_samples")
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class StoreError(DmcodecError):
    """A code store that cannot be read as it claims: names the store and what is wrong."""

    def __init__(self, path: Path, what: str):
        super().__init__(f"{path}: {what}; {_DAMAGED}")


def _text(value) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _integer(value) -> int | None:
    """An HDF5 integer attribute (a numpy or Python int, not a bool, a float or an array) or None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return None
    return int(value)


def _fixed_string(text: str) -> np.ndarray | str:
    """``text`` as an HDF5 fixed-length UTF-8 string, kept in the object header (no global heap object);
    ``text`` itself (variable-length) when it is longer than an object header can hold."""
    data = text.encode("utf-8")
    if len(data) > HEADER_STRING_BYTES:
        return text
    return np.array(data, dtype=h5py.string_dtype("utf-8", max(1, len(data))))


def _read_attrs(path: Path, attrs) -> StoreMeta:
    """Every root attribute present, of its type and in a range that can be meant -> StoreMeta."""
    missing = [name for name in _REQUIRED_ATTRS if name not in attrs]
    if "format" in missing or _text(attrs["format"]) != FORMAT:
        found = None if "format" in missing else attrs["format"]
        raise DmcodecError(f"{path}: not a dmcodec code store (format {found!r}, expected {FORMAT!r})")
    version = _integer(attrs.get("format_version"))
    if version is not None and version > FORMAT_VERSION:
        raise DmcodecError(f"{path}: code store version {version} is newer than this dmcodec reads; upgrade dmcodec")
    if missing:
        raise StoreError(path, f"missing attribute(s) {', '.join(missing)}")

    def integer(name: str, low: int, high: int) -> int:
        value = _integer(attrs[name])
        if value is None or not low <= value <= high:
            raise StoreError(path, f"attribute {name} must be an integer from {low} to {high}, got {attrs[name]!r}")
        return value

    integer("format_version", 1, FORMAT_VERSION)
    sample_rate = integer("sample_rate", *RANGES["sample_rate"])
    n_q = integer("n_q", *RANGES["n_q"])
    codebook_size = integer("codebook_size", *RANGES["codebook_size"])
    frame_rate = attrs["frame_rate"]
    if (isinstance(frame_rate, (bool, np.bool_)) or not isinstance(frame_rate, (int, float, np.integer, np.floating))
            or not math.isfinite(frame_rate) or not 1 <= frame_rate <= sample_rate
            or abs(sample_rate / frame_rate - round(sample_rate / frame_rate)) > 1e-6):
        raise StoreError(path, f"attribute frame_rate must be sample_rate / hop for a whole hop of samples, "
                               f"got {frame_rate!r} at {sample_rate} Hz")
    fingerprint = _text(attrs["model_fingerprint"])
    if fingerprint is None or not _FINGERPRINT.match(fingerprint):
        raise StoreError(path, f"attribute model_fingerprint must be 64 hex digits, got {attrs['model_fingerprint']!r}")
    config = _text(attrs["config"])
    try:
        parsed = json.loads(config) if config is not None else None
    except (json.JSONDecodeError, RecursionError):
        parsed = None
    if config is None or not isinstance(parsed, dict):
        raise StoreError(path, "attribute config must be the model's config as a JSON object")
    for name, value in (("sample_rate", sample_rate), ("codebook_size", codebook_size)):
        if name in parsed and parsed[name] != value:
            raise StoreError(path, f"attribute {name} is {value} but its config says {parsed[name]!r}")
    if _integer(parsed.get("n_q")) is not None and n_q > parsed["n_q"]:
        raise StoreError(path, f"attribute n_q is {n_q} but its model has only {parsed['n_q']} codebooks")
    dtype = _text(attrs.get("dtype", "fp32"))
    if dtype is None or dtype not in DTYPES:
        raise StoreError(path, f"attribute dtype must be one of {', '.join(DTYPES)}, got {attrs['dtype']!r}")
    return StoreMeta(sample_rate, float(frame_rate), n_q, codebook_size, fingerprint, config, dtype)


def _dataset(path: Path, file: h5py.File, name: str, ndim: int) -> h5py.Dataset:
    if name not in file:
        raise StoreError(path, f"missing dataset {name!r}")
    node = file[name]
    if not isinstance(node, h5py.Dataset) or node.ndim != ndim:
        raise StoreError(path, f"{name!r} must be a {ndim}-dimensional dataset, got "
                               f"{getattr(node, 'shape', 'a group')}")
    return node


def _integer_dataset(path: Path, file: h5py.File, name: str, ndim: int, file_size: int) -> h5py.Dataset:
    """An integer dataset whose claimed size the file could hold: checked before reading it."""
    node = _dataset(path, file, name, ndim)
    limit = _bounded(node, file_size)
    if node.dtype.kind not in "iu":
        raise StoreError(path, f"dataset {name!r} must hold integers, got {node.dtype}")
    claimed = math.prod(node.shape) * node.dtype.itemsize
    if claimed > limit:
        raise StoreError(path, f"dataset {name!r} claims shape {list(node.shape)} ({claimed:,} bytes), more than "
                               f"the file can hold")
    return node


def _bounded(node: h5py.Dataset, file_size: int) -> int:
    """Bytes a dataset may claim: its file's size, or 1000 times it when it is compressed."""
    try:
        compressed = node.id.get_create_plist().get_nfilters() > 0
    except (AttributeError, ValueError, OSError):  # a damaged header may not even give a dataset's plist
        compressed = False
    return file_size * (1000 if compressed else 1) + (1 << 16)


def _read_index(path: Path, file: h5py.File, meta: StoreMeta) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """offsets [N + 1], num_samples [N] and ids [N], checked against each other and the codes dataset."""
    size = path.stat().st_size
    codes = _dataset(path, file, "codes", 2)
    if codes.dtype.kind not in "iu" or codes.shape[1] != meta.n_q:
        raise StoreError(path, f"dataset 'codes' must be integers [frames, {meta.n_q}], got {codes.dtype} "
                               f"{list(codes.shape)}")
    if codes.shape[0] * meta.n_q * codes.dtype.itemsize > _bounded(codes, size):
        raise StoreError(path, f"dataset 'codes' claims {codes.shape[0]:,} frames, more than the file can hold")
    frames = codes.shape[0]
    offsets = _integer_dataset(path, file, "offsets", 1, size)[:].astype(np.int64)
    num_samples = _integer_dataset(path, file, "num_samples", 1, size)[:]
    ids_node = _dataset(path, file, "ids", 1)
    if h5py.check_string_dtype(ids_node.dtype) is None:
        raise StoreError(path, f"dataset 'ids' must hold strings, got {ids_node.dtype}")
    count = len(offsets) - 1
    if count < 0 or len(num_samples) != count or len(ids_node) != count:
        raise StoreError(path, f"offsets ({len(offsets)}), ids ({len(ids_node)}) and num_samples "
                               f"({len(num_samples)}) must describe the same utterances (N + 1, N, N)")
    per_id = ids_node.dtype.itemsize if ids_node.dtype.kind == "S" else 16  # fixed-length, or a heap reference
    if len(ids_node) * per_id > _bounded(ids_node, size):
        raise StoreError(path, f"dataset 'ids' claims {len(ids_node):,} ids, more than the file can hold")
    if offsets[0] != 0 or offsets[-1] != frames or (np.diff(offsets) < 0).any():
        raise StoreError(path, f"offsets must start at 0, never decrease and end at the {frames:,} frames of "
                               f"'codes' (they run from {offsets[0]} to {offsets[-1]})")
    if (num_samples < 0).any():
        i = int(np.argmax(num_samples < 0))
        raise StoreError(path, f"num_samples of utterance {i} is negative ({num_samples[i]})")
    hop = round(meta.sample_rate / meta.frame_rate)
    expected = -(-num_samples.astype(np.int64) // hop)
    wrong = np.flatnonzero(expected != np.diff(offsets))
    if len(wrong):
        i = int(wrong[0])
        raise StoreError(path, f"utterance {i} has {offsets[i + 1] - offsets[i]} frames but num_samples "
                               f"{num_samples[i]} needs ceil({num_samples[i]} / {hop}) = {expected[i]} "
                               f"({len(wrong)} utterances disagree)")
    texts = _read_ids(ids_node)
    ids = [name for name in texts if name]
    if len(ids) != len(texts):
        i = next(i for i, name in enumerate(texts) if not name)
        raise StoreError(path, f"id of utterance {i} is empty or not UTF-8 text")
    seen: set[str] = set()
    for name in ids:
        if name in seen:
            raise StoreError(path, f"id {name!r} appears more than once (ids must be unique)")
        seen.add(name)
    return offsets, num_samples.astype(np.int64), ids


def _read_ids(node: h5py.Dataset) -> list[str | None]:
    """The ids as text (None for one that is not UTF-8), read in blocks so that fixed-length ids padded to the
    longest one never take more than a block of memory."""
    rows = max(1, _ID_BLOCK_BYTES // max(1, node.dtype.itemsize))
    texts: list[str | None] = []
    for start in range(0, len(node), rows):
        texts.extend(_text(s) for s in node[start:start + rows])
    return texts


def _write_ids(file: h5py.File, ids: list[str]) -> None:
    """``ids`` as fixed-length UTF-8 strings as long as the longest, in gzip chunks (the padding compresses away)."""
    encoded = [name.encode("utf-8") for name in ids]
    width = max((len(data) for data in encoded), default=1) or 1
    dtype = h5py.string_dtype("utf-8", width)
    rows = max(1, min(len(encoded), _ID_CHUNK_BYTES // width))
    node = file.create_dataset("ids", (len(encoded),), dtype=dtype, chunks=(rows,), maxshape=(None,),
                               compression="gzip", compression_opts=1)
    block = max(1, _ID_BLOCK_BYTES // (width * rows)) * rows
    for start in range(0, len(encoded), block):
        node[start:start + block] = np.array(encoded[start:start + block], dtype=dtype)


class CodeStore:
    """Read-only access to a store: ``len``, ``ids``, ``store[i]`` / ``store["id"]`` -> int16 [n_q, T].

    Opening checks every attribute and dataset (present, type, range, offsets / num_samples / ids consistent
    with each other and with the codes); reading an utterance checks its codes lie in [0, codebook_size).
    Anything wrong, including a file damaged deep inside, is a ``DmcodecError`` naming the store.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DmcodecError(f"{self.path}: no such code store")
        try:
            self._file = open_hdf5(self.path)
        except OSError as exc:
            raise DmcodecError(f"{self.path}: not a readable HDF5 file ({_first_line(exc)})") from None
        try:
            self.meta = _read_attrs(self.path, self._file.attrs)
            self.offsets, self.num_samples, self.ids = _read_index(self.path, self._file, self.meta)
            self._codes = self._file["codes"]
        except DamagedHeap as exc:
            self._file.close()
            raise StoreError(self.path, exc.what) from None
        except DmcodecError:
            self._file.close()
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
            self._file.close()
            raise StoreError(self.path, f"cannot be read ({_first_line(exc)})") from None
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

    def _read(self, start: int, stop: int, what: str) -> np.ndarray:
        """Rows [start, stop) of the codes [t, n_q], read and checked against the codebook size."""
        try:
            block = self._codes[start:stop]
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError) as exc:
            raise StoreError(self.path, f"the codes of {what} cannot be read ({_first_line(exc)})") from None
        if block.size:
            low, high = int(block.min()), int(block.max())
            if low < 0 or high >= self.meta.codebook_size:
                raise StoreError(self.path, f"{what} holds code values in [{low}, {high}], outside "
                                            f"0..{self.meta.codebook_size - 1}")
        return block

    def __getitem__(self, key: str | int) -> np.ndarray:
        i = self.index(key)
        block = self._read(int(self.offsets[i]), int(self.offsets[i + 1]), f"utterance {self.ids[i]!r}")
        return np.ascontiguousarray(block.T)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for i, name in enumerate(self.ids):
            yield name, self[i]

    def entries(self) -> Iterator[Entry]:
        for i, (name, codes) in enumerate(self):
            yield Entry(name, int(self.num_samples[i]), codes)

    def iter_code_blocks(self, frames: int = 1 << 20) -> Iterator[np.ndarray]:
        """All codes in blocks of at most ``frames`` rows [t, n_q] (for statistics over a big store)."""
        for start in range(0, self.total_frames, frames):
            stop = min(start + frames, self.total_frames)
            yield self._read(start, stop, f"frames {start:,} to {stop:,}")

    def check_model(self, model: DMCodec) -> None:
        """Refuse to decode the store with another model than the one that made it."""
        if self.meta.model_fingerprint != model.fingerprint:
            raise DmcodecError(f"{self.path}: was made by model {self.meta.model_fingerprint[:16]}, not the given "
                               f"one ({model.fingerprint[:16]}); pass the model that made it with --model")

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
            self._file.attrs[key] = _fixed_string(value) if isinstance(value, str) else value
        self._file.attrs["format"] = _fixed_string(FORMAT)
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
        if "\0" in entry.id:
            raise ValueError(f"{entry.id!r}: an id cannot hold a NUL character")
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
        _write_ids(self._file, self._ids)
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


def merge_stores(output: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> dict:
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
