"""Shared CLI helpers: consoles, the global state, JSON output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Optional

from rich.console import Console

from ..errors import DmcodecError

console = Console(highlight=False)
console_err = Console(stderr=True, highlight=False)


@dataclass
class _State:
    debug: bool = False


state = _State()


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (nothing else is printed there when --json is given)."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def check_n_q(n_q: Optional[int], available: int) -> Optional[int]:
    """``--n-q``: None (all codebooks) or 1..available."""
    if n_q is not None and not 1 <= n_q <= available:
        raise DmcodecError(f"--n-q must be between 1 and {available} for this model, got {n_q}")
    return n_q
