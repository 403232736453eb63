"""How an utterance is cut into fixed-length segments.

Rules (all lengths in samples at 16 kHz):

* consecutive (default): segments start at 0, S, 2S, ... and every full segment is kept. The tail (the last
  ``r = L mod S`` samples, or the whole utterance when L < S) is zero-padded to S when ``tail="pad"`` and
  ``r >= min_tail``; it is dropped when ``tail="drop"`` or when ``r < min_tail``.
* one crop (the paper): one segment per utterance at a seeded random offset in [0, L - S]; an utterance
  shorter than S gives one segment at offset 0, zero-padded (``tail="pad"``) or none (``tail="drop"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TAIL_RULES = ("pad", "drop")


@dataclass(frozen=True)
class Cut:
    """A segment of an utterance: ``length`` real samples from ``offset``, then ``pad`` zeros."""

    offset: int
    length: int
    pad: int

    @property
    def total(self) -> int:
        return self.length + self.pad


def consecutive_cuts(num_samples: int, segment: int, tail: str, min_tail: int) -> list[Cut]:
    """All consecutive segments of ``segment`` samples, with the tail rule of the module docstring."""
    cuts = [Cut(start, segment, 0) for start in range(0, num_samples - segment + 1, segment)]
    rest = num_samples - len(cuts) * segment
    if tail == "pad" and rest > 0 and rest >= min_tail:
        cuts.append(Cut(len(cuts) * segment, rest, segment - rest))
    return cuts


def one_crop(num_samples: int, segment: int, tail: str, rng: np.random.Generator) -> list[Cut]:
    """The paper's single random crop; short utterances follow the tail rule."""
    if num_samples >= segment:
        return [Cut(int(rng.integers(0, num_samples - segment + 1)), segment, 0)]
    return [Cut(0, num_samples, segment - num_samples)] if tail == "pad" else []


def cut_audio(samples: np.ndarray, cut: Cut) -> np.ndarray:
    """The samples of one cut, zero padding included: [cut.total] float32."""
    piece = samples[cut.offset:cut.offset + cut.length]
    return np.pad(piece, (0, cut.pad)).astype(np.float32, copy=False) if cut.pad else piece
