"""`dmcodec train` from the command line: prep -> extract (tiny local teachers) -> train -> encode / decode,
fine-tuning an official checkpoint, one-line errors, and a 2-process CPU run (torchrun, gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from cli import REPO, run_cli
from dmcodec_cli.checkpoint import load_checkpoint, load_release
from dmcodec_cli.training.monitor import read_metrics
from test_train_support import CLIPS, SPEECH, make_corpus, tiny_config, write_config, write_features
from tiny_teachers import make_tiny_bert, make_tiny_hubert, make_tiny_wav2vec2_ctc

REFERENCE = REPO / "tests" / "fixtures" / "reference"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    manifest = make_corpus(root, seconds=1.0)
    return root, manifest, write_features(root / "features.h5", manifest)


def test_prep_extract_train_roundtrip_with_tiny_teachers(tmp_path, capsys):
    """The README's command sequence, with teachers built locally (hidden size 32 = semantic_dimension)."""
    source = tmp_path / "speech"
    source.mkdir()
    for name in CLIPS[:3]:
        shutil.copy(SPEECH / name, source / name)
    hubert, bert = make_tiny_hubert(tmp_path / "hubert"), make_tiny_bert(tmp_path / "bert")
    stt = make_tiny_wav2vec2_ctc(tmp_path / "ctc")  # transcribes the 1 s cuts for the LM
    prep = run_cli(capsys, "prep", source, "-o", tmp_path / "prep", "--segment-seconds", "1.0")
    assert prep.code == 0, prep.stderr
    manifest = tmp_path / "prep" / "manifest.jsonl"
    extract = run_cli(capsys, "extract", manifest, "-o", tmp_path / "features.h5", "--sm", hubert, "--lm", bert,
                      "--stt", stt, "--device", "cpu")
    assert extract.code == 0, extract.stderr
    config = write_config(tmp_path / "tiny.json", tiny_config(semantic_dimension=32))
    result = run_cli(capsys, "train", "--config", config, "--data", manifest, "--features", tmp_path / "features.h5",
                     "-o", tmp_path / "exp", "--teacher", "combined", "--weights", "0.2,0.8", "--lm-layers", "1",
                     "--sm-layers", "1:4", "--max-steps", "2", "--quiet", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2 and summary["last"] == str(tmp_path / "exp" / "last")
    record = read_metrics(tmp_path / "exp" / "metrics.jsonl")[-1]
    assert record["distill"] == pytest.approx(0.2 * record["distill_sm"] + 0.8 * record["distill_lm"], rel=1e-5)
    run = json.loads((tmp_path / "exp" / "run.json").read_text())
    assert run["options"]["sm_layers"] == [0, 1, 2, 3] and run["options"]["lm_layers"] == [0]

    clip = SPEECH / CLIPS[0]
    codes, audio = tmp_path / "codes.npy", tmp_path / "back.wav"
    encoded = run_cli(capsys, "encode", clip, "-o", codes, "--model", summary["last"], "--json", "--device", "cpu")
    assert encoded.code == 0, encoded.stderr
    array = np.load(codes)
    info = json.loads(encoded.stdout)
    assert array.shape == (4, info["frames"]) and info["frames"] == -(-info["num_samples"] // 320)
    assert 0 <= array.min() and array.max() < 64
    decoded = run_cli(capsys, "decode", codes, "-o", audio, "--model", summary["last"], "--json", "--device", "cpu")
    assert decoded.code == 0, decoded.stderr
    assert json.loads(decoded.stdout)["num_samples"] == info["frames"] * 320


def test_init_fine_tunes_an_official_checkpoint(corpus, tmp_path, capsys):
    """With learning rate 0 the exported weights are the official ones: --init really loaded them."""
    root, manifest, _ = corpus
    reference = load_checkpoint(REFERENCE / "dmcodec_small.pt")
    recipe = write_config(tmp_path / "ft.json", tiny_config(extra={"learning_rate": 0.0}))
    result = run_cli(capsys, "train", "--config", recipe, "--data", manifest, "-o", tmp_path / "ft",
                     "--init", REFERENCE / "dmcodec_small.pt", "--teacher", "none", "--max-steps", "1", "--quiet")
    assert result.code == 0, result.stderr
    tuned = load_release(tmp_path / "ft" / "last")
    assert tuned.config.dimension == reference.config.dimension == 64 and tuned.config.n_q == 8
    expected = reference.state_dict()
    for name, value in tuned.state_dict().items():
        if "_codebook" not in name:  # EMA codebooks move in training mode even at learning rate 0
            torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("args, message", [
    (["--weights", "0.2"], "--weights '0.2': give two numbers SM,LM"),
    (["--teacher", "lm"], "--teacher lm needs --features"),
    (["--teacher", "bert", "--features", "F"], "teacher must be one of combined, lm, sm, none"),
    (["--lm-layers", "9", "--features", "F"], "layers are numbered 1 to 4"),
    (["--features", "WIDE"], "dimension 8, the model's distillation projection gives 16"),
    (["--features", "F", "--data", "MISSING"], "no such manifest"),
])
def test_bad_input_is_one_line_and_exit_2(corpus, tmp_path, capsys, args, message):
    root, manifest, features = corpus
    wide = root / "wide.h5"
    if not wide.exists():
        write_features(wide, manifest, dim=8)
    replace = {"F": str(features), "WIDE": str(wide), "MISSING": str(tmp_path / "none.jsonl")}
    args = [replace.get(a, a) for a in args]
    config = write_config(tmp_path / "tiny.json", tiny_config())
    base = ["train", "--config", config, "-o", tmp_path / "exp", "--max-steps", "1", "--quiet"]
    if "--data" not in args:
        base += ["--data", manifest]
    result = run_cli(capsys, *base, *args)
    assert result.code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "exp" / "checkpoints").exists()


DDP_SCRIPT = """
import hashlib, json, sys
import torch
torch.set_num_threads(1)
from dmcodec_cli.config import ConfigFile
from dmcodec_cli.training.config import build_options
from dmcodec_cli.training.run import train
import dmcodec_cli.training.trainer as trainer_module

config = ConfigFile.from_json(sys.argv[1])
options = build_options(config, {"max_steps": 2, "batch_size": 1, "sm_layers": "1:4"})
seen, built = [], {}
original_step, original_build = trainer_module.train_step, trainer_module.build_trainer
def spy_step(trainer, batch):
    seen.extend(batch.ids)
    built["trainer"] = trainer
    return original_step(trainer, batch)
import dmcodec_cli.training.run as run_module
run_module.train_step = spy_step
result = train(config, options, sys.argv[2], sys.argv[4], sys.argv[3], progress=False)
codec = built["trainer"].codec
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in codec.parameters())).hexdigest()
rank = built["trainer"].accelerator.process_index
with open(f"{sys.argv[4]}/rank{rank}.json", "w") as f:
    json.dump({"ids": seen, "params": digest, "world": built["trainer"].accelerator.num_processes}, f)
"""


def test_two_process_cpu_run_with_gloo(corpus, tmp_path):
    root, manifest, features = corpus
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not installed")
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    config = write_config(tmp_path / "tiny.json", tiny_config())
    out = tmp_path / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517", str(script), str(config),
                           str(manifest), str(features), str(out)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    assert not set(ranks[0]["ids"]) & set(ranks[1]["ids"])  # each process trained on its own share
    assert ranks[0]["params"] == ranks[1]["params"]  # gradients were all-reduced: identical weights
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    assert load_release(out / "last").config.n_q == 4


def test_inference_never_imports_the_trainer_or_its_dependencies():
    code = ("import sys, dmcodec_cli.cli, dmcodec_cli.inference, dmcodec_cli.registry; "
            "bad = [m for m in sys.modules if m.startswith(('dmcodec_cli.training', 'accelerate', 'tensorboard', "
            "'matplotlib'))]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
