"""The three-line Python API: every kind of input gives the codes ``dmcodec encode`` gives for the same audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import dmcodec_cli
from cli import run_cli
from conftest import SPEECH
from dmcodec_cli import DmcodecError, EncodedAudio

CLIP = SPEECH / "cmu_arctic_awb_arctic_a0007.wav"  # 16 kHz, 4 s
CLIP_22K = SPEECH / "ljspeech_LJ002-0020.wav"  # 22.05 kHz, 1.5 s


@pytest.fixture(scope="module")
def codec(one_thread):
    return dmcodec_cli.load(device="cpu")


def cli_codes(capsys, tmp_path, source) -> np.ndarray:
    out = tmp_path / f"{source.stem}.npy"
    assert run_cli(capsys, "encode", source, "-o", out, "--device", "cpu").code == 0
    return np.load(out)


def test_the_three_line_example_on_a_real_clip(codec, capsys, tmp_path):
    codec = dmcodec_cli.load()
    encoded = codec.encode(str(CLIP))
    audio = codec.decode(encoded)

    length = sf.info(CLIP).frames
    assert isinstance(encoded, EncodedAudio) and encoded.num_samples == length == len(audio)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert encoded.codes.shape == (codec.n_q, -(-length // 320)) and encoded.n_q == 8
    assert encoded.sample_rate == codec.sample_rate == 16000 and codec.frame_rate == 50
    assert encoded.model_fingerprint == codec.fingerprint and len(codec.fingerprint) == 64
    np.testing.assert_array_equal(encoded.codes, cli_codes(capsys, tmp_path, CLIP))
    speech = sf.read(CLIP, dtype="float32")[0]
    assert np.corrcoef(audio, speech)[0, 1] > 0.5  # it is the same speech, decoded


def test_every_input_kind_gives_the_cli_codes(codec, capsys, tmp_path):
    expected = cli_codes(capsys, tmp_path, CLIP)
    as_int16, rate = sf.read(CLIP, dtype="int16")
    inputs = {"path": (CLIP, None), "float32": (as_int16 / np.float32(32768), rate), "int16": (as_int16, rate),
              "tensor": (torch.from_numpy(as_int16), rate)}
    for kind, (audio, sample_rate) in inputs.items():
        encoded = codec.encode(audio, sample_rate=sample_rate)
        np.testing.assert_array_equal(encoded.codes, expected, err_msg=kind)
        assert encoded.num_samples == len(as_int16), kind


def test_int16_is_scaled_not_taken_as_floats(codec):
    as_int16, rate = sf.read(CLIP, dtype="int16")
    unscaled = as_int16.astype(np.float32) / 1000  # a peak far above 1 but within the level check
    assert not np.array_equal(codec.encode(as_int16, sample_rate=rate).codes,
                              codec.encode(unscaled, sample_rate=rate).codes)


def test_stereo_arrays_either_way_round_give_the_cli_codes_of_the_stereo_file(codec, capsys, tmp_path):
    speech, rate = sf.read(CLIP, dtype="float32")
    stereo = np.stack([speech, 0.5 * np.roll(speech, 800)], axis=1)  # [L, 2], channels that differ
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, rate, subtype="FLOAT")
    expected = cli_codes(capsys, tmp_path, path)
    assert not np.array_equal(expected, codec.encode(speech, sample_rate=rate).codes)  # the mix-down matters
    for audio in (stereo, stereo.T.copy(), torch.from_numpy(stereo.T.copy())):
        np.testing.assert_array_equal(codec.encode(audio, sample_rate=rate).codes, expected)


def test_a_22khz_array_with_its_rate_is_resampled_as_the_cli_does(codec, capsys, tmp_path):
    as_int16, rate = sf.read(CLIP_22K, dtype="int16")
    assert rate == 22050
    encoded = codec.encode(as_int16, sample_rate=rate)
    np.testing.assert_array_equal(encoded.codes, cli_codes(capsys, tmp_path, CLIP_22K))
    assert encoded.num_samples == round(len(as_int16) * 16000 / 22050)
    assert len(codec.decode(encoded)) == encoded.num_samples


@pytest.mark.parametrize("call, needle", [
    (lambda c, a: c.encode(a), "an array needs its sample rate"),
    (lambda c, a: c.encode(a, sample_rate=0), "an array needs its sample rate"),
    (lambda c, a: c.encode(str(CLIP), sample_rate=16000), "sample_rate is for arrays"),
    (lambda c, a: c.encode(np.zeros((300, 300), np.float32), sample_rate=16000), "cannot tell channels"),
    (lambda c, a: c.encode(np.zeros((2, 2, 400), np.float32), sample_rate=16000), "must be [samples]"),
    (lambda c, a: c.encode(a.astype(np.uint32), sample_rate=16000), "signed integer PCM"),
    (lambda c, a: c.encode(np.full(400, np.nan, np.float32), sample_rate=16000), "NaN"),
    (lambda c, a: c.encode(a, sample_rate=16000, n_q=9), "n_q must be between 1 and 8"),
])
def test_bad_inputs_are_one_clear_error(codec, call, needle):
    with pytest.raises(DmcodecError) as error:
        call(codec, np.zeros(1600, np.int16))
    assert needle in str(error.value)


def test_encode_batch_equals_one_at_a_time(codec):
    clips = [sf.read(SPEECH / name, dtype="float32")[0] for name in
             ("librispeech_train-clean-100_19-198-0000.flac", "librispeech_test-other_1998-15444-0008.flac")]
    batch = codec.encode_batch(clips, sample_rate=16000, n_q=4)
    for audio, encoded in zip(clips, batch):
        alone = codec.encode(audio, sample_rate=16000, n_q=4)
        np.testing.assert_array_equal(encoded.codes, alone.codes)
        assert encoded.num_samples == alone.num_samples and encoded.n_q == 4
    (from_file,) = codec.encode_batch([CLIP])
    np.testing.assert_array_equal(from_file.codes, codec.encode(CLIP).codes)


def test_decode_of_bare_codes_is_frames_times_hop_and_another_models_codes_are_refused(codec):
    encoded = codec.encode(CLIP)
    bare = codec.decode(torch.from_numpy(encoded.codes))
    assert len(bare) == encoded.frames * 320
    np.testing.assert_allclose(bare[:encoded.num_samples], codec.decode(encoded), atol=1e-6)
    other = EncodedAudio(encoded.codes, encoded.num_samples, 16000, "0" * 64)
    with pytest.raises(DmcodecError, match="not this one"):
        codec.decode(other)
    assert len(codec.decode(other, force=True)) == encoded.num_samples


def test_encoded_audio_saves_and_loads_as_npz(codec, tmp_path):
    encoded = codec.encode(CLIP, n_q=3)
    encoded.save(tmp_path / "x.npz")
    loaded = EncodedAudio.load(tmp_path / "x.npz")
    np.testing.assert_array_equal(loaded.codes, encoded.codes)
    assert (loaded.num_samples, loaded.sample_rate, loaded.model_fingerprint, loaded.n_q, loaded.dtype) == \
        (encoded.num_samples, 16000, codec.fingerprint, 3, "fp32")
