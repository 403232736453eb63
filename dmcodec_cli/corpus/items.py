"""An item of a corpus to encode: an utterance id and the audio (a whole file or a span of it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..audio import AudioReader


@dataclass(frozen=True)
class Item:
    """One utterance: the whole file at ``path``, or ``duration`` seconds of it from ``start`` (a lhotse cut)."""

    id: str
    path: Path
    start: float = 0.0
    duration: float | None = None

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
