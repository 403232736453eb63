"""Reading audio: block by block equals whole, for every rate and channel count; bad input is a DmcodecError."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import SPEECH
from dmcodec_cli.audio import AudioReader, load_audio
from dmcodec_cli.errors import DmcodecError


@pytest.mark.parametrize("rate,channels,suffix", [(16000, 1, ".wav"), (44100, 2, ".flac"), (48000, 1, ".wav"),
                                                  (8000, 2, ".flac"), (22050, 1, ".ogg")])
def test_blocks_joined_equal_the_whole_file_bit_for_bit(tmp_path, rate, channels, suffix):
    speech = load_audio(SPEECH / "librispeech_dev-clean_2412-153948-0000.flac", rate).samples[: rate * 7]
    data = np.stack([speech * (0.5 + 0.3 * c) for c in range(channels)], axis=1)
    path = tmp_path / f"speech{suffix}"
    sf.write(path, data, rate)
    whole = load_audio(path, 16000)
    assert (whole.source_rate, whole.source_channels) == (rate, channels)
    for seconds in (0.37, 2.0, 60.0):  # blocks smaller than, around, and larger than the file
        with AudioReader(path, 16000) as reader:
            blocks = list(reader.blocks(seconds))
            assert reader.samples_read == len(whole.samples)
        assert len(blocks) >= min(7, int(7 / seconds))
        np.testing.assert_array_equal(np.concatenate(blocks), whole.samples)


def test_bad_samples_found_while_reading_blocks_raise_a_dmcodec_error(tmp_path):
    samples = np.full(16000 * 5, 0.1, np.float32)
    samples[-10] = np.nan
    sf.write(tmp_path / "late_nan.wav", samples, 16000, subtype="FLOAT")
    with AudioReader(tmp_path / "late_nan.wav", 16000) as reader:
        blocks = reader.blocks(1.0)
        assert len(next(blocks)) == 16000  # the good start comes first ...
        with pytest.raises(DmcodecError, match="late_nan.wav: the audio has NaN"):
            list(blocks)  # ... then the error
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(DmcodecError, match="empty.wav: the audio is empty"):
        list(AudioReader(tmp_path / "empty.wav", 16000).blocks())
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(DmcodecError, match="text.wav: not a readable audio file"):
        AudioReader(tmp_path / "text.wav", 16000)
