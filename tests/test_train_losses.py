"""Training losses, layer selection, discriminators and data order: fast checks on constructed tensors."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import golden
from dmcodec_cli.config import CodecConfig, ConfigFile, TrainingKeys
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.model import DMCodec
from dmcodec_cli.training.config import build_options, parse_layers
from dmcodec_cli.training.data import BatchOrder, collate
from dmcodec_cli.training.discriminators import DiscriminatorConfig, Discriminators
from dmcodec_cli.training.losses import (
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    d_axis_loss,
    discriminator_loss,
    distill_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    t_axis_loss,
)
from dmcodec_cli.training.trainer import DistillCodec, build_trainer, lr_factor, make_accelerator, total_generator_loss

MIN_LOSS = -math.log(1 / (1 + math.exp(-1)))  # -log sigmoid(1): perfect cosine similarity


def test_distillation_losses_match_the_original_code_on_golden_tensors():
    feature, target = golden("feat_l0_b"), golden("distill_target_b")  # [2, 150, 48] vs [2, 149, 48]
    assert d_axis_loss(feature, target).item() == pytest.approx(0.6907925606, abs=1e-6)
    assert t_axis_loss(feature, target, lambda_sim=1).item() == pytest.approx(1.6669015884, abs=1e-6)
    assert t_axis_loss(feature, target, lambda_sim=3).item() == pytest.approx(3.0505309105, abs=1e-6)


@pytest.mark.parametrize("kind", ["d_axis", "t_axis"])
def test_identical_features_give_the_minimum(kind):
    torch.manual_seed(0)
    target = torch.randn(2, 40, 8)
    best = distill_loss(kind, target.clone(), target).item()
    assert best == pytest.approx(MIN_LOSS, abs=1e-6)  # L1 part is 0 for t_axis
    for noise in (0.1, 1.0):
        assert distill_loss(kind, target + noise * torch.randn_like(target), target).item() > best + 1e-4


def test_a_teacher_batched_as_b_1_t_d_is_rejected():
    feature = torch.randn(2, 40, 8)
    with pytest.raises(ValueError, match=r"\[B, T, D\].*\[2, 1, 40, 8\]"):
        d_axis_loss(feature, feature[:, None])
    with pytest.raises(ValueError, match="feature dimension"):
        t_axis_loss(feature, torch.randn(2, 40, 9))


def test_time_is_truncated_to_the_shorter_and_the_axes_differ():
    torch.manual_seed(1)
    feature, target = torch.randn(2, 30, 8), torch.randn(2, 25, 8)
    assert d_axis_loss(feature, target) == d_axis_loss(feature[:, :25], target)
    # d_axis: cosine over time per dimension, so scaling one dimension of the teacher changes nothing
    scaled = target * torch.linspace(0.5, 3, 8)
    assert d_axis_loss(feature, scaled).item() == pytest.approx(d_axis_loss(feature, target).item(), abs=1e-6)
    # t_axis: cosine over features per frame, so scaling one frame changes nothing in the similarity part
    frame_scaled = target * torch.linspace(0.5, 3, 25)[None, :, None]
    def sim(t):
        return t_axis_loss(feature, t, 1) - torch.nn.functional.l1_loss(feature[:, :25], t)

    assert sim(frame_scaled).item() == pytest.approx(sim(target).item(), abs=1e-6)
    assert d_axis_loss(feature, frame_scaled).item() != pytest.approx(d_axis_loss(feature, target).item(), abs=1e-4)


def test_gradients_pull_the_student_towards_the_teacher():
    torch.manual_seed(2)
    target = torch.randn(1, 50, 4)
    student = torch.randn(1, 50, 4, requires_grad=True)
    optimizer = torch.optim.SGD([student], lr=5.0)
    first = d_axis_loss(student, target).item()
    for _ in range(50):
        optimizer.zero_grad()
        d_axis_loss(student, target).backward()
        optimizer.step()
    assert d_axis_loss(student, target).item() < first - 0.2


def test_least_squares_and_feature_matching_terms():
    ones, zeros = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    assert discriminator_loss(ones, zeros).item() == 0  # a perfect discriminator
    assert discriminator_loss(zeros, ones).item() == 2
    assert generator_adversarial_loss(ones).item() == 0 and generator_adversarial_loss(zeros).item() == 1
    maps = [[torch.full((2, 3), 1.0), torch.full((2, 4), 2.0)]]
    assert feature_matching_loss(maps, maps).item() == 0
    shifted = [[m + 0.5 for m in maps[0]]]
    assert feature_matching_loss(maps, shifted).item() == pytest.approx(2 * (0.5 + 0.5))


def test_multi_scale_mel_loss_uses_the_four_resolutions_and_weights():
    loss = MultiScaleMelLoss(16000, TrainingKeys())
    assert [m.n_fft for m in loss.mels] == [1024, 512, 256, 128]
    assert [m.hop_length for m in loss.mels] == [240, 120, 60, 30]
    assert [m.filters.shape[0] for m in loss.mels] == [80] * 4
    torch.manual_seed(3)
    real = torch.randn(1, 1, 8000) * 0.1
    total, scales = loss(real, real.clone())
    assert total.item() == 0
    total, scales = loss(real, real * 0.5)
    assert total.item() == pytest.approx(float(45 * scales[0] + sum(scales[1:])), rel=1e-5)
    assert float(scales[0]) == pytest.approx(math.log(2), abs=0.05)  # half the amplitude: log-mel shifts by log 2


def _harmonics(f0: float, first: int, last: int, amplitude: float, n: int = 16000) -> np.ndarray:
    t = np.arange(n) / 16000
    return amplitude * sum(np.sin(2 * np.pi * f0 * k * t) for k in range(first, last + 1))


def test_the_log_stft_loss_sees_smeared_harmonics_that_the_mel_loss_hardly_sees():
    rng = np.random.default_rng(0)
    low, high = _harmonics(200, 1, 9, 0.02), _harmonics(200, 10, 39, 0.01)  # below / above 2 kHz
    magnitude = np.abs(np.fft.rfft(high))  # the 2-8 kHz harmonics smeared over 80 Hz, random phase, same power
    smeared = np.fft.irfft(np.convolve(magnitude, np.ones(81) / 81, mode="same")
                           * np.exp(1j * rng.uniform(0, 2 * np.pi, magnitude.shape)), len(high))
    smeared *= np.sqrt((high ** 2).sum() / (smeared ** 2).sum())
    real, fake = (torch.tensor(x, dtype=torch.float32)[None, None] for x in (low + high, low + smeared))
    stft, mel = MultiResolutionSTFTLoss((2048, 1024, 512)), MultiScaleMelLoss(16000, TrainingKeys())
    assert stft(real, real.clone()).item() == 0
    assert stft(real, real * 0.5).item() == pytest.approx(math.log(2), abs=0.01)  # a gain: both see the same
    assert float(mel(real, real * 0.5)[1][0]) == pytest.approx(math.log(2), abs=0.01)
    assert stft(real, fake).item() > 5 * float(mel(real, fake)[1][0])  # measured 1.37 against 0.18


def test_the_log_stft_loss_is_an_option_off_by_default():
    assert build_options(ConfigFile()).stft_loss_weight == 0
    options = build_options(ConfigFile().replace(extra={"stft_loss_weight": 15, "stft_loss_n_ffts": [1024, 256]}))
    assert options.stft_loss_weight == 15 and options.stft_loss_n_ffts == (1024, 256)
    terms = {name: torch.tensor(1.0) for name in ("recon", "mel", "commit", "stft")}
    assert total_generator_loss(options, terms).item() == 500 + 1 + 10 + 15
    for bad in ({"stft_loss_weight": -1}, {"stft_loss_weight": "15"}, {"stft_loss_n_ffts": [1000]},
                {"stft_loss_n_ffts": []}, {"stft_loss_n_ffts": [8]}):
        with pytest.raises(DmcodecError, match="stft_loss"):
            build_options(ConfigFile().replace(extra=bad))


def test_layer_specs_are_one_based_and_sums_cover_the_range():
    assert parse_layers("1", 8) == (0,)
    assert parse_layers("8", 8) == (7,)
    assert parse_layers("1:8", 8) == tuple(range(8))
    assert parse_layers("1,3", 8) == (0, 2)
    for bad in ("0", "9", "a", "3:x"):
        with pytest.raises(DmcodecError, match="quantizer layers"):
            parse_layers(bad, 8)


def test_sm_feature_is_the_projection_of_the_summed_quantizers():
    torch.manual_seed(4)
    codec = DMCodec(CodecConfig(n_filters=4, dimension=32, semantic_dimension=16, codebook_size=16, n_q=4,
                                lstm_layers=1)).eval()
    for layer in codec.quantizer.vq.layers:  # random codebooks instead of k-means
        layer._codebook.embed.normal_()
    model = DistillCodec(codec, {"lm": (0,), "sm": (0, 1, 2, 3)})
    out, features = model(torch.randn(1, 1, 3200))
    summed = sum(out.layer_outputs).transpose(1, 2)
    torch.testing.assert_close(features["sm"], codec.transform(summed))
    torch.testing.assert_close(features["lm"], codec.transform(out.layer_outputs[0].transpose(1, 2)))
    assert not torch.allclose(features["sm"], features["lm"])


def test_options_come_from_the_config_then_extra_then_the_command_line():
    config = ConfigFile().replace(n_q=8, extra={"teacher": "lm", "lm_layers": "8", "warmup_steps": 5})
    options = build_options(config, {"sm_layers": "1:4", "teacher": None})
    assert options.teacher == "lm" and options.lm_layers == (7,) and options.sm_layers == (0, 1, 2, 3)
    assert options.warmup_steps == 5 and options.betas == (0.9, 0.99) and options.learning_rate == 1e-4
    assert options.training_keys == config.training  # the loss weights are read there, under their own names
    assert build_options(config, {"distill_type": "t_axis"}).training_keys.distill_type == "t_axis"
    with pytest.raises(DmcodecError, match="unknown training option.*lm_layer"):
        build_options(ConfigFile().replace(extra={"lm_layer": "1"}))
    with pytest.raises(DmcodecError, match="unknown training option.*recon_loss_lambda: set at the top level"):
        build_options(ConfigFile().replace(extra={"recon_loss_lambda": 1}))
    with pytest.raises(DmcodecError, match="teacher must be"):
        build_options(ConfigFile(), {"teacher": "bert"})
    with pytest.raises(DmcodecError, match="invalid training options: distill_type must be"):
        build_options(ConfigFile(), {"distill_type": "x_axis"})
    with pytest.raises(DmcodecError, match="layers are numbered 1 to 4"):
        build_options(ConfigFile().replace(n_q=4), {"sm_layers": "1:8"})


def test_the_generator_loss_weighs_its_terms_with_the_official_keys():
    keys = TrainingKeys().replace(recon_loss_lambda=2, commitment_loss_lambda=3, distill_loss_lambda=5)
    options = build_options(ConfigFile(training=keys), {"feature_weight": 7, "adversarial_weight": 11})
    terms = {name: torch.tensor(1.0) for name in ("recon", "mel", "commit", "distill", "feature", "adversarial")}
    assert total_generator_loss(options, terms).item() == 2 + 1 + 3 + 5 + 7 + 11


def test_learning_rate_warms_up_then_decays():
    options = build_options(ConfigFile().replace(extra={"warmup_steps": 10, "decay_every": 100}))
    assert lr_factor(options, 0) == pytest.approx(0.1)
    assert lr_factor(options, 9) == pytest.approx(0.98 ** 0.09)
    assert lr_factor(options, 1009) == pytest.approx(0.98 ** 10.09)


def test_the_discriminators_may_learn_at_their_own_rate():
    config = ConfigFile().replace(n_filters=4, dimension=32, semantic_dimension=16, codebook_size=64, n_q=4,
                                  lstm_layers=1)
    tiny = {"teacher": "none", "learning_rate": 1e-4, "warmup_steps": 0,
            "discriminator": {"periods": [2], "scales": 0, "stft_n_ffts": [], "width": 0.0625}}
    for extra, d_lr in (({}, 1e-4), ({"discriminator_lr": 2e-3}, 2e-3)):
        options = build_options(config.replace(extra={**tiny, **extra}))
        trainer = build_trainer(DMCodec(config.codec), options, make_accelerator(options, cpu=True))
        assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(1e-4)
        assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(d_lr)
    with pytest.raises(DmcodecError, match="discriminator_lr"):
        build_options(config.replace(extra={"discriminator_lr": -1}))


def test_discriminators_are_the_paper_set_and_scale_down():
    full = Discriminators()
    assert [d.period for d in full.periods] == [2, 3, 5, 7, 11] and len(full.scales) == 3
    assert [s.n_fft for s in full.stfts] == [1024, 2048, 512] and full.stfts[0].convs[0].out_channels == 32
    small = Discriminators(DiscriminatorConfig(width=0.0625, stft_filters=4))
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(small) < count(full) / 100
    scores, maps = small(torch.randn(2, 1, 8000))
    assert len(scores) == len(maps) == 5 + 3 + 3 and all(s.shape[0] == 2 for s in scores)


def test_data_order_is_a_function_of_the_step_and_ranks_share_it_out():
    one = BatchOrder(10, 2, seed=3)
    assert one.keys(7) == BatchOrder(10, 2, seed=3).keys(7)  # nothing to save for resuming
    epoch0 = [k for step in range(5) for k in one.keys(step)]
    assert sorted(i for i, _ in epoch0) == list(range(10))  # each item once per epoch
    assert [i for i, _ in one.keys(5)] != [i for i, _ in one.keys(0)] or one.keys(5) != one.keys(0)
    ranks = [BatchOrder(10, 2, seed=3, rank=r, world=2) for r in (0, 1)]
    assert ranks[0].batches_per_epoch == 2
    seen = [i for step in range(2) for order in ranks for i, _ in order.keys(step)]
    assert len(seen) == len(set(seen)) == 8
    with pytest.raises(DmcodecError, match="cannot fill one batch"):
        BatchOrder(3, 2, seed=0, world=2)


def test_collate_cuts_to_whole_frames_of_the_shortest_item():
    items = [(np.ones(1000, np.float32), {"sm": np.ones((4, 3))}, "a"),
             (np.ones(700, np.float32), {"sm": np.ones((3, 3))}, "b")]
    batch = collate(items, hop=320)
    assert batch.audio.shape == (2, 1, 640) and batch.features["sm"].shape == (2, 2, 3)


RECIPES = Path(__file__).resolve().parents[1] / "train" / "configs"


def test_every_recipe_loads_with_the_paper_settings():
    recipes = {p.stem: ConfigFile.from_json(p) for p in sorted(RECIPES.glob("*.json"))}
    assert {"dmcodec_lm", "dmcodec_combined", "tiny_cpu", "sweep_sm0.2_lm0.8", "ablate_lm_rvq8"} <= set(recipes)
    options = {name: build_options(config) for name, config in recipes.items()}
    assert options["dmcodec_lm"].teacher == "lm" and options["dmcodec_lm"].lm_layers == (0,)
    combined = options["dmcodec_combined"]
    assert combined.teachers == ("sm", "lm") and combined.sm_layers == tuple(range(8)) and combined.lm_layers == (0,)
    assert (options["sweep_sm0.2_lm0.8"].sm_weight, options["sweep_sm0.2_lm0.8"].lm_weight) == (0.2, 0.8)
    assert options["ablate_lm_rvq8"].lm_layers == (7,) and options["ablate_sm_rvq1-8"].sm_layers == tuple(range(8))
    paper = [n for n in recipes if n.startswith(("dmcodec_lm", "dmcodec_combined", "sweep_", "ablate_"))]
    assert len(paper) == 2 + 7 + 6 + 1
    for name in paper:  # the paper's model and loss weights
        codec, keys = recipes[name].codec, options[name].training_keys
        assert codec.dimension == 1024 and codec.semantic_dimension == 768 and options[name].batch_size == 6
        assert (keys.distill_loss_lambda, keys.recon_loss_lambda, keys.mel_hop_length) == (120, 500, 240)
    tiny = recipes["tiny_cpu"].codec
    assert tiny.semantic_dimension == 768  # the real teachers' feature size
    assert sum(p.numel() for p in DMCodec(tiny).parameters()) < 2_000_000


def test_every_recipe_is_written_by_make_recipes(tmp_path):
    """train/configs/ holds exactly what train/make_recipes.py writes: no recipe edited by hand."""
    spec = importlib.util.spec_from_file_location("make_recipes", RECIPES.parent / "make_recipes.py")
    make_recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_recipes)
    make_recipes.main(tmp_path)
    written = {p.name: p.read_text() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text() for p in RECIPES.glob("*.json")}
    assert sorted(written) == sorted(committed)
    assert [name for name in written if written[name] != committed[name]] == []
