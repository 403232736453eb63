"""Quality metrics: each equals the library call (or an independent formula) on the same aligned arrays."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dmcodec_cli.audio import load_audio, resample
from dmcodec_cli.quality import metrics
from dmcodec_cli.quality.asr import normalize_text
from dmcodec_cli.quality.metrics import Missing, align, signal_metrics
from dmcodec_cli.quality.report import describe, summarize
from dmcodec_cli.quality.scoring import metrics_row

RATE = 16000


@pytest.fixture(scope="module")
def pair(speech_dir):
    """A real 4 s clip and a band-limited, noisy copy of it (both 16 kHz float64)."""
    reference = load_audio(speech_dir / "cmu_arctic_awb_arctic_a0007.wav", RATE).samples.astype(np.float64)
    lowpassed = resample(resample(reference.astype(np.float32), RATE, 8000), 8000, RATE).astype(np.float64)
    noise = np.random.default_rng(0).normal(0, 0.005, len(reference))
    return reference, lowpassed[: len(reference)] + noise


def test_stoi_and_pesq_equal_the_libraries(pair):
    from pesq import pesq
    from pystoi import stoi

    reference, degraded = pair
    expected_stoi = stoi(reference, degraded, RATE, extended=False)
    assert metrics.stoi(reference, degraded) == pytest.approx(expected_stoi, abs=1e-12)
    assert metrics.pesq_wb(reference, degraded) == pytest.approx(pesq(RATE, reference, degraded, "wb"), abs=1e-6)
    assert 0.5 < metrics.stoi(reference, degraded) < 1.0
    assert metrics.stoi(reference, reference) == pytest.approx(1.0, abs=1e-6)


def test_si_sdr_matches_independent_formulas(pair):
    reference, degraded = pair
    # For zero-mean signals SI-SDR = 10 log10(rho^2 / (1 - rho^2)), rho the Pearson correlation.
    rho = np.corrcoef(reference, degraded)[0, 1]
    assert metrics.si_sdr(reference, degraded) == pytest.approx(10 * np.log10(rho ** 2 / (1 - rho ** 2)), abs=1e-6)
    # A known target-to-noise ratio: noise orthogonal to the (zero-mean) reference, scaled copy of it.
    centred = reference - reference.mean()
    noise = np.random.default_rng(1).normal(size=len(reference))
    noise -= noise.mean()
    noise -= (noise @ centred) / (centred @ centred) * centred
    noise *= np.sqrt((centred @ centred) / (noise @ noise) / 10 ** (12.5 / 10))
    assert metrics.si_sdr(reference, 0.3 * (centred + noise) + 0.1) == pytest.approx(12.5, abs=1e-6)
    assert metrics.si_sdr(reference, reference) > 100
    assert metrics.si_sdr(reference, 1e-9 * reference) > 100  # scale invariant, also near the epsilon
    assert isinstance(metrics.si_sdr(reference, np.full_like(reference, 0.1)), Missing)


def _numpy_log_mel(signal: np.ndarray) -> np.ndarray:
    """LogMel's definition written again with numpy: reflect pad, periodic Hann, rfft, Slaney mel, log."""
    from transformers.audio_utils import mel_filter_bank

    n_fft, hop = 1024, 240
    padded = np.pad(signal, ((n_fft - hop) // 2,) * 2, mode="reflect")
    count = (len(padded) - n_fft) // hop + 1
    frames = np.stack([padded[i * hop: i * hop + n_fft] for i in range(count)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1))
    filters = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=80, min_frequency=0.0,
                              max_frequency=8000.0, sampling_rate=RATE, norm="slaney", mel_scale="slaney")
    return np.log(np.maximum(magnitude @ filters, 1e-5))


def test_mel_distance_is_mean_absolute_log_mel_difference(pair):
    reference, degraded = pair
    expected = np.abs(_numpy_log_mel(reference) - _numpy_log_mel(degraded)).mean()
    assert metrics.mel_distance(reference, degraded) == pytest.approx(expected, rel=1e-4)
    assert metrics.mel_distance(reference, reference) == 0.0


def test_padding_up_to_one_frame_is_cut_and_a_larger_difference_is_refused(pair):
    reference, degraded = pair
    padded = np.concatenate([degraded, np.full(320, 0.3)])  # one 20 ms frame of padding after the signal
    assert signal_metrics(reference, padded) == signal_metrics(reference, degraded)
    shorter = degraded[:-320]
    cut = reference[: len(shorter)]
    got = signal_metrics(reference, shorter)
    assert got == signal_metrics(cut, shorter)
    from pystoi import stoi

    assert got["stoi"] == pytest.approx(stoi(cut, shorter, RATE), abs=1e-12)
    assert [len(x) for x in align(reference, shorter)] == [len(shorter)] * 2
    # Half a file is not scored on its overlap (that would be a perfect score for a file cut in two).
    half = signal_metrics(reference, reference[: len(reference) // 2])
    assert all(value == Missing(metrics.LENGTH_MISMATCH) for value in half.values())
    assert isinstance(signal_metrics(reference, degraded[:-321])["stoi"], Missing)


def test_what_cannot_be_computed_is_missing_with_a_reason_never_zero(pair):
    reference, degraded = pair
    short = signal_metrics(reference[:1600], degraded[:1600])  # 0.1 s
    assert isinstance(short["pesq_wb"], Missing) and "too short" in short["pesq_wb"].reason
    assert isinstance(short["stoi"], Missing) and "too short" in short["stoi"].reason
    assert isinstance(short["si_sdr"], float)
    silent = signal_metrics(np.zeros(RATE * 2), degraded[: RATE * 2])
    assert all(isinstance(silent[m], Missing) for m in ("stoi", "pesq_wb", "si_sdr"))
    silent_output = signal_metrics(reference, np.zeros_like(reference))  # pesq itself would raise
    assert silent_output["pesq_wb"] == Missing("degraded signal is silent")
    assert isinstance(silent_output["si_sdr"], Missing)
    assert isinstance(metrics.wer("", "some words"), Missing)
    row = metrics_row("a.wav", None, short)
    assert row["pesq_wb"] is None and row["stoi"] is None and "too short" in row["missing"]["pesq_wb"]
    assert row["wer"] is None and row["missing"]["wer"] == metrics.NO_ASR


@pytest.mark.parametrize("module, metric", [("pesq", "pesq_wb"), ("pystoi", "stoi")])
def test_missing_library_is_reported_not_zero(pair, monkeypatch, module, metric):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    value = signal_metrics(*pair)[metric]
    assert value == Missing(f"{module} not installed (install dmcodec[eval])")


def test_missing_jiwer_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "jiwer", None)
    assert metrics.wil("a b", "a c") == Missing("jiwer not installed (install dmcodec[eval])")


def test_wer_and_wil_equal_jiwer():
    import jiwer

    reference, hypothesis = "the cat sat on the mat", "the cat sit on mat today"
    assert metrics.wer(reference, hypothesis) == jiwer.wer(reference, hypothesis) == pytest.approx(3 / 6)
    assert metrics.wil(reference, hypothesis) == pytest.approx(jiwer.wil(reference, hypothesis))


@pytest.mark.parametrize("raw, normalised", [
    ("Hello, World!", "hello world"),
    ("It’s a well-known “fact”.", "it's a well known fact"),
    ("  'Quoted'   words; don't  ", "quoted words don't"),
    ("ÉTÉ 2024 — ok", "été 2024 ok"),
    ("under_score\tand\nnewline", "under score and newline"),
])
def test_normalize_text(raw, normalised):
    assert normalize_text(raw) == normalised


def test_summary_statistics_match_scipy():
    from scipy import stats

    values = [0.91, 0.85, 0.88, 0.97, 0.80]
    got = describe(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert got["mean"] == pytest.approx(np.mean(values))
    assert got["std"] == pytest.approx(np.std(values, ddof=1))
    assert got["ci95"] == pytest.approx((high - low) / 2)
    assert got["n"] == 5
    assert describe([0.5]) == {"mean": 0.5, "std": None, "ci95": None, "n": 1}
    rows = [{"file": "a", "stoi": 0.9}, {"file": "b", "stoi": None}, {"file": "c", "error": "bad"}]
    assert summarize(rows)["stoi"]["n"] == 1


