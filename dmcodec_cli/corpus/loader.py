"""Reading audio in DataLoader worker processes and grouping it into length-sorted batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..audio import AudioReader
from ..engine.windows import BudgetGroup, Piece, budget_groups
from ..errors import DmcodecError
from ..inputs import Item

Cut = Callable[[Iterator[np.ndarray]], Iterator[tuple[Piece, np.ndarray, bool]]]
"""An input's blocks -> its pieces: (piece, samples, whether last); ``windows.stream_pieces``."""


@dataclass(frozen=True)
class Part:
    """Which piece of its input a ``Loaded`` holds: the ``index``-th, and whether it is the ``last``."""

    piece: Piece
    index: int
    last: bool

    @property
    def whole(self) -> bool:
        """The input in one piece (not cut into windows)."""
        return self.index == 0 and self.last


@dataclass(frozen=True, eq=False)
class Loaded:
    """A piece of an item after reading: samples [L] float32 at the model rate, the piece ``part`` of the
    input (all of it, or one of its windows)."""

    position: int  #: index in the list given to the loader
    item: Item
    samples: torch.Tensor
    part: Part

    @property
    def num_samples(self) -> int:
        """The whole input's length at the model rate (known from its last piece)."""
        return self.part.piece.stop


@dataclass(frozen=True)
class Failed:
    """An item that could not be read (or encoded), and why; ``part``: the last piece of it sent before, if any."""

    position: int  #: index in the list given to the loader
    item: Item
    reason: str
    part: Part | None = None


Read = Union[Loaded, Failed]
"""What the loader gives for each piece of an item: its samples, or why there are none."""


class AudioStream(IterableDataset):
    """Items -> Loaded, read by each worker for its share (every ``num_workers``-th item).

    Each input is read block by block and ``cut`` into pieces (``windows.stream_pieces``); an input of
    several pieces is sent piece by piece as they fill, so no process holds an hour-long input whole.
    Errors are sent (``Failed``), not raised.
    """

    def __init__(self, items: list[Item], sample_rate: int, cut: Cut):
        self.items, self.sample_rate, self.cut = items, sample_rate, cut

    def __iter__(self) -> Iterator[Read]:
        worker = get_worker_info()
        share = range(worker.id, len(self.items), worker.num_workers) if worker else range(len(self.items))
        for position in share:
            yield from self._read(position)

    def _read(self, position: int) -> Iterator[Read]:
        item, part = self.items[position], None
        try:
            with AudioReader(item.path, self.sample_rate) as reader:
                for index, (piece, samples, last) in enumerate(self.cut(item.blocks(reader))):
                    part = Part(piece, index, last)
                    yield Loaded(position, item, torch.from_numpy(samples), part)
        except DmcodecError as exc:
            yield Failed(position, item, str(exc), part)
        except Exception as exc:  # a decoder crash on one file must not stop the corpus
            yield Failed(position, item, f"{item.path}: cannot read ({type(exc).__name__}: {exc})", part)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the model's threads get the cores; decoding is cheap


def read_audio(items: list[Item], sample_rate: int, cut: Cut, workers: int = 1) -> Iterator[Read]:
    """Loaded items (long ones as their pieces), decoded and resampled by ``workers`` processes (0: in
    this one). Each worker keeps its items' order; workers take turns."""
    loader = DataLoader(AudioStream(items, sample_rate, cut), batch_size=None, num_workers=workers,
                        worker_init_fn=_worker_init if workers else None,
                        prefetch_factor=8 if workers else None, persistent_workers=False)
    yield from loader


def length_batches(loaded: Iterable[Read], batch_samples: int, pool_samples: int) -> Iterator[list[Loaded] | Failed]:
    """Group readable items into batches of at most ``batch_samples`` (an item longer gets its own).

    Items are gathered into a pool of about ``pool_samples``; the pool is sorted by length, longest
    first, and cut, so that the batches of a pool are similar in length and its last, partial batch
    holds the shortest items: a batch's LSTM runs at least as many steps as its longest item, so a
    small batch of long items costs nearly as much as a full one (measured on the 247 s benchmark
    corpus, fp32: 26.5-27.0 s longest first against 28.0-29.1 s shortest first). Pieces of long inputs
    (all about the same length) are batched as they come. Unreadable items (``Failed``) are passed on at
    once, alone.
    """
    pool: list[Loaded] = []
    pooled = 0
    pieces: BudgetGroup[Loaded] = BudgetGroup(lambda e: len(e.samples), batch_samples)
    for entry in loaded:
        if isinstance(entry, Failed):
            yield entry
            continue
        if not entry.part.whole:
            if (full := pieces.add(entry)) is not None:
                yield full
            continue
        pool.append(entry)
        pooled += len(entry.samples)
        if pooled >= pool_samples:
            yield from _cut(pool, batch_samples)
            pool, pooled = [], 0
    yield from _cut(pool, batch_samples)
    if pieces.items:
        yield pieces.items


def _cut(pool: list[Loaded], batch_samples: int) -> Iterator[list[Loaded]]:
    return budget_groups(sorted(pool, key=lambda e: -len(e.samples)), lambda e: len(e.samples), batch_samples)
