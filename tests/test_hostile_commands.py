"""Hostile use of the newer commands: export, bpe, info / models, score, roundtrip of a store, extract, train
and the library API. Outputs over inputs and foreign files, links out of the output, ids that escape,
damaged records, stores, manifests and checkpoints, absurd options, killed runs; each case asserts the
status, the one-line message and what changed on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

from cli import run_cli
from hostile import changes, refused, snapshot
from test_train_support import make_corpus, tiny_config, write_config

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
SPEECH = Path(__file__).parent / "fixtures" / "speech"
MODEL = REFERENCE / "dmcodec_small.pt"
FAST = ["--skip", "visqol,dnsmos,speaker", "--device", "cpu", "--summary-only"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    from dmcodec_cli.registry import load_model

    return load_model(str(MODEL), "cpu")


def make_store(path: Path, model, ids: list[str], frames: int = 6, damaged: tuple[str, ...] = ()) -> Path:
    """A store of ``model`` with random valid codes under ``ids``; the ids in ``damaged`` hold a code out of range."""
    from dmcodec_cli.corpus.store import Entry, StoreMeta, write_store

    meta = StoreMeta.for_model(model)
    rng = np.random.default_rng(0)
    entries = []
    for name in ids:
        codes = rng.integers(0, meta.codebook_size, (meta.n_q, frames)).astype(np.int16)
        codes[0, 0] = 30000 if name in damaged else codes[0, 0]
        entries.append(Entry(name, frames * model.hop_length, codes))
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_store(path, meta, entries)


def clip(path: Path, seconds: float = 0.4) -> Path:
    samples, rate = sf.read(SPEECH / "ljspeech_LJ002-0020.wav", dtype="float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples[: int(seconds * rate)], rate)
    return path


# -- export ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["store named like the shard", "manifest where failures.tsv goes"])
def test_export_never_writes_over_its_inputs_even_with_overwrite(tmp_path, capsys, model, case):
    out = tmp_path / "out"
    if case == "store named like the shard":
        store = make_store(out / "tokens-00000-of-00001.jsonl", model, ["a"])
        extra = []
    else:
        store = make_store(tmp_path / "s.h5", model, ["a"])
        manifest = out / "failures.tsv"
        out.mkdir()
        manifest.write_text(json.dumps({"id": "a", "text": "hi"}) + "\n")
        extra = ["--manifest", manifest]
    refused(capsys, tmp_path, ["export", store, "-o", out, "--format", "jsonl", "--overwrite", *extra],
            "is also an input")


def test_export_never_writes_through_a_link_out_of_the_output(tmp_path, capsys, model):
    store, out, outside = make_store(tmp_path / "s.h5", model, ["a"]), tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "data").symlink_to(outside)
    refused(capsys, tmp_path, ["export", store, "-o", out, "--format", "hf", "--overwrite"], "out/data",
            "leads outside")


def test_export_overwrite_removes_only_the_recorded_shards_that_exist(tmp_path, capsys, model):
    """A record claiming a billion shards used to make a billion names (minutes, gigabytes)."""
    store, out = make_store(tmp_path / "s.h5", model, ["a", "b"]), tmp_path / "out"
    out.mkdir()
    (out / "dmcodec-export.json").write_text(json.dumps({"format": "dmcodec-export",
                                                         "settings": {"format": "jsonl", "shards": 10 ** 9}}))
    (out / "tokens-00007-of-1000000000.jsonl").write_text("old shard\n")
    (out / "keep.txt").write_text("mine\n")
    started = time.monotonic()
    result = run_cli(capsys, "export", store, "-o", out, "--format", "jsonl", "--overwrite")
    assert result.code == 0, result.stderr
    assert time.monotonic() - started < 20
    assert sorted(p.name for p in out.iterdir()) == ["dmcodec-export.json", "keep.txt", "tokens-00000-of-00001.jsonl"]
    assert (out / "keep.txt").read_text() == "mine\n"


def test_export_bpe_layout_refuses_codebook_offsets(tmp_path, capsys, model):
    store = make_store(tmp_path / "s.h5", model, ["a"])
    refused(capsys, tmp_path, ["export", store, "-o", tmp_path / "out", "--layout", "bpe", "--bpe", tmp_path,
                               "--codebook-offsets"], "--codebook-offsets", "--layout bpe")


# -- bpe -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer(model, tmp_path_factory):
    """A store and a tokenizer trained on it by the CLI with --json (fd 1 captured by ``capfd``)."""
    root = tmp_path_factory.mktemp("bpe")
    return make_store(root / "s.h5", model, ["a", "b", "c"]), root / "bpe"


def test_bpe_json_is_all_that_reaches_stdout(tokenizer, capfd):
    store, folder = tokenizer
    result = run_cli(capfd, "bpe", store, "-o", folder, "--merges", "16", "--json")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("{") and json.loads(result.stdout)["n_q"] == 8


@pytest.mark.parametrize("field, value", [("n_q", -3), ("codebook_size", "x"), ("model_fingerprint", "../x")])
def test_export_refuses_a_damaged_tokenizer_record(tokenizer, tmp_path, capfd, field, value):
    store, folder = tokenizer
    if not (folder / "dmcodec-bpe.json").exists():
        assert run_cli(capfd, "bpe", store, "-o", folder, "--merges", "16").code == 0
    damaged = tmp_path / "bpe"
    damaged.mkdir()
    for source in folder.iterdir():
        (damaged / source.name).write_bytes(source.read_bytes())
    record = json.loads((folder / "dmcodec-bpe.json").read_text())
    (damaged / "dmcodec-bpe.json").write_text(json.dumps({**record, field: value}))
    refused(capfd, tmp_path, ["export", store, "-o", tmp_path / "out", "--layout", "bpe", "--bpe", damaged,
                              "--format", "jsonl"], "dmcodec-bpe.json", "damaged", "train the tokenizer again")


def test_bpe_never_writes_over_its_store_even_with_overwrite(tmp_path, capsys, model):
    store = make_store(tmp_path / "out" / "tokenizer.json", model, ["a"])
    refused(capsys, tmp_path, ["bpe", store, "-o", tmp_path / "out", "--overwrite"], "is also an input")


def test_bpe_refuses_a_store_without_codes(tmp_path, capsys, model):
    store = make_store(tmp_path / "s.h5", model, [])
    refused(capsys, tmp_path, ["bpe", store, "-o", tmp_path / "bpe"], "s.h5", "holds no codes")


def test_bpe_folder_of_a_killed_run_is_taken_up_again_and_never_exported(tmp_path, capsys, model):
    """A kill between the record and the tokenizer files: the folder is known as dmcodec's, not as a tokenizer."""
    store, folder = make_store(tmp_path / "s.h5", model, ["a", "b"]), tmp_path / "bpe"
    folder.mkdir()
    (folder / "dmcodec-bpe.json").write_text(json.dumps({"format": "dmcodec-bpe", "complete": False}))
    (folder / "tokenizer.json").write_text('{"half": ')
    refused(capsys, tmp_path, ["export", store, "-o", tmp_path / "out", "--layout", "bpe", "--bpe", folder],
            "did not finish", "dmcodec bpe")
    assert run_cli(capsys, "bpe", store, "-o", folder, "--merges", "8").code == 0  # no --overwrite needed
    assert json.loads((folder / "dmcodec-bpe.json").read_text())["complete"] is True
    assert json.loads((folder / "tokenizer.json").read_text())["model"]["type"] == "BPE"


# -- --json-file of commands without --overwrite ---------------------------------------------------------

@pytest.mark.parametrize("command", ["models", "info", "train"])
def test_json_file_refusal_offers_no_option_the_command_lacks(tmp_path, capsys, command):
    mine = tmp_path / "mine.json"
    mine.write_text('{"mine": true}\n')
    args = {"models": ["models"], "info": ["info", MODEL],
            "train": ["train", "--config", tmp_path / "c.json", "--data", tmp_path / "d.jsonl", "-o", tmp_path / "e"]}
    result = refused(capsys, tmp_path, [*args[command], "--json-file", mine], "mine.json", "exists and was not written")
    assert "--overwrite" not in result.stderr


# -- score -----------------------------------------------------------------------------------------------

def test_score_plots_never_replace_a_foreign_png(tmp_path, capsys):
    ref, deg, plots = clip(tmp_path / "ref.wav"), clip(tmp_path / "deg.wav"), tmp_path / "plots"
    plots.mkdir()
    (plots / "ref.png").write_text("my own picture")
    refused(capsys, tmp_path, ["score", ref, deg, "--plots", plots, *FAST], "ref.png", "not written by dmcodec",
            "--plots")


def test_score_jobs_beyond_the_limit_are_refused(tmp_path, capsys):
    ref = clip(tmp_path / "ref.wav")
    refused(capsys, tmp_path, ["score", ref, ref, "--jobs", "100000", *FAST], "--jobs 100000", "1 to 64")


# -- roundtrip of a store --------------------------------------------------------------------------------

HOSTILE_IDS = ["../secret", "/tmp/abs", "damaged", "ok"]


def rows(path: Path) -> dict[str, str | None]:
    return {row["file"]: row.get("error") for row in json.loads(path.read_text())["files"]}


def test_roundtrip_store_bad_ids_and_damaged_codes_are_failed_rows(tmp_path, capsys, model):
    store = make_store(tmp_path / "s.h5", model, HOSTILE_IDS, damaged=("damaged",))
    out, results = tmp_path / "out", tmp_path / "r.json"
    before = snapshot(tmp_path)
    result = run_cli(capsys, "roundtrip", store, "-o", out, "-m", MODEL, "--json-file", results, *FAST)
    assert result.code == 1, result.stderr
    found = rows(results)
    assert found["ok"] is None and "'..' component" in found["../secret"] and "absolute" in found["/tmp/abs"]
    assert "outside 0..63" in found["damaged"]
    assert changes(before, snapshot(tmp_path), ("out", "r.json")) == []
    assert sorted(p.name for p in out.iterdir()) == [".dmcodec-roundtrip.json", "ok.wav"]  # no audio: no plot


def test_roundtrip_store_audio_ids_never_read_outside_the_audio_folder(tmp_path, capsys, model):
    store = make_store(tmp_path / "s.h5", model, HOSTILE_IDS[:2] + ["ok"])
    _audio_named(tmp_path / "secret")  # what ../secret would have read
    clip(tmp_path / "audio" / "ok.wav")
    results = tmp_path / "r.json"
    result = run_cli(capsys, "roundtrip", store, "--audio", tmp_path / "audio", "-m", MODEL, "--json-file", results,
                     *FAST)
    assert result.code == 1, result.stderr
    found = rows(results)
    assert found["ok"] is None
    assert all("no audio file for id" in found[name] for name in HOSTILE_IDS[:2])


def test_roundtrip_of_an_empty_store_is_refused(tmp_path, capsys, model):
    store = make_store(tmp_path / "s.h5", model, [])
    refused(capsys, tmp_path, ["roundtrip", store, "-m", MODEL, *FAST], "s.h5", "holds no utterances")


def test_roundtrip_output_inside_the_input_folder_is_not_read_back(tmp_path, capsys):
    source = tmp_path / "speech"
    clip(source / "a.wav")
    for _ in range(2):  # the second run used to take recon/a.wav for an input and refuse to overwrite it
        result = run_cli(capsys, "roundtrip", source, "-o", source / "recon", "-m", MODEL, "--json", *FAST)
        assert result.code == 0, result.stderr
        assert [row["file"] for row in json.loads(result.stdout)["files"]] == ["a.wav"]
    assert sorted(p.relative_to(source).as_posix() for p in source.rglob("*.wav")) == ["a.wav", "recon/a.wav"]


# -- extract and segment manifests -----------------------------------------------------------------------

@pytest.fixture
def manifest(tmp_path):
    return make_corpus(tmp_path / "corpus", seconds=0.5, clips=("vctk_p225_003.wav",), valid=0)


def test_extract_overwrite_keeps_the_old_file_when_a_teacher_cannot_load(tmp_path, capsys, manifest):
    features = tmp_path / "features.h5"
    with h5py.File(features, "w") as f:
        f.attrs.update(format="dmcodec-features", format_version=1, sample_rate=16000, frame_rate=50.0)
    refused(capsys, tmp_path, ["extract", manifest, "-o", features, "--sm", tmp_path / "no-such-model",
                               "--overwrite", "--device", "cpu"], "cannot load the speech feature model")


def _foreign_h5(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f["mine"] = np.arange(3)
    return path


def _audio_named(path: Path) -> Path:
    path.write_bytes((SPEECH / "ljspeech_LJ002-0020.wav").read_bytes())
    return path


@pytest.mark.parametrize("case", ["a foreign HDF5 file", "a code store", "audio"])
def test_extract_refuses_an_existing_file_that_is_not_a_feature_file(tmp_path, capsys, model, manifest, case):
    make = {"a foreign HDF5 file": _foreign_h5, "a code store": lambda p: make_store(p, model, ["a"]),
            "audio": _audio_named}[case]
    target = make(tmp_path / "out.h5")
    refused(capsys, tmp_path, ["extract", manifest, "-o", target, "--sm", "anything", "--device", "cpu"],
            "out.h5", "not a dmcodec feature file", "--overwrite")


@pytest.mark.parametrize("change, needle", [({"id": "."}, "'.' or '..'"), ({"id": ".."}, "'.' or '..'"),
                                            ({"id": 5}, "id 5 is not a string"),
                                            ({"path": None}, "path None is not a string"),
                                            ({"duration": "3"}, "duration '3' is not a number"),
                                            (b"\x89HDF\r\n", "not a UTF-8 text file")])
def test_hostile_segment_manifests_are_one_line(tmp_path, capsys, manifest, change, needle):
    if isinstance(change, bytes):
        manifest.write_bytes(change)
    else:
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **change}) + "\n")
    refused(capsys, tmp_path, ["extract", manifest, "-o", tmp_path / "f.h5", "--sm", "x", "--device", "cpu"],
            "manifest.jsonl", needle)


# -- train -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    manifest = make_corpus(root / "corpus", seconds=0.5)
    recipe = write_config(root / "tiny.json", tiny_config(extra={"save_every": 1, "valid_every": 1}))
    return manifest, recipe


def train_args(run_inputs, out: Path, *extra) -> list:
    manifest, recipe = run_inputs
    return ["train", "--config", recipe, "--data", manifest, "-o", out, "--teacher", "none", "--quiet",
            "--device", "cpu", *extra]


@pytest.mark.parametrize("record", ["not json", '{"a": 1}'])
@pytest.mark.parametrize("resume", [[], ["--resume"]])
def test_train_refuses_a_damaged_or_foreign_run_record(tmp_path, capsys, run_inputs, record, resume):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "run.json").write_text(record)
    refused(capsys, tmp_path, train_args(run_inputs, out, "--max-steps", "1", *resume), "run.json",
            "choose another -o folder")


def _recipe(tmp_path: Path, run_inputs, **extra) -> Path:
    recipe = json.loads(run_inputs[1].read_text())
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({**recipe, "extra": {**recipe["extra"], **extra}}))
    return path


ABSURD_OPTIONS = {
    "--weights nan": (["--teacher", "combined", "--weights", "nan,0.5"], {}, "finite numbers >= 0"),
    "--weights with one teacher": (["--teacher", "sm", "--weights", "0.2,0.8"], {}, "this run's teacher is 'sm'"),
    "--max-steps -3": (["--max-steps", "-3"], {}, "max_steps must be >= 0"),
    "batch_size a string": ([], {"batch_size": "8"}, "batch_size must be an integer"),
    "lr_decay NaN": ([], {"lr_decay": float("nan")}, "lr_decay must be a finite number"),
    "grad_clip -1": ([], {"grad_clip": -1}, "grad_clip must be >= 0"),
    "discriminator width a string": ([], {"discriminator": {"width": "x"}}, "discriminator width"),
}


@pytest.mark.parametrize("case", list(ABSURD_OPTIONS))
def test_train_refuses_absurd_options_before_any_work(tmp_path, capsys, run_inputs, case):
    args, extra, needle = ABSURD_OPTIONS[case]
    manifest, recipe = run_inputs
    teacher = [] if "--teacher" in args else ["--teacher", "none"]
    command = ["train", "--config", _recipe(tmp_path, run_inputs, **extra) if extra else recipe, "--data", manifest,
               "-o", tmp_path / "exp", *teacher, *args, "--quiet", "--device", "cpu"]
    refused(capsys, tmp_path, command, needle, allowed=("recipe.json",))
    assert not (tmp_path / "exp").exists()


def test_resume_after_a_kill_with_damaged_leftovers(tmp_path, capsys, run_inputs):
    out = tmp_path / "exp"
    assert run_cli(capsys, *train_args(run_inputs, out, "--max-steps", "2")).code == 0
    last = out / "checkpoints" / "step-0000002"
    good_rng, good_state = (last / "rng-0.pt").read_bytes(), (last / "state.pt").read_bytes()
    damaged = {"a truncated RNG file": ("rng-0.pt", good_rng[:50], "unreadable random state"),
               "a state without its models": ("state.pt", {"format": "dmcodec-train-state", "format_version": 1,
                                                           "step": 2}, "does not fit this run"),
               "a state of version 'x'": ("state.pt", {"format": "dmcodec-train-state", "format_version": "x"},
                                          "damaged training state")}
    for name, content, needle in damaged.values():
        if isinstance(content, bytes):
            (last / name).write_bytes(content)
        else:
            torch.save(content, last / name)
        refused(capsys, tmp_path, train_args(run_inputs, out, "--max-steps", "3", "--resume"), needle,
                "delete this checkpoint folder")
        (last / "rng-0.pt").write_bytes(good_rng)
        (last / "state.pt").write_bytes(good_state)
    # what a kill -9 leaves: a half-written metrics line, a staging folder with a truncated state, a temporary file
    with open(out / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 3, "spl')
    staging = out / "checkpoints" / ".step-0000003.partial"
    staging.mkdir()
    (staging / "state.pt").write_bytes(good_state[:100])
    (out / "last" / ".model.safetensors.tmp").write_bytes(b"half")
    result = run_cli(capsys, *train_args(run_inputs, out, "--max-steps", "3", "--resume"))
    assert result.code == 0, result.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3]
    assert (out / "checkpoints" / "step-0000003" / "state.pt").is_file()


# -- the library API -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def codec():
    import dmcodec_cli

    return dmcodec_cli.load(MODEL)


def test_api_save_never_replaces_what_dmcodec_did_not_write(tmp_path, codec):
    from dmcodec_cli.errors import DmcodecError

    audio = clip(tmp_path / "speech.wav")
    encoded = codec.encode(audio)
    mine = tmp_path / "mine.npz"
    mine.write_bytes(b"my own archive")
    before = snapshot(tmp_path)
    for target, needle in ((audio, "one .npz file"), (tmp_path, "one .npz file"), (mine, "overwrite=True")):
        with pytest.raises(DmcodecError, match=needle):
            encoded.save(target)
    assert changes(before, snapshot(tmp_path)) == []
    encoded.save(tmp_path / "codes.npz")
    encoded.save(tmp_path / "codes.npz")  # its own file is replaced
    encoded.save(mine, overwrite=True)
    assert (type(encoded).load(mine).codes == encoded.codes).all()


@pytest.mark.parametrize("call, needle", [
    (lambda c, m: c.encode(np.zeros(1600, np.float32), sample_rate=10 ** 12), "1000..1000000 Hz"),
    (lambda c, m: c.encode(np.zeros(1600, np.float32), sample_rate=16000, n_q=True), "n_q must be between"),
    (lambda c, m: m.load(MODEL, dtype="int8"), "dtype must be one of fp32, bf16, fp16"),
])
def test_api_refuses_absurd_arguments_with_one_error(codec, call, needle):
    import dmcodec_cli
    from dmcodec_cli.errors import DmcodecError

    with pytest.raises(DmcodecError, match=needle):
        call(codec, dmcodec_cli)
