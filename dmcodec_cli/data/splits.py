"""Deterministic choices keyed on (seed, name): subsets (``--ratio``), random crops and the train / valid split.

Every choice hashes the seed with a stable key (utterance id or speaker), so it depends neither on the order in
which sources list files nor on the Python process (no ``hash()`` randomisation).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np


def stable_key(seed: int, purpose: str, name: str) -> int:
    """A 64-bit integer fixed by (seed, purpose, name)."""
    digest = hashlib.sha256(f"{seed}\x00{purpose}\x00{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rng_for(seed: int, name: str) -> np.random.Generator:
    """A random generator of its own for one utterance (its crop does not depend on the others)."""
    return np.random.default_rng(stable_key(seed, "crop", name))


def choose_subset(ids: Sequence[str], ratio: float, seed: int) -> set[str]:
    """``round(ratio * len(ids))`` ids (at least one when ratio > 0), picked by seeded hash order."""
    if ratio >= 1.0:
        return set(ids)
    count = max(1, round(ratio * len(ids))) if ratio > 0 and ids else 0
    return set(sorted(ids, key=lambda name: stable_key(seed, "subset", name))[:count])


def split_groups(groups: Sequence[str], valid_fraction: float, seed: int) -> set[str]:
    """The validation groups: ``round(valid_fraction * n)`` of the ``n`` distinct groups, at least one when
    valid_fraction > 0 and there are two groups or more, never all of them; picked by seeded hash order."""
    distinct = sorted(set(groups))
    if valid_fraction <= 0 or len(distinct) < 2:
        return set()
    count = min(len(distinct) - 1, max(1, round(valid_fraction * len(distinct))))
    return set(sorted(distinct, key=lambda name: stable_key(seed, "split", name))[:count])


def split_key(utterance_id: str, speaker: str | None) -> str:
    """Utterances of one known speaker share a group; an utterance without speaker is a group of its own."""
    return f"speaker:{speaker}" if speaker is not None else f"utterance:{utterance_id}"
