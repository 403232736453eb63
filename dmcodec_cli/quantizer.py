"""Residual vector quantizer with EMA codebooks (EnCodec / DM-Codec layout and semantics).

State-dict layout: ``vq.layers.<k>._codebook.{inited, cluster_size, embed, embed_avg}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def nearest_code(x: Tensor, embed: Tensor) -> Tensor:
    """Index of the nearest codebook row for each row of x. x [N, D], embed [K, D] -> [N] int64.

    The score is -(|x|^2 - 2 x.e + |e|^2) computed in exactly this order, as in the original, so that
    near-ties resolve the same way; the first index wins a tie.
    """
    embed_t = embed.t()
    # -(|x|^2 - 2 x.e + |e|^2) in place: (-2 x.e + |x|^2) + |e|^2 rounds exactly as the original's
    # (|x|^2 - 2 x.e) + |e|^2 (negation is exact), and its first minimum is the original's first maximum
    distance = (torch.mm(x, embed_t).mul_(-2)
                .add_(x.pow(2).sum(1, keepdim=True)).add_(embed_t.pow(2).sum(0, keepdim=True)))
    return distance.argmin(dim=-1)


def sample_vectors(samples: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """``num`` rows of samples [N, D]: without replacement if N >= num, else with it."""
    n = samples.shape[0]
    if n >= num:
        index = torch.randperm(n, device=samples.device, generator=generator)[:num]
    else:
        index = torch.randint(0, n, (num,), device=samples.device, generator=generator)
    return samples[index]


def kmeans(samples: Tensor, num_clusters: int, num_iters: int) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on samples [N, D] -> (means [K, D], counts of the last assignment [K])."""
    means = sample_vectors(samples, num_clusters)
    counts = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        buckets = nearest_code(samples, means)
        counts = torch.bincount(buckets, minlength=num_clusters)
        sums = torch.zeros_like(means).index_add_(0, buckets, samples)
        empty = counts == 0
        new_means = sums / counts.clamp(min=1)[:, None]
        means = torch.where(empty[:, None], means, new_means)
    return means, counts


class EuclideanCodebook(nn.Module):
    """One codebook. ``embed`` [K, D] is all inference needs; the other buffers drive EMA training."""

    inited: Tensor  #: [1] 1.0 once k-means has initialised the codebook
    cluster_size: Tensor  #: [K] EMA usage count of each code
    embed: Tensor  #: [K, D] the code vectors
    embed_avg: Tensor  #: [K, D] EMA sum of the rows assigned to each code

    def __init__(self, dim: int, codebook_size: int, kmeans_iters: int = 50, decay: float = 0.99,
                 epsilon: float = 1e-5, dead_code_fraction: float = 0.01):
        super().__init__()
        self.codebook_size, self.kmeans_iters = codebook_size, kmeans_iters
        self.decay, self.epsilon, self.dead_code_fraction = decay, epsilon, dead_code_fraction
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", torch.zeros(codebook_size, dim))
        self.register_buffer("embed_avg", torch.zeros(codebook_size, dim))

    def encode(self, x: Tensor) -> Tensor:
        """x [..., D] -> codes [...]"""
        return nearest_code(x.reshape(-1, x.shape[-1]), self.embed).view(x.shape[:-1])

    def decode(self, codes: Tensor) -> Tensor:
        """codes [...] -> vectors [..., D]"""
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def init_from_(self, x: Tensor) -> None:
        """k-means initialisation on the first training batch, rows x [N, D]."""
        embed, counts = kmeans(x, self.codebook_size, self.kmeans_iters)
        self.embed.copy_(embed)
        self.embed_avg.copy_(embed)
        self.cluster_size.copy_(counts)
        self.inited.fill_(1.0)

    @torch.no_grad()
    def expire_codes_(self, x: Tensor) -> None:
        """Re-seed codes whose EMA usage fell under ``dead_code_fraction`` of the mean with random batch rows.

        The original used an absolute threshold (2 uses), under which every code lies when a batch has fewer
        than two rows per code (the official batch of 900 frames for 1024 codes included), and its next EMA
        step overwrote the replacement, so expiry did nothing. Here the bar is relative to the mean usage
        (1 %: a code unused for ~460 steps at decay 0.99), and a re-seeded code gets the mean usage in its
        EMA statistics so that the replacement lasts.
        """
        mean_usage = self.cluster_size.mean()
        dead = self.cluster_size < self.dead_code_fraction * mean_usage
        if self.dead_code_fraction == 0 or not dead.any():
            return
        fresh = sample_vectors(x, self.codebook_size)
        self.embed.copy_(torch.where(dead[:, None], fresh, self.embed))
        self.embed_avg.copy_(torch.where(dead[:, None], fresh * mean_usage, self.embed_avg))
        self.cluster_size.masked_fill_(dead, mean_usage.item())

    @torch.no_grad()
    def ema_update_(self, x: Tensor, codes: Tensor) -> None:
        """One EMA step of usage counts and code sums from rows x [N, D] assigned to codes [N]."""
        onehot = F.one_hot(codes, self.codebook_size).type(x.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, T, D] -> (quantized [B, T, D], codes [B, T]); in training, updates the codebook."""
        rows = x.reshape(-1, x.shape[-1]).detach()
        if self.training and not self.inited.item():
            self.init_from_(rows)
        codes = self.encode(x)
        quantized = self.decode(codes)  # the codebook before this step's update
        if self.training:
            self.expire_codes_(rows)
            self.ema_update_(rows, codes.reshape(-1))
        return quantized, codes


class VectorQuantization(nn.Module):
    """A codebook over [B, D, T] latents, with straight-through gradients and commitment loss in training."""

    def __init__(self, dim: int, codebook_size: int, **codebook_kwargs):
        super().__init__()
        self._codebook = EuclideanCodebook(dim, codebook_size, **codebook_kwargs)

    def encode(self, x: Tensor) -> Tensor:
        """x [B, D, T] -> codes [B, T]"""
        return self._codebook.encode(x.transpose(1, 2))

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, T] -> quantized [B, D, T]"""
        return self._codebook.decode(codes).transpose(1, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, D, T] -> (quantized [B, D, T], codes [B, T], commitment loss [])"""
        x = x.transpose(1, 2)
        quantized, codes = self._codebook(x)
        if not self.training:
            return quantized.transpose(1, 2), codes, x.new_zeros(())
        quantized = x + (quantized - x).detach()  # straight-through
        loss = F.mse_loss(quantized.detach(), x)
        return quantized.transpose(1, 2), codes, loss


class ResidualVectorQuantization(nn.Module):
    def __init__(self, num_quantizers: int, dim: int, codebook_size: int, **codebook_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(VectorQuantization(dim, codebook_size, **codebook_kwargs)
                                    for _ in range(num_quantizers))


@dataclass
class QuantizerOutput:
    """Result of a quantizer pass over a latent [B, D, T]."""

    quantized: Tensor  #: [B, D, T] sum of the per-layer vectors
    codes: Tensor  #: [n_q, B, T] int64
    commit_loss: Tensor  #: [] mean commitment loss over layers (0 in eval mode)
    layer_outputs: list[Tensor]  #: n_q x [B, D, T], each layer's own (not cumulative) vector


class ResidualVectorQuantizer(nn.Module):
    """``n_q`` codebooks of ``codebook_size`` vectors, each quantizing the residual of the previous ones."""

    def __init__(self, dimension: int, n_q: int, codebook_size: int, kmeans_iters: int = 50,
                 decay: float = 0.99, dead_code_fraction: float = 0.01):
        super().__init__()
        self.n_q, self.codebook_size, self.dimension = n_q, codebook_size, dimension
        self.vq = ResidualVectorQuantization(n_q, dimension, codebook_size, kmeans_iters=kmeans_iters,
                                             decay=decay, dead_code_fraction=dead_code_fraction)

    def _layers(self, n_q: int | None, st: int = 0):
        n_q = self.n_q if n_q is None else n_q
        if not 0 <= st < n_q <= self.n_q:
            raise ValueError(f"need 0 <= st < n_q <= {self.n_q}, got st={st}, n_q={n_q}")
        return self.vq.layers[st:n_q]

    def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """Quantize x [B, D, T] with the first ``n_q`` layers (training updates the codebooks)."""
        residual, total = x, torch.zeros_like(x)
        outputs, codes, losses = [], [], []
        for layer in self._layers(n_q):
            quantized, layer_codes, loss = layer(residual)
            residual = residual - quantized
            total = total + quantized
            outputs.append(quantized)
            codes.append(layer_codes)
            losses.append(loss)
        return QuantizerOutput(total, torch.stack(codes), torch.stack(losses).mean(), outputs)

    def encode(self, x: Tensor, n_q: int | None = None, st: int = 0) -> Tensor:
        """x [B, D, T] -> codes [n_q - st, B, T] int64.

        As in the original, ``n_q`` is an end index and layers before ``st`` are skipped without
        advancing the residual: layer ``st`` quantizes the raw latent.
        """
        residual, codes = x, []
        for layer in self._layers(n_q, st):
            layer_codes = layer.encode(residual)
            residual = residual - layer.decode(layer_codes)
            codes.append(layer_codes)
        return torch.stack(codes)

    def decode(self, codes: Tensor, st: int = 0) -> Tensor:
        """codes [K, B, T] (row i is layer st + i) -> quantized sum [B, D, T]"""
        total: Tensor | None = None
        for layer, layer_codes in zip(self._layers(st + codes.shape[0], st), codes, strict=True):
            vectors = layer.decode(layer_codes)
            total = vectors if total is None else total + vectors
        assert total is not None  # _layers refuses an empty range
        return total
