"""glibc's allocator tuned for the engine's buffers: a process-wide choice that only an application makes.

The engine's calls (``BatchEncoder``, ``BatchDecoder``, the library API) never change the allocator. A
process that encodes for long, the corpus runner (``tokenize_corpus``) and ``dmcodec encode`` of a single
file, calls ``tune_allocator()`` once; from then on the encoder also calls ``release_freed()`` after each
batch, which does nothing in a process that did not choose the policy.

Why: the conv tiles' buffers (under 13 MB at full size) then come from the heap and are reused without page
faults, the LSTM's (tens of MB) are mapped and go back to the system when freed, and the heap memory freed
during a batch is returned after it. Measured on the full-size model, one process: glibc's default let a
1-hour input grow past 2.2 GB of RSS (heap fragmentation), and mapping every buffer over 1 MiB cost ~3M
page faults, ~20 % of the time, per 250 s of audio (docs/corpus.md, "Memory"). Decoding is faster without
it (its ~16 MB whole-utterance buffers would be mapped and unmapped every time), so ``dmcodec decode`` does
not choose it.
"""

from __future__ import annotations

import ctypes
import sys

MMAP_THRESHOLD = 16 << 20  #: buffers of at least this many bytes are mapped, smaller ones come from the heap
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter

_libc: ctypes.CDLL | None = None  # set once the process has chosen the policy


def tune_allocator() -> bool:
    """For the rest of the process: glibc's mmap threshold fixed at ``MMAP_THRESHOLD`` (16 MiB), and
    ``release_freed`` returning freed heap memory to the system. Process-wide: for applications, not
    libraries. True where it applies (Linux with glibc); elsewhere nothing changes. Calling it again
    changes nothing more."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            if libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1:  # 1: done (glibc); 0: refused
                _libc = libc
        except (OSError, AttributeError):  # not glibc
            pass
    return _libc is not None


def release_freed() -> None:
    """After a batch: the heap memory freed during it goes back to the system (``malloc_trim``), in a
    process that called ``tune_allocator``; elsewhere nothing."""
    if _libc is not None:
        _libc.malloc_trim(0)
