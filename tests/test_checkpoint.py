"""Checkpoint forms, config inference, the release format and refusal of unsafe or mismatched files."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import REFERENCE, golden
from dmcodec_cli import CodecConfig, DMCodec, DmcodecError
from dmcodec_cli.checkpoint import (
    fingerprint,
    infer_config,
    load_checkpoint,
    load_release,
    read_state_dict,
    save_release,
)


@pytest.fixture(scope="module")
def state():
    return read_state_dict(REFERENCE / "dmcodec_small.pt")


def codes_of(model) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval().encode(golden("x_a"))


def test_full_size_config_builds_the_official_state_dict_layout():
    reference = json.loads((REFERENCE / "full_state_dict_keys.json").read_text())
    config = CodecConfig.from_dict(reference["config"])
    assert config == CodecConfig()  # the defaults are the official config
    model = DMCodec(config)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(e["key"], e["shape"]) for e in reference["keys"]]  # same keys, shapes and order
    assert sum(p.numel() for p in model.parameters()) == reference["total_parameters"]
    assert sum(b.numel() for b in model.buffers()) == reference["total_buffer_elements"]
    assert infer_config(model.state_dict()) == config


def test_config_is_inferred_from_shapes(state):
    assert infer_config(state) == CodecConfig.from_json(REFERENCE / "config_small.json")


@pytest.mark.parametrize("changes", [dict(bidirectional=False, lstm_layers=1, n_q=3),
                                     dict(strides=(4, 2), dimension=16, semantic_dimension=16, n_residual_layers=2),
                                     dict(codebook_size=32, residual_kernel_size=5, n_filters=2)])
def test_config_inference_round_trips_other_architectures(changes):
    config = CodecConfig(n_filters=4, dimension=32, semantic_dimension=16, codebook_size=16,
                         lstm_layers=2).replace(**changes)
    assert infer_config(DMCodec(config).state_dict()) == config


def test_trainer_package_and_modern_weight_norm_names_load(tmp_path, state):
    package = tmp_path / "ModelTrainer_00001000"
    torch.save({"generator": state, "optim_g": {"state": {}, "param_groups": []}, "best_dev_mel_loss": 1.5}, package)
    assert torch.equal(codes_of(load_checkpoint(package)), golden("codes8_a"))
    renamed = {("module." + k).replace(".weight_g", ".parametrizations.weight.original0")
               .replace(".weight_v", ".parametrizations.weight.original1"): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "modern.pt")
    assert torch.equal(codes_of(load_checkpoint(tmp_path / "modern.pt")), golden("codes8_a"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_release_format_round_trip(tmp_path, state, dtype):
    model = load_checkpoint(REFERENCE / "dmcodec_small.pt")
    printed = save_release(model, tmp_path / "release", dtype)
    assert sorted(os.listdir(tmp_path)) == ["release"]  # no temporary directory left behind
    loaded = load_release(tmp_path / "release")
    assert loaded.fingerprint == printed
    assert loaded.config == model.config
    if dtype == torch.float32:
        assert printed == fingerprint(state) == model.fingerprint
        assert torch.equal(codes_of(loaded), golden("codes8_a"))
    else:
        assert printed != model.fingerprint  # rounded weights are other weights
        full_size = (REFERENCE / "dmcodec_small.safetensors").stat().st_size
        assert (tmp_path / "release" / "model.safetensors").stat().st_size < 0.6 * full_size


def test_inference_only_release_is_smaller_and_encodes_the_same(tmp_path):
    model = load_checkpoint(REFERENCE / "dmcodec_small.pt")
    full = tmp_path / "full"
    slim = tmp_path / "slim"
    save_release(model, full)
    printed = save_release(model, slim, inference_only=True)
    size = lambda d: (d / "model.safetensors").stat().st_size  # noqa: E731
    codebook_bytes = 8 * 64 * 64 * 4
    assert size(full) - size(slim) >= codebook_bytes  # embed_avg of 8 codebooks (and cluster_size) left out
    loaded = load_release(slim)
    assert loaded.fingerprint == printed
    assert torch.equal(codes_of(loaded), golden("codes8_a"))
    codebook = loaded.quantizer.vq.layers[0]._codebook
    torch.testing.assert_close(codebook.embed_avg / codebook.cluster_size[:, None], codebook.embed)
    with torch.no_grad():  # fine-tuning from it keeps the codebook (no mass re-seeding of "dead" codes)
        loaded.train()(golden("x_a"))
    moved = (codebook.embed - model.quantizer.vq.layers[0]._codebook.embed).norm(dim=1)
    assert (moved < 1.0).float().mean() > 0.9


def test_fingerprint_is_the_same_for_pt_and_safetensors(state):
    assert fingerprint(read_state_dict(REFERENCE / "dmcodec_small.safetensors")) == fingerprint(state)
    changed = dict(state)
    changed["encoder.model.0.conv.conv.bias"] = state["encoder.model.0.conv.conv.bias"] + 1e-6
    assert fingerprint(changed) != fingerprint(state)


def test_a_folded_model_cannot_be_saved(tmp_path):
    model = load_checkpoint(REFERENCE / "dmcodec_small.pt").fold_weight_norm()
    with pytest.raises(ValueError):
        save_release(model, tmp_path / "x")


def test_mismatched_checkpoint_names_the_problem(tmp_path, state):
    wrong = CodecConfig.from_json(REFERENCE / "config_small.json").replace(codebook_size=128)
    with pytest.raises(DmcodecError, match="does not match the model config.*shape mismatches"):
        load_checkpoint(REFERENCE / "dmcodec_small.pt", wrong)
    partial = {k: v for k, v in state.items() if not k.startswith("decoder.model.15")}
    torch.save(partial, tmp_path / "partial.pt")
    cfg = infer_config(state)
    with pytest.raises(DmcodecError, match="missing keys"):
        load_checkpoint(tmp_path / "partial.pt", cfg)


class _Payload:
    """Pickles into a call that would create a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_code_is_refused_and_never_runs(tmp_path, state):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({**state, "extra": _Payload(marker)}, evil)
    with pytest.raises(DmcodecError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_garbage_files_are_clear_errors(tmp_path, content):
    for name in ("bad.pt", "bad.safetensors"):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DmcodecError, match=name):
            load_checkpoint(tmp_path / name)


def test_a_tensor_mapping_that_is_not_dm_codec(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(DmcodecError, match="not a DM-Codec checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_config_validation_is_strict():
    with pytest.raises(DmcodecError, match="unknown codec config keys: n_filter"):
        CodecConfig.from_dict({"n_filter": 8})
    with pytest.raises(DmcodecError, match=r"n_q must be from 1 to 64, got 0"):
        CodecConfig(n_q=0)
    assert CodecConfig().frame_rate == 50 and CodecConfig().bitrate() == 4000


def test_a_release_is_readable_by_others_as_the_umask_allows(tmp_path, small_model):
    """safetensors creates its files 0600; a release folder is meant to be copied and shared."""
    import copy
    import os

    from dmcodec_cli.checkpoint import save_release

    old = os.umask(0o022)
    try:
        save_release(copy.deepcopy(small_model), tmp_path / "rel")
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "rel" / name).stat().st_mode & 0o777 == 0o644, name
