"""Decoding long codes window by window: equal to whole decoding within the stated bound, no click at the
boundaries, short codes decoded whole as the model decodes them (within the engine's 1e-4), bounded memory,
and a file that is whole or absent."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch

from cli import run_cli
from conftest import REFERENCE, SPEECH
from dmcodec_cli.audio import AudioWriter, load_audio, save_audio
from dmcodec_cli.engine.decoder import DecodeOptions
from dmcodec_cli.engine.windows import plan_pieces
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.inference import (
    DECODE_MAX_DIFF,
    DECODE_RMS_DIFF,
    DECODE_WINDOWS,
    decode_codes,
    decode_file,
    encode_samples,
    iter_decode,
)
from dmcodec_cli.registry import load_model

MODEL = REFERENCE / "dmcodec_small.pt"
HOP, RATE = 320, 16000
WHOLE_FRAMES = int(DECODE_WINDOWS.longest_whole_seconds * RATE) // HOP  # 1600: decoded whole up to here
KEPT = int(DECODE_WINDOWS.window_seconds * RATE) // HOP
ENGINE_TOL = 1e-4  #: the decode engine against model.decode, per sample


@torch.inference_mode()
def model_decode(model, codes: np.ndarray) -> np.ndarray:
    """The model's own whole decoding: codes [K, t] -> samples [t * hop]."""
    return model.decode(torch.from_numpy(np.asarray(codes, dtype=np.int64))[:, None]).view(-1).numpy()


class Recorded:
    """A code array that records the frame slices taken from it (iter_decode needs .shape and [:, a:b])."""

    def __init__(self, codes: np.ndarray):
        self.codes, self.shape, self.slices = codes, codes.shape, []

    def __getitem__(self, index):
        rows, frames = index
        self.slices.append((frames.start, frames.stop))
        return self.codes[rows, frames]


def long_speech(seconds: float) -> np.ndarray:
    """Real speech: the fixture clips end to end, cut to ``seconds``."""
    clips = [load_audio(p, RATE).samples for p in sorted(SPEECH.glob("*.flac")) + sorted(SPEECH.glob("*.wav"))]
    joined = np.concatenate(clips * 2)
    assert len(joined) >= seconds * RATE
    return joined[: int(seconds * RATE)]


@pytest.fixture(scope="module")
def models(small_model):
    return {"reference small": small_model, "dmcodec-mini": load_model("dmcodec-mini")}


@pytest.fixture(scope="module")
def long_codes(models, one_thread):
    """Per model: int16 codes [8, 1750] of 35 s of real speech (past the 32 s whole limit: windowed)."""
    speech = long_speech(35.0)
    return {name: encode_samples(model, speech).astype(np.int16) for name, model in models.items()}


def test_the_whole_limit_is_that_of_encode_and_windows_never_exceed_it():
    assert WHOLE_FRAMES == 1600
    assert DECODE_WINDOWS.piece_seconds <= DECODE_WINDOWS.whole_seconds
    assert len(plan_pieces(WHOLE_FRAMES * HOP, HOP, RATE, DECODE_WINDOWS)) == 1
    pieces = plan_pieces((WHOLE_FRAMES + 1) * HOP, HOP, RATE, DECODE_WINDOWS)
    assert len(pieces) > 1 and all(p.num_samples <= WHOLE_FRAMES * HOP for p in pieces)


@pytest.mark.parametrize("name", ["reference small", "dmcodec-mini"])
def test_windows_equal_whole_decoding_within_the_bound_without_a_click(models, long_codes, name):
    model, codes = models[name], long_codes[name]
    recorded = Recorded(codes)
    blocks = list(iter_decode(model, recorded))
    kept = [min(KEPT, codes.shape[1] - first) for first in range(0, codes.shape[1], KEPT)]
    assert len(blocks) >= 2 and [len(b) for b in blocks] == [k * HOP for k in kept]
    assert all(stop - start <= WHOLE_FRAMES for start, stop in recorded.slices)
    windowed, whole = np.concatenate(blocks), model_decode(model, codes)
    diff = np.abs(windowed - whole)
    # a cut without context is far off (measured max 0.17 / 2.4); within the bound the step at the boundary
    # is the signal's own to 2 x the bound: no click (benchmarks/decode_memory.py boundaries measures it)
    assert diff.max() <= DECODE_MAX_DIFF and np.sqrt(np.mean(diff ** 2)) <= DECODE_RMS_DIFF, (diff.max(), name)


@pytest.mark.parametrize("frames", [7, WHOLE_FRAMES])
def test_codes_up_to_the_limit_are_decoded_whole_as_the_model_does(models, long_codes, frames):
    model, codes = models["reference small"], long_codes["reference small"][:, :frames]
    expected = model_decode(model, codes)
    blocks = list(iter_decode(model, codes))
    assert len(blocks) == 1
    np.testing.assert_allclose(blocks[0], expected, rtol=0, atol=ENGINE_TOL)
    np.testing.assert_array_equal(decode_codes(model, codes), blocks[0])


@pytest.mark.parametrize("num_samples", [1, 5 * RATE + 17, None])
def test_decode_file_trims_to_num_samples_and_stops_decoding_there(models, long_codes, tmp_path, num_samples):
    model, codes = models["reference small"], long_codes["reference small"]
    recorded = Recorded(codes)
    written = decode_file(model, recorded, tmp_path / "out.wav", num_samples)
    expected_length = codes.shape[1] * HOP if num_samples is None else num_samples
    assert written == expected_length == sf.info(tmp_path / "out.wav").frames
    windows = len(plan_pieces(codes.shape[1] * HOP, HOP, RATE, DECODE_WINDOWS))
    assert len(recorded.slices) == (1 if num_samples else windows)  # windows past num_samples are not decoded
    samples = np.concatenate(list(iter_decode(model, codes)))[:expected_length] if num_samples is None else \
        decode_codes(model, codes[:, :recorded.slices[0][1]])[:expected_length]
    save_audio(tmp_path / "expected.wav", samples, RATE)
    np.testing.assert_array_equal(sf.read(tmp_path / "out.wav", dtype="int16")[0],
                                  sf.read(tmp_path / "expected.wav", dtype="int16")[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expected.wav", "out.wav"]


def test_the_cli_decodes_a_long_code_file_in_windows(models, long_codes, tmp_path, capsys):
    model, codes = models["reference small"], long_codes["reference small"]
    np.save(tmp_path / "long.npy", codes)
    result = run_cli(capsys, "decode", tmp_path / "long.npy", "-o", tmp_path / "long.wav", "--model", MODEL)
    assert result.code == 0, result.stderr
    save_audio(tmp_path / "expected.wav", decode_codes(model, codes), RATE)
    np.testing.assert_array_equal(sf.read(tmp_path / "long.wav", dtype="int16")[0],
                                  sf.read(tmp_path / "expected.wav", dtype="int16")[0])


def test_eleven_hours_of_memory_mapped_codes_are_decoded_a_bounded_group_of_windows_at_a_time(models, tmp_path):
    model, frames = models["reference small"], 11 * 3600 * 50
    on_disk = np.lib.format.open_memmap(tmp_path / "eleven_hours.npy", mode="w+", dtype=np.int16, shape=(8, frames))
    on_disk[:, ::7] = 5
    on_disk.flush()
    codes = Recorded(np.load(tmp_path / "eleven_hours.npy", mmap_mode="r"))
    tracemalloc.start()
    try:
        blocks = iter_decode(model, codes)
        sizes = [len(next(blocks)) for _ in range(2)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sizes == [KEPT * HOP] * 2
    group = int(DecodeOptions().batch_seconds // DECODE_WINDOWS.piece_seconds)  # windows decoded together
    assert 2 <= len(codes.slices) <= group + 1  # one window ahead shows that the group is full
    assert all(stop - start <= WHOLE_FRAMES for start, stop in codes.slices)
    whole_int64 = 8 * frames * 8  # 127 MB; the audio as float32 would be 2.5 GB
    assert peak < 4 * 2 ** 20 < whole_int64 / 30, peak  # measured 0.4 MB (numpy's allocations; torch's untraced)


def test_a_failed_decode_leaves_neither_the_file_nor_its_temporary(models, long_codes, tmp_path):
    model, codes = models["reference small"], long_codes["reference small"].copy()
    codes[0, -1] = 10_000  # out of the codebook, in the second window: fails after the first was written
    (tmp_path / "old.wav").write_bytes(b"old")
    with pytest.raises(IndexError):
        decode_file(model, codes, tmp_path / "out.wav")
    with pytest.raises(IndexError):
        decode_file(model, codes, tmp_path / "old.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.wav"]
    assert (tmp_path / "old.wav").read_bytes() == b"old"


def test_the_writer_removes_its_temporary_when_the_block_raises_and_keeps_save_audios_format(tmp_path):
    samples = np.random.default_rng(0).uniform(-1.5, 1.5, 4000).astype(np.float32)  # clipped like save_audio
    for ext in ("wav", "flac"):
        with AudioWriter(tmp_path / f"streamed.{ext}", RATE) as writer:
            writer.write(samples[:1500])
            writer.write(samples[1500:])
        save_audio(tmp_path / f"whole.{ext}", samples, RATE)
        assert sf.info(tmp_path / f"streamed.{ext}").subtype == sf.info(tmp_path / f"whole.{ext}").subtype == "PCM_16"
        np.testing.assert_array_equal(sf.read(tmp_path / f"streamed.{ext}")[0], sf.read(tmp_path / f"whole.{ext}")[0])
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RuntimeError):
        with AudioWriter(tmp_path / "half.wav", RATE) as writer:
            writer.write(samples)
            assert any(p.name.startswith(".half.wav") for p in tmp_path.iterdir())  # written under a temporary name
            raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_writer_refuses_an_extension_it_cannot_write_before_creating_anything(tmp_path):
    with pytest.raises(DmcodecError, match=r"out\.mp4: cannot write audio with extension '\.mp4'"):
        AudioWriter(tmp_path / "out.mp4", RATE)
    assert list(tmp_path.iterdir()) == []


WRITE_PAST_LIMIT = """
import resource, signal, sys
import numpy as np
from dmcodec_cli.audio import AudioWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
with AudioWriter(sys.argv[1], 16000) as writer:
    for _ in range(10):
        writer.write(np.zeros(16000, np.float32))
"""


def test_a_write_that_fails_like_a_full_disk_is_one_error_naming_the_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.wav"
    done = subprocess.run([sys.executable, "-c", WRITE_PAST_LIMIT, str(target)], capture_output=True, text=True)
    assert done.returncode != 0
    assert f"DmcodecError: {target}: cannot write the audio" in done.stderr.splitlines()[-1]
    assert os.listdir(tmp_path) == []
