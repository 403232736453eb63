"""The DM-Codec model: SEANet encoder, residual VQ, SEANet decoder and the distillation projection."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import CodecConfig, ConfigFile, TrainingKeys
from .modules import SEANetDecoder, SEANetEncoder, WeightNormConv
from .quantizer import ResidualVectorQuantizer


def _full_precision(tensor: Tensor) -> torch.autocast:
    """Nearest-code search and EMA updates run in float32 even under bf16 / fp16 autocast: reduced
    precision would flip near-tie codes and corrupt the codebook statistics."""
    return torch.autocast(tensor.device.type, enabled=False)


def fingerprint(state_dict: Mapping[str, Tensor]) -> str:
    """sha256 over every tensor's name, shape and float32 bytes, in name order: equal for equal weights
    whatever the file form (.pt, .safetensors, release directory, fp16 storage once loaded)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class CodecOutput:
    """Result of ``DMCodec.forward`` on a waveform [B, 1, L] with T = ceil(L / hop) frames."""

    audio: Tensor  #: [B, 1, T * hop] reconstruction (not trimmed back to L)
    codes: Tensor  #: [n_q, B, T] int64
    commit_loss: Tensor  #: [] mean commitment loss (0 in eval mode)
    feature: Tensor  #: [B, T, semantic_dimension] distillation feature of the chosen layers
    layer_outputs: list[Tensor]  #: n_q x [B, dimension, T] each quantizer layer's own vector


class DMCodec(nn.Module):
    """Waveforms at ``config.sample_rate`` <-> codes [n_q, B, frames] at ``config.frame_rate``.

    Parameter and buffer names are those of the official checkpoints (``encoder.*``, ``transform.*``,
    ``quantizer.*``, ``decoder.*``). This is the one builder of the modules from a config.
    ``training_keys`` (default: the official ones) are not read by the model; they are checked with
    ``config`` and written back beside its weights (``config_file``).
    """

    def __init__(self, config: CodecConfig, training_keys: TrainingKeys | None = None):
        super().__init__()
        self.config_file = ConfigFile(config, training_keys or TrainingKeys())
        self._loaded_fingerprint: str | None = None
        c = config
        self.encoder = SEANetEncoder(c.n_filters, c.dimension, c.strides, c.lstm_layers, c.bidirectional,
                                     c.residual_kernel_size, c.dilation_base, c.n_residual_layers)
        # the official model has a projection only when the two sizes differ
        self.transform = (nn.Linear(c.dimension, c.semantic_dimension)
                          if c.dimension != c.semantic_dimension else nn.Identity())
        self.quantizer = ResidualVectorQuantizer(c.dimension, c.n_q, c.codebook_size)
        self.decoder = SEANetDecoder(c.n_filters, c.dimension, c.strides, c.lstm_layers,
                                     c.residual_kernel_size, c.dilation_base, c.n_residual_layers)

    @property
    def config(self) -> CodecConfig:
        """The architecture."""
        return self.config_file.codec

    def load_weights(self, state: Mapping[str, Tensor]) -> "DMCodec":
        """Load ``state`` (strict: ``load_state_dict``); ``fingerprint`` is from then on that of these weights."""
        self.load_state_dict(state)
        self._loaded_fingerprint = fingerprint(state)
        return self

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights last given to ``load_weights``, which code files and stores name the model by
        (training or folding the weight norm afterwards does not change it). A model never loaded is named by
        its current weights, computed at each call."""
        return self._loaded_fingerprint or fingerprint(self.state_dict())

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def n_q(self) -> int:
        return self.config.n_q

    def encode(self, audio: Tensor, n_q: int | None = None, st: int = 0) -> Tensor:
        """audio [B, 1, L] -> codes [n_q - st, B, ceil(L / hop)] int64 (``n_q`` is an end index)."""
        latent = self.encoder(audio)
        with _full_precision(latent):
            return self.quantizer.encode(latent.float(), n_q, st)

    def decode(self, codes: Tensor, st: int = 0) -> Tensor:
        """codes [K, B, T] (row i from codebook st + i) -> audio [B, 1, T * hop]."""
        return self.decoder(self.quantizer.decode(codes, st))

    def forward(self, audio: Tensor, n_q: int | None = None, distill_layers: Sequence[int] = (0,)) -> CodecOutput:
        """Encode, quantize (updating codebooks in training) and decode audio [B, 1, L].

        The distillation feature is ``transform`` of the **sum** of the listed layers' own vectors
        (0-based). With the default ``(0,)`` this equals the original's feature; the original used only
        the lowest listed layer, whatever the list.
        """
        n_q = self.n_q if n_q is None else n_q
        if not distill_layers or max(distill_layers) >= n_q or min(distill_layers) < 0:
            raise ValueError(f"distill_layers must be a non-empty list of layers below n_q={n_q}")
        latent = self.encoder(audio)
        with _full_precision(latent):
            out = self.quantizer(latent.float(), n_q)
        feature = self.distill_feature(out.layer_outputs, distill_layers)
        return CodecOutput(self.decoder(out.quantized), out.codes, out.commit_loss, feature, out.layer_outputs)

    def distill_feature(self, layer_outputs: Sequence[Tensor], layers: Sequence[int]) -> Tensor:
        """``transform`` of the sum of the listed layers' own vectors: n_q x [B, dimension, T] -> [B, T,
        semantic_dimension] (each layer counted once, summed in layer order)."""
        selected = torch.stack([layer_outputs[i] for i in sorted(set(layers))]).sum(0)
        return self.transform(selected.transpose(1, 2))

    def fold_weight_norm(self) -> "DMCodec":
        """Fold weight norm into plain weights for inference (the model can no longer be trained)."""
        for module in self.modules():
            if isinstance(module, WeightNormConv) and not module.folded:
                module.fold()
        return self

    @property
    def folded(self) -> bool:
        return any(isinstance(m, WeightNormConv) and m.folded for m in self.modules())
