"""Shard writers of ``dmcodec export``, one per ecosystem, each through that ecosystem's own library.

A writer gets the final paths of one shard's files and a list of rows; it writes each file atomically
(a temporary name renamed into place), so a shard on disk is always whole. Registered by name in
:data:`FORMATS`; the optional libraries are imported only by the writer that needs them.
"""

from __future__ import annotations

import importlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..atomic import atomic_path
from ..errors import DmcodecError
from .bpe import BpeTokenizer
from .tokens import TokenSpec

Tokens = TokenSpec | BpeTokenizer  #: what turns codes into a row's tokens


@dataclass(frozen=True)
class Row:
    """One exported utterance: its store index and id, tokens of the layout, frames and optional labels."""

    index: int
    id: str
    tokens: np.ndarray  #: int32 [L] or [K, L]
    num_frames: int
    labels: dict[str, str | None]  #: the manifest's columns (``text``, ``speaker``) for this id

    def record(self) -> dict:
        """The row as JSON-ready values (tokens as nested lists)."""
        return {"id": self.id, "tokens": self.tokens.tolist(), "num_frames": self.num_frames, **self.labels}


def _write_parquet(targets: list[Path], rows: list[Row], spec: Tokens) -> None:
    import datasets

    datasets.disable_progress_bars()
    tokens = datasets.Sequence(datasets.Value("int32"))
    labels = list(rows[0].labels) if rows else []
    features = datasets.Features({"id": datasets.Value("string"),
                                  "tokens": tokens if spec.ndim == 1 else datasets.Sequence(tokens),
                                  "num_frames": datasets.Value("int32"),
                                  **{name: datasets.Value("string") for name in labels}})
    columns = {"id": [r.id for r in rows], "tokens": [r.tokens for r in rows],
               "num_frames": [r.num_frames for r in rows], **{name: [r.labels[name] for r in rows] for name in labels}}
    with atomic_path(targets[0]) as tmp:
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(tmp))


def _write_tar(targets: list[Path], rows: list[Row], spec: Tokens) -> None:
    import webdataset

    # the key is the row's index: an id may hold dots or slashes, which WebDataset reads as extensions / folders
    with atomic_path(targets[0]) as tmp, webdataset.TarWriter(str(tmp)) as sink:
        for row in rows:
            meta = {"id": row.id, "num_frames": row.num_frames, **row.labels}
            sink.write({"__key__": f"{row.index:09d}", "tokens.npy": row.tokens, "json": meta})


def _write_jsonl(targets: list[Path], rows: list[Row], spec: Tokens) -> None:
    with atomic_path(targets[0]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row.record(), ensure_ascii=False) + "\n" for row in rows)


@contextmanager
def _atomic_with_suffix(path: Path, suffix: str) -> Iterator[Path]:
    """:func:`atomic_path` whose temporary name ends in ``suffix``, for writers that pick a format by it."""
    with atomic_path(path) as tmp:
        named = tmp.with_name(tmp.name + suffix)
        try:
            yield named
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)


def _write_lhotse(targets: list[Path], rows: list[Row], spec: Tokens) -> None:
    """``codes-N.h5`` (lhotse's NumpyHdf5Writer) then ``cuts-N.jsonl.gz``: cuts whose custom ``codes`` is a
    TemporalArray [T, K] (``parallel`` tokens, time first) at the code frame rate."""
    from lhotse import CutSet, MonoCut, NumpyHdf5Writer, SupervisionSegment

    arrays_path, cuts_path = targets
    frame_shift = 1.0 / spec.frame_rate
    cuts = []
    with _atomic_with_suffix(arrays_path, ".h5") as tmp, NumpyHdf5Writer(tmp) as writer:
        for row in rows:
            array = writer.store_array(str(row.index), row.tokens.T, frame_shift=frame_shift, temporal_dim=0)
            array.array.storage_path = str(arrays_path.resolve())  # the name it has once renamed into place
            duration = row.num_frames * frame_shift
            supervisions = ([SupervisionSegment(f"{row.id}-0", row.id, 0.0, duration, text=row.labels.get("text"),
                                                speaker=row.labels.get("speaker"))]
                            if any(row.labels.values()) else [])
            cuts.append(MonoCut(row.id, 0.0, duration, 0, supervisions=supervisions, custom={"codes": array}))
    with _atomic_with_suffix(cuts_path, ".jsonl.gz") as tmp:
        CutSet.from_cuts(cuts).to_file(tmp)


@dataclass(frozen=True)
class ShardFormat:
    patterns: tuple[str, ...]  #: each file of shard ``index`` of ``total``, relative to the output folder
    write: Callable[[list[Path], list[Row], Tokens], None]
    library: str | None = None  #: the module it writes with ...
    extra: str | None = None  #: ... and the pip extra that installs it
    layouts: tuple[str, ...] = ("flat", "delay", "parallel", "first", "bpe")  #: those it holds; the first: default

    def files(self, index: int, total: int) -> list[str]:
        return [p.format(index=index, total=total) for p in self.patterns]

    def check_layout(self, layout: str | None) -> str:
        """The layout to write: ``layout``, or this format's default when None; refused if it cannot hold it."""
        layout = layout or self.layouts[0]
        if layout not in self.layouts:
            raise DmcodecError(f"--layout {layout}: this format holds {' / '.join(self.layouts)} only")
        return layout

    def check_available(self) -> None:
        """Before any work: the writer's library imports (else one line saying what to install)."""
        if self.library is None:
            return
        try:
            importlib.import_module(self.library)
        except ImportError as exc:
            raise DmcodecError(f"this format is written with {self.library}, which cannot be imported ({exc}); "
                               f"pip install 'dmcodec[{self.extra}]'") from None


FORMATS: dict[str, ShardFormat] = {
    "hf": ShardFormat(("data/train-{index:05d}-of-{total:05d}.parquet",), _write_parquet, "datasets", "lm"),
    "webdataset": ShardFormat(("shard-{index:06d}.tar",), _write_tar, "webdataset", "lm"),
    "jsonl": ShardFormat(("tokens-{index:05d}-of-{total:05d}.jsonl",), _write_jsonl),
    "lhotse": ShardFormat(("codes-{index:05d}.h5", "cuts-{index:05d}.jsonl.gz"), _write_lhotse, "lhotse", "lhotse",
                          layouts=("parallel",)),  # lhotse's temporal arrays run along time at the frame rate
}
