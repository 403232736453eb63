"""Write the recipe configs of train/configs/ (run from the repository root: python train/make_recipes.py).

Every recipe is the official DM-Codec config.json (full-size model, its loss weights and optimiser), or a
smaller model derived from it (tiny_cpu, dmcodec_mini and its campaign), plus training options under "extra"
(see docs/training.md); a test checks that the folder holds exactly what this script writes. Teacher *models*
and teacher *layers* are chosen when features are extracted (`dmcodec extract --sm/--lm/--sm-layer/--lm-layer`),
so their ablations share a training recipe and differ in the feature file: see ablate_teachers.sh and
ablate_teacher_layers.sh.
"""

from __future__ import annotations

from pathlib import Path

from dmcodec_cli.config import ConfigFile

HERE = Path(__file__).parent / "configs"
#: the paper's runs: 6 x 3 s crops, validation and checkpoints every 1000 steps
PAPER = {"valid_every": 1000, "save_every": 1000, "valid_items": 64, "num_workers": 4}


def recipe(folder: Path, name: str, config: ConfigFile, **extra) -> None:
    (folder / f"{name}.json").write_text(config.replace(extra={**PAPER, **extra} if config.codec.n_filters == 64
                                                      else extra).to_json())


def main(folder: Path = HERE) -> None:
    """Write every recipe into ``folder``."""
    folder.mkdir(exist_ok=True)
    official = ConfigFile()
    # the two models of the paper
    recipe(folder, "dmcodec_lm", official, teacher="lm", lm_layers="1")
    recipe(folder, "dmcodec_combined", official, teacher="combined", lm_layers="1", sm_layers="1:8", sm_weight=0.5,
           lm_weight=0.5)
    # the lambda_SM / lambda_LM sweep of the combined model (the paper's best WER: 0.2 / 0.8)
    for sm in (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9):
        recipe(folder, f"sweep_sm{sm:g}_lm{1 - sm:g}", official, teacher="combined", lm_layers="1", sm_layers="1:8",
               sm_weight=sm, lm_weight=round(1 - sm, 2))
    # which quantizer carries the LM knowledge: the first, the eighth, or the sum of all eight
    for name, layers in (("rvq1", "1"), ("rvq8", "8"), ("rvq1-8", "1:8")):
        recipe(folder, f"ablate_lm_{name}", official, teacher="lm", lm_layers=layers)
        recipe(folder, f"ablate_sm_{name}", official, teacher="sm", sm_layers=layers)
    # the same recipe for every teacher pair and teacher layer (the feature file differs)
    recipe(folder, "ablate_teachers", official, teacher="combined", lm_layers="1", sm_layers="1:8", sm_weight=0.5,
           lm_weight=0.5)
    # a model that trains on a CPU: 0.97 M-parameter codec, 1 s crops, small discriminators,
    # projection to the 768-d features of the real teachers (HuBERT / BERT base)
    tiny = official.replace(n_filters=8, dimension=64, semantic_dimension=768, lstm_layers=1, codebook_size=256,
                            batch_size=8, segment_size=16000, log_steps=10, save_model_steps=250,
                            learning_rate=5e-4, num_warmup_steps=100)
    # the GAN terms start after 500 steps (0.5 s per step before, 3.3 s after, 1 thread): ~1 hour of CPU in all
    recipe(folder, "tiny_cpu", tiny, teacher="combined", lm_layers="1", sm_layers="1:8", decay_every=500,
           max_steps=1500, adversarial_start=500, valid_every=250, valid_items=16, num_workers=2, grad_clip=10.0,
           discriminator={"width": 0.0625, "stft_filters": 8})
    mini_recipes(folder, official)


def mini_recipes(folder: Path, official: ConfigFile) -> None:
    """The bundled dmcodec-mini (train/mini.sh) and its CPU campaign (train/campaign.sh, docs/training.md):
    3.7 M parameters, 1 s crops, no teacher; each campaign recipe is one change to the one it continued."""
    mini = official.replace(n_filters=16, dimension=128, semantic_dimension=384, lstm_layers=1, batch_size=8,
                            segment_size=16000, learning_rate=3e-4, num_warmup_steps=200, save_model_steps=250)
    first = {"teacher": "none", "decay_every": 500, "max_steps": 20000, "adversarial_start": 2500,
             "valid_every": 250, "valid_items": 24, "num_workers": 1, "grad_clip": 10.0,
             "discriminator": {"width": 0.125, "stft_filters": 8}}
    recipe(folder, "dmcodec_mini", mini, **first)
    # reconstruction only, checkpoints and validation on all 37 validation segments every 500 steps
    campaign = mini.replace(save_model_steps=500)
    recon = {**first, "decay_every": 2000, "max_steps": 200000, "adversarial_start": 10**9, "valid_every": 500,
             "valid_items": 37, "ema_decay": 0.999}
    recipe(folder, "mini_campaign_recon", campaign, **recon)
    anneal = campaign.replace(learning_rate=1e-4)
    recipe(folder, "mini_campaign_anneal", anneal, **recon)
    recon100 = anneal.replace(recon_loss_lambda=100)
    recipe(folder, "mini_campaign_recon100", recon100, **recon)
    # trials from the recipe they were compared with
    gan = {**recon, "adversarial_start": 0}
    no_average = {k: v for k, v in gan.items() if k != "ema_decay"}  # it was tried before the average
    recipe(folder, "mini_campaign_gan_stft", campaign,
           **{**no_average, "discriminator": {"periods": [], "scales": 0, "stft_filters": 8}})
    mpd = {**gan, "discriminator": {"periods": [2, 3, 5, 7, 11], "scales": 0, "stft_filters": 8, "width": 0.125}}
    recipe(folder, "mini_campaign_gan_mpd", recon100, **mpd)
    period = {**gan, "discriminator": {"periods": [2, 3, 5, 7, 11], "scales": 0, "stft_n_ffts": [], "width": 0.125}}
    recipe(folder, "mini_campaign_gan_period", recon100, **period)
    # its discriminators stayed at D = 0.5 on real and fake alike for 2,500 steps at 1e-4
    recipe(folder, "mini_campaign_gan_period_dlr", recon100, **period, discriminator_lr=2e-3)
    recipe(folder, "mini_campaign_gan_mpd_dlr", recon100, **mpd, discriminator_lr=2e-3)
    recipe(folder, "mini_campaign_stft", recon100, **recon, stft_loss_weight=15)
    recipe(folder, "mini_campaign_augment", recon100, **recon, augment_speed=0.1, augment_gain_db=6.0)
    decay = {**recon, "lr_decay": 0.05, "decay_every": 3000}
    recipe(folder, "mini_campaign_decay", recon100, **decay)
    # the same decay per example seen, at twice the batch
    recipe(folder, "mini_campaign_decay_b16", recon100.replace(batch_size=16), **{**decay, "decay_every": 1500})


if __name__ == "__main__":
    main()
