"""A freshly built codec must pass the signal through: otherwise k-means starts on a constant latent."""

from __future__ import annotations

import torch

from conftest import SPEECH
from dmcodec_cli import CodecConfig, DMCodec
from dmcodec_cli.audio import load_audio


def test_a_fresh_encoder_latent_varies_in_time_on_speech():
    torch.manual_seed(0)
    model = DMCodec(CodecConfig(n_filters=16, dimension=128, semantic_dimension=64, lstm_layers=1, codebook_size=64))
    speech = torch.from_numpy(load_audio(SPEECH / "vctk_p225_003.wav", 16000).samples[:32000]).view(1, 1, -1)
    with torch.no_grad():
        latent = model.encoder(speech)
        quiet = model.encoder(torch.zeros_like(speech))
    temporal_std = latent.std(dim=-1).mean().item()
    assert temporal_std > 0.01  # nn.Conv1d's default initialisation gives ~0.002 here
    assert (latent - quiet).abs().mean() > 0.01  # and the latent depends on the input
