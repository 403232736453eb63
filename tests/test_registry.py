"""--model resolution: Hugging Face ids through the local cache (offline), registered names, devices."""

from __future__ import annotations

import shutil

import pytest
import torch

from conftest import REFERENCE, golden
from dmcodec_cli import DmcodecError, registry
from dmcodec_cli.checkpoint import load_checkpoint, save_release
from dmcodec_cli.engine.device import pick_device


def fake_hub_cache(cache, repo_id: str, files: dict) -> None:
    """Lay out files as huggingface_hub stores a downloaded snapshot."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_id_loads_a_cached_release(tmp_path, hub_cache):
    save_release(load_checkpoint(REFERENCE / "dmcodec_small.pt"), tmp_path / "release")
    fake_hub_cache(hub_cache, "acme/dm-codec-small",
                   {n: tmp_path / "release" / n for n in ("config.json", "model.safetensors")})
    model = registry.load_model("acme/dm-codec-small")
    with torch.inference_mode():
        assert torch.equal(model.encode(golden("x_a")), golden("codes8_a"))


def test_hub_id_loads_a_cached_official_checkpoint(hub_cache):
    fake_hub_cache(hub_cache, "acme/official", {"Model_best_dev.pt": REFERENCE / "dmcodec_small.pt",
                                                "config.json": REFERENCE / "config_small.json"})
    model = registry.load_model("acme/official")
    with torch.inference_mode():
        assert torch.equal(model.encode(golden("x_c")), golden("codes8_c"))


def test_uncached_hub_id_offline_is_a_clear_error(hub_cache):
    with pytest.raises(DmcodecError, match="acme/missing: not in the local Hugging Face cache.*offline"):
        registry.load_model("acme/missing")


def test_unknown_names_and_devices(monkeypatch):
    with pytest.raises(DmcodecError, match="no such model file or directory"):
        registry.resolve_model_path("./not/here.pt")
    monkeypatch.setattr(registry, "DEFAULT_MODEL", None)
    with pytest.raises(DmcodecError, match="no model given"):
        registry.resolve_model_path(None)
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(DmcodecError, match="unknown --device"):
        pick_device("tpu")
