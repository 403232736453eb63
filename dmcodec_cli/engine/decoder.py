"""Batched decoding whose signals equal decoding each code array alone.

The decoder is a conv, a unidirectional LSTM (with a skip connection) and an upsampling conv stack. As in
the encoder, only the LSTM is batched, exactly (``TimeMajorDecoder.signals``: sequences laid end to end in
slots, the state reset where each starts); the convs run per signal as the tiled matrix products of
``time_major``. A signal is bit-identical alone and in any batch, and differs from ``model.decode`` by
float rounding only (measured on the golden vectors: at most 3.1e-6; tests hold it to 1e-4).

Long code arrays are decoded in windows (``DECODE_WINDOWS``); the windows of one array, like short
arrays, are decoded together in batches of ``batch_seconds`` of audio, so the LSTM's weights are read
once per step for many sequences.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..model import DMCodec
from .device import exact_convs, model_device, to_device, to_host
from .plan import DevicePlan
from .time_major import TimeMajorDecoder
from .windows import Piece, WindowPlan, budget_groups, check_batch_seconds, plan_pieces

#: Codes up to 32 s (1600 frames, as for encoding) are decoded whole; longer ones in windows keeping
#: 16 s with 2 s of context on each side (20 s decoded at once).
DECODE_WINDOWS = WindowPlan(window_seconds=16.0, context_seconds=2.0)
#: |windowed - whole| on real speech, at most (samples in [-1, 1]); measured on 100 s by
#: ``benchmarks/decode_memory.py boundaries``: max 2.8e-5 / RMS 3.3e-7 (dmcodec-mini), max 3.6e-6 / RMS 3.2e-7
#: (reference small model); with 1 s of context 2.7e-4 for both.
DECODE_MAX_DIFF, DECODE_RMS_DIFF = 1e-4, 1e-5


@dataclass(frozen=True)
class DecodeOptions:
    """How code arrays are grouped and cut. Seconds are at the model's sample rate."""

    #: audio per LSTM batch (sum of the pieces' lengths); a store's last batch may take half as much more
    #: rather than leave a small rest alone (``corpus.report``)
    batch_seconds: float = 240.0
    windows: WindowPlan = DECODE_WINDOWS

    def __post_init__(self) -> None:
        """Refuse values that cannot be meant (ValueError naming the field and what is allowed)."""
        check_batch_seconds(self.batch_seconds)


class BatchDecoder:
    """Decodes code arrays [K, T_i] (codebooks 0..K-1) into mono signals [T_i * hop] float32, many at a time.

    ``plan``: how it computes on the model's device (default ``DevicePlan.for_device``: ``engine.plan``).
    """

    def __init__(self, model: DMCodec, options: DecodeOptions = DecodeOptions(), plan: DevicePlan | None = None):
        self.model, self.options = model, options
        self.device = model_device(model)
        self.plan = plan or DevicePlan.for_device(self.device)
        self.decoder = TimeMajorDecoder(model.decoder, plan=self.plan)
        self.hop = model.hop_length

    @torch.inference_mode()
    def decode(self, codes: list[np.ndarray | Tensor]) -> list[Tensor]:
        """Code arrays [K, T_i] -> signals [T_i * hop] float32 on the CPU, each decoded whole (no windows)."""
        whole = ((Piece(0, c.shape[1] * self.hop, 0, c.shape[1]), c) for c in codes)
        return list(self.decode_pieces(whole))

    @torch.inference_mode()
    def decode_pieces(self, pieces: Iterable[tuple[Piece, np.ndarray | Tensor]]) -> Iterator[Tensor]:
        """(piece, its codes [K, piece.num_samples / hop]) -> its kept samples [(keep_stop - keep_start) * hop],
        in order, on the CPU.

        Pieces are taken as they come and decoded in groups of at most ``batch_seconds`` of audio (one
        piece ahead is taken to know that a group is full), which bounds memory.
        """
        budget = max(1, int(self.options.batch_seconds * self.model.sample_rate) // self.hop)
        for group in budget_groups(pieces, lambda piece: piece[1].shape[1], budget):
            signals = self._decode_group([codes for _, codes in group])
            yield from (s[p.keep_start * self.hop:p.keep_stop * self.hop] for (p, _), s in zip(group, signals))

    def blocks(self, codes: np.ndarray, limit: int | None = None) -> Iterator[np.ndarray]:
        """Codes [K, T] (any integer array, e.g. memory-mapped) -> consecutive blocks of samples float32,
        joined [T * hop]: one block up to ``options.windows.longest_whole_seconds``, else one per window.

        ``limit``: only the windows that hold samples before it are decoded. Only a group of windows' codes
        is read and converted at a time, so memory does not grow with T.
        """
        num_samples = codes.shape[1] * self.hop
        pieces = plan_pieces(num_samples, self.hop, self.model.sample_rate, self.options.windows)
        if limit is not None:
            pieces = [p for p in pieces if p.start + p.keep_start * self.hop < limit]
        taken = ((p, codes[:, p.start // self.hop:p.stop // self.hop]) for p in pieces)
        for signal in self.decode_pieces(taken):
            yield signal.numpy()

    def _decode_group(self, codes: list[np.ndarray | Tensor]) -> list[Tensor]:
        """Code arrays [K, t_i] (each decoded whole) -> signals [t_i * hop] float32 on the CPU."""
        if any(c.shape[1] == 0 for c in codes):
            raise ValueError("cannot decode codes of no frames")
        quantize = self.model.quantizer.decode
        with exact_convs(self.device):
            latents = [quantize(c[:, None])[0].t() for c in to_device([_int64(c) for c in codes], self.device,
                                                                         self.plan.pinned)]
            return to_host([signal.float() for signal in self.decoder.signals(latents)])


def _int64(codes: np.ndarray | Tensor) -> Tensor:
    """Integer codes [K, t] (numpy, e.g. int16 from a file, or torch) -> an int64 tensor."""
    return codes.long() if isinstance(codes, Tensor) else torch.from_numpy(np.asarray(codes, dtype=np.int64))
