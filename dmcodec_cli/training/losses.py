"""Generator and discriminator losses: reconstruction, multi-scale log-mel, multi-resolution log-STFT, GAN terms
and distillation."""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DISTILL_TYPES, TrainingKeys
from ..mel import LogMel, magnitude


def tensor_sum(values: Iterable[Tensor]) -> Tensor:
    """``sum(values)`` (the same additions in the same order) for one or more tensors; ValueError for none."""
    total = sum(values)
    if not isinstance(total, Tensor):
        raise ValueError("no loss terms to add")
    return total


def _check_features(feature: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Both [B, T, D] with equal B and D; truncated to the shorter T."""
    if feature.dim() != 3 or target.dim() != 3:
        raise ValueError(f"distillation needs features [B, T, D]; got student {list(feature.shape)} and "
                         f"teacher {list(target.shape)} (a [B, 1, T, D] teacher would broadcast silently)")
    if feature.shape[0] != target.shape[0] or feature.shape[2] != target.shape[2]:
        raise ValueError(f"student features {list(feature.shape)} and teacher features {list(target.shape)} "
                         "differ in batch size or feature dimension")
    frames = min(feature.shape[1], target.shape[1])
    return feature[:, :frames], target[:, :frames].to(feature.dtype)


def d_axis_loss(feature: Tensor, target: Tensor) -> Tensor:
    """The paper's loss: -log sigmoid(cosine over time), per batch item and feature dimension, averaged.

    feature, target [B, T, D] (T truncated to the shorter) -> [].
    """
    feature, target = _check_features(feature, target)
    return -F.logsigmoid(F.cosine_similarity(feature, target, dim=1, eps=1e-8)).mean()


def t_axis_loss(feature: Tensor, target: Tensor, lambda_sim: float = 1.0) -> Tensor:
    """L1 plus ``lambda_sim`` x -log sigmoid(cosine over features), per frame. [B, T, D] x 2 -> []."""
    feature, target = _check_features(feature, target)
    similarity = -F.logsigmoid(F.cosine_similarity(feature, target, dim=-1, eps=1e-8)).mean()
    return F.l1_loss(feature, target) + lambda_sim * similarity


def distill_loss(kind: str, feature: Tensor, target: Tensor, lambda_sim: float = 1.0) -> Tensor:
    if kind == "d_axis":
        return d_axis_loss(feature, target)
    if kind == "t_axis":
        return t_axis_loss(feature, target, lambda_sim)
    raise ValueError(f"unknown distillation loss {kind!r}; use one of {', '.join(DISTILL_TYPES)}")


class MultiScaleMelLoss(nn.Module):
    """Weighted L1 between log-mels at n_fft, n_fft/2, ... (hop and window scaled the same way), one scale per
    weight of ``mel_loss_lambdas``; the STFT of the first scale and the mel band are the training keys'.

    Returns the weighted sum and the per-scale values (for logging).
    """

    def __init__(self, sample_rate: int, keys: TrainingKeys):
        super().__init__()
        self.weights = tuple(float(w) for w in keys.mel_loss_lambdas)
        fmax = keys.fmax_for_loss or sample_rate / 2
        with warnings.catch_warnings():  # 80 mels over the 65 bins of n_fft 128 leave empty filters, as in the paper
            warnings.filterwarnings("ignore", message="At least one mel filter")
            self.mels = nn.ModuleList(
                LogMel(sample_rate, keys.mel_n_fft // 2**i, keys.mel_hop_length // 2**i,
                       keys.mel_win_length // 2**i, keys.num_mels, keys.fmin, fmax)
                for i in range(len(self.weights)))

    def forward(self, real: Tensor, fake: Tensor) -> tuple[Tensor, list[Tensor]]:
        """real, fake [B, 1, L] -> (weighted sum [], per-scale L1 list)."""
        values = []
        for mel in self.mels:
            a, b = mel(real), mel(fake)
            frames = min(a.shape[-1], b.shape[-1])
            values.append(F.l1_loss(b[..., :frames], a[..., :frames]))
        return tensor_sum(w * v for w, v in zip(self.weights, values, strict=True)), values


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of the L1 between log-magnitude spectra on a linear frequency axis (Hann window
    n_fft, hop n_fft / 4): 80 mel bands are wider than the harmonic spacing above ~1 kHz, so the mel loss
    does not see whether harmonics there are resolved; a 2048-point STFT (7.8 Hz bins at 16 kHz) does."""

    def __init__(self, n_ffts: Sequence[int]):
        super().__init__()
        self.n_ffts = tuple(int(n) for n in n_ffts)
        for n in self.n_ffts:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(self, real: Tensor, fake: Tensor) -> Tensor:
        """real, fake [B, 1, L] -> []."""
        real, fake = real.flatten(0, -2).float(), fake.flatten(0, -2).float()
        return tensor_sum(F.l1_loss(self._log_magnitude(fake, n), self._log_magnitude(real, n))
                          for n in self.n_ffts) / len(self.n_ffts)

    def _log_magnitude(self, audio: Tensor, n_fft: int) -> Tensor:
        """[B, L] -> [B, n_fft / 2 + 1, frames]: log(max(|STFT|, 1e-5))."""
        spec = torch.stft(audio, n_fft, n_fft // 4, n_fft, getattr(self, f"window_{n_fft}"), center=True,
                          pad_mode="reflect", return_complex=True)
        return torch.log(torch.clamp(magnitude(spec), min=1e-5))


def feature_matching_loss(real_maps: Sequence[Sequence[Tensor]], fake_maps: Sequence[Sequence[Tensor]]) -> Tensor:
    """2 x sum over discriminators and layers of mean |real - fake| (real maps are targets, detached)."""
    return 2 * tensor_sum(torch.mean(torch.abs(real.detach() - fake))
                          for real_layers, fake_layers in zip(real_maps, fake_maps, strict=True)
                          for real, fake in zip(real_layers, fake_layers, strict=True))


def generator_adversarial_loss(fake_scores: Sequence[Tensor]) -> Tensor:
    """Least squares: sum over discriminators of mean (1 - D(fake))^2."""
    return tensor_sum(torch.mean((1 - score) ** 2) for score in fake_scores)


def discriminator_loss(real_scores: Sequence[Tensor], fake_scores: Sequence[Tensor]) -> Tensor:
    """Least squares: sum over discriminators of mean (1 - D(real))^2 + mean D(fake)^2."""
    return tensor_sum(torch.mean((1 - real) ** 2) + torch.mean(fake ** 2)
                      for real, fake in zip(real_scores, fake_scores, strict=True))
