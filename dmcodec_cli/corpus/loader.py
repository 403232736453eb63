"""Reading audio in DataLoader worker processes and grouping it into length-sorted batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..audio import load_audio
from ..errors import DmcodecError
from .inputs import Item


@dataclass
class Loaded:
    """An item after reading: samples [L] float32 at the model rate, or the reason it could not be read."""

    position: int  #: index in the list given to the loader
    item: Item
    samples: torch.Tensor | None
    error: str = ""


class AudioItems(Dataset):
    """Items -> (position, samples [L] float32 or empty, error message); errors are returned, not raised."""

    def __init__(self, items: list[Item], sample_rate: int):
        self.items, self.sample_rate = items, sample_rate

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor, str]:
        item = self.items[position]
        try:
            samples = load_audio(item.path, self.sample_rate).samples
            return position, torch.from_numpy(samples), ""
        except DmcodecError as exc:
            return position, torch.empty(0), str(exc)
        except Exception as exc:  # a decoder crash on one file must not stop the corpus
            return position, torch.empty(0), f"{item.path}: cannot read ({type(exc).__name__}: {exc})"


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the model's threads get the cores; decoding is cheap


def read_audio(items: list[Item], sample_rate: int, workers: int = 1) -> Iterator[Loaded]:
    """Loaded items in input order, decoded and resampled by ``workers`` processes (0: in this one)."""
    loader = DataLoader(AudioItems(items, sample_rate), batch_size=None, shuffle=False, num_workers=workers,
                        worker_init_fn=_worker_init if workers else None,
                        prefetch_factor=8 if workers else None, persistent_workers=False)
    for position, samples, error in loader:
        yield Loaded(position, items[position], None if error else samples, error)


def length_batches(loaded: Iterable[Loaded], batch_samples: int, pool_samples: int) -> Iterator[list[Loaded]]:
    """Group readable items into batches of at most ``batch_samples`` (an item longer gets its own).

    Items are gathered into a pool of about ``pool_samples``; the pool is sorted by length and cut,
    so a batch holds similar lengths (the packed LSTM runs as many steps as its longest item).
    Unreadable items are passed on at once, as batches of one.
    """
    pool: list[Loaded] = []
    pooled = 0
    for entry in loaded:
        if entry.samples is None:
            yield [entry]
            continue
        pool.append(entry)
        pooled += len(entry.samples)
        if pooled >= pool_samples:
            yield from _cut(pool, batch_samples)
            pool, pooled = [], 0
    yield from _cut(pool, batch_samples)


def _cut(pool: list[Loaded], batch_samples: int) -> Iterator[list[Loaded]]:
    batch: list[Loaded] = []
    size = 0
    for entry in sorted(pool, key=lambda e: len(e.samples)):
        if batch and size + len(entry.samples) > batch_samples:
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += len(entry.samples)
    if batch:
        yield batch
