"""The teacher-feature store: one HDF5 file, groups ``sm`` / ``lm``, one dataset [frames, dim] per segment id.

Root attributes: ``format = "dmcodec-features"``, ``format_version = 1``, ``sample_rate``, ``frame_rate``.
Group attributes: ``teacher`` (HF id or path), ``kind``, ``layer`` ("avg" | "last" | int), ``alignment``,
``dim``, ``dtype``. frames = ceil(samples / 320) of the segment.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from ..errors import DmcodecError
from ..hdf5_guard import open_hdf5

FORMAT = "dmcodec-features"
FORMAT_VERSION = 1
DTYPES = {"float16": np.float16, "float32": np.float32}
GROUPS = ("sm", "lm")


@dataclass(frozen=True)
class GroupSpec:
    """What one group of the store holds."""

    name: str
    teacher: str
    kind: str
    layer: str | int
    alignment: str
    dim: int
    dtype: str = "float16"


def _open(path: Path, mode: str) -> h5py.File:
    """Open for reading ("r") or appending ("a", created when missing). An existing file is read through
    ``open_hdf5``, so a damaged global heap in it is one ``DamagedHeap`` error, not an endless loop."""
    try:
        if mode == "a" and not path.exists():
            return h5py.File(path, "w")
        return open_hdf5(path, "r+" if mode == "a" else mode)
    except OSError as exc:
        raise DmcodecError(f"{path}: not a readable HDF5 feature file ({str(exc).splitlines()[0]}); if a run was "
                           "killed while writing, extract again with --overwrite") from None


def _foreign(file: h5py.File) -> bool:
    """An HDF5 file that is neither a feature file nor empty (the empty file a killed first run may leave)."""
    return "format" not in file.attrs and (len(file) > 0 or len(file.attrs) > 0)


def check_feature_file(path: str | os.PathLike) -> None:
    """Before any teacher loads: an existing ``path`` is a dmcodec feature file to resume (or an empty HDF5 file);
    anything else is refused, never adopted (``extract --overwrite`` replaces it)."""
    path = Path(path)
    if not path.exists():
        return
    refusal = DmcodecError(f"{path}: exists and is not a dmcodec feature file; pass --overwrite to replace it "
                           "(also when a killed run left it damaged) or choose another -o")
    if not h5py.is_hdf5(path):
        raise refusal
    with _open(path, "r") as file:
        if _foreign(file) or ("format" in file.attrs and _attr(file.attrs["format"]) != FORMAT):
            raise refusal


def _attr(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value.item() if isinstance(value, np.generic) else value


class FeatureWriter:
    """Append features to a store, keeping what is there (resume). Use as a context manager.

    Refuses a file whose root or group attributes differ from this run (other teacher, layer, alignment, ...).
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, frame_rate: float, groups: Iterable[GroupSpec]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = _open(self.path, "a")
        try:
            self._init_root(sample_rate, frame_rate)
            self.specs = {spec.name: spec for spec in groups}
            for spec in self.specs.values():
                self._init_group(spec)
        except BaseException:
            self.file.close()
            raise

    def _init_root(self, sample_rate: int, frame_rate: float) -> None:
        wanted = {"format": FORMAT, "format_version": FORMAT_VERSION, "sample_rate": sample_rate,
                  "frame_rate": float(frame_rate)}
        if "format" not in self.file.attrs:
            if _foreign(self.file):
                raise DmcodecError(f"{self.path}: an HDF5 file that is not a dmcodec feature file; it is not "
                                   "written into: choose another output file")
            self.file.attrs.update(wanted)
            return
        found = {key: _attr(self.file.attrs.get(key)) for key in wanted}
        if found != wanted:
            raise DmcodecError(f"{self.path}: holds {found}, this run writes {wanted}; use another output file")

    def _init_group(self, spec: GroupSpec) -> None:
        wanted = {key: value for key, value in asdict(spec).items() if key != "name"}
        if spec.name not in self.file:
            self.file.create_group(spec.name).attrs.update(wanted)
            return
        found = {key: _attr(self.file[spec.name].attrs.get(key)) for key in wanted}
        if found != wanted:
            changed = ", ".join(f"{key} {found[key]!r} -> {wanted[key]!r}"
                                for key in wanted if found[key] != wanted[key])
            raise DmcodecError(f"{self.path}: group {spec.name!r} was written with other settings ({changed}); "
                               "use another output file, or --overwrite to start it again")

    def has(self, group: str, segment_id: str) -> bool:
        return segment_id in self.file[group]

    def write(self, group: str, segment_id: str, features: np.ndarray, attrs: dict | None = None) -> None:
        """Store features [frames, dim] of one segment (replacing an existing entry), with optional attributes
        (``lm`` entries carry the ``text`` they were computed from)."""
        spec = self.specs[group]
        if features.ndim != 2 or features.shape[1] != spec.dim:
            raise ValueError(f"{group}/{segment_id}: expected [frames, {spec.dim}], got {list(features.shape)}")
        data = features.astype(DTYPES[spec.dtype])
        if not np.isfinite(data).all():
            raise DmcodecError(f"{segment_id}: {group} features overflow {spec.dtype}; extract with --dtype float32")
        if segment_id in self.file[group]:
            del self.file[group][segment_id]
        dataset = self.file[group].create_dataset(segment_id, data=data)
        dataset.attrs.update(attrs or {})

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "FeatureWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FeatureReader:
    """Read a store: ``ids(group)``, ``get(group, id) -> [frames, dim]``, ``attrs(group)``. A context manager."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DmcodecError(f"{self.path}: no such feature file; run `dmcodec extract` first")
        self.file = _open(self.path, "r")
        if _attr(self.file.attrs.get("format")) != FORMAT:
            self.file.close()
            raise DmcodecError(f"{self.path}: not a dmcodec feature file (no format={FORMAT!r} attribute)")
        version = _attr(self.file.attrs.get("format_version"))
        if version != FORMAT_VERSION:
            self.file.close()
            raise DmcodecError(f"{self.path}: feature format version {version} is not supported (expected "
                               f"{FORMAT_VERSION}); extract again with this dmcodec")

    @property
    def groups(self) -> list[str]:
        return [name for name in GROUPS if name in self.file]

    @property
    def sample_rate(self) -> int:
        return int(self.file.attrs["sample_rate"])

    @property
    def frame_rate(self) -> float:
        return float(self.file.attrs["frame_rate"])

    def attrs(self, group: str) -> dict:
        return {key: _attr(value) for key, value in self._group(group).attrs.items()}

    def ids(self, group: str | None = None) -> list[str]:
        """Segment ids of ``group``, or of every group present (those in all of them) when None."""
        if group is not None:
            return sorted(self._group(group).keys())
        sets = [set(self.file[name].keys()) for name in self.groups]
        return sorted(set.intersection(*sets)) if sets else []

    def get(self, group: str, segment_id: str) -> np.ndarray:
        """Features [frames, dim] as stored (float16 or float32)."""
        g = self._group(group)
        if segment_id not in g:
            raise KeyError(f"{self.path}: no {group} features for segment {segment_id!r}")
        return g[segment_id][()]

    def _group(self, group: str) -> h5py.Group:
        if group not in self.file:
            have = ", ".join(self.groups) or "none"
            raise DmcodecError(f"{self.path}: no {group!r} features in this file (it has {have})")
        return self.file[group]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "FeatureReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
