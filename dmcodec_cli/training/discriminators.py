"""Discriminators: multi-period (HiFi-GAN), multi-scale (HiFi-GAN) and multi-scale STFT (EnCodec).

Each returns, per sub-discriminator, a score map and the list of its feature maps. Channel widths scale
with ``width`` (1.0 = the paper's sizes) so that small CPU models get small discriminators.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

LRELU_SLOPE = 0.1
Scores = list[Tensor]
FeatureMaps = list[list[Tensor]]


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Which discriminators to build and how wide (``width`` scales every channel count)."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    scales: int = 3
    stft_filters: int = 32
    stft_n_ffts: tuple[int, ...] = (1024, 2048, 512)
    width: float = 1.0


def _channels(base: int, width: float, groups: int = 1) -> int:
    """``base * width`` rounded up to a multiple of ``groups`` (at least ``groups``)."""
    wanted = max(1, round(base * width))
    return max(groups, -(-wanted // groups) * groups)


def _conv_stack(convs: nn.ModuleList, post: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Leaky-ReLU conv layers then a score conv -> (scores [B, N], every layer's output as feature maps)."""
    maps = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        maps.append(x)
    x = post(x)
    maps.append(x)
    return x.flatten(1), maps


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's DiscriminatorP: the waveform folded into [B, 1, L / p, p] and 2-D convolutions over time."""

    def __init__(self, period: int, width: float = 1.0):
        super().__init__()
        self.period = period
        chans = [1] + [_channels(c, width) for c in (32, 128, 512, 1024)]
        convs = [nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0)) for a, b in zip(chans, chans[1:])]
        convs.append(nn.Conv2d(chans[-1], chans[-1], (5, 1), 1, padding=(2, 0)))
        self.convs = nn.ModuleList(weight_norm(c) for c in convs)
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x [B, 1, L] -> (scores [B, N], feature maps)"""
        b, c, length = x.shape
        if length % self.period:
            x = F.pad(x, (0, self.period - length % self.period), mode="reflect")
        x = x.view(b, c, -1, self.period)
        return _conv_stack(self.convs, self.post, x)


class ScaleDiscriminator(nn.Module):
    """HiFi-GAN's DiscriminatorS: grouped strided 1-D convolutions over the (pooled) waveform."""

    LAYERS = ((128, 15, 1, 1), (128, 41, 2, 4), (256, 41, 2, 16), (512, 41, 4, 16), (1024, 41, 4, 16),
              (1024, 41, 1, 16), (1024, 5, 1, 1))  # (channels, kernel, stride, groups)

    def __init__(self, width: float = 1.0, use_spectral_norm: bool = False):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        convs, in_ch = [], 1
        for channels, kernel, stride, groups in self.LAYERS:
            groups = min(groups, in_ch) if in_ch % min(groups, in_ch) == 0 else 1
            out_ch = _channels(channels, width, groups)
            convs.append(norm(nn.Conv1d(in_ch, out_ch, kernel, stride, groups=groups, padding=kernel // 2)))
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        self.post = norm(nn.Conv1d(in_ch, 1, 3, 1, padding=1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        return _conv_stack(self.convs, self.post, x)


class STFTDiscriminator(nn.Module):
    """EnCodec's DiscriminatorSTFT: 2-D convolutions over the real and imaginary parts of one STFT."""

    window: Tensor  #: Hann window [n_fft], a non-persistent buffer

    def __init__(self, filters: int, n_fft: int, hop_length: int, dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [nn.Conv2d(2, filters, (3, 9), padding=(1, 4))]
        for dilation in dilations:
            convs.append(nn.Conv2d(filters, filters, (3, 9), (1, 2), dilation=(dilation, 1), padding=(dilation, 4)))
        convs.append(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(weight_norm(c) for c in convs)
        self.post = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        # torchaudio's Spectrogram(normalized=True): divided by the window's L2 norm, not centred
        spec = torch.stft(x.squeeze(1).float(), self.n_fft, self.hop_length, window=self.window, center=False,
                          return_complex=True) / self.window.pow(2).sum().sqrt()
        z = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        maps = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), 0.2)
            maps.append(z)
        z = self.post(z)
        maps.append(z)
        return z.flatten(1), maps


class Discriminators(nn.Module):
    """All discriminators together: x [B, 1, L] -> (scores, feature maps), one entry per sub-discriminator."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.periods = nn.ModuleList(PeriodDiscriminator(p, config.width) for p in config.periods)
        self.scales = nn.ModuleList(ScaleDiscriminator(config.width, use_spectral_norm=i == 0)
                                    for i in range(config.scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)
        self.stfts = nn.ModuleList(STFTDiscriminator(config.stft_filters, n, n // 4) for n in config.stft_n_ffts)

    def forward(self, x: Tensor) -> tuple[Scores, FeatureMaps]:
        scores, maps = [], []
        for disc in [*self.periods, *self.stfts]:
            score, fmap = disc(x)
            scores.append(score)
            maps.append(fmap)
        pooled = x
        for i, disc in enumerate(self.scales):
            if i:
                pooled = self.pool(pooled)
            score, fmap = disc(pooled)
            scores.append(score)
            maps.append(fmap)
        return scores, maps
