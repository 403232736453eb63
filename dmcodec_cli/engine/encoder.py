"""Batched encoding whose codes equal encoding each signal alone.

The encoder is a non-causal conv stack, a (Bi)LSTM and a last conv. Zero-padding signals into one batch
would change their codes (reflect padding and the backward LSTM would see the padding), so only the LSTM
is batched, and exactly (``TimeMajorEncoder.latents``: signals laid end to end in slots, the state reset
where each starts); the convs run per signal, as the tiled matrix products of ``time_major`` (a long
signal is already a large product, so batching them gains nothing).

Exactness: a signal's latent is bit-identical alone and in any batch. The time-major arithmetic differs
from the model's conv path only in float rounding; codes, an argmin over distances, agreed on 100 % of
frames with the reference model and 99.997 % with dmcodec-mini (see docs/corpus.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ..model import DMCodec
from .allocator import release_freed
from .device import exact_convs, model_device, to_device, to_host
from .plan import DevicePlan
from .time_major import TimeMajorEncoder
from .windows import Piece, WindowPlan, budget_groups, check_batch_seconds, plan_pieces, stitch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class EngineOptions:
    """How signals are grouped and cut. Seconds are at the model's sample rate."""

    batch_seconds: float = 240.0  #: audio per LSTM batch (sum of the signals' lengths)
    windows: WindowPlan = WindowPlan()
    dtype: str = "fp32"  #: encoder arithmetic: fp32 (reference codes), or bf16 / fp16 (faster, codes differ slightly)
    n_q: int | None = None  #: codebooks to keep (default: all)

    def __post_init__(self) -> None:
        """Refuse values that cannot be meant (ValueError naming the field and what is allowed)."""
        check_batch_seconds(self.batch_seconds)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.n_q is not None and not (isinstance(self.n_q, int) and self.n_q >= 1):
            raise ValueError(f"n_q must be a whole number >= 1, got {self.n_q!r}")


class BatchEncoder:
    """Encodes lists of mono signals [L_i] into codes [n_q, ceil(L_i / hop)] int64, many at a time.

    ``plan``: how it computes on the model's device (default ``DevicePlan.for_device``: ``engine.plan``).
    """

    def __init__(self, model: DMCodec, options: EngineOptions = EngineOptions(), plan: DevicePlan | None = None):
        if options.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {options.dtype!r}")
        self.model, self.options = model, options
        self.device = model_device(model)
        self.plan = plan or DevicePlan.for_device(self.device)
        self.encoder = TimeMajorEncoder(model.encoder, DTYPES[options.dtype], self.plan)

    # -- public -------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, signals: list[Tensor]) -> list[Tensor]:
        """signals: list of float32 [L_i] -> list of codes [n_q, ceil(L_i / hop)] int64 on the CPU.

        Signals longer than ``options.windows.whole_seconds`` are cut into overlapping windows.
        """
        plans = [plan_pieces(len(s), self.model.hop_length, self.model.sample_rate, self.options.windows)
                 for s in signals]
        kept = self.encode_pieces((p, s[p.start:p.stop]) for s, plan in zip(signals, plans) for p in plan)
        return [stitch([next(kept) for _ in plan]) for plan in plans]

    @torch.inference_mode()
    def encode_pieces(self, pieces: Iterable[tuple[Piece, Tensor]]) -> Iterator[Tensor]:
        """(piece, its samples [piece.num_samples]) -> its kept codes [n_q, keep_stop - keep_start], in order.

        Pieces are taken as they come and encoded in groups of at most ``batch_seconds`` of audio,
        which bounds memory: a stream of windows of an hour-long input is never held whole.
        """
        budget = max(1, int(self.options.batch_seconds * self.model.sample_rate))
        for group in budget_groups(pieces, lambda piece: len(piece[1]), budget):
            yield from self._encode_kept(group)

    # -- internals -----------------------------------------------------------------------------
    def _encode_kept(self, group: list[tuple[Piece, Tensor]]) -> Iterator[Tensor]:
        codes = self._encode_group([samples for _, samples in group])
        return (c[:, p.keep_start:p.keep_stop] for (p, _), c in zip(group, codes))

    def _encode_group(self, signals: list[Tensor]) -> list[Tensor]:
        """Pieces [L_i] (each encoded whole) -> codes [n_q, T_i] on the CPU."""
        quantize = self.model.quantizer.encode
        with exact_convs(self.device):
            latents = self.encoder.latents(to_device(signals, self.device, self.plan.pinned))
            codes = to_host([quantize(z.float().t()[None], self.options.n_q)[:, 0] for z in latents])
        release_freed()  # only where the application chose the allocator policy (engine.allocator)
        return codes
