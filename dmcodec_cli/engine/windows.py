"""Cutting long signals into overlapping windows whose centre frames agree with whole-input encoding.

A window starts on a frame boundary (a multiple of the hop), so its frame j is frame ``first + j`` of the
whole signal. Each window carries ``context`` frames on both sides that are encoded and thrown away:
the conv stack and the BiLSTM then see (almost) what they would see in the whole signal. Pieces are
then encoded in groups within an audio budget (``budget_groups``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import Tensor

T = TypeVar("T")


MIN_WINDOW_SECONDS = 1.0  #: a shorter window is not meant: at 0.001 s an hour is 3.6 million windows
MAX_PIECE_SECONDS = 3600.0  #: a piece is encoded at once, in memory: beyond an hour is not meant
MAX_BATCH_SECONDS = 86400.0  #: a day of audio per batch: more is not meant (the budget is held in memory)


def _check_seconds(name: str, value: float, low: float, high: float, why: str = "") -> None:
    """ValueError unless ``low <= value <= high`` (NaN and infinities fail)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be a number of seconds in [{low:g}, {high:g}]"
                         f"{f' ({why})' if why else ''}, got {value}")


def check_batch_seconds(batch: float) -> None:
    """ValueError unless ``batch`` is a number of seconds in (0, ``MAX_BATCH_SECONDS``]."""
    if not (isinstance(batch, (int, float)) and math.isfinite(batch) and 0 < batch <= MAX_BATCH_SECONDS):
        raise ValueError(f"batch_seconds must be a number of seconds in (0, {MAX_BATCH_SECONDS:g}], got {batch}")


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
        """Refuse values that cannot be meant (ValueError naming the field and what is allowed)."""
        _check_seconds("window_seconds", self.window_seconds, MIN_WINDOW_SECONDS, MAX_PIECE_SECONDS,
                       f"a window keeps at least {MIN_WINDOW_SECONDS:g} s: shorter ones multiply the windows "
                       "and their context work")
        _check_seconds("context_seconds", self.context_seconds, 0.0, MAX_PIECE_SECONDS)
        if not self.context_seconds < self.window_seconds:
            raise ValueError(f"context_seconds must be less than window_seconds ({self.window_seconds:g}), "
                             f"got {self.context_seconds:g}")
        _check_seconds("whole_seconds", self.whole_seconds, 0.0, MAX_PIECE_SECONDS)

    @property
    def piece_seconds(self) -> float:
        return self.window_seconds + 2 * self.context_seconds

    @property
    def longest_whole_seconds(self) -> float:
        """Signals up to this long are encoded whole (a window would be no shorter)."""
        return max(self.whole_seconds, self.piece_seconds)


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
    if num_samples <= plan.longest_whole_seconds * sample_rate:
        return [Piece(0, num_samples, 0, total)]
    core, context = _frames(hop, sample_rate, plan)
    return [_window(first, core, context, hop, num_samples) for first in range(0, total, core)]


def stream_pieces(blocks: Iterable[np.ndarray], hop: int, sample_rate: int,
                  plan: WindowPlan) -> Iterator[tuple[Piece, np.ndarray, bool]]:
    """A signal's consecutive blocks [l_i] -> its pieces as ``plan_pieces`` cuts them: (piece, its own
    copy of the samples [piece.num_samples], whether it is the last).

    A window is given as soon as one sample past its end has come (the signal then goes on, so it is
    not the last and its bounds do not depend on the final length); only about one window of samples
    and one block are held, however long the signal.
    """
    whole = plan.longest_whole_seconds * sample_rate
    core, context = _frames(hop, sample_rate, plan)
    buffer, offset, first = np.zeros(0, np.float32), 0, 0  # buffer holds samples [offset, offset + len)
    for block in blocks:
        buffer = np.concatenate([buffer, block]) if len(buffer) else block
        received = offset + len(buffer)
        while received > whole and received > (first + core + context) * hop:
            piece = _window(first, core, context, hop, received)
            yield piece, buffer[piece.start - offset:piece.stop - offset].copy(), False
            first += core
            drop = max(0, first - context) * hop - offset
            buffer, offset = buffer[drop:], offset + drop
    pieces = plan_pieces(offset + len(buffer), hop, sample_rate, plan)
    rest = [p for p in pieces if p.start // hop + p.keep_start >= first]
    for piece in rest:
        yield piece, buffer[piece.start - offset:piece.stop - offset].copy(), piece is rest[-1]


def _frames(hop: int, sample_rate: int, plan: WindowPlan) -> tuple[int, int]:
    """(kept frames per window, context frames on each side)."""
    return max(1, int(plan.window_seconds * sample_rate) // hop), int(plan.context_seconds * sample_rate) // hop


def _window(first: int, core: int, context: int, hop: int, num_samples: int) -> Piece:
    """The piece that keeps frames [first, first + core) of a signal of ``num_samples``."""
    total = -(-num_samples // hop)
    last = min(first + core, total)
    begin, end = max(0, first - context), min(total, last + context)
    return Piece(begin * hop, min(end * hop, num_samples), first - begin, last - begin)


class BudgetGroup(Generic[T]):
    """A group filled item by item while the sizes add up to at most ``budget`` (an item larger than it
    goes alone)."""

    def __init__(self, size: Callable[[T], int], budget: int):
        self.size, self.budget = size, budget
        self.items: list[T] = []
        self.total = 0

    def add(self, item: T) -> list[T] | None:
        """Adds ``item``; gives back the full group it did not fit in, if any (``item`` starts the next)."""
        full = None
        if self.items and self.total + self.size(item) > self.budget:
            full, self.items, self.total = self.items, [], 0
        self.items.append(item)
        self.total += self.size(item)
        return full


def budget_groups(items: Iterable[T], size: Callable[[T], int], budget: int,
                  total: int | None = None) -> Iterator[list[T]]:
    """Consecutive items in ``BudgetGroup``s, taken as they come, so a stream is never held whole.

    Given the items' ``total`` size, the group that would leave less than half a budget behind takes
    that rest too (so it holds up to 1.5 budgets, as the last of ``time_major.tiles`` holds up to 1.5
    tiles): a small last group would run the LSTM over few slots, at nearly the cost per step of a
    full one. A group holding an item larger than the budget never takes more.
    """
    group, remaining = BudgetGroup(size, budget), total
    for item in items:
        if (full := group.add(item)) is not None:
            yield full
        if remaining is not None:
            remaining -= size(item)
            if 0 < remaining <= budget // 2 and group.total <= budget:
                group.budget = max(group.budget, group.total + remaining)
    if group.items:
        yield group.items


def stitch(parts: list[Tensor]) -> Tensor:
    """Kept codes of consecutive pieces [n_q, t_k] -> [n_q, sum t_k]."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
