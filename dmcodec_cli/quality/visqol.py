"""ViSQOL v3 (speech mode, 16 kHz, lattice mapper) through ``visqol-python``, in worker processes.

ViSQOL is slow (about 0.06-0.12 s per second of audio with numba, 0.8-1.3 s without, on one core), so
``VisqolWorkers`` runs it in ``jobs`` processes while the caller goes on with the next file.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, wait
from functools import lru_cache

import numpy as np

from .metrics import METRIC_RATE, MetricValue, Missing, finite, length_mismatch, missing_library

#: Below about 0.65 s the library finds no patch to compare (it fails with an IndexError).
MIN_SECONDS = 0.7


# A per-process cache, kept on purpose: ``visqol`` runs in the worker processes of ``VisqolWorkers``'s pool, which
# give a task no object of its own to hold the API in, and creating it (0.06-0.2 s, AMD EPYC) costs as much as
# measuring a 2 s pair. It holds this one object and nothing that changes.
@lru_cache(maxsize=1)
def _speech_api():
    """The library's API object in speech mode with the lattice mapper (the C++ tool's default); once per process."""
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode="speech", use_lattice_model=True)
    return api


def unavailable() -> Missing | None:
    """Why ViSQOL cannot be computed here (visqol-python or its lattice runtime missing), else None."""
    try:
        import ai_edge_litert  # noqa: F401  (the lattice mapper's TFLite runtime)
        import visqol  # noqa: F401
    except ImportError as exc:
        return missing_library(f"{exc.name or 'visqol-python'} (visqol-python[lattice])")
    return None


def visqol(reference: np.ndarray, degraded: np.ndarray) -> MetricValue:
    """ViSQOL MOS-LQO (1-5, higher is better) of two 16 kHz signals [L1], [L2].

    The library aligns the signals itself (global alignment, then per patch); a length difference of
    more than one frame is still refused, as for the other reference metrics.
    """
    reason = unavailable() or _unfit(reference, degraded)
    if reason is not None:
        return reason
    try:
        result = _speech_api().measure_from_arrays(np.asarray(reference, np.float64),
                                                   np.asarray(degraded, np.float64), METRIC_RATE)
    except IndexError:
        return Missing(f"clip too short for ViSQOL (no patch of speech to compare; needs about {MIN_SECONDS:g} s)")
    except (ValueError, RuntimeError, FloatingPointError) as exc:
        return Missing(f"ViSQOL failed ({type(exc).__name__}: {exc})")
    return finite(float(result.moslqo))


def _unfit(reference: np.ndarray, degraded: np.ndarray) -> Missing | None:
    mismatch = length_mismatch(len(reference), len(degraded))
    if mismatch is not None:
        return Missing(mismatch)
    if min(len(reference), len(degraded)) < MIN_SECONDS * METRIC_RATE:
        return Missing(f"clip too short for ViSQOL (needs {MIN_SECONDS:g} s or more)")
    if not np.any(reference) or not np.any(degraded):
        return Missing("reference is silent" if not np.any(reference) else "degraded signal is silent")
    return None


def _done(value: MetricValue) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class VisqolWorkers:
    """ViSQOL of signal pairs in ``jobs`` processes (in this process when ``jobs`` is 1).

    ``submit`` returns a future of the value; it blocks while 2 x ``jobs`` pairs are outstanding, so
    memory stays bounded however fast the caller produces pairs. Use as a context manager.
    """

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None
        self._outstanding: deque[Future] = deque()

    def submit(self, reference: np.ndarray, degraded: np.ndarray) -> Future:
        reason = unavailable() or _unfit(reference, degraded)
        if reason is not None or self.jobs == 1:
            return _done(reason or visqol(reference, degraded))
        while len(self._outstanding) >= 2 * self.jobs:
            wait([self._outstanding.popleft()])
        if self._pool is None:
            # spawn: a forked copy of a process that runs torch threads can deadlock.
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"))
        future = self._pool.submit(visqol, np.asarray(reference, np.float64), np.asarray(degraded, np.float64))
        self._outstanding.append(future)
        return future

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "VisqolWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
