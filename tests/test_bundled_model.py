"""The bundled default model: small, loads offline, and really codes speech (not a broken or random model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cli import run_cli
from conftest import SPEECH
from dmcodec_cli import registry
from dmcodec_cli.audio import load_audio
from dmcodec_cli.inference import decode_codes, encode_samples

#: Speakers absent from the training data; the floor sits well under the measured value (README model card)
#: and well over a random model's (0.46 for the reference checkpoint on the same clip).
UNSEEN = SPEECH / "librispeech_dev-clean_2412-153948-0000.flac"
STOI_FLOOR = 0.86  # measured 0.902 with 8 codebooks


def test_the_default_model_is_bundled_small_and_registered():
    assert registry.DEFAULT_MODEL == "dmcodec-mini"
    directory = registry.REGISTERED["dmcodec-mini"]
    assert (directory / "model.safetensors").stat().st_size <= 10_000_000
    config = json.loads((directory / "config.json").read_text())
    assert config["n_q"] == 8 and config["codebook_size"] == 1024 and config["sample_rate"] == 16000


def test_the_bundled_model_codes_unseen_speech_intelligibly():
    from pystoi import stoi

    model = registry.load_model()  # no --model: the default, offline
    samples = load_audio(UNSEEN, model.sample_rate).samples
    codes = encode_samples(model, samples)
    assert codes.shape == (8, -(-len(samples) // 320))
    assert all(len(np.unique(row)) > 50 for row in codes), "collapsed codebooks"
    decoded = decode_codes(model, codes)[: len(samples)]
    assert stoi(samples, decoded, 16000) > STOI_FLOOR
    with torch.inference_mode():  # fewer codebooks: coarser, but still speech
        assert stoi(samples, decode_codes(model, codes[:2])[: len(samples)], 16000) > 0.78  # measured 0.825


def test_the_main_job_runs_with_the_default_model(tmp_path, capsys):
    pytest.importorskip("pystoi")
    clip = SPEECH / "cmu_arctic_awb_arctic_a0007.wav"
    result = run_cli(capsys, "roundtrip", clip, "-o", tmp_path, "--json-file", tmp_path / "r.json")
    assert result.code == 0, result.stderr
    scored = json.loads((tmp_path / "r.json").read_text())["files"][0]
    assert scored["stoi"] > STOI_FLOOR - 0.1
    assert (tmp_path / "cmu_arctic_awb_arctic_a0007.wav").is_file()
    assert (tmp_path / "cmu_arctic_awb_arctic_a0007.png").is_file()
