"""``CodeDataset``: a PyTorch dataset of LM token sequences over a code store, safe under DataLoader workers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..corpus.store import CodeStore
from .tokens import TokenSpec


class CodeDataset(Dataset):
    """Utterances of a store as token sequences of one layout (see :mod:`dmcodec_cli.lm.tokens`).

    ``dataset[i]`` or ``dataset["spk1/utt3"]`` -> ``{"id": str, "tokens": int64 [L] or [K, L], "num_frames": int}``.
    ``lengths`` (tokens along the sequence axis per item) serves length-bucketed samplers; :meth:`collate`
    pads a batch with PAD. The HDF5 file is opened in the process that reads it, so each DataLoader
    worker has its own handle (an h5py file shared across a fork is not safe to read).
    """

    def __init__(self, path: str | os.PathLike, layout: str = "flat", n_q: int | None = None,
                 codebook_offsets: bool | None = None):
        self.path = Path(path)
        with CodeStore(self.path) as store:
            self.spec = TokenSpec.for_store(store.meta, layout, n_q, codebook_offsets)
            self.ids: list[str] = list(store.ids)
            self.num_frames: np.ndarray = np.diff(store.offsets)  #: int64 [N]
        self._store: CodeStore | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> list[int]:
        """Tokens along the sequence axis of each item, in index order."""
        return [self.spec.length(int(t)) for t in self.num_frames]

    def _opened(self) -> CodeStore:
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = CodeStore(self.path), os.getpid()  # a forked worker's own handle
        return self._store

    def __getitem__(self, key: int | str) -> dict:
        store = self._opened()
        i = store.index(key)  # an id or a (negative) position, checked as the store checks it
        tokens = self.spec.encode(store[i])
        return {"id": self.ids[i], "tokens": torch.from_numpy(tokens.astype(np.int64)),
                "num_frames": int(self.num_frames[i])}

    def collate(self, items: list[dict]) -> dict:
        """A batch: ``tokens`` int64 [B, L_max] (or [B, K, L_max]) padded with PAD, ``lengths`` int64 [B],
        ``ids``."""
        lengths = torch.tensor([item["tokens"].shape[-1] for item in items], dtype=torch.int64)
        first = items[0]["tokens"]
        batch = torch.full((len(items), *first.shape[:-1], int(lengths.max())), self.spec.pad, dtype=torch.int64)
        for row, item in zip(batch, items, strict=True):
            row[..., :item["tokens"].shape[-1]] = item["tokens"]
        return {"ids": [item["id"] for item in items], "tokens": batch, "lengths": lengths}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_store": None, "_pid": None}  # workers (spawned too) open their own
