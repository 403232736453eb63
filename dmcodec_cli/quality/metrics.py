"""Per-file quality metrics on two length-aligned 16 kHz signals.

Every metric returns a float or a ``Missing`` with the reason (library not installed, clip too short,
silent reference, empty transcript): a metric that cannot be computed is never reported as 0.
The metric libraries (pystoi, pesq, jiwer) belong to the ``eval`` extra and are imported lazily.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..audio import resample
from ..config import OFFICIAL

METRIC_RATE = 16000
#: Lengths may differ by up to one 20 ms codec frame (padding); beyond, the pair is not aligned.
MAX_LENGTH_DIFFERENCE = OFFICIAL.hop_length
LENGTH_MISMATCH = ("lengths differ by more than one 20 ms frame (see length_difference_s): "
                   "trim or align the files first")
#: Metrics in table order. Signal metrics compare the two signals sample by sample (cut to the common
#: length); ViSQOL aligns them itself; DNSMOS needs no reference and rates the degraded signal and the
#: original; the speaker similarity compares whole signals; the transcript metrics need an ASR model.
SIGNAL_METRICS = ("stoi", "pesq_wb", "si_sdr", "mel_distance")
VISQOL_METRICS = ("visqol",)
DNSMOS_SCALES = ("sig", "bak", "ovrl", "p808")
DNSMOS_METRICS = tuple(f"dnsmos_{scale}" for scale in DNSMOS_SCALES)
ORIGINAL_DNSMOS_METRICS = tuple(f"original_{name}" for name in DNSMOS_METRICS)
SPEAKER_METRICS = ("speaker_similarity",)
TEXT_METRICS = ("wer", "wil")
METRICS = (SIGNAL_METRICS + VISQOL_METRICS + DNSMOS_METRICS + ORIGINAL_DNSMOS_METRICS + SPEAKER_METRICS
           + TEXT_METRICS)
#: True where a higher value is better (tables and plots say so).
HIGHER_IS_BETTER = {"stoi": True, "pesq_wb": True, "si_sdr": True, "mel_distance": False, "visqol": True,
                    **{name: True for name in DNSMOS_METRICS + ORIGINAL_DNSMOS_METRICS},
                    "speaker_similarity": True, "wer": False, "wil": False}
EXTRA_HINT = "install dmcodec[eval]"
#: The reasons of metrics not asked for: WER / WIL without an ASR model, and metrics left out with
#: ``--skip`` (tables leave those columns out).
NO_ASR = "no ASR model given (--asr)"
SKIPPED = "skipped (--skip)"
NOT_ASKED = (NO_ASR, SKIPPED)


@dataclass(frozen=True)
class Missing:
    """A metric that was not computed, and why."""

    reason: str


MetricValue = float | Missing


def to_metric_rate(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono [L] at ``sample_rate`` -> float64 [L'] at 16 kHz (soxr HQ)."""
    return np.asarray(resample(np.asarray(samples, dtype=np.float32), sample_rate, METRIC_RATE), dtype=np.float64)


def align(reference: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut both signals [L1], [L2] to their common length min(L1, L2) (no delay compensation).

    Codec outputs are sample-aligned with their input but padded to whole frames, so the tail beyond
    the reference is padding, not signal.
    """
    length = min(len(reference), len(degraded))
    return reference[:length], degraded[:length]


def length_mismatch(reference_length: int, degraded_length: int) -> str | None:
    """Why two 16 kHz signals of these lengths cannot be compared sample by sample, or None.

    A difference of up to one frame (``MAX_LENGTH_DIFFERENCE`` samples) is codec padding; a larger one
    (a cut file, a delay) would score the overlap only, as if the rest did not exist.
    """
    if abs(degraded_length - reference_length) <= MAX_LENGTH_DIFFERENCE:
        return None
    return LENGTH_MISMATCH


def missing_library(name: str) -> Missing:
    return Missing(f"{name} not installed ({EXTRA_HINT})")


def _silent(signal: np.ndarray) -> bool:
    return not np.any(np.abs(signal) > 0)


def stoi(reference: np.ndarray, degraded: np.ndarray) -> MetricValue:
    """Short-time objective intelligibility (pystoi, classic STOI) of aligned 16 kHz signals, in [0, 1]."""
    try:
        from pystoi import stoi as pystoi_stoi
    except ImportError:
        return missing_library("pystoi")
    if _silent(reference):
        return Missing("reference is silent")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = pystoi_stoi(reference, degraded, METRIC_RATE, extended=False)
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return Missing("too short for STOI: fewer than 30 frames (~0.4 s) of non-silent speech")
    return float(value)


def pesq_wb(reference: np.ndarray, degraded: np.ndarray) -> MetricValue:
    """Wide-band PESQ (ITU-T P.862.2 MOS-LQO, about 1.0-4.64) of aligned 16 kHz signals."""
    try:
        from pesq import PesqError, pesq
    except ImportError:
        return missing_library("pesq")
    if _silent(reference) or _silent(degraded):
        return Missing("reference is silent" if _silent(reference) else "degraded signal is silent")
    try:
        return float(pesq(METRIC_RATE, reference, degraded, "wb"))
    except ValueError as exc:
        return Missing(f"PESQ failed ({exc})")
    except PesqError as exc:
        kind = {"BufferTooShortError": "clip too short for PESQ (needs about 0.25 s or more)",
                "NoUtterancesError": "PESQ found no utterance in the reference"}.get(type(exc).__name__)
        return Missing(kind or f"PESQ failed ({type(exc).__name__}: {exc})")


def si_sdr(reference: np.ndarray, degraded: np.ndarray) -> MetricValue:
    """Scale-invariant SDR in dB (Le Roux et al. 2019) of aligned signals, both made zero-mean.

    target = (<d, r> / <r, r>) r, noise = d - target, SI-SDR = 10 log10(|target|^2 / |noise|^2).
    A relative epsilon (machine epsilon times the degraded energy) keeps identical signals finite
    (about 156 dB) instead of +inf, at any scale.
    """
    ref = reference - reference.mean()
    deg = degraded - degraded.mean()
    energy = float(ref @ ref)
    if np.ptp(reference) == 0:
        return Missing("reference is silent or constant")
    if np.ptp(degraded) == 0:
        return Missing("degraded signal is silent or constant (SI-SDR undefined)")
    target = (float(deg @ ref) / energy) * ref
    noise = deg - target
    eps = np.finfo(np.float64).eps * float(deg @ deg)
    return float(10 * np.log10((target @ target + eps) / (noise @ noise + eps)))


def log_mel_module():
    """A new ``LogMel`` at 16 kHz, as the mel distance and the spectrogram plots use it. Built at each call: it
    takes 1.7 ms, against 18 ms for the mel distance of a 5 s pair (AMD EPYC, one thread): no copy is kept."""
    from ..mel import LogMel

    return LogMel(sample_rate=METRIC_RATE).eval()


def mel_distance(reference: np.ndarray, degraded: np.ndarray) -> MetricValue:
    """Mean absolute difference of natural-log mel spectrograms (``LogMel`` at 16 kHz: n_fft 1024,
    hop 240, 80 mels up to 8 kHz, floor 1e-5), over all mels and frames. 0 for identical signals."""
    import torch

    log_mel = log_mel_module()
    if len(reference) <= log_mel.n_fft // 2:
        return Missing(f"clip too short for the mel distance (needs more than {log_mel.n_fft // 2} samples)")
    with torch.inference_mode():
        batch = torch.from_numpy(np.stack([reference, degraded]).astype(np.float32))
        mels = log_mel(batch)
    return float((mels[0] - mels[1]).abs().mean())


def _jiwer(measure: str, reference_text: str, hypothesis_text: str) -> MetricValue:
    try:
        import jiwer
    except ImportError:
        return missing_library("jiwer")
    if not reference_text.strip():
        return Missing("reference transcript is empty")
    return float(getattr(jiwer, measure)(reference_text, hypothesis_text))


def wer(reference_text: str, hypothesis_text: str) -> MetricValue:
    """Word error rate (jiwer) of two already normalised transcripts."""
    return _jiwer("wer", reference_text, hypothesis_text)


def wil(reference_text: str, hypothesis_text: str) -> MetricValue:
    """Word information lost (jiwer) of two already normalised transcripts."""
    return _jiwer("wil", reference_text, hypothesis_text)


def signal_metrics(reference: np.ndarray, degraded: np.ndarray) -> dict[str, MetricValue]:
    """All signal metrics of two 16 kHz signals [L1], [L2], cut here to their common length.

    Missing, with the reason, when the lengths differ by more than one frame (``length_mismatch``).
    """
    mismatch = length_mismatch(len(reference), len(degraded))
    if mismatch is not None:
        return {name: Missing(mismatch) for name in SIGNAL_METRICS}
    reference, degraded = align(np.asarray(reference, np.float64), np.asarray(degraded, np.float64))
    if len(reference) == 0:
        return {name: Missing("empty signal") for name in SIGNAL_METRICS}
    values = {name: globals()[name](reference, degraded) for name in SIGNAL_METRICS}
    return {name: finite(value) for name, value in values.items()}


def finite(value: MetricValue) -> MetricValue:
    """NaN / inf (a degenerate pair) is reported as missing, never written as a number."""
    if isinstance(value, float) and not np.isfinite(value):
        return Missing(f"not a finite number ({value}) for this pair")
    return value
