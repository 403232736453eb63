"""SEANet encoder and decoder, with parameter names that load the official DM-Codec state dict.

Every convolution is weight-normalised (``weight_g``, ``weight_v``, ``bias``) and non-causal, with the
padding rules of the original code (reference README, section 3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pad1d(x: Tensor, left: int, right: int) -> Tensor:
    """Reflect-pad the last axis; inputs too short to reflect are first extended with zeros.

    Matches the original: if the length L <= max(left, right), append z = max(left, right) - L + 1 zeros,
    reflect-pad, then drop the last z samples (so the mirror image contains those zeros).
    """
    length = x.shape[-1]
    max_pad = max(left, right)
    if length > max_pad:
        return F.pad(x, (left, right), mode="reflect")
    extra = max_pad - length + 1
    padded = F.pad(F.pad(x, (0, extra)), (left, right), mode="reflect")
    return padded[..., : padded.shape[-1] - extra]


def conv_padding(length: int, kernel_size: int, stride: int, dilation: int) -> tuple[int, int]:
    """(left, right) padding of a non-causal conv: left-heavy split, plus what fills the last window."""
    kernel_size = (kernel_size - 1) * dilation + 1
    padding_total = kernel_size - stride
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    extra = ideal_length - length
    right = padding_total // 2
    return padding_total - right, right + extra


class WeightNormConv(nn.Module):
    """Conv1d / ConvTranspose1d with weight norm, stored as ``weight_g``, ``weight_v`` and ``bias``.

    Effective weight w = v * g / ||v|| with the norm over all dims but 0 (torch's old ``weight_norm``,
    dim=0). For a transposed conv dim 0 is the *input* channel. ``fold()`` computes w once for inference.
    """

    folded_weight: Tensor  #: the effective weight, a buffer from ``fold()`` on

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, transposed: bool = False):
        super().__init__()
        self.stride, self.dilation, self.transposed = stride, dilation, transposed
        shape = (in_channels, out_channels, kernel_size) if transposed else (out_channels, in_channels, kernel_size)
        # Not nn.Conv1d's own initialisation (the original's): with it the signal shrinks ~1.5x per layer and
        # a fresh encoder's latent is nearly constant in time (temporal std 1e-3 on speech), which collapses
        # the k-means codebook onto one or two codes. Xavier weights and zero biases keep it near 0.04.
        weight = nn.init.xavier_normal_(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(weight, dim=(1, 2), keepdim=True))
        self.weight_v = nn.Parameter(weight)
        self.folded = False

    @property
    def weight(self) -> Tensor:
        if self.folded:
            return self.folded_weight
        norm = torch.linalg.vector_norm(self.weight_v, dim=(1, 2), keepdim=True)
        return self.weight_v * (self.weight_g / norm)

    def fold(self) -> None:
        """Replace (g, v) by the plain effective weight: faster inference, no more training."""
        weight = self.weight.detach()
        del self.weight_g, self.weight_v
        self.register_buffer("folded_weight", weight)
        self.folded = True

    def forward(self, x: Tensor) -> Tensor:
        if self.transposed:
            return F.conv_transpose1d(x, self.weight, self.bias, self.stride)
        return F.conv1d(x, self.weight, self.bias, self.stride, dilation=self.dilation)


class _NestedConv(nn.Module):
    """Holds a conv under ``.conv`` so keys read ``conv.conv.*`` as in the official file."""

    def __init__(self, conv: WeightNormConv):
        super().__init__()
        self.conv = conv


class _NestedConvTranspose(nn.Module):
    """Holds a transposed conv under ``.convtr`` so keys read ``convtr.convtr.*`` as in the official file."""

    def __init__(self, convtr: WeightNormConv):
        super().__init__()
        self.convtr = convtr


class PaddedConv1d(nn.Module):
    """Non-causal conv: reflect padding so the output has ceil(L / stride) frames. [B, C, L] -> [B, C', L']"""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.conv = _NestedConv(WeightNormConv(in_channels, out_channels, kernel_size, stride, dilation))

    def forward(self, x: Tensor) -> Tensor:
        left, right = conv_padding(x.shape[-1], self.kernel_size, self.stride, self.dilation)
        return self.conv.conv(pad1d(x, left, right))


class PaddedConvTranspose1d(nn.Module):
    """Non-causal transposed conv: T frames in, T * stride samples out. [B, C, T] -> [B, C', T * stride]"""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.trim = kernel_size - stride
        self.convtr = _NestedConvTranspose(WeightNormConv(in_channels, out_channels, kernel_size, stride,
                                                           transposed=True))

    def forward(self, x: Tensor) -> Tensor:
        y = self.convtr.convtr(x)
        right = self.trim // 2
        left = self.trim - right
        return y[..., left: y.shape[-1] - right]


class ResidualBlock(nn.Module):
    """x + branch(x) with a learned 1x1 shortcut; branch = ELU, conv k (C -> C/2), ELU, conv 1 (C/2 -> C)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        hidden = channels // 2
        self.block = nn.Sequential(
            nn.ELU(), PaddedConv1d(channels, hidden, kernel_size, dilation=dilation),
            nn.ELU(), PaddedConv1d(hidden, channels, 1),
        )
        self.shortcut = PaddedConv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)


class LSTMBlock(nn.Module):
    """Multi-layer LSTM over time with a skip connection. [B, C, T] -> [B, C * (2 if bidirectional else 1), T]"""

    def __init__(self, channels: int, num_layers: int, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional
        self.lstm = nn.LSTM(channels, channels, num_layers, bidirectional=bidirectional)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(2, 0, 1)  # time-major [T, B, C]
        y, _ = self.lstm(x)
        skip = torch.cat([x, x], dim=-1) if self.bidirectional else x
        return (y + skip).permute(1, 2, 0)


def _residual_stage(channels: int, kernel_size: int, dilation_base: int, n_layers: int) -> list[nn.Module]:
    return [ResidualBlock(channels, kernel_size, dilation_base ** j) for j in range(n_layers)]


class SEANetEncoder(nn.Module):
    """Waveform [B, 1, L] -> latent [B, dimension, ceil(L / hop)].

    Conv k7, then per stride (in reversed config order) residual blocks, ELU and a conv with kernel 2s
    doubling the channels; then the (bi)LSTM block, ELU and a conv k7 to ``dimension``.
    """

    def __init__(self, n_filters: int, dimension: int, strides: tuple[int, ...], lstm_layers: int,
                 bidirectional: bool, residual_kernel_size: int = 3, dilation_base: int = 2,
                 n_residual_layers: int = 1):
        super().__init__()
        layers: list[nn.Module] = [PaddedConv1d(1, n_filters, 7)]
        channels = n_filters
        for stride in reversed(strides):
            layers += _residual_stage(channels, residual_kernel_size, dilation_base, n_residual_layers)
            layers += [nn.ELU(), PaddedConv1d(channels, channels * 2, stride * 2, stride)]
            channels *= 2
        lstm_out = channels * 2 if bidirectional else channels
        layers += [LSTMBlock(channels, lstm_layers, bidirectional), nn.ELU(), PaddedConv1d(lstm_out, dimension, 7)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    """Latent [B, dimension, T] -> waveform [B, 1, T * hop]. Its LSTM is always unidirectional."""

    def __init__(self, n_filters: int, dimension: int, strides: tuple[int, ...], lstm_layers: int,
                 residual_kernel_size: int = 3, dilation_base: int = 2, n_residual_layers: int = 1):
        super().__init__()
        channels = n_filters * 2 ** len(strides)
        layers: list[nn.Module] = [PaddedConv1d(dimension, channels, 7), LSTMBlock(channels, lstm_layers, False)]
        for stride in strides:
            layers += [nn.ELU(), PaddedConvTranspose1d(channels, channels // 2, stride * 2, stride)]
            channels //= 2
            layers += _residual_stage(channels, residual_kernel_size, dilation_base, n_residual_layers)
        layers += [nn.ELU(), PaddedConv1d(n_filters, 1, 7)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
