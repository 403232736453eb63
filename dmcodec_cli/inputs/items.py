"""An audio input: an utterance id, its audio (a whole file or a span of it) and, where known, its speaker and
text. Folders and manifests give these to ``encode`` (which uses id and audio) and ``prep`` (which uses all)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..audio import AudioReader, load_audio


@dataclass(frozen=True)
class Item:
    """One utterance: the whole file at ``path``, or ``duration`` seconds of it from ``start`` (a lhotse cut)."""

    id: str
    path: Path
    start: float = 0.0
    duration: float | None = None
    speaker: str | None = None
    text: str | None = None

    def blocks(self, reader: AudioReader) -> Iterator[np.ndarray]:
        """The item's samples at the reader's rate, block by block (``AudioReader.blocks``)."""
        if self.start:
            reader.file.seek(round(self.start * reader.file.samplerate))
        if self.duration is None:
            yield from reader.blocks()
            return
        left = round(self.duration * reader.format.sample_rate)
        for block in reader.blocks():
            if left <= 0:
                return
            yield block[:left]
            left -= len(block)

    def load(self, sample_rate: int) -> np.ndarray:
        """The item's samples [L] float32 at ``sample_rate`` (a whole file as ``load_audio`` reads it)."""
        if not self.start and self.duration is None:
            return load_audio(self.path, sample_rate).samples
        with AudioReader(self.path, sample_rate) as reader:
            return np.concatenate([np.zeros(0, np.float32), *self.blocks(reader)])
