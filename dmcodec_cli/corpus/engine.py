"""Batched encoding whose codes equal encoding each signal alone.

The encoder is a non-causal conv stack, a (Bi)LSTM and a last conv. Zero-padding signals into one batch
would change their codes (reflect padding and the backward LSTM would see the padding), so only the LSTM
is batched, and exactly: the convs run per signal (they are efficient at batch 1 already); the forward
direction of each LSTM layer runs over the right-padded batch (a forward LSTM never looks ahead, so the
padding cannot reach the real frames) and the backward direction over each signal *reversed* and then
right-padded, i.e. again a forward pass whose padding comes after the real frames.

Work within a batch is spread over ``threads`` Python threads that each run torch single-threaded
(torch releases the GIL): signals' convs in parallel, the two LSTM directions in parallel. That uses
the cores without the per-step synchronisation of multi-threaded small matmuls.

Exactness: a batch of one is the model's own ``encoder`` call (bit-exact). In a larger batch the LSTM's
matmuls have more rows, which may change float rounding (measured: latents differ by <= 3e-7); codes
(an argmin over distances) agreed on every frame we measured (see docs/corpus.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from ..model import DMCodec
from ..modules import LSTMBlock, PaddedConv1d, ResidualBlock, conv_padding, pad1d
from .windows import WindowPlan, plan_pieces, stitch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class EngineOptions:
    """How signals are grouped and cut. Seconds are at the model's sample rate."""

    batch_seconds: float = 240.0  #: audio per LSTM batch (sum of the signals' lengths)
    windows: WindowPlan = WindowPlan()
    dtype: str = "fp32"  #: fp32, or bf16 / fp16 autocast (for GPUs; codes then differ slightly)
    n_q: int | None = None  #: codebooks to keep (default: all)
    threads: int | None = None  #: threads that share a batch's work (default: torch.get_num_threads())
    parallel_seconds: float = 16.0  #: longer signals run their convs one at a time (memory)


class BatchEncoder:
    """Encodes lists of mono signals [L_i] into codes [n_q, ceil(L_i / hop)] int64, many at a time."""

    def __init__(self, model: DMCodec, options: EngineOptions = EngineOptions()):
        if options.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {options.dtype!r}")
        self.model, self.options = model, options
        layers = list(model.encoder.model)
        split = next(i for i, layer in enumerate(layers) if isinstance(layer, LSTMBlock))
        self.front, self.lstm_block, self.back = layers[:split], layers[split], layers[split + 1:]
        self.device = model.quantizer.vq.layers[0]._codebook.embed.device
        _return_big_buffers_to_the_system()

    # -- public -------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, signals: list[Tensor]) -> list[Tensor]:
        """signals: list of float32 [L_i] -> list of codes [n_q, ceil(L_i / hop)] int64 on the CPU.

        Signals longer than ``options.windows.whole_seconds`` are cut into overlapping windows; the
        pieces are encoded in groups of at most ``batch_seconds`` of audio, which bounds memory.
        """
        hop, rate = self.model.hop_length, self.model.sample_rate
        plans = [plan_pieces(len(s), hop, rate, self.options.windows) for s in signals]
        pieces = [(i, piece) for i, plan in enumerate(plans) for piece in plan]
        results: dict[int, list[Tensor]] = {i: [] for i in range(len(signals))}
        budget = max(1, int(self.options.batch_seconds * rate))
        group: list[tuple[int, object]] = []
        for item in pieces + [None]:
            full = group and (item is None or sum(p.num_samples for _, p in group) + item[1].num_samples > budget)
            if full:
                codes = self._encode_group([signals[i][p.start:p.stop] for i, p in group])
                for (i, p), c in zip(group, codes):
                    results[i].append(c[:, p.keep_start:p.keep_stop])
                group = []
            if item is not None:
                group.append(item)
        return [stitch(results[i]) for i in range(len(signals))]

    # -- internals -----------------------------------------------------------------------------
    def _autocast(self):
        dtype = DTYPES[self.options.dtype]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _run(self, layers, x: Tensor) -> Tensor:
        for layer in layers:
            x = layer(x)
        return x

    def _encode_group(self, signals: list[Tensor]) -> list[Tensor]:
        """Pieces [L_i] (each encoded whole) -> codes [n_q, T_i] on the CPU."""
        with self._autocast():
            if len(signals) == 1:  # the model's own path: bit-exact reference behaviour
                latents = [self.model.encoder(self._to_device(signals[0]))[0]]
            else:
                latents = self._batched_latents(signals)
        return [self.model.quantizer.encode(z[None].float(), self.options.n_q)[:, 0].cpu() for z in latents]

    def _to_device(self, signal: Tensor) -> Tensor:
        return signal.to(self.device, torch.float32).view(1, 1, -1)

    def _batched_latents(self, signals: list[Tensor]) -> list[Tensor]:
        """Per-signal convs, one batched LSTM pass, per-signal last conv -> latents [D, T_i]."""
        threads = max(1, self.options.threads or torch.get_num_threads())
        previous = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(threads, initializer=_single_threaded) as pool:
                limit = self.options.parallel_seconds * self.model.sample_rate
                short = [i for i, s in enumerate(signals) if len(s) <= limit]
                feats = dict(zip(short, pool.map(self._in_mode(self._front), [signals[i] for i in short])))
                torch.set_num_threads(previous)
                for i in sorted(set(range(len(signals))) - set(short)):
                    feats[i] = self._in_mode(self._front)(signals[i])  # all threads on one long signal
                torch.set_num_threads(1)
                feats = [feats[i] for i in range(len(signals))]
                outputs = self._lstm(feats, pool)
                return list(pool.map(self._in_mode(self._finish), feats, outputs))
        finally:
            torch.set_num_threads(previous)

    def _in_mode(self, fn):
        """``fn`` run under inference mode and autocast, which are per thread."""
        def run(*args):
            with torch.inference_mode(), self._autocast():
                return fn(*args)
        return run

    def _front(self, signal: Tensor) -> Tensor:
        """Signal [L] -> the LSTM's input [T, C], computed as the model does but with fewer live copies."""
        return _lean(self.front, self._to_device(signal))[0].t()

    def _finish(self, feat: Tensor, lstm_out: Tensor) -> Tensor:
        """LSTM input [T, C] and output [T, C'] -> skip connection, ELU, last conv -> latent [D, T]."""
        skip = torch.cat([feat, feat], dim=-1) if self.lstm_block.bidirectional else feat
        return self._run(self.back, (lstm_out + skip).t()[None])[0]

    def _lstm(self, feats: list[Tensor], pool: ThreadPoolExecutor) -> list[Tensor]:
        """The block's LSTM over sequences [T_i, C] -> [T_i, C'], each as if run alone."""
        lstm = self.lstm_block.lstm
        for layer in range(lstm.num_layers):
            forward = pool.submit(self._in_mode(_direction), lstm, feats, layer, False)
            if lstm.bidirectional:
                backward = pool.submit(self._in_mode(_direction), lstm, feats, layer, True)
                feats = [torch.cat(pair, dim=-1) for pair in zip(forward.result(), backward.result())]
            else:
                feats = forward.result()
        return feats


def _lean(layers, x: Tensor) -> Tensor:
    """Run conv-stack layers with the same arithmetic as their ``forward`` but less memory at high rates.

    ELU then a padded conv becomes pad, ELU in place, conv (ELU commutes with reflect/zero padding, so
    the values are identical), and a residual block adds its shortcut after its branch.
    """
    layers = list(layers)
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, torch.nn.ELU) and i + 1 < len(layers) and isinstance(layers[i + 1], PaddedConv1d):
            conv = layers[i + 1]
            padded = pad1d(x, *conv_padding(x.shape[-1], conv.kernel_size, conv.stride, conv.dilation))
            x = conv.conv.conv(torch.nn.functional.elu_(padded, layer.alpha))
            i += 2
            continue
        if isinstance(layer, ResidualBlock):
            y = _lean(layer.block, x)
            x = y.add_(layer.shortcut(x))
        else:
            x = layer(x)
        i += 1
    return x


_M_MMAP_THRESHOLD = -3


def _return_big_buffers_to_the_system() -> None:
    """glibc: serve allocations over 1 MiB by mmap, so freed activations go back to the OS.

    Without it glibc raises its threshold after the first big free and keeps later big buffers in
    per-thread arenas; measured on the full-size model, a 100 s input then peaked at 1.48-1.70 GB
    instead of 1.20 GB.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 1 << 20)
        except (OSError, AttributeError):
            pass


def _single_threaded() -> None:
    torch.set_num_threads(1)


def _direction(lstm: torch.nn.LSTM, seqs: list[Tensor], layer: int, reverse: bool) -> list[Tensor]:
    """One direction of one layer over sequences [T_i, C] -> [T_i, H], through a right-padded batch."""
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    params = [getattr(lstm, name + suffix) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if reverse:
        seqs = [s.flip(0) for s in seqs]
    padded = pad_sequence(seqs)  # [T_max, B, C]
    h0 = padded.new_zeros(1, padded.shape[1], lstm.hidden_size)
    out = torch.lstm(padded, (h0, h0), params, True, 1, 0.0, False, False, False)[0]
    return [out[: len(s), i].flip(0) if reverse else out[: len(s), i] for i, s in enumerate(seqs)]


def encode_signal(model: DMCodec, samples: Tensor, options: EngineOptions = EngineOptions()) -> Tensor:
    """One signal [L] -> codes [n_q, ceil(L / hop)] int64 (windowed when long), through the engine."""
    return BatchEncoder(model, options).encode([samples])[0]
