"""Cutting long signals into overlapping windows whose centre frames agree with whole-input encoding.

A window starts on a frame boundary (a multiple of the hop), so its frame j is frame ``first + j`` of the
whole signal. Each window carries ``context`` frames on both sides that are encoded and thrown away:
the conv stack and the BiLSTM then see (almost) what they would see in the whole signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class WindowPlan:
    """Signals up to ``whole_seconds`` are encoded whole (exactly as the model does); longer ones in
    windows that keep ``window_seconds`` of frames and see ``context_seconds`` more on each side.

    Memory grows with the longest piece encoded at once: max(whole, window + 2 x context) seconds.
    """

    window_seconds: float = 20.0
    context_seconds: float = 2.0
    whole_seconds: float = 32.0

    def __post_init__(self) -> None:
        if self.window_seconds <= 0 or self.context_seconds < 0 or self.whole_seconds < 0:
            raise ValueError("window_seconds must be > 0, context_seconds and whole_seconds >= 0")

    @property
    def piece_seconds(self) -> float:
        return self.window_seconds + 2 * self.context_seconds


@dataclass(frozen=True)
class Piece:
    """Samples [start, stop) of a signal to encode, of whose frames [keep_start, keep_stop) are kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int

    @property
    def num_samples(self) -> int:
        return self.stop - self.start


def plan_pieces(num_samples: int, hop: int, sample_rate: int, plan: WindowPlan) -> list[Piece]:
    """The pieces that cover a signal of ``num_samples``: one whole piece when it is short enough."""
    total = -(-num_samples // hop)
    if num_samples <= max(plan.whole_seconds, plan.piece_seconds) * sample_rate:
        return [Piece(0, num_samples, 0, total)]
    core = max(1, int(plan.window_seconds * sample_rate) // hop)
    context = int(plan.context_seconds * sample_rate) // hop
    pieces = []
    for first in range(0, total, core):
        last = min(first + core, total)
        begin, end = max(0, first - context), min(total, last + context)
        pieces.append(Piece(begin * hop, min(end * hop, num_samples), first - begin, last - begin))
    return pieces


def stitch(parts: list[Tensor]) -> Tensor:
    """Kept codes of consecutive pieces [n_q, t_k] -> [n_q, sum t_k]."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
