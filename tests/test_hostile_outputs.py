"""Hostile outputs: no command writes over an input, over what it did not make (without --overwrite), outside
its output, or wipes a folder; bad ids are failed items; output problems are one line before the work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli import run_cli
from hostile import assert_one_line_error, changes, refused, snapshot

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
SPEECH = Path(__file__).parent / "fixtures" / "speech"
MODEL = REFERENCE / "dmcodec_small.pt"


def clip(path: Path, seconds: float = 0.4) -> Path:
    """A short real-speech clip at ``path`` (16 kHz mono wav, or flac by extension)."""
    samples, rate = sf.read(SPEECH / "ljspeech_LJ002-0020.wav", dtype="float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples[: int(seconds * rate)], rate)
    return path


@pytest.fixture(scope="module")
def model():
    from dmcodec_cli.registry import load_model

    return load_model(str(MODEL), "cpu")


def make_store(path: Path, model, ids: list[str], frames: int = 6) -> Path:
    """A code store of ``model`` with random valid codes under ``ids`` (ids are stored as given)."""
    from dmcodec_cli.corpus.store import Entry, StoreMeta, write_store

    meta = StoreMeta.for_model(model)
    rng = np.random.default_rng(0)
    entries = [Entry(name, frames * model.hop_length,
                     rng.integers(0, meta.codebook_size, (meta.n_q, frames)).astype(np.int16)) for name in ids]
    return write_store(path, meta, entries)


def touch(path: Path, text: str = "x") -> Path:
    path.write_text(text)
    return path


def link(path: Path, target: Path) -> Path:
    path.symlink_to(target)
    return path


def folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


# -- single-file outputs: never an input, never a foreign file, named like what they hold -----------------

ENCODE_REFUSALS = {
    # case: (make the output from the input path, extra args, message needles)
    "encode -o the input itself": (lambda d, v: v, ["--overwrite"], ["v.flac", "is also an input"]),
    "encode -o ./input": (lambda d, v: Path(os.path.relpath(v)).parent / "." / v.name, [], ["is also an input"]),
    "encode -o a link to the input": (lambda d, v: link(d / "link.npy", v), ["--overwrite"],
                                      ["link.npy", "is also an input"]),
    "encode -o other audio": (lambda d, v: clip(d / "other.wav"), [], ["other.wav", "must end in .npy"]),
    "encode -o existing codes": (lambda d, v: (np.save(d / "c.npy", np.zeros((2, 2), np.int16)), d / "c.npy")[1], [],
                                 ["c.npy", "exists and was not written by dmcodec", "--overwrite"]),
    "encode -o file.npy/": (lambda d, v: f"{d / 'codes.npy'}/", [], ["codes.npy", "named like a file"]),
    "encode -o existing_file/": (lambda d, v: f"{touch(d / 'f')}/", [],
                                 ["f", "is a file, not a folder"]),
    "encode -o FILE/x.npy": (lambda d, v: touch(d / "plain") / "x.npy", [],
                             ["plain", "is a file, so"]),
    "encode -o over-long name": (lambda d, v: d / ("n" * 300 + ".npy"), [], ["longer than this file system allows"]),
}


@pytest.mark.parametrize("case", list(ENCODE_REFUSALS))
def test_encode_single_file_refusals(tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    make, extra, needles = ENCODE_REFUSALS[case]
    source = clip(tmp_path / "v.flac")
    output = make(tmp_path, source)
    refused(capsys, tmp_path, ["encode", source, "-o", output, "--model", MODEL, *extra], *needles)


def test_encode_over_existing_codes_with_overwrite_replaces_them(tmp_path, capsys):
    source, out = clip(tmp_path / "v.wav"), tmp_path / "c.npy"
    np.save(out, np.zeros((2, 2), np.int16))
    before = snapshot(tmp_path)
    assert run_cli(capsys, "encode", source, "-o", out, "--model", MODEL, "--overwrite").code == 0
    assert changes(before, snapshot(tmp_path)) == ["c.npy"]
    assert np.load(out).shape[1] == 20  # 0.4 s at 50 frames/s: the new codes, not the old 2 x 2


@pytest.mark.skipif(os.geteuid() == 0 and not os.path.isdir("/sys"), reason="root needs /sys as an unwritable folder")
def test_unwritable_output_folder_is_refused_before_the_model_loads(tmp_path, capsys):
    target = Path("/sys/dmcodec-out.npy") if os.geteuid() == 0 else tmp_path / "ro" / "c.npy"
    if os.geteuid() != 0:
        target.parent.mkdir()
        target.parent.chmod(0o500)
    result = run_cli(capsys, "encode", clip(tmp_path / "v.wav"), "-o", target, "--model", tmp_path / "no-model.pt")
    assert_one_line_error(result, str(target.parent), "cannot write here")  # not "no such model": checked first
    assert not target.exists()


DECODE_REFUSALS = {
    "decode -o the codes": (lambda d, c: c, ["--overwrite"], ["c.npy", "is also an input"]),
    "decode -o codes name": (lambda d, c: d / "out.npy", [], ["out.npy", "must end in .wav / .flac / .ogg"]),
    "decode -o existing audio": (lambda d, c: clip(d / "speech.wav"), [], ["speech.wav", "exists and was not written"]),
    "decode -o folder": (lambda d, c: folder(d / "outdir"), [], ["outdir", "is a folder"]),
}


@pytest.mark.parametrize("case", list(DECODE_REFUSALS))
def test_decode_single_file_refusals(tmp_path, capsys, case):
    make, extra, needles = DECODE_REFUSALS[case]
    codes = tmp_path / "c.npy"
    np.save(codes, np.zeros((2, 5), np.int16))
    refused(capsys, tmp_path, ["decode", codes, "-o", make(tmp_path, codes), "--model", MODEL, *extra], *needles)


# -- merge ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["merge over a code file", "merge over its input", "merge over an existing store"])
def test_merge_refusals(tmp_path, capsys, model, case):
    store = make_store(tmp_path / "S.h5", model, ["a"])
    codes = tmp_path / "c.npy"
    np.save(codes, np.zeros((2, 5), np.int16))
    other = make_store(tmp_path / "old.h5", model, ["b"])
    output, extra, needles = {
        "merge over a code file": (codes, ["--overwrite"], ["c.npy", "must end in .h5"]),
        "merge over its input": (store, ["--overwrite"], ["S.h5", "is also an input"]),
        "merge over an existing store": (other, [], ["old.h5", "exists", "--overwrite"]),
    }[case]
    refused(capsys, tmp_path, ["merge", store, *extra, "-o", output], *needles)


def test_merge_with_overwrite_replaces_only_the_output(tmp_path, capsys, model):
    store, old = make_store(tmp_path / "S.h5", model, ["a"]), make_store(tmp_path / "old.h5", model, ["b"])
    before = snapshot(tmp_path)
    assert run_cli(capsys, "merge", store, "-o", old, "--overwrite").code == 0
    assert changes(before, snapshot(tmp_path)) == ["old.h5"]


# -- convert: a folder is filled, never wiped ----------------------------------------------------------

@pytest.fixture
def release(tmp_path, model):
    from dmcodec_cli.checkpoint import load_checkpoint, save_release

    folder = tmp_path / "rel"
    save_release(load_checkpoint(MODEL), folder)
    return folder


def test_convert_refuses_to_write_over_its_input_checkpoint(tmp_path, capsys, release):
    refused(capsys, tmp_path, ["convert", release / "model.safetensors", "-o", release, "--overwrite"],
            "model.safetensors", "is also an input")


@pytest.mark.parametrize("output", ["mine", "."])
def test_convert_into_a_foreign_folder_is_refused(tmp_path, capsys, monkeypatch, output):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    (mine / "sub" / "data.bin").write_bytes(b"\1\2")
    monkeypatch.chdir(mine)
    refused(capsys, tmp_path, ["convert", MODEL, "-o", mine if output == "mine" else "."], "not empty",
            "not a dmcodec release folder", "--overwrite")


def test_convert_with_overwrite_writes_two_files_and_removes_nothing(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    before = snapshot(tmp_path)
    assert run_cli(capsys, "convert", MODEL, "-o", mine, "--overwrite").code == 0
    assert sorted(changes(before, snapshot(tmp_path))) == ["mine/config.json", "mine/model.safetensors"]


def test_convert_into_its_own_release_folder_keeps_other_files(tmp_path, capsys, release):
    (release / "README.md").write_text("notes")
    assert run_cli(capsys, "convert", MODEL, "-o", release, "--fp16").code == 0
    assert (release / "README.md").read_text() == "notes"
    assert sorted(p.name for p in release.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_convert_to_a_folder_named_like_a_file_is_refused(tmp_path, capsys):
    refused(capsys, tmp_path, ["convert", MODEL, "-o", tmp_path / "out.safetensors"], "named like a file")


# -- decode of a store into a folder: ids checked, foreign files kept ------------------------------------

BAD_IDS = {
    "parent escape": "../escape",
    "deep escape": "a/../../escape",
    "absolute": "/tmp/dmcodec-absolute-id",
    "dot component": "./a",
    "empty component": "a//b",
    "backslash": "..\\escape",
    "empty": "",
    "over-long": "x" * 300,
}


@pytest.mark.parametrize("case", [case for case in BAD_IDS if case != "empty"])  # a store refuses empty ids itself
def test_decode_store_bad_id_is_a_failed_item(tmp_path, capsys, model, case):
    work = tmp_path / "work"
    store = make_store(work / "S.h5", model, ["good", BAD_IDS[case]])
    out = work / "out"
    before = snapshot(tmp_path)
    result = run_cli(capsys, "decode", store, "-o", out, "--model", MODEL)
    assert result.code == 1, result
    assert "1 utterance(s) not decoded" in result.stderr and "failures.tsv" in result.stderr
    assert changes(before, snapshot(tmp_path), ("work/out",)) == []
    assert not Path("/tmp/dmcodec-absolute-id.wav").exists()
    rows = (out / "failures.tsv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split("\t")[2].startswith("id ")
    assert (out / "good.wav").is_file()


def test_decode_store_does_not_follow_a_link_out_of_the_folder(tmp_path, capsys, model):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(outside)
    store = make_store(tmp_path / "S.h5", model, ["link/x", "y"])
    before = snapshot(tmp_path)
    result = run_cli(capsys, "decode", store, "-o", out, "--model", MODEL)
    assert result.code == 1 and "failures.tsv" in result.stderr
    assert changes(before, snapshot(tmp_path), ("out",)) == [] and not (outside / "x.wav").exists()
    assert "leads outside" in (out / "failures.tsv").read_text()


def test_decode_store_into_the_source_folder_keeps_the_recordings(tmp_path, capsys, model):
    source = tmp_path / "recordings"
    clip(source / "spk" / "utt.wav")
    store = make_store(tmp_path / "S.h5", model, ["spk/utt", "spk/new"])
    before = snapshot(tmp_path)
    result = run_cli(capsys, "decode", store, "-o", source, "--model", MODEL)
    assert result.code == 1
    assert changes(before, snapshot(tmp_path), ("recordings/spk/new.wav", "recordings/failures.tsv")) == []
    assert "exists and was not written by dmcodec" in (source / "failures.tsv").read_text()
    again = run_cli(capsys, "decode", store, "-o", source, "--model", MODEL, "--overwrite")
    assert again.code == 0 and not (source / "failures.tsv").exists()
    assert changes(before, snapshot(tmp_path), ("recordings",)) == []


def test_decode_store_rerun_into_its_own_folder_replaces_its_files(tmp_path, capsys, model):
    store = make_store(tmp_path / "S.h5", model, ["a", "b/c"])
    assert run_cli(capsys, "decode", store, "-o", tmp_path / "out", "--model", MODEL).code == 0
    assert (tmp_path / "out" / ".dmcodec-audio.json").is_file()
    assert run_cli(capsys, "decode", store, "-o", tmp_path / "out", "--model", MODEL).code == 0


def test_decode_of_a_store_of_many_utterances_to_one_file_is_refused(tmp_path, capsys, model):
    store = make_store(tmp_path / "S.h5", model, ["a", "b"])
    refused(capsys, tmp_path, ["decode", store, "-o", tmp_path / "out.wav", "--model", MODEL], "holds 2 utterances")


# -- encode of a corpus: .npy tree record, foreign files, manifest ids -------------------------------------

@pytest.fixture
def corpus(tmp_path):
    for name in ("a.wav", "sub/b.wav"):
        clip(tmp_path / "corpus" / name)
    return tmp_path / "corpus"


@pytest.mark.parametrize("change", ["--n-q", "--model"])
def test_npy_tree_refuses_a_rerun_with_another_model_or_n_q(tmp_path, capsys, corpus, change):
    from dmcodec_cli.checkpoint import load_checkpoint, save_release

    tree = tmp_path / "tree"
    assert run_cli(capsys, "encode", corpus, "-o", f"{tree}/", "--model", MODEL, "--workers", 0).code == 0
    record = json.loads((tree / ".dmcodec-codes.json").read_text())
    assert record["n_q"] == 8 and record["format"] == "dmcodec-codes-tree"
    if change == "--n-q":
        extra = ["--model", MODEL, "--n-q", 2]
    else:
        other = load_checkpoint(MODEL)
        with __import__("torch").no_grad():
            next(other.parameters()).add_(0.01)
        save_release(other, tmp_path / "other")
        extra = ["--model", tmp_path / "other"]
    refused(capsys, tmp_path, ["encode", corpus, "-o", f"{tree}/", "--workers", 0, *extra], str(tree), change)


def test_npy_tree_in_a_foreign_folder_keeps_its_files(tmp_path, capsys, corpus):
    tree = tmp_path / "theirs"
    tree.mkdir()
    np.save(tree / "a.npy", np.full((1, 3), 7, np.int16))
    before = snapshot(tmp_path)
    result = run_cli(capsys, "encode", corpus, "-o", f"{tree}/", "--model", MODEL, "--workers", 0)
    assert result.code == 1
    assert changes(before, snapshot(tmp_path), ("theirs/sub", "theirs/failures.tsv")) == []
    assert "a.npy: exists and was not written by dmcodec" in (tree / "failures.tsv").read_text()
    assert not (tree / ".dmcodec-codes.json").exists()
    assert run_cli(capsys, "encode", corpus, "-o", f"{tree}/", "--model", MODEL, "--workers", 0,
                   "--overwrite").code == 0
    assert np.load(tree / "a.npy").shape == (8, 20) and (tree / ".dmcodec-codes.json").is_file()


@pytest.mark.parametrize("bad", ["../escape", "/tmp/dmcodec-abs-manifest-id", "a/./b", "x" * 300])
def test_manifest_ids_cannot_leave_the_npy_tree(tmp_path, capsys, corpus, bad):
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(json.dumps({"path": str(corpus / "a.wav"), "id": bad}) + "\n"
                        + json.dumps({"path": str(corpus / "sub" / "b.wav"), "id": "fine"}) + "\n")
    before = snapshot(tmp_path)
    result = run_cli(capsys, "encode", manifest, "-o", f"{tmp_path / 'tree'}/", "--model", MODEL, "--workers", 0)
    assert result.code == 1, result
    assert changes(before, snapshot(tmp_path), ("tree",)) == []
    assert not Path("/tmp/dmcodec-abs-manifest-id.npy").exists()
    assert (tmp_path / "tree" / "fine.npy").is_file()
    assert "id " in (tmp_path / "tree" / "failures.tsv").read_text()


def test_manifest_ids_are_kept_as_strings_in_a_store(tmp_path, capsys, corpus):
    from dmcodec_cli.corpus.store import CodeStore

    manifest = tmp_path / "list.jsonl"
    manifest.write_text(json.dumps({"path": str(corpus / "a.wav"), "id": "../odd id"}) + "\n")
    assert run_cli(capsys, "encode", manifest, "-o", tmp_path / "S.h5", "--model", MODEL, "--workers", 0).code == 0
    with CodeStore(tmp_path / "S.h5") as store:
        assert store.ids == ["../odd id"]


def test_a_foreign_failures_file_beside_a_store_is_not_replaced(tmp_path, capsys, corpus):
    (tmp_path / "S.failures.tsv").write_text("my notes\n")
    refused(capsys, tmp_path, ["encode", corpus, "-o", tmp_path / "S.h5", "--model", MODEL, "--workers", 0],
            "S.failures.tsv", "not written by dmcodec")


# -- the other commands --------------------------------------------------------------------------------

def test_score_json_over_an_input_is_refused(tmp_path, capsys):
    ref, deg = clip(tmp_path / "ref.wav"), clip(tmp_path / "deg.wav", 0.3)
    refused(capsys, tmp_path, ["score", ref, deg, "--json-file", deg], "deg.wav", "is also an input")


def test_roundtrip_into_a_folder_with_foreign_files_is_refused(tmp_path, capsys):
    source = clip(tmp_path / "v.wav")
    out = tmp_path / "out"
    clip(out / "v.wav", 0.2)  # someone's file where the reconstruction would go
    refused(capsys, tmp_path, ["roundtrip", source, "-o", out, "--model", MODEL], "v.wav", "not written by dmcodec")


def test_prep_to_an_existing_file_is_refused(tmp_path, capsys, corpus):
    (tmp_path / "out").write_text("x")
    refused(capsys, tmp_path, ["prep", corpus, "-o", tmp_path / "out"], "out", "is a file, not a folder")


def test_extract_overwrite_never_deletes_its_manifest(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("{}\n")
    refused(capsys, tmp_path, ["extract", manifest, "-o", manifest, "--overwrite", "--sm", "nope"], "m.jsonl",
            "is also an input")


@pytest.mark.parametrize("case", ["a file", "a foreign folder"])
def test_train_out_must_be_a_run_folder(tmp_path, capsys, case):
    out = tmp_path / "exp"
    if case == "a file":
        out.write_text("x")
    else:
        out.mkdir()
        (out / "metrics.jsonl").write_text("mine\n")
    config, data = tmp_path / "c.json", tmp_path / "d.jsonl"
    config.write_text("{}")
    data.write_text("")
    needles = ["is a file, not a folder"] if case == "a file" else ["metrics.jsonl", "not a dmcodec training run"]
    refused(capsys, tmp_path, ["train", "--config", config, "--data", data, "-o", out], *needles)


# -- the id check itself -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [*BAD_IDS.values(), "nul\0byte", "a/", "/"])
def test_id_path_refuses(tmp_path, bad):
    from dmcodec_cli.outputs import BadId, id_path

    with pytest.raises(BadId):
        id_path(tmp_path, bad, ".npy")


def test_id_path_keeps_plain_ids(tmp_path):
    from dmcodec_cli.outputs import id_path

    assert id_path(tmp_path, "spk1/utt 3.x", ".npy") == tmp_path / "spk1" / "utt 3.x.npy"


CORPUS_OUTPUT_REFUSALS = {
    "store under a file": (lambda d: touch(d / "plain") / "S.h5", ["plain", "is a file, so"]),
    "store that is a folder": (lambda d: folder(d / "S.h5"), ["S.h5", "is a folder, not a code store"]),
    "tree named like a file": (lambda d: f"{d / 'codes.npy'}/", ["codes.npy", "named like a file"]),
    "over-long store name": (lambda d: d / ("s" * 300 + ".h5"), ["longer than this file system allows"]),
    "tree is the input": (lambda d: f"{d / 'corpus'}/", ["corpus", "is also an input"]),
}


@pytest.mark.parametrize("case", list(CORPUS_OUTPUT_REFUSALS))
def test_corpus_outputs_are_checked_before_the_model_loads(tmp_path, capsys, corpus, case):
    make, needles = CORPUS_OUTPUT_REFUSALS[case]
    output = make(tmp_path)
    refused(capsys, tmp_path, ["encode", corpus, "-o", output, "--model", tmp_path / "no-model.pt"], *needles)


def test_decode_store_keeps_a_foreign_failures_file(tmp_path, capsys, model):
    store = make_store(tmp_path / "S.h5", model, ["a"])
    out = folder(tmp_path / "out")
    touch(out / "failures.tsv", "my own list\n")
    refused(capsys, tmp_path, ["decode", store, "-o", out, "--model", MODEL], "failures.tsv", "not written by dmcodec")
