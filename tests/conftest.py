"""Shared fixtures: the reference checkpoint, golden arrays and real speech clips kept in tests/fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(2)

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "reference"
SPEECH = FIXTURES / "speech"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def golden(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(REFERENCE / "golden" / f"{name}.npy"))


@pytest.fixture(scope="session")
def small_checkpoint() -> Path:
    return REFERENCE / "dmcodec_small.pt"


@pytest.fixture(scope="session")
def small_model():
    """The reference model, eval mode, weight norm not folded (tests must not modify it)."""
    from dmcodec_cli.checkpoint import load_checkpoint

    return load_checkpoint(REFERENCE / "dmcodec_small.pt").eval()


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    return SPEECH


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run ~3x faster on one thread than on two threads of a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
