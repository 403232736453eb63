"""Training runs on CPU with a tiny codec: teacher modes, overfitting, exact resume, exports, data crops."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from dmcodec_cli.checkpoint import load_release
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.training.config import build_options
from dmcodec_cli.training.data import Augment, SegmentDataset, load_segments
from dmcodec_cli.training.monitor import read_metrics
from dmcodec_cli.training.run import train
from test_train_support import make_corpus, tiny_config, write_features

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    manifest = make_corpus(root, seconds=1.0)
    return manifest, write_features(root / "features.h5", manifest)


def _train(corpus, out, steps, resume=False, features=True, **options):
    manifest, feature_file = corpus
    config = tiny_config()
    opts = build_options(config, {"max_steps": steps, **options})
    return train(config, opts, manifest, out, feature_file if features else None, resume=resume, progress=False)


@pytest.mark.parametrize("teacher", ["combined", "lm", "sm", "none"])
def test_each_teacher_mode_trains(corpus, tmp_path, teacher):
    result = _train(corpus, tmp_path / "exp", 2, features=teacher != "none", teacher=teacher, sm_layers="1:4",
                    grad_clip=1.0, save_every=1, keep_checkpoints=1)
    records = read_metrics(result.metrics)
    assert all(r["grad_norm_g"] > 0 and r["grad_norm_d"] > 0 for r in records)
    assert [p.name for p in (tmp_path / "exp" / "checkpoints").iterdir()] == ["step-0000002"]  # keep the last 1
    assert (tmp_path / "exp" / "best" / "model.safetensors").is_file()
    assert any((tmp_path / "exp" / "tensorboard").iterdir())
    assert [r["step"] for r in records] == [1, 2]
    expected = {"combined": {"distill_sm", "distill_lm"}, "lm": {"distill_lm"}, "sm": {"distill_sm"}, "none": set()}
    logged = {k for k in records[0] if k.startswith("distill_")}
    assert logged == expected[teacher]
    assert "stft" not in records[0]  # off by default, and then not computed
    for record in records:
        for name in ("recon", "mel", "mel_error", "commit", "feature", "adversarial", "discriminator", "generator"):
            assert np.isfinite(record[name]), name
    if teacher == "combined":  # 0.5 / 0.5 by default
        r = records[0]
        assert r["distill"] == pytest.approx(0.5 * r["distill_sm"] + 0.5 * r["distill_lm"], rel=1e-5)
    valid = read_metrics(result.metrics, "valid")
    assert valid and valid[-1]["step"] == 2 and (teacher == "none") == ("distill" not in valid[-1])
    model = load_release(result.last)
    assert model.config.n_q == 4 and model.quantizer.vq.layers[0]._codebook.inited.item() == 1


def test_the_log_stft_loss_joins_the_generator_loss_when_weighted(corpus, tmp_path):
    options = dict(features=False, teacher="none", adversarial_start=10)
    plain = read_metrics(_train(corpus, tmp_path / "plain", 1, **options).metrics)[0]
    record = read_metrics(_train(corpus, tmp_path / "stft", 1, stft_loss_weight=2.0, **options).metrics)[0]
    assert record["stft"] > 0 and record["recon"] == plain["recon"]  # same seed, same first batch
    assert record["generator"] == pytest.approx(plain["generator"] + 2.0 * record["stft"], rel=1e-5)


def test_a_distilling_teacher_needs_features(corpus, tmp_path):
    with pytest.raises(DmcodecError, match="--teacher lm needs --features"):
        _train(corpus, tmp_path / "exp", 1, features=False, teacher="lm")


def test_resume_reproduces_the_uninterrupted_run(corpus, tmp_path):
    common = dict(save_every=2, sm_layers="1:4")
    whole = read_metrics(_train(corpus, tmp_path / "whole", 4, **common).metrics)
    _train(corpus, tmp_path / "split", 2, **common)
    with pytest.raises(DmcodecError, match="already holds a training run; pass --resume"):
        _train(corpus, tmp_path / "split", 4, **common)
    with pytest.raises(DmcodecError, match="other settings.*options.lm_weight"):
        _train(corpus, tmp_path / "split", 4, resume=True, lm_weight=0.8, **common)
    split = read_metrics(_train(corpus, tmp_path / "split", 4, resume=True, **common).metrics)
    assert [r["step"] for r in split] == [1, 2, 3, 4]
    for a, b in zip(whole, split):
        assert a.keys() == b.keys()
        for name in a.keys() - {"split"}:
            assert a[name] == pytest.approx(b[name], rel=1e-6, abs=1e-7), (a["step"], name)
    last_whole, last_split = load_release(tmp_path / "whole" / "last"), load_release(tmp_path / "split" / "last")
    assert last_whole.fingerprint == last_split.fingerprint


def test_overfitting_a_few_clips_lowers_the_mel_error(corpus, tmp_path):
    steps = 60
    result = _train(corpus, tmp_path / "exp", steps, teacher="none", learning_rate=3e-3, batch_size=4,
                    segment_size=4800, log_every=1, valid_every=steps)
    mel = [r["mel_error"] for r in read_metrics(result.metrics)]
    first, last = np.mean(mel[:5]), np.mean(mel[-5:])
    assert last < 0.75 * first, (first, last)


def test_crops_start_on_frames_and_carry_their_teacher_frames(tmp_path):
    """A ramp recorded in the audio and the frame index written as the feature must stay aligned."""
    samples = (np.arange(48000) % 320 == 0).astype(np.float32) * 0.5  # a click at every frame start
    sf.write(tmp_path / "ramp.flac", samples, 16000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "r", "path": "ramp.flac", "source": "x", "offset": 0,
                                                 "duration": 3.0, "speaker": None, "text": None, "split": "train"}))
    write_features(tmp_path / "f.h5", tmp_path / "m.jsonl", dim=2, groups=("sm",),
                   fill=lambda frames, dim: np.repeat(np.arange(frames)[:, None], dim, 1))
    segments, root = load_segments(tmp_path / "m.jsonl", "train")
    config = tiny_config().codec
    dataset = SegmentDataset(segments, root, config, 8000, tmp_path / "f.h5", ("sm",))
    starts = set()
    for seed in range(20):
        audio, features, _ = dataset[(0, seed)]
        assert len(audio) == 8000 - 8000 % 320 and features["sm"].shape == (25, 2)
        assert audio[0] == pytest.approx(0.5, abs=1e-3)  # the crop starts on a frame boundary
        first = int(features["sm"][0, 0])
        starts.add(first)
        assert list(features["sm"][:, 0]) == list(range(first, first + 25))
    assert len(starts) > 5 and max(starts) <= 150 - 25
    audio, features, _ = dataset[(0, -1)]
    assert features["sm"][0, 0] == 0


def _tone(tmp_path, amplitude: float, hz: float = 400.0):
    """A 3 s sine as a one-segment training split."""
    t = np.arange(48000) / 16000
    sf.write(tmp_path / "tone.wav", (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000,
             subtype="FLOAT")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "t", "path": "tone.wav", "source": "x", "offset": 0,
                                                 "duration": 3.0, "speaker": None, "text": None, "split": "train"}))
    return load_segments(tmp_path / "m.jsonl", "train")


def _peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), 16 * len(audio)))
    return float(np.argmax(spectrum)) * 16000 / (16 * len(audio))


def test_augmented_crops_are_resampled_and_scaled_as_drawn_from_their_seed(tmp_path):
    segments, root = _tone(tmp_path, 0.25)
    augment = Augment(speed=0.1, gain_db=6.0)
    dataset = SegmentDataset(segments, root, tiny_config().codec, 8000, augment=augment)
    factors = []
    for seed in range(12):
        audio, _, _ = dataset[(0, seed)]
        speed, gain = augment.draw(seed)
        factors.append(speed)
        assert len(audio) == 8000  # the crop length, whatever the speed
        assert _peak_hz(audio) == pytest.approx(400 * speed, abs=1.0)  # tempo and pitch move together
        assert np.sqrt(np.mean(audio ** 2)) == pytest.approx(0.25 / np.sqrt(2) * gain, rel=0.01)
        np.testing.assert_array_equal(audio, dataset[(0, seed)][0])  # a resumed run sees the same crop
    assert min(factors) < 0.95 and max(factors) > 1.05 and all(0.9 <= f <= 1.1 for f in factors)
    plain, _, _ = dataset[(0, -1)]  # validation crops (seed -1) are left as they are
    np.testing.assert_allclose(plain, SegmentDataset(segments, root, tiny_config().codec, 8000)[(0, -1)][0])
    assert _peak_hz(plain) == pytest.approx(400, abs=1.0)


def test_a_gain_that_would_clip_is_brought_down_to_a_peak_of_one(tmp_path):
    segments, root = _tone(tmp_path, 0.9)
    augment = Augment(gain_db=12.0)
    dataset = SegmentDataset(segments, root, tiny_config().codec, 8000, augment=augment)
    loud = [seed for seed in range(20) if augment.draw(seed)[1] * 0.9 > 1.0]
    assert loud
    for seed in loud:
        assert np.abs(dataset[(0, seed)][0]).max() == pytest.approx(1.0)


def test_augmentation_is_checked_and_reaches_the_training_crops(corpus, tmp_path):
    for bad in ({"augment_speed": 0.6}, {"augment_speed": -0.1}, {"augment_gain_db": 41}, {"augment_gain_db": "6"},
                {"augment_speed": 0.1, "teacher": "sm"}):
        with pytest.raises(DmcodecError, match="augment_"):
            build_options(tiny_config(), bad)
    common = dict(teacher="none", features=False)
    plain = read_metrics(_train(corpus, tmp_path / "plain", 1, **common).metrics)[0]
    augmented = read_metrics(_train(corpus, tmp_path / "aug", 1, augment_speed=0.1, augment_gain_db=6, **common)
                             .metrics)[0]
    assert augmented["recon"] != plain["recon"]


def test_the_weight_average_is_exported_without_changing_the_training(corpus, tmp_path):
    common = dict(teacher="none", save_every=1, valid_every=3, keep_checkpoints=3)
    plain = _train(corpus, tmp_path / "plain", 3, features=False, **common)
    averaged = _train(corpus, tmp_path / "ema", 3, features=False, ema_decay=0.5, **common)
    assert load_release(averaged.last).fingerprint == load_release(plain.last).fingerprint  # live weights untouched
    states = [_state(p) for p in sorted((tmp_path / "ema" / "checkpoints").iterdir())]
    assert all(_state(p)["ema"] is None for p in (tmp_path / "plain" / "checkpoints").iterdir())
    before, after = states[1], states[2]  # the average moves half-way towards the new weights each step
    for name, value in after["ema"].items():
        torch.testing.assert_close(value, 0.5 * before["ema"][name] + 0.5 * after["generator"][name])
    exported = load_release(tmp_path / "ema" / "ema").state_dict()
    for name, value in after["ema"].items():
        torch.testing.assert_close(exported[name], value)
    codebook = "quantizer.vq.layers.0._codebook.embed"
    assert exported[codebook].equal(after["generator"][codebook])
    valid = read_metrics(averaged.metrics, "valid")[-1]
    assert np.isfinite(valid["ema_mel_error"]) and valid["ema_mel_error"] != valid["mel_error"]


def _state(checkpoint):
    return torch.load(checkpoint / "state.pt", weights_only=True)


def test_switching_the_average_on_at_resume_starts_it_from_the_resumed_weights(corpus, tmp_path):
    common = dict(teacher="none", save_every=2)
    _train(corpus, tmp_path / "exp", 2, features=False, **common)
    _train(corpus, tmp_path / "exp", 3, features=False, resume=True, ema_decay=0.5, **common)
    state = _state(tmp_path / "exp" / "checkpoints" / "step-0000003")
    start = _state(tmp_path / "exp" / "checkpoints" / "step-0000002")["generator"]
    for name, value in state["ema"].items():
        torch.testing.assert_close(value, 0.5 * start[name] + 0.5 * state["generator"][name])


def test_resume_compares_the_training_keys_and_accepts_a_record_without_them(corpus, tmp_path):
    common = dict(teacher="none", save_every=2)
    _train(corpus, tmp_path / "exp", 2, features=False, **common)
    with pytest.raises(DmcodecError, match="other settings.*options.training_keys"):  # --distill-loss changed
        _train(corpus, tmp_path / "exp", 3, features=False, resume=True, distill_type="t_axis", **common)
    run = tmp_path / "exp" / "run.json"
    record = json.loads(run.read_text())
    del record["options"]["training_keys"]  # a run recorded before the options held them
    record["options"].update(recon_weight=500.0, mel_weights=[45.0, 1.0, 1.0, 1.0])
    run.write_text(json.dumps(record))
    assert _train(corpus, tmp_path / "exp", 3, features=False, resume=True, **common).steps == 3
