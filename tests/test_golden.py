"""The model reproduces the original DM-Codec code: codes exactly, floats within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import REFERENCE, golden
from dmcodec_cli.checkpoint import load_checkpoint
from dmcodec_cli.engine.encoder import BatchEncoder
from dmcodec_cli.engine.time_major import TimeMajorEncoder

INPUTS = ["a", "b", "c", "len1", "len320", "len321", "len700"]
TOL = dict(atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module", params=["dmcodec_small.pt", "dmcodec_small.safetensors"])
def model(request):
    return load_checkpoint(REFERENCE / request.param).eval()


@pytest.fixture(scope="module")
def folded(model):
    return load_checkpoint(REFERENCE / "dmcodec_small.pt").eval().fold_weight_norm()


@pytest.mark.parametrize("tag", INPUTS)
@torch.inference_mode()
def test_encoder_codes_and_decode(model, tag):
    x = golden(f"x_{tag}")
    torch.testing.assert_close(model.encoder(x), golden(f"enc_{tag}"), **TOL)
    codes = model.encode(x)
    assert torch.equal(codes, golden(f"codes8_{tag}"))
    torch.testing.assert_close(model.decode(codes), golden(f"dec8_{tag}"), **TOL)


@torch.inference_mode()
def test_the_engines_time_major_arithmetic_gives_the_reference_codes_and_latents(model):
    """The corpus engine (and single-file ``encode``) computes the encoder as time-major matrix products,
    one LSTM batch for all inputs: same codes, latents within the golden tolerance."""
    rows = [(tag, b) for tag in INPUTS for b in range(golden(f"x_{tag}").shape[0])]
    signals = [golden(f"x_{tag}")[b, 0] for tag, b in rows]
    for (tag, b), got in zip(rows, BatchEncoder(model).encode(signals)):
        assert torch.equal(got, golden(f"codes8_{tag}")[:, b]), (tag, b)
    for (tag, b), latent in zip(rows, TimeMajorEncoder(model.encoder).latents(signals)):
        torch.testing.assert_close(latent.t(), golden(f"enc_{tag}")[b], **TOL)


@pytest.mark.parametrize("tag", INPUTS)
@torch.inference_mode()
def test_lengths_follow_the_frame_rule(model, tag):
    x = golden(f"x_{tag}")
    frames = -(-x.shape[-1] // 320)
    codes = model.encode(x)
    assert codes.shape[-1] == frames == model.config.num_frames(x.shape[-1])
    assert model.decode(codes).shape[-1] == 320 * frames


@pytest.mark.parametrize("tag", ["a", "b", "c"])
@torch.inference_mode()
def test_two_codebooks_quantized_sum_forward_and_feature(model, tag):
    x = golden(f"x_{tag}")
    codes2 = model.encode(x, n_q=2)
    assert torch.equal(codes2, golden(f"codes2_{tag}"))
    torch.testing.assert_close(model.decode(codes2), golden(f"dec2_{tag}"), **TOL)
    torch.testing.assert_close(model.quantizer.decode(golden(f"codes8_{tag}")), golden(f"qsum8_{tag}"), **TOL)
    out = model(x)
    assert torch.equal(out.codes, golden(f"codes8_{tag}"))
    torch.testing.assert_close(out.audio, golden(f"fwd_out_{tag}"), **TOL)
    torch.testing.assert_close(out.feature, golden(f"feat_l0_{tag}"), **TOL)
    assert out.commit_loss.item() == 0.0


@torch.inference_mode()
def test_feature_of_another_layer_and_per_layer_outputs(model):
    x = golden("x_a")
    torch.testing.assert_close(model(x, distill_layers=(3,)).feature, golden("feat_l3_a"), **TOL)
    torch.testing.assert_close(torch.stack(model(x).layer_outputs), golden("fwdfeat_a"), **TOL)


@torch.inference_mode()
def test_start_layer_quirk(model):
    """``n_q`` is an end index and the residual is not advanced past skipped layers (as in the original)."""
    x = golden("x_a")
    codes = model.encode(x, n_q=5, st=2)
    assert torch.equal(codes, golden("codes_st2_nq5_a"))
    torch.testing.assert_close(model.decode(codes, st=2), golden("dec_st2_a"), **TOL)


@torch.inference_mode()
def test_every_stage_of_encoder_and_decoder(model):
    stages = [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15]
    h = golden("x_s")
    for i, layer in enumerate(model.encoder.model):
        h = layer(h)
        if i in stages:
            torch.testing.assert_close(h, golden(f"enc_stage{i:02d}_s"), **TOL, msg=f"encoder stage {i}")
    assert torch.equal(model.encode(golden("x_s")), golden("codes8_s"))
    h = model.quantizer.decode(golden("codes8_s"))
    for i, layer in enumerate(model.decoder.model):
        h = layer(h)
        if i in stages:
            torch.testing.assert_close(h, golden(f"dec_stage{i:02d}_s"), **TOL, msg=f"decoder stage {i}")


def test_effective_weight_norm_weights(model):
    """w = v * g / ||v|| per slice of dim 0: output channels for a conv, input channels for a transposed conv."""
    conv = model.encoder.model[0].conv.conv
    convtr = model.decoder.model[12].convtr.convtr
    torch.testing.assert_close(conv.weight.detach(), golden("effw_encoder_model_0_conv_conv"), **TOL)
    torch.testing.assert_close(convtr.weight.detach(), golden("effw_decoder_model_12_convtr_convtr"), **TOL)
    assert convtr.weight_g.shape == (16, 1, 1) and convtr.bias.shape == (8,)


@pytest.mark.parametrize("tag", ["a", "c", "len1", "len321"])
@torch.inference_mode()
def test_folded_weights_give_the_same_results(folded, tag):
    x = golden(f"x_{tag}")
    assert torch.equal(folded.encode(x), golden(f"codes8_{tag}"))
    torch.testing.assert_close(folded.decode(golden(f"codes8_{tag}")), golden(f"dec8_{tag}"), **TOL)


def test_train_mode_commitment_loss_uses_the_codebook_before_its_update():
    model = load_checkpoint(REFERENCE / "dmcodec_small.pt").train()
    before = model.quantizer.vq.layers[0]._codebook.embed.clone()
    with torch.no_grad():
        out = model(golden("x_a"))
    assert out.commit_loss.shape == ()
    assert out.commit_loss.item() == pytest.approx(0.6522970199584961, abs=1e-5)
    assert not torch.equal(before, model.quantizer.vq.layers[0]._codebook.embed), "EMA step did not run"


def test_invalid_layer_choices_are_refused(model):
    x = golden("x_len320")
    with pytest.raises(ValueError):
        model(x, n_q=2, distill_layers=(2,))
    with pytest.raises(ValueError):
        model(x, distill_layers=())
    with pytest.raises(ValueError):
        model.encode(x, n_q=9)


def test_golden_files_are_intact():
    import hashlib
    import json

    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    for entry in manifest["files"]:
        data = (REFERENCE / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
    assert np.load(REFERENCE / "golden" / "x_a.npy").shape == (2, 1, 24000)
