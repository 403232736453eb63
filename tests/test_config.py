"""The config split: the architecture (CodecConfig), the official training keys (TrainingKeys) and config.json
(ConfigFile), read and written back with the same keys and values."""

from __future__ import annotations

import json

import pytest

from conftest import REFERENCE
from dmcodec_cli.checkpoint import load_checkpoint, load_release, save_release
from dmcodec_cli.config import ARCHITECTURE_KEYS, TRAINING_KEYS, CodecConfig, ConfigFile, TrainingKeys
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.model import DMCodec

SMALL = REFERENCE / "config_small.json"  # the official small config: it has no lambda_sim


def test_the_architecture_and_the_training_keys_share_out_the_official_keys():
    official = json.loads((REFERENCE / "full_state_dict_keys.json").read_text())["config"]
    assert ARCHITECTURE_KEYS | TRAINING_KEYS == set(official) | {"lambda_sim", "extra"}
    assert not ARCHITECTURE_KEYS & TRAINING_KEYS
    file = ConfigFile.from_dict(official)
    assert file.codec == CodecConfig() and file.codec.to_dict().keys() == ARCHITECTURE_KEYS
    assert (file.codec.hop_length, file.training.mel_hop_length) == (320, 240)  # the codec's hop, the mel loss's


def test_keys_absent_from_the_file_stay_absent_until_set():
    data = json.loads(SMALL.read_text())
    file = ConfigFile.from_json(SMALL)
    assert "lambda_sim" not in file.to_dict() and file.training.lambda_sim == 1.0  # read as the default
    assert file.to_dict() == data
    changed = file.replace(lambda_sim=2.0, n_q=4)
    assert changed.to_dict() == {**data, "lambda_sim": 2.0, "n_q": 4}
    assert ConfigFile.from_dict({"extra": {}}).to_dict()["extra"] == {}  # an empty extra that was given
    assert "extra" not in ConfigFile().to_dict() and TrainingKeys(extra={"teacher": "lm"}).to_dict()["extra"]


def test_the_renamed_attributes_read_and_write_their_official_keys():
    keys = TrainingKeys.from_dict({"n_fft": 512, "hop_size": 128, "win_size": 256, "intial_learning_rate": 0.5})
    renamed = (keys.mel_n_fft, keys.mel_hop_length, keys.mel_win_length, keys.initial_learning_rate)
    assert renamed == (512, 128, 256, 0.5)
    assert keys.to_dict() == {"n_fft": 512, "hop_size": 128, "win_size": 256, "intial_learning_rate": 0.5}


def test_a_file_with_problems_in_both_parts_names_them_all_on_one_line():
    with pytest.raises(DmcodecError) as caught:
        ConfigFile.from_dict({"n_q": 0, "learning_rate": "fast", "win_size": 2048}, "c.json")
    message = str(caught.value)
    assert message.startswith("c.json: invalid codec config: ") and "\n" not in message
    assert "n_q must be from 1 to 64, got 0" in message and "learning_rate must be a finite number" in message


def test_the_mel_band_is_checked_against_the_codec_rate():
    assert CodecConfig(sample_rate=8000).sample_rate == 8000  # the architecture alone has no mel band
    with pytest.raises(DmcodecError, match="fmin < fmax <= sample_rate / 2"):
        ConfigFile(CodecConfig(sample_rate=8000))  # the official fmax is 8 kHz
    with pytest.raises(DmcodecError, match="fmin < fmax <= sample_rate / 2"):
        DMCodec(CodecConfig(sample_rate=8000, n_filters=4, dimension=16, semantic_dimension=16, codebook_size=8))
    assert ConfigFile(CodecConfig(sample_rate=8000), TrainingKeys(fmax=4000)).codec.frame_rate == 25


def test_a_release_writes_back_the_config_it_was_loaded_with(tmp_path):
    """convert of an official checkpoint and its config.json: the release's config.json has the same keys."""
    model = load_checkpoint(REFERENCE / "dmcodec_small.pt", ConfigFile.from_json(SMALL))
    save_release(model, tmp_path / "release")
    assert json.loads((tmp_path / "release" / "config.json").read_text()) == json.loads(SMALL.read_text())
    again = load_release(tmp_path / "release")
    assert again.config_file == model.config_file and again.config == CodecConfig.from_json(SMALL)
    save_release(again, tmp_path / "again")
    assert (tmp_path / "again" / "config.json").read_bytes() == (tmp_path / "release" / "config.json").read_bytes()


def test_the_fingerprint_is_the_loaded_weights_and_cannot_be_set(small_model):
    import copy

    model = copy.deepcopy(small_model)
    loaded = model.fingerprint
    with pytest.raises(AttributeError):
        model.fingerprint = "0" * 64
    model.fold_weight_norm()
    assert model.fingerprint == loaded  # folding does not rename the model
    built = DMCodec(model.config)
    assert built.fingerprint != loaded and built.fingerprint == built.fingerprint  # of its own weights
    assert built.load_weights(small_model.state_dict()).fingerprint == loaded
