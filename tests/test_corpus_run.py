"""Corpus runs end to end: folders and manifests in, a store or .npy tree out; resume after a crash,
bad files reported and skipped, two processes equal one, decode and info of a store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

from cli import REPO, run_cli, run_shell
from conftest import REFERENCE, SPEECH
from dmcodec_cli.audio import load_audio
from dmcodec_cli.corpus import runner
from dmcodec_cli.corpus.loader import Loaded, Part, length_batches
from dmcodec_cli.corpus.runner import RunOptions, tokenize_corpus
from dmcodec_cli.corpus.store import CodeStore, StoreWriter
from dmcodec_cli.engine.encoder import EngineOptions
from dmcodec_cli.engine.windows import Piece, WindowPlan, plan_pieces
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.inference import encode_samples
from dmcodec_cli.inputs import collect_inputs
from dmcodec_cli.model import DMCodec
from dmcodec_cli.registry import load_model

MODEL = REFERENCE / "dmcodec_small.pt"
CLIPS = {  # id -> fixture clip: short ones, two sample rates, nested folders
    "arctic/a0007": "cmu_arctic_awb_arctic_a0007.wav",
    "libri/test/1998": "librispeech_test-other_1998-15444-0008.flac",
    "libri/train/1624": "librispeech_train-clean-100_1624-142933-0000.flac",
    "libri/train/19": "librispeech_train-clean-100_19-198-0000.flac",
    "lj/LJ001-0002": "ljspeech_LJ001-0002.flac",
    "lj/LJ002-0020": "ljspeech_LJ002-0020.wav",
}
runner_read_audio = runner.read_audio
SMALL = RunOptions(EngineOptions(batch_seconds=6.0), workers=0, commit_every=2)


@pytest.fixture(scope="module")
def model():
    return load_model(str(MODEL), "cpu")  # as the CLI loads it (weight norm folded)


@pytest.fixture
def corpus(tmp_path) -> Path:
    root = tmp_path / "corpus"
    for name, clip in CLIPS.items():
        target = root / (name + Path(clip).suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SPEECH / clip, target)
    (root / "notes.txt").write_text("not audio")
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model) -> Path:
    """An uninterrupted one-process run over the corpus (what every other run must equal)."""
    root = tmp_path_factory.mktemp("ref") / "corpus"
    for name, clip in CLIPS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SPEECH / clip, root / (name + Path(clip).suffix))
    out = root.parent / "reference.h5"
    tokenize_corpus(model, collect_inputs(root), out, SMALL)
    return out


def store_content(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {"attrs": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()},
                **{k: f[k][:].tolist() for k in ("codes", "offsets", "ids", "num_samples")}}


def test_store_holds_every_clip_with_its_single_file_codes(reference, model):
    with CodeStore(reference) as store:
        assert store.ids == sorted(CLIPS)  # relative path without extension, in sorted order
        for name, clip in CLIPS.items():
            samples = torch.from_numpy(load_audio(SPEECH / clip, 16000).samples)
            assert store.num_samples[store.index(name)] == len(samples)
            with torch.inference_mode():
                alone = model.encode(samples.view(1, 1, -1))[:, 0].numpy()
            np.testing.assert_array_equal(store[name], alone)
        assert store.meta.model_fingerprint == model.fingerprint


def test_long_inputs_come_from_the_worker_window_by_window_with_their_single_file_codes(model, tmp_path):
    """The worker reads a long input block by block and sends its windows as they fill, batched with
    other inputs' windows; no process holds it whole. The stitched codes equal single-file encoding with
    that plan, also for a resampled stereo input; an input that turns bad after some windows were sent
    is reported and left out, whole."""
    long = np.concatenate([load_audio(SPEECH / clip, 16000).samples for clip in CLIPS.values()])
    root = tmp_path / "corpus"
    root.mkdir()
    sf.write(root / "long.wav", long, 16000, subtype="FLOAT")
    sf.write(root / "stereo.flac", np.stack([long[::-1], 0.5 * long], 1), 22050)
    sf.write(root / "turns_bad.wav", np.append(long, np.nan), 16000, subtype="FLOAT")
    shutil.copy(SPEECH / CLIPS["lj/LJ001-0002"], root / "short.flac")
    engine = EngineOptions(batch_seconds=6.0, windows=WindowPlan(2.0, 0.5, 3.0))
    received = []

    def spy(*args):
        for entry in runner_read_audio(*args):
            received.append(entry)
            yield entry

    with mock.patch.object(runner, "read_audio", spy):
        summary = tokenize_corpus(model, collect_inputs(root), tmp_path / "c.h5", RunOptions(engine, workers=1))
    assert summary.encoded == 3
    assert [(f.id, "NaN" in f.reason) for f in summary.failures] == [("turns_bad", True)]
    windows = [e for e in received if isinstance(e, Loaded) and not e.part.whole]
    long_windows = len(plan_pieces(len(long), 320, 16000, engine.windows))
    assert sum(e.item.id == "long" for e in windows) == long_windows > 2
    assert sum(e.item.id == "turns_bad" for e in windows) >= 2  # sent before the NaN was read
    assert max(len(e.samples) for e in windows) <= engine.windows.piece_seconds * 16000
    with CodeStore(tmp_path / "c.h5") as store:
        assert store.ids == ["long", "short", "stereo"]
        for name in ("long", "stereo", "short"):
            samples = load_audio(next(root.glob(name + ".*")), 16000).samples
            np.testing.assert_array_equal(store[name], encode_samples(model, samples, options=engine))
            assert store.num_samples[store.ids.index(name)] == len(samples)


def test_batches_take_each_item_once_within_the_budget_longest_first_and_windows_in_order():
    lengths = [5, 17, 3, 11, 20, 2, 8, 13, 7, 19, 1, 4, 16, 9, 6, 50]
    loaded = [Loaded(i, None, torch.zeros(n), part=Part(Piece(0, n, 0, n), 0, True)) for i, n in enumerate(lengths)]
    windows = [Loaded(len(lengths), None, torch.zeros(12), part=Part(Piece(0, 12, 0, 12), k, k == 4)) for k in range(5)]
    loaded[3:3] = windows[:2]  # a long input's windows, interleaved with whole inputs as the reader sends them
    loaded[9:9] = windows[2:]
    batches = list(length_batches(iter(loaded), batch_samples=30, pool_samples=100))
    assert sorted(e.position for b in batches for e in b) == sorted(e.position for e in loaded)
    assert all(sum(len(e.samples) for e in b) <= 30 or len(b) == 1 for b in batches)
    assert all(len({e.part.whole for e in b}) == 1 for b in batches)  # windows and whole inputs never mixed
    window_batches = [b for b in batches if not b[0].part.whole]
    assert [[e.part.index for e in b] for b in window_batches] == [[0, 1], [2, 3], [4]]  # in order
    first_pool = batches[:next(i for i, b in enumerate(batches) if 50 in [len(e.samples) for e in b])]
    sizes = [len(e.samples) for b in first_pool if b[0].part.whole for e in b]
    assert sizes == sorted(sizes, reverse=True)  # the pool's last, partial batch holds its shortest items


def test_cli_store_resume_npy_tree_manifests(corpus, reference, capsys, tmp_path):
    out = tmp_path / "c.h5"
    first = run_cli(capsys, "encode", corpus, "-o", out, "--model", MODEL, "--device", "cpu", "--json",
                    "--workers", 1, "--batch-seconds", 5)
    assert first.code == 0, first.stderr
    assert json.loads(first.stdout)["encoded"] == 6
    assert store_content(out) == store_content(reference)
    again = run_cli(capsys, "encode", corpus, "-o", out, "--model", MODEL, "--device", "cpu", "--json")
    assert json.loads(again.stdout)["skipped"] == 6 and json.loads(again.stdout)["encoded"] == 0
    assert store_content(out) == store_content(reference)
    # a mirrored tree of .npy files
    tree = run_cli(capsys, "encode", corpus, "-o", f"{tmp_path / 'tree'}/", "--model", MODEL, "--device", "cpu")
    assert tree.code == 0, tree.stderr
    with CodeStore(reference) as store:
        for name in CLIPS:
            np.testing.assert_array_equal(np.load(tmp_path / "tree" / f"{name}.npy"), store[name])
    # manifests: plain paths (relative to the manifest) and JSONL with ids; extensions filter a folder
    (corpus / "list.txt").write_text("lj/LJ001-0002.flac\n\n" + str(corpus / "arctic/a0007.wav") + "\n")
    (corpus / "list.jsonl").write_text(json.dumps({"path": "lj/LJ002-0020.wav", "id": "utt-1"}) + "\n")
    assert [i.id for i in collect_inputs(corpus / "list.txt")] == ["lj/LJ001-0002", "arctic/a0007"]
    assert [i.id for i in collect_inputs(corpus / "list.jsonl")] == ["utt-1"]
    assert run_cli(capsys, "encode", corpus / "list.jsonl", "-o", tmp_path / "j.h5", "--model", MODEL).code == 0
    with CodeStore(tmp_path / "j.h5") as store, CodeStore(reference) as ref:
        assert store.ids == ["utt-1"]
        np.testing.assert_array_equal(store["utt-1"], ref["lj/LJ002-0020"])
    assert [i.id for i in collect_inputs(corpus, (".wav",))] == ["arctic/a0007", "lj/LJ002-0020"]
    (corpus / "bad.jsonl").write_text('{"id": "x"}\n')
    bad = run_cli(capsys, "encode", corpus / "bad.jsonl", "-o", tmp_path / "b.h5", "--model", MODEL)
    assert bad.code == 2 and "bad.jsonl:1" in bad.stderr and "Traceback" not in bad.stderr


def test_crash_in_the_final_merge_then_rerun_equals_an_uninterrupted_run(corpus, reference, model, tmp_path):
    out = tmp_path / "c.h5"
    with mock.patch.object(StoreWriter, "commit", side_effect=KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            tokenize_corpus(model, collect_inputs(corpus), out, SMALL)
    assert not out.exists() and list((tmp_path / "c.h5.work").glob("seg-*.json"))
    summary = tokenize_corpus(model, collect_inputs(corpus), out, SMALL)
    assert summary.encoded == 0 and summary.skipped == 6  # all came from the journal
    assert store_content(out) == store_content(reference)
    assert not (tmp_path / "c.h5.work").exists() and not list(tmp_path.glob(".*tmp"))


def test_kill_9_mid_run_then_rerun_equals_an_uninterrupted_run(corpus, reference, tmp_path):
    out = tmp_path / "c.h5"
    args = [sys.executable, "-m", "dmcodec_cli", "encode", str(corpus), "-o", str(out), "--model", str(MODEL),
            "--device", "cpu", "--workers", "0", "--batch-seconds", "2", "--commit-every", "1"]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = tmp_path / "c.h5.work"
    deadline = time.monotonic() + 120
    while not len(list(work.glob("seg-*.json"))) >= 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists()
    done = run_shell("encode", corpus, "-o", out, "--model", MODEL, "--device", "cpu", "--json")
    assert done.code == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["skipped"] >= 2 and summary["skipped"] + summary["encoded"] == 6
    assert store_content(out) == store_content(reference)


def write_bad_files(root: Path) -> dict[str, str]:
    (root / "bad").mkdir()
    (root / "bad" / "garbage.wav").write_bytes(os.urandom(2000))
    sf.write(root / "bad" / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(root / "bad" / "nan.wav", np.full(800, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    return {"bad/garbage": "not a readable audio file", "bad/empty": "empty", "bad/nan": "NaN"}


def test_bad_files_are_reported_and_skipped_and_the_exit_status_says_so(corpus, reference, capsys, tmp_path):
    expected = write_bad_files(corpus)
    out = tmp_path / "c.h5"
    result = run_cli(capsys, "encode", corpus, "-o", out, "--model", MODEL, "--device", "cpu", "--json")
    assert result.code == 1 and "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert (summary["encoded"], summary["failed"]) == (6, 3)
    rows = [line.split("\t") for line in Path(summary["failures_file"]).read_text().splitlines()[1:]]
    assert {r[0] for r in rows} == set(expected)
    for name, path, reason in rows:
        assert expected[name] in reason and Path(path).name in reason
    assert store_content(out) == store_content(reference)
    again = run_cli(capsys, "encode", corpus, "-o", out, "--model", MODEL, "--device", "cpu", "--json")
    assert again.code == 1 and json.loads(again.stdout)["skipped"] == 6  # failures are retried, not remembered
    for name in expected:  # once fixed, a failure is encoded by the next run
        (corpus / f"{name}.wav").unlink()
    assert run_cli(capsys, "encode", corpus, "-o", out, "--model", MODEL, "--device", "cpu").code == 0
    assert not Path(summary["failures_file"]).exists()


def test_appending_with_another_model_or_n_q_is_refused(reference, corpus, capsys, tmp_path, model):
    out = tmp_path / "c.h5"
    shutil.copy(reference, out)
    result = run_cli(capsys, "encode", corpus, "-o", out, "--model", MODEL, "--n-q", 4)
    assert result.code == 2 and "codebooks" in result.stderr
    other = DMCodec(model.config).eval()  # the same architecture, other weights
    with pytest.raises(DmcodecError, match="another model"):
        tokenize_corpus(other, collect_inputs(corpus), out, SMALL)
    assert store_content(out) == store_content(reference)


def test_decode_and_info_of_a_store(reference, capsys, tmp_path, model):
    result = run_cli(capsys, "decode", reference, "-o", tmp_path / "wav", "--model", MODEL,
                     "--ids", "lj/LJ001-0002,arctic/a0007")
    assert result.code == 0, result.stderr
    assert sorted(p.relative_to(tmp_path / "wav").as_posix() for p in (tmp_path / "wav").rglob("*.wav")) == \
        ["arctic/a0007.wav", "lj/LJ001-0002.wav"]
    with CodeStore(reference) as store:
        for name in ("lj/LJ001-0002", "arctic/a0007"):
            audio, rate = sf.read(tmp_path / "wav" / f"{name}.wav", dtype="float32")
            assert rate == 16000 and len(audio) == store.num_samples[store.index(name)]
            with torch.inference_mode():
                full = model.decode(torch.from_numpy(store[name].astype(np.int64))[:, None]).view(-1).numpy()
            # 16-bit PCM, and the decode engine's bound against model.decode (float rounding)
            np.testing.assert_allclose(audio, np.clip(full[: len(audio)], -1, 1), atol=1 / 32767 + 1e-4)
        codes = np.concatenate([store[i] for i in range(len(store))], axis=1)
        hours = store.num_samples.sum() / 16000 / 3600
    missing = run_cli(capsys, "decode", reference, "-o", tmp_path / "w2", "--model", MODEL, "--ids", "nope")
    assert missing.code == 2 and "nope" in missing.stderr
    info = run_cli(capsys, "info", reference, "--json")
    assert info.code == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["utterances"] == 6 and summary["frames"] == codes.shape[1]
    assert summary["hours"] == pytest.approx(hours)
    for k, row in enumerate(summary["codebooks"]):
        _, counts = np.unique(codes[k], return_counts=True)
        p = counts / counts.sum()
        assert row["used"] == len(counts)
        assert row["perplexity"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert run_cli(capsys, "info", reference).code == 0


def test_two_processes_with_gloo_give_the_same_store_as_one(corpus, reference, tmp_path):
    out = tmp_path / "c.h5"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "dmcodec_cli", "encode", str(corpus), "-o", str(out), "--model", str(MODEL), "--device", "cpu",
               "--workers", "0", "--json"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["encoded"] == 6  # one summary, from rank 0, counting both ranks
    assert store_content(out) == store_content(reference)
