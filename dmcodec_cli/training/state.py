"""Full training state on disk: models, optimizers, schedulers, step, best score and RNG states.

A checkpoint is a folder ``checkpoints/step-NNNNNNN`` with ``state.pt`` (written by the main process)
and one ``rng-<rank>.pt`` per process. It is built in a hidden temporary folder and renamed into place,
so a killed run never leaves a half-written checkpoint. Files are read with ``weights_only=True``.
The data order needs no state: it is a function of the step (see ``data.BatchOrder``).
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from ..errors import DmcodecError

STATE_FORMAT = "dmcodec-train-state"
STATE_VERSION = 1
_NAME = re.compile(r"^step-(\d{7,})$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := _NAME.match(p.name)) and (p / "state.pt").is_file()]
    return sorted(found)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def staging_dir(directory: Path, step: int) -> Path:
    return directory / f".{checkpoint_name(step)}.partial"


def write_rng(directory: Path, step: int, rank: int) -> None:
    """Every process writes its RNG state into the staging folder (before the main process commits it)."""
    stage = staging_dir(directory, step)
    stage.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), stage / f"rng-{rank}.pt")


def commit(directory: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Main process: write ``state.pt`` into the staging folder, rename it into place, prune old ones."""
    stage = staging_dir(directory, step)
    stage.mkdir(parents=True, exist_ok=True)
    torch.save({"format": STATE_FORMAT, "format_version": STATE_VERSION, "step": step, **state}, stage / "state.pt")
    final = directory / checkpoint_name(step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(stage, final)
    for _, old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load(checkpoint: Path, rank: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(state, this rank's RNG state or None when the run had fewer processes)."""
    try:
        state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the same user problem
        raise DmcodecError(f"{checkpoint}: unreadable training state ({str(exc).splitlines()[0][:200]}); "
                           "delete this checkpoint folder to resume from the one before") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DmcodecError(f"{checkpoint}: not a dmcodec training checkpoint")
    version = state.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DmcodecError(f"{checkpoint}: damaged training state (format_version {version!r}); delete this "
                           "checkpoint folder to resume from the one before")
    if version > STATE_VERSION:
        raise DmcodecError(f"{checkpoint}: training state version {version} is newer than this dmcodec "
                           "understands; upgrade dmcodec")
    rng_path = checkpoint / f"rng-{rank}.pt"
    return state, _load_rng(rng_path) if rng_path.is_file() else None


def _load_rng(path: Path) -> dict[str, Any]:
    """A process's RNG state (``torch``, ``python``); a damaged file is one line."""
    try:
        rng = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the same user problem
        raise DmcodecError(f"{path}: unreadable random state ({str(exc).splitlines()[0][:200]}); delete this "
                           "checkpoint folder to resume from the one before") from None
    if not (isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor) and isinstance(rng.get("python"),
                                                                                                 tuple)):
        raise DmcodecError(f"{path}: not the random state of a dmcodec run; delete this checkpoint folder to "
                           "resume from the one before")
    return rng
