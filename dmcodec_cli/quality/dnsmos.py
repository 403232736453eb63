"""DNSMOS (Microsoft's P.835 SIG / BAK / OVRL and P.808 MOS predictors) through ``speechmos``.

Reference-free: it rates one signal, so it applies to the original, to a reconstruction and to codes
decoded without their audio.
"""

from __future__ import annotations

import numpy as np

from .metrics import DNSMOS_SCALES, METRIC_RATE, MetricValue, Missing, finite, missing_library

#: The models rate 9.01 s windows; the library repeats a shorter clip to fill one, which for a very short
#: clip rates a loop of it rather than speech.
MIN_SECONDS = 1.0


def dnsmos(signal: np.ndarray) -> dict[str, MetricValue]:
    """{"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"} (each about 1-5, higher is better) of a
    16 kHz signal [L], clipped to [-1, 1] as a 16-bit file of it would be."""
    reason = _unfit(signal)
    if reason is not None:
        return {f"dnsmos_{scale}": reason for scale in DNSMOS_SCALES}
    from speechmos import dnsmos as speechmos_dnsmos

    try:
        scores = speechmos_dnsmos.run(np.clip(np.asarray(signal, np.float64), -1.0, 1.0), sr=METRIC_RATE)
    except ImportError as exc:  # librosa imports its parts (and numba) on first use
        return {f"dnsmos_{scale}": missing_library((exc.name or "librosa").split(".")[0]) for scale in DNSMOS_SCALES}
    except (ValueError, RuntimeError) as exc:  # onnxruntime's errors are RuntimeErrors
        return {f"dnsmos_{scale}": Missing(f"DNSMOS failed ({type(exc).__name__}: {exc})") for scale in DNSMOS_SCALES}
    return {f"dnsmos_{scale}": finite(float(scores[f"{scale}_mos"])) for scale in DNSMOS_SCALES}


def _unfit(signal: np.ndarray) -> Missing | None:
    try:
        import librosa  # noqa: F401
        import onnxruntime  # noqa: F401
        import speechmos.dnsmos  # noqa: F401
    except ImportError as exc:
        return missing_library((exc.name or "speechmos").split(".")[0])
    if len(signal) < MIN_SECONDS * METRIC_RATE:
        return Missing(f"clip too short for DNSMOS (needs {MIN_SECONDS:g} s or more)")
    if not np.any(signal):
        return Missing("signal is silent")
    return None
