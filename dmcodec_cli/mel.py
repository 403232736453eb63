"""Log-mel spectrogram (HiFi-GAN style, as in the DM-Codec training loss) with torch.stft.

Filters are librosa-compatible (Slaney scale and norm) from ``transformers.audio_utils.mel_filter_bank``
and live in non-persistent buffers, so they follow the module's device and are never saved.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.audio_utils import mel_filter_bank


def magnitude(spec: Tensor) -> Tensor:
    """|spec| of a complex STFT [..., F, T], with 1e-9 under the root so that the gradient stays finite at zero."""
    return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)


class LogMel(nn.Module):
    """audio [B, L] or [B, 1, L] -> log-mel [B, n_mels, frames]: log(max(|STFT| @ mel, 1e-5)).

    The signal is reflect-padded by (n_fft - hop) / 2 on each side and the STFT is not centred,
    so frames = floor((L + n_fft - hop - n_fft) / hop) + 1 ~= L / hop.
    """

    filters: Tensor  #: [n_mels, n_fft // 2 + 1] Slaney mel filters
    window: Tensor  #: [win_length] Hann window

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop_length: int = 240,
                 win_length: int = 1024, n_mels: int = 80, fmin: float = 0.0, fmax: float | None = 8000.0):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        filters = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=fmin,
                                  max_frequency=fmax or sample_rate / 2, sampling_rate=sample_rate,
                                  norm="slaney", mel_scale="slaney")
        self.register_buffer("filters", torch.from_numpy(np.ascontiguousarray(filters.T, dtype=np.float32)),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        if audio.dim() == 3:
            audio = audio.squeeze(1)
        pad = (self.n_fft - self.hop_length) // 2
        audio = F.pad(audio.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(audio.float(), self.n_fft, self.hop_length, self.win_length, self.window,
                          center=False, return_complex=True)
        return torch.log(torch.clamp(self.filters @ magnitude(spec), min=1e-5))
