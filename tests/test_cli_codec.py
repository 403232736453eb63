"""encode / decode / info / convert from the command line, and one clear line for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from cli import run_cli, run_shell
from conftest import REFERENCE, SPEECH
from dmcodec_cli.audio import load_audio
from dmcodec_cli.checkpoint import load_checkpoint
from dmcodec_cli.inference import encode_samples

MODEL = REFERENCE / "dmcodec_small.pt"


@pytest.mark.parametrize("clip, rate", [("ljspeech_LJ001-0002.flac", 22050), ("vctk_p225_003.wav", 16000)])
def test_shell_round_trip_of_real_speech(tmp_path, clip, rate):
    source = SPEECH / clip
    assert sf.info(source).samplerate == rate
    codes_path, wav_path = tmp_path / "codes.npy", tmp_path / "out.wav"
    encoded = run_shell("encode", source, "-o", codes_path, "--model", MODEL, "--json")
    assert encoded.code == 0, encoded.stderr
    summary = json.loads(encoded.stdout)
    samples = len(load_audio(source, 16000).samples)
    codes = np.load(codes_path)
    assert codes.dtype == np.int16 and codes.shape == (8, -(-samples // 320)) == (summary["n_q"], summary["frames"])
    assert summary["source_sample_rate"] == rate
    decoded = run_shell("decode", codes_path, "-o", wav_path, "--model", MODEL)
    assert decoded.code == 0, decoded.stderr
    info = sf.info(wav_path)
    assert info.samplerate == 16000 and info.channels == 1 and info.frames == 320 * codes.shape[1]


def test_encode_matches_the_model_and_n_q_keeps_the_first_codebooks(tmp_path, capsys, small_model):
    clip = SPEECH / "cmu_arctic_awb_arctic_a0007.wav"
    assert run_cli(capsys, "encode", clip, "-o", tmp_path / "all.npy", "--model", MODEL).code == 0
    assert run_cli(capsys, "encode", clip, "-o", tmp_path / "two.npy", "--model", MODEL, "--n-q", 2).code == 0
    samples = torch.from_numpy(load_audio(clip, 16000).samples).view(1, 1, -1)
    with torch.inference_mode():
        expected = small_model.encode(samples)[:, 0].numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "all.npy"), expected)
    np.testing.assert_array_equal(np.load(tmp_path / "two.npy"), expected[:2])
    # bf16 arithmetic: a different, mostly equal encoding (measured 96 % on real speech with this model)
    assert run_cli(capsys, "encode", clip, "-o", tmp_path / "bf16.npy", "--model", MODEL, "--dtype", "bf16").code == 0
    same = np.load(tmp_path / "bf16.npy") == expected
    assert same[0].mean() >= 0.95 and 0.8 <= same.mean() < 1.0


def test_a_long_file_gets_a_progress_bar_on_stderr_and_the_codes_of_its_samples(tmp_path, capsys, small_model):
    speech = np.concatenate([load_audio(p, 16000).samples for p in sorted(SPEECH.glob("*.flac"))[:8]])
    assert len(speech) > 16000 * 36  # past whole_seconds + the window's context: windowed
    write_wav(tmp_path / "long.wav", speech, "FLOAT")
    result = run_cli(capsys, "encode", tmp_path / "long.wav", "-o", tmp_path / "long.npy", "--model", MODEL, "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["num_samples"] == len(speech)  # stdout stays JSON
    assert "encode long.wav" in result.stderr and "h audio, " in result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "long.npy"), encode_samples(small_model, speech))
    short = run_cli(capsys, "encode", SPEECH / "vctk_p225_003.wav", "-o", tmp_path / "short.npy", "--model", MODEL)
    assert short.code == 0 and short.stderr == ""


def test_decode_of_fewer_codebooks_uses_the_first_ones(tmp_path, capsys, small_model):
    codes = np.random.default_rng(0).integers(0, 64, size=(3, 20)).astype(np.int16)
    np.save(tmp_path / "c.npy", codes)
    assert run_cli(capsys, "decode", tmp_path / "c.npy", "-o", tmp_path / "o.wav", "--model", MODEL).code == 0
    with torch.inference_mode():
        expected = small_model.decode(torch.from_numpy(codes.astype(np.int64))[:, None]).view(-1).numpy()
    written, rate = sf.read(tmp_path / "o.wav", dtype="float32")
    assert rate == 16000 and len(written) == 20 * 320
    # 16-bit PCM, and the decode engine's float rounding: random codes make signals in the thousands
    np.testing.assert_allclose(written, np.clip(expected, -1, 1), atol=1 / 32767 + 1e-6 * np.abs(expected).max())


def test_convert_gives_a_release_directory_with_the_same_codes(tmp_path, capsys):
    release = tmp_path / "release"
    assert run_cli(capsys, "convert", MODEL, "-o", release).code == 0
    assert sorted(p.name for p in release.iterdir()) == ["config.json", "model.safetensors"]
    clip = SPEECH / "librispeech_train-clean-100_19-198-0000.flac"
    run_cli(capsys, "encode", clip, "-o", tmp_path / "pt.npy", "--model", MODEL)
    run_cli(capsys, "encode", clip, "-o", tmp_path / "dir.npy", "--model", release)
    np.testing.assert_array_equal(np.load(tmp_path / "pt.npy"), np.load(tmp_path / "dir.npy"))
    pt_info = json.loads(run_cli(capsys, "info", MODEL, "--json").stdout)
    dir_info = json.loads(run_cli(capsys, "info", release, "--json").stdout)
    assert pt_info["fingerprint"] == dir_info["fingerprint"] == load_checkpoint(MODEL).fingerprint


def test_info_reports_rates_and_size(capsys):
    result = run_cli(capsys, "info", MODEL, "--json")
    assert result.code == 0
    info = json.loads(result.stdout)
    assert info["parameters"] == 1_446_314
    assert info["frame_rate"] == 50 and info["hop_length"] == 320
    assert info["bitrate_bps"]["8"] == 8 * 6 * 50  # 64 codes = 6 bits
    table = run_cli(capsys, "info", MODEL)
    assert "fingerprint" in table.stdout and info["fingerprint"][:16] in table.stdout


# -- bad input: one line, exit status 2, nothing written ---------------------------------------------

def write_wav(path, samples, subtype="PCM_16"):
    sf.write(path, np.asarray(samples, dtype=np.float32), 16000, subtype=subtype)
    return path


def bad_audio_cases(tmp_path):
    (tmp_path / "text.wav").write_text("this is not audio\n")
    return {
        "missing": (tmp_path / "nope.wav", "no such file"),
        "not audio": (tmp_path / "text.wav", "not a readable audio file"),
        "empty": (write_wav(tmp_path / "empty.wav", []), "empty"),
        "nan": (write_wav(tmp_path / "nan.wav", [0.1, np.nan, 0.2] * 100, "FLOAT"), "NaN or infinite"),
        "inf": (write_wav(tmp_path / "inf.wav", [0.1, np.inf, 0.2] * 100, "FLOAT"), "NaN or infinite"),
        # found after the first windows (24 s) were encoded: still no output
        "nan at 40 s": (write_wav(tmp_path / "late.wav", [0.1] * 640_000 + [np.nan], "FLOAT"), "NaN or infinite"),
    }


@pytest.mark.parametrize("case", ["missing", "not audio", "empty", "nan", "inf", "nan at 40 s"])
def test_bad_audio_is_one_clear_line(tmp_path, capsys, case):
    path, message = bad_audio_cases(tmp_path)[case]
    out = tmp_path / "codes.npy"
    result = run_cli(capsys, "encode", path, "-o", out, "--model", MODEL)
    assert result.code == 2
    assert message in result.stderr and path.name in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def bad_codes_cases(tmp_path):
    cases = {
        "out of range": (np.full((8, 10), 64, np.int16), "must lie in [0, 63]"),
        "negative": (np.full((2, 10), -1, np.int16), "must lie in [0, 63]"),
        "too many codebooks": (np.zeros((9, 10), np.int16), "9 codebooks but the model has only 8"),
        "wrong shape": (np.zeros((2, 3, 10), np.int16), "shape [n_q, frames]"),
        "floats": (np.zeros((2, 10), np.float32), "must be integers"),
        "empty": (np.zeros((8, 0), np.int16), "empty codes"),
    }
    paths = {}
    for name, (array, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.npy"
        np.save(path, array)
        paths[name] = (path, message)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    paths["pickled objects"] = (tmp_path / "objects.npy", "refused: the array holds Python objects")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    paths["junk"] = (tmp_path / "junk.npy", "not a readable .npy code file")
    return paths


@pytest.mark.parametrize("case", ["out of range", "negative", "too many codebooks", "wrong shape", "floats",
                                  "empty", "pickled objects", "junk"])
def test_bad_codes_are_one_clear_line(tmp_path, capsys, case):
    path, message = bad_codes_cases(tmp_path)[case]
    out = tmp_path / "out.wav"
    result = run_cli(capsys, "decode", path, "-o", out, "--model", MODEL)
    assert result.code == 2, result
    assert message in result.stderr and path.name in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_bad_models_are_one_clear_line(tmp_path, capsys):
    from test_checkpoint import _Payload

    marker = tmp_path / "pwned"
    torch.save({"x": _Payload(marker)}, tmp_path / "evil.pt")
    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    (mismatched / "model.pt").write_bytes(MODEL.read_bytes())
    config = json.loads((REFERENCE / "config_small.json").read_text())
    (mismatched / "config.json").write_text(json.dumps({**config, "codebook_size": 32}))
    clip = SPEECH / "ljspeech_LJ002-0020.wav"
    cases = {"evil.pt": "refused", "nope.pt": "no such model", "mismatched": "does not match the model config"}
    for name, message in cases.items():
        spec = tmp_path / name if name != "mismatched" else mismatched / "model.pt"
        out = tmp_path / "codes.npy"
        result = run_cli(capsys, "encode", clip, "-o", out, "--model", spec)
        assert result.code == 2 and message in result.stderr, (name, result)
        assert "Traceback" not in result.stderr and not out.exists()
    assert not marker.exists()
    offline = run_cli(capsys, "encode", clip, "-o", tmp_path / "c.npy", "--model", "someone/some-codec")
    assert offline.code == 2 and "someone/some-codec" in offline.stderr


def test_bad_options_and_debug(tmp_path, capsys):
    clip = SPEECH / "ljspeech_LJ002-0020.wav"
    result = run_cli(capsys, "encode", clip, "-o", tmp_path / "c.npy", "--model", MODEL, "--n-q", 9)
    assert result.code == 2 and "--n-q must be between 1 and 8" in result.stderr
    result = run_cli(capsys, "encode", clip, "-o", tmp_path / "c.npy", "--model", MODEL, "--device", "cuda")
    assert result.code == 2 and "no CUDA GPU" in result.stderr
    result = run_cli(capsys, "encode", clip, "-o", tmp_path / "c.npy", "--model", MODEL, "--dtype", "int8")
    assert result.code == 2 and "--dtype must be one of fp32, bf16, fp16" in result.stderr
    assert not (tmp_path / "c.npy").exists()
    result = run_cli(capsys, "decode", clip, "-o", tmp_path / "x.mp4", "--model", MODEL)
    assert result.code == 2
    with pytest.raises(Exception, match="no such file"):
        run_cli(capsys, "--debug", "encode", tmp_path / "nope.wav", "-o", tmp_path / "c.npy", "--model", MODEL)
