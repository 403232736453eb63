"""The SEANet encoder's inference arithmetic in time-major layout [T, C], as matrix products.

``nn.Conv1d`` on a single long signal [1, C, L] runs far below the CPU's matrix-product speed at the
high-rate layers (64-128 channels at 8-16 kHz: measured 20-55 GFLOP/s against ~150 for a large
matrix product on the same two cores). In time-major layout every conv of the encoder is a few large
matrix products over contiguous row views: a stride-1 conv of kernel k sums k products of the input
shifted by one tap, and a stride-s conv of kernel 2s (every downsampling layer) views the padded input
as rows of s samples, [T + 1, s * C], and sums two products, rows t and t + 1. The LSTM is time-major
already, and the quantizer takes the latent [T, D] as it is. Same padding rules, same taps: values
differ from the conv path only by float rounding (see docs/corpus.md for the measured code agreement).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..modules import LSTMBlock, PaddedConv1d, ResidualBlock, SEANetEncoder, conv_padding


def pad_time(x: Tensor, left: int, right: int) -> Tensor:
    """Reflect-pad the first axis of x [L, C], with the short-input rule of ``modules.pad1d``."""
    length = x.shape[0]
    extra = max(0, max(left, right) - length + 1)
    if extra:
        x = torch.cat([x, x.new_zeros(extra, x.shape[1])])
    padded = torch.cat([x[1:left + 1].flip(0), x, x[len(x) - 1 - right:len(x) - 1].flip(0)])
    return padded[:len(padded) - extra]


@dataclass
class TimeMajorConv:
    """A ``PaddedConv1d`` as matrix products: x [L, C] -> [ceil(L / stride), O].

    ``taps[m]`` [stride * C, O] multiplies the padded input viewed as [L_p / stride, stride * C], shifted
    by ``m * dilation`` rows. Needs stride 1 or a kernel that is a multiple of the stride.
    """

    taps: Tensor  #: [kernel / stride, stride * C, O]
    bias: Tensor  #: [O]
    kernel_size: int
    stride: int
    dilation: int

    @classmethod
    def of(cls, conv: PaddedConv1d, dtype: torch.dtype) -> "TimeMajorConv":
        inner = conv.conv.conv
        weight = inner.weight.detach()  # [O, C, k]
        out_channels, in_channels, kernel = weight.shape
        s = conv.stride
        if kernel % s or (s > 1 and conv.dilation > 1):
            raise ValueError(f"no time-major form for kernel {kernel}, stride {s}, dilation {conv.dilation}")
        taps = weight.view(out_channels, in_channels, kernel // s, s).permute(2, 3, 1, 0)
        return cls(taps.reshape(kernel // s, s * in_channels, out_channels).contiguous().to(dtype),
                   inner.bias.detach().to(dtype), kernel, s, conv.dilation)

    def __call__(self, x: Tensor, elu_first: bool = False) -> Tensor:
        """x [L, C] -> [ceil(L / stride), O]; ``elu_first`` applies ELU to x before the conv."""
        left, right = conv_padding(x.shape[0], self.kernel_size, self.stride, self.dilation)
        padded = pad_time(x, left, right) if left or right else x
        if elu_first:  # ELU commutes with padding; in place on the fresh padded copy
            padded = F.elu_(padded) if padded is not x else F.elu(x)
        rows = padded.reshape(-1, self.stride * padded.shape[1])
        frames = rows.shape[0] - (len(self.taps) - 1) * self.dilation
        if rows.shape[1] == 1 and self.dilation == 1:  # one input channel: one product over the unfolded taps
            return torch.addmm(self.bias, rows[:, 0].unfold(0, len(self.taps), 1), self.taps[:, 0])
        out = torch.addmm(self.bias, rows[:frames], self.taps[0])
        for m in range(1, len(self.taps)):
            shift = m * self.dilation
            out.addmm_(rows[shift:shift + frames], self.taps[m])
        return out


@dataclass
class TimeMajorResidual:
    """A ``ResidualBlock``: shortcut(x) + conv(ELU(conv(ELU(x)))), x [L, C] -> [L, C]."""

    first: TimeMajorConv
    second: TimeMajorConv
    shortcut: TimeMajorConv

    def __call__(self, x: Tensor) -> Tensor:
        y = self.second(F.elu_(self.first(x, elu_first=True)))
        return y.addmm_(x, self.shortcut.taps[0]).add_(self.shortcut.bias)


class TimeMajorEncoder:
    """An ``SEANetEncoder``'s inference, split around its LSTM so that the LSTM can be batched.

    ``front``: signal [L] -> LSTM input [T, C]; the LSTM runs elsewhere; ``finish``: LSTM input and
    output -> latent [T, D]. Weights are copied once, in ``dtype``.
    """

    def __init__(self, encoder: SEANetEncoder, dtype: torch.dtype = torch.float32):
        self.dtype = dtype
        layers = list(encoder.model)
        split = next(i for i, layer in enumerate(layers) if isinstance(layer, LSTMBlock))
        self.lstm_block: LSTMBlock = layers[split]
        self.front_steps = self._convert_front(layers[:split], dtype)
        self.last = TimeMajorConv.of(layers[-1], dtype)
        lstm = self.lstm_block.lstm
        directions = ("", "_reverse") if lstm.bidirectional else ("",)
        self.lstm_params = [[[getattr(lstm, f"{name}_l{layer}{d}").detach().to(dtype)
                              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                             for d in directions] for layer in range(lstm.num_layers)]

    @staticmethod
    def _convert_front(layers, dtype) -> list:
        """The conv stack as callables [L, C] -> [L', C']; an ELU becomes its next conv's ``elu_first``."""
        steps, elu_pending = [], False
        for layer in layers:
            if isinstance(layer, torch.nn.ELU):
                elu_pending = True
            elif isinstance(layer, ResidualBlock) and not elu_pending:  # an ELU only ever precedes a conv
                convs = [c for c in layer.block if isinstance(c, PaddedConv1d)]
                steps.append(TimeMajorResidual(TimeMajorConv.of(convs[0], dtype), TimeMajorConv.of(convs[1], dtype),
                                               TimeMajorConv.of(layer.shortcut, dtype)))
            elif isinstance(layer, PaddedConv1d):
                steps.append(functools.partial(TimeMajorConv.of(layer, dtype), elu_first=elu_pending))
                elu_pending = False
            else:
                raise TypeError(f"unexpected encoder layer {type(layer).__name__}")
        return steps

    def front(self, signal: Tensor) -> Tensor:
        """signal [L] -> LSTM input [ceil(L / hop), C]."""
        x = signal.to(self.dtype)[:, None]
        for step in self.front_steps:
            x = step(x)
        return x

    def lstm(self, seqs: list[Tensor]) -> list[Tensor]:
        """The block's LSTM over sequences [T_i, C] -> [T_i, C'], each exactly as if run alone.

        Sequences of similar length share a right-padded batch (``length_buckets``). A forward LSTM
        never looks ahead, so the padding cannot reach the real frames; the backward direction runs over
        each sequence reversed (then right-padded) and is reversed back. A lone sequence runs beside a
        copy of itself: oneDNN's LSTM rounds a batch of one differently from larger batches at some sizes
        (measured: hidden size 256, up to 1e-6, enough to flip a near-tie code), and identically for
        every batch of two or more, whatever its length and neighbours.
        """
        outputs: list[Tensor] = [seqs[0]] * len(seqs)
        for bucket in length_buckets([len(s) for s in seqs]):
            batch = [seqs[i] for i in bucket] * (2 if len(bucket) == 1 else 1)
            for directions in self.lstm_params:
                batch = _one_layer(batch, directions)
            for i, out in zip(bucket, batch):
                outputs[i] = out
        return outputs

    def finish(self, feat: Tensor, lstm_out: Tensor) -> Tensor:
        """LSTM input [T, C] and output [T, C'] -> latent [T, D] (skip connection, ELU, last conv)."""
        skip = torch.cat([feat, feat], dim=-1) if self.lstm_block.bidirectional else feat
        return self.last(lstm_out.add_(skip), elu_first=True)


def length_buckets(lengths: list[int], max_padding: float = 0.25) -> list[list[int]]:
    """Indices grouped longest first so that each group's padding is under ``max_padding`` of its slots.

    Padding costs LSTM steps as real frames do; measured on 2 CPU cores, a batch of 3-20 s utterances
    padded to the longest ran slower than one utterance at a time, and batches of similar length 1.5-2x
    faster.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if buckets and lengths[i] >= (1 - max_padding) * lengths[buckets[-1][0]]:
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


def _one_layer(seqs: list[Tensor], directions: list[list[Tensor]]) -> list[Tensor]:
    """One LSTM layer over sequences [T_i, C] -> [T_i, H * len(directions)], through right-padded batches."""
    hidden = directions[0][1].shape[1]
    merged = [s.new_empty(len(s), hidden * len(directions)) for s in seqs]
    for d, params in enumerate(directions):
        reverse = d == 1
        padded = seqs[0].new_zeros(max(len(s) for s in seqs), len(seqs), seqs[0].shape[1])
        for i, s in enumerate(seqs):
            padded[: len(s), i] = s.flip(0) if reverse else s
        h0 = padded.new_zeros(1, len(seqs), hidden)
        out = torch.lstm(padded, (h0, h0), params, True, 1, 0.0, False, False, False)[0]  # [T_max, B, H]
        del padded
        for i, s in enumerate(seqs):
            piece = out[: len(s), i]
            merged[i][:, d * hidden:(d + 1) * hidden] = piece.flip(0) if reverse else piece
    return merged
