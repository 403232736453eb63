"""The decode engine: signals equal to ``model.decode`` within 1e-4 per sample (golden vectors, varied
lengths), bit-identical alone and in any batch, the conv stack in tiles equal to one pass, and code stores
decoded in batches exactly as each utterance's codes decode alone."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SPEECH, golden
from dmcodec_cli.audio import load_audio
from dmcodec_cli.corpus.report import decode_store
from dmcodec_cli.corpus.store import Entry, StoreMeta, StoreWriter
from dmcodec_cli.engine.decoder import BatchDecoder, DecodeOptions
from dmcodec_cli.engine.time_major import TimeMajorConvTranspose, TimeMajorDecoder
from dmcodec_cli.engine.windows import WindowPlan, budget_groups
from dmcodec_cli.inference import decode_file, encode_samples
from dmcodec_cli.modules import PaddedConvTranspose1d
from dmcodec_cli.registry import load_model

INPUTS = ["a", "b", "c", "len1", "len320", "len321", "len700"]
TOL = 1e-4  #: per sample, against model.decode
#: frames: one, around the tile (50) and the halo, up to 12 s
LENGTHS = [1, 2, 3, 7, 49, 50, 51, 74, 75, 76, 101, 150, 333, 600]


@pytest.fixture(scope="module")
def models(small_model, one_thread):
    return {"reference small": small_model, "dmcodec-mini": load_model("dmcodec-mini")}


@torch.inference_mode()
def alone(model, codes: np.ndarray) -> torch.Tensor:
    """model.decode of codes [K, t] -> samples [t * hop]."""
    return model.decode(torch.from_numpy(codes.astype(np.int64))[:, None]).view(-1)


def random_codes(model, lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    """Codes [n_q, n] int16 of the model's codebooks, for each length n."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, model.config.codebook_size, (model.n_q, n), dtype=np.int16) for n in lengths]


def test_the_engine_gives_the_golden_decodings(small_model):
    rows = [(tag, b) for tag in INPUTS for b in range(golden(f"codes8_{tag}").shape[1])]
    codes = [golden(f"codes8_{tag}")[:, b] for tag, b in rows]
    together = BatchDecoder(small_model).decode(codes)
    for (tag, b), signal, c in zip(rows, together, codes, strict=True):
        want = golden(f"dec8_{tag}")[b, 0]
        assert signal.shape == want.shape
        torch.testing.assert_close(signal, want, rtol=0, atol=TOL, msg=f"{tag}[{b}]")
        assert torch.equal(BatchDecoder(small_model).decode([c])[0], signal), f"{tag}[{b}]: batch != alone"


@pytest.mark.parametrize("name", ["reference small", "dmcodec-mini"])
def test_a_batch_of_varied_lengths_equals_each_alone_and_the_model(models, name):
    """On codes of real speech (random codes make signals in the thousands, where 1e-4 is below float32's
    resolution)."""
    model = models[name]
    speech = load_audio(SPEECH / "librispeech_test-other_3080-5032-0009.flac", 16000).samples
    whole = encode_samples(model, speech[:16000 * 16])
    codes = [whole[:, 7 * i:7 * i + n] for i, n in enumerate(LENGTHS)]
    together = BatchDecoder(model).decode(codes)
    backwards = BatchDecoder(model).decode(codes[::-1])[::-1]
    small_batches = BatchDecoder(model, DecodeOptions(batch_seconds=3.0)).decode(codes)  # other neighbours
    for c, signal, other, small in zip(codes, together, backwards, small_batches, strict=True):
        assert signal.shape == (c.shape[1] * model.hop_length,)
        assert torch.equal(signal, BatchDecoder(model).decode([c])[0]), c.shape
        assert torch.equal(signal, other) and torch.equal(signal, small), c.shape
        torch.testing.assert_close(signal, alone(model, c), rtol=0, atol=TOL, msg=str(c.shape))


@pytest.mark.parametrize("stride", [2, 3, 4, 5, 8])
@torch.inference_mode()
def test_a_transposed_conv_as_matrix_products_equals_the_module(stride):
    torch.manual_seed(stride)
    module = PaddedConvTranspose1d(6, 5, 2 * stride, stride).double()
    for frames in (1, 2, 9):
        x = torch.randn(1, 6, frames, dtype=torch.float64)
        got = TimeMajorConvTranspose.of(module, torch.float64)(x[0].t())
        torch.testing.assert_close(got, module(x)[0].t(), rtol=0, atol=1e-12)
        elu = TimeMajorConvTranspose.of(module, torch.float64)(x[0].t(), elu_first=True)
        torch.testing.assert_close(elu, module(torch.nn.functional.elu(x))[0].t(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["reference small", "dmcodec-mini"])
@torch.inference_mode()
def test_the_upsampling_stack_in_tiles_equals_one_pass(models, name):
    """In float64, so that a halo too narrow for the stack's reach would show above the rounding."""
    decoder = TimeMajorDecoder(models[name].decoder, torch.float64)
    decoder.TILE_FRAMES = 4  # many tiles, each barely wider than the halo
    x = torch.randn(103, decoder.lstm_block.lstm.hidden_size, dtype=torch.float64)
    for frames in (5, 6, 7, 11, 103):
        tiled, whole = decoder.back(x[:frames]), decoder._back_pass(x[:frames])[:, 0]
        assert tiled.shape == whole.shape == (frames * decoder.hop,)
        torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-12 * whole.abs().max().item())
    decoder.halo_frames = 0  # the halo is what makes the tiles agree
    assert not torch.allclose(decoder.back(x), decoder._back_pass(x)[:, 0], rtol=0, atol=1e-9)


def test_windows_of_one_long_array_are_decoded_together_in_batches(small_model):
    plan = WindowPlan(window_seconds=1.0, context_seconds=0.5, whole_seconds=0.0)  # 50 kept, 100 decoded
    codes = random_codes(small_model, [50 * 12 + 7])[0]
    sizes = []
    decode_group = BatchDecoder._decode_group

    def spy(engine, group):
        sizes.append(len(group))
        return decode_group(engine, group)

    with mock.patch.object(BatchDecoder, "_decode_group", spy):
        blocks = list(BatchDecoder(small_model, DecodeOptions(batch_seconds=8.0, windows=plan)).blocks(codes))
    assert sizes == [4, 4, 4, 1]  # 8 s of audio per batch: 4 windows of 2 s
    alone_each = list(BatchDecoder(small_model, DecodeOptions(batch_seconds=1.0, windows=plan)).blocks(codes))
    assert all(np.array_equal(a, b) for a, b in zip(blocks, alone_each, strict=True))


def test_a_store_is_decoded_in_batches_as_each_utterance_decodes_alone(small_model, tmp_path):
    """Short utterances share batches, a long one (past the whole limit) goes window by window; every file
    is what ``decode_file`` writes for its codes, trimmed to its length."""
    lengths = [150, 7, 1, 333, 1700, 60, 99]  # 1700 frames: 34 s, decoded in windows
    codes = random_codes(small_model, lengths, seed=5)
    names = [f"spk/utt{i}" for i in range(len(lengths))]
    store = tmp_path / "codes.h5"
    with StoreWriter(store, StoreMeta.for_model(small_model)) as writer:
        for name, c in zip(names, codes, strict=True):
            writer.add(Entry(name, c.shape[1] * 320 - 17, c))
    groups = []
    decode_group = BatchDecoder._decode_group

    def spy(engine, group):
        groups.append([c.shape[1] for c in group])
        return decode_group(engine, group)

    with mock.patch.object(BatchDecoder, "_decode_group", spy):
        summary = decode_store(small_model, store, tmp_path / "out")
    assert not summary.failures and len(summary.written) == len(names)
    assert groups[0] == [150, 7, 1, 333]  # the short ones before the long one, in one batch
    assert groups[-1] == [60, 99]
    for name, c in zip(names, codes, strict=True):
        decode_file(small_model, c, tmp_path / "alone.wav", c.shape[1] * 320 - 17)
        written, _ = sf.read(tmp_path / "out" / f"{name}.wav", dtype="int16")
        assert np.array_equal(written, sf.read(tmp_path / "alone.wav", dtype="int16")[0]), name
        (tmp_path / "alone.wav").unlink()


def test_a_rest_of_less_than_half_a_batch_joins_the_last_batch_when_the_total_is_known():
    """As a store's decoding groups its utterances: a few left alone would run the LSTM over few slots."""
    def size(n):
        return n

    assert list(budget_groups([5] * 10, size, 20)) == [[5] * 4, [5] * 4, [5] * 2]  # a stream: no total
    assert list(budget_groups([5] * 10, size, 20, total=50)) == [[5] * 4, [5] * 6]
    assert list(budget_groups([5] * 11, size, 20, total=55)) == [[5] * 4, [5] * 4, [5] * 3]  # 15: over half
    assert list(budget_groups([5, 30, 5], size, 20, total=40)) == [[5], [30], [5]]  # the large one stays alone


def test_options_that_cannot_be_meant_are_refused():
    for bad in (0, -1.0, float("nan"), float("inf"), 1e9, "240"):
        with pytest.raises(ValueError, match="batch_seconds"):
            DecodeOptions(batch_seconds=bad)
    with pytest.raises(ValueError, match="no frames"):
        BatchDecoder(load_model("dmcodec-mini")).decode([np.zeros((8, 0), np.int16)])
