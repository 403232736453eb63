"""dmcodec export: every format read back with its own ecosystem's reader equals the store; resuming; failures;
the output policy of every command."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from cli import run_cli
from dmcodec_cli.corpus.store import CodeStore, Entry, StoreMeta, write_store
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.lm import formats
from dmcodec_cli.lm.export import RECORD_NAME, export_store, read_export_spec
from dmcodec_cli.lm.labels import read_labels
from dmcodec_cli.lm.tokens import from_tokens

N_Q, CODEBOOK = 3, 64
META = StoreMeta(16000, 50.0, N_Q, CODEBOOK, "e" * 64, json.dumps({"n_q": N_Q}))
NAMES = ["spk1/a", "spk1/b.c", "spk2/ümlaut ü", "d", "spk3/deep/x.y", "one-frame", "empty"]


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(1)
    frames = {"one-frame": 1, "empty": 0}
    entries = []
    for name in NAMES:
        t = frames.get(name, int(rng.integers(2, 60)))
        entries.append(Entry(name, t * 320, rng.integers(0, CODEBOOK, (N_Q, t))))
    return write_store(tmp_path / "codes.h5", META, entries)


def expected(store_path, n_q: int = N_Q) -> dict[str, np.ndarray]:
    with CodeStore(store_path) as s:
        return {name: codes[:n_q].astype(np.int64) for name, codes in s}


def read_hf(out, tmp_path) -> dict[str, dict]:
    import datasets

    rows = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf-cache"))
    return {row["id"]: row for row in rows}


def read_webdataset(out) -> dict[str, dict]:
    import webdataset

    shards = sorted(str(p) for p in out.glob("shard-*.tar"))
    return {s["json"]["id"]: {**s["json"], "tokens": s["tokens.npy"]}
            for s in webdataset.WebDataset(shards, shardshuffle=False).decode()}


def read_jsonl(out) -> dict[str, dict]:
    rows = [json.loads(line) for p in sorted(out.glob("tokens-*.jsonl")) for line in p.read_text().splitlines()]
    return {row["id"]: row for row in rows}


@pytest.mark.parametrize("layout", ["flat", "delay", "parallel", "first"])
@pytest.mark.parametrize("fmt", ["hf", "webdataset", "jsonl"])
def test_every_format_read_back_with_its_reader_equals_the_store(tmp_path, store, fmt, layout):
    out = tmp_path / "out"
    summary = export_store(store, out, fmt, layout, n_q=2, shard_size=3)
    assert (summary.exported, summary.shards, summary.failures) == (len(NAMES), 3, [])
    spec = read_export_spec(out)
    assert (spec.layout, spec.n_q if layout != "first" else 2, spec.model_fingerprint) == (layout, 2, "e" * 64)
    rows = {"hf": lambda: read_hf(out, tmp_path), "webdataset": lambda: read_webdataset(out),
            "jsonl": lambda: read_jsonl(out)}[fmt]()
    want = expected(store, spec.n_q)
    assert sorted(rows) == sorted(want)
    for name, codes in want.items():
        np.testing.assert_array_equal(from_tokens(np.asarray(rows[name]["tokens"]), spec), codes)
        assert rows[name]["num_frames"] == codes.shape[1]
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["complete"] and record["shards_done"] == [0, 1, 2]
    assert not list(out.rglob(".*tmp*"))


def test_lhotse_cuts_carry_the_codes_as_a_temporal_array(tmp_path, store):
    from lhotse import CutSet

    out = tmp_path / "lh"
    manifest = tmp_path / "labels.jsonl"
    manifest.write_text(json.dumps({"id": "spk1/a", "text": "HELLO", "speaker": "spk1"}) + "\n")
    export_store(store, out, "lhotse", shard_size=4, labels=read_labels(manifest))
    cuts = CutSet.from_files(sorted(str(p) for p in out.glob("cuts-*.jsonl.gz")))
    want = expected(store)
    assert sorted(c.id for c in cuts) == sorted(want)
    for cut in cuts:
        assert cut.has_custom("codes") and cut.duration == pytest.approx(want[cut.id].shape[1] / 50.0)
        np.testing.assert_array_equal(cut.load_codes().T, want[cut.id])  # [T, K] along time
        assert cut.codes.frame_shift == pytest.approx(0.02)
    (labelled,) = [c for c in cuts if c.supervisions]
    assert labelled.id == "spk1/a" and labelled.supervisions[0].text == "HELLO"
    assert labelled.supervisions[0].speaker == "spk1"
    with pytest.raises(DmcodecError, match="parallel only"):
        export_store(store, tmp_path / "lh2", "lhotse", "flat")


def test_manifest_labels_become_columns(tmp_path, store):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [
        {"id": "spk1/a", "text": "HELLO WORLD", "speaker": "spk1", "path": "x.wav"},
        {"id": "d", "speaker": "spk9"}, {"id": "not-in-store", "text": "x"}]) + "\n")
    export_store(store, tmp_path / "hf", "hf", labels=read_labels(manifest))
    rows = read_hf(tmp_path / "hf", tmp_path)
    assert (rows["spk1/a"]["text"], rows["spk1/a"]["speaker"]) == ("HELLO WORLD", "spk1")
    assert (rows["d"]["text"], rows["d"]["speaker"]) == (None, "spk9")
    assert rows["empty"]["text"] is None
    export_store(store, tmp_path / "plain", "jsonl")
    assert set(read_jsonl(tmp_path / "plain")["d"]) == {"id", "tokens", "num_frames"}  # no manifest, no columns


def test_a_stopped_export_resumes_keeping_finished_shards(tmp_path, store, monkeypatch):
    out = tmp_path / "out"
    real = formats.FORMATS["jsonl"]
    calls = []

    def crash_on_third(targets, rows, spec):
        calls.append(targets[0].name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real.write(targets, rows, spec)

    monkeypatch.setitem(formats.FORMATS, "jsonl", dataclasses.replace(real, write=crash_on_third))
    with pytest.raises(KeyboardInterrupt):
        export_store(store, out, "jsonl", shard_size=2)
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("tokens-*")}
    assert sorted(first) == ["tokens-00000-of-00004.jsonl", "tokens-00001-of-00004.jsonl"]
    assert not list(out.glob(".*tmp"))
    monkeypatch.setitem(formats.FORMATS, "jsonl", real)
    summary = export_store(store, out, "jsonl", shard_size=2)
    assert (summary.skipped, summary.exported) == (4, 3)
    assert {name: (out / name).stat().st_mtime_ns for name in first} == first  # not written again
    rows = read_jsonl(out)
    spec = read_export_spec(out)
    for name, codes in expected(store).items():
        np.testing.assert_array_equal(from_tokens(np.array(rows[name]["tokens"]), spec), codes)


def test_a_damaged_utterance_is_a_failed_item_and_the_rest_is_exported(tmp_path, store, capsys):
    with h5py.File(store, "r+") as f:
        f["codes"][0, 0] = CODEBOOK + 5  # utterance 0 ("spk1/a") now holds a code outside its codebook
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "export", store, "-o", out, "--format", "jsonl", "--json")
    assert code == 1 and "failures.tsv" in err
    summary = json.loads(stdout)
    assert (summary["exported"], summary["failed"]) == (len(NAMES) - 1, 1)
    assert "spk1/a" in (out / "failures.tsv").read_text() and "spk1/a" not in read_jsonl(out)
    assert not json.loads((out / RECORD_NAME).read_text())["complete"]


def test_outputs_follow_the_policy(tmp_path, store, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "export", store, "-o", foreign)
    assert code == 2 and "holds no dmcodec export" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert run_cli(capsys, "export", store, "-o", foreign, "--overwrite").code == 0
    assert (foreign / "notes.txt").read_text() == "mine"  # filled, never wiped

    out = tmp_path / "out"
    assert run_cli(capsys, "export", store, "-o", out, "--format", "jsonl").code == 0
    code, _, err = run_cli(capsys, "export", store, "-o", out, "--format", "jsonl", "--layout", "delay")
    assert code == 2 and "other settings" in err and "tokens" in err
    assert run_cli(capsys, "export", store, "-o", out, "--format", "jsonl", "--layout", "delay",
                   "--overwrite").code == 0
    assert read_export_spec(out).layout == "delay"

    for args, message in [(["-o", store], "is a file"), (["-o", tmp_path / "x", "--layout", "zigzag"], "zigzag"),
                          (["-o", tmp_path / "x", "--n-q", "9"], "--n-q must be between 1 and 3"),
                          (["-o", tmp_path / "x", "--shard-size", "0"], "--shard-size"),
                          (["-o", tmp_path / "x", "--format", "tfrecord"], "--format must be one of")]:
        code, _, err = run_cli(capsys, "export", store, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "x").exists()
    with h5py.File(store, "r") as f:
        assert f.attrs["format"] == b"dmcodec-codes"  # the input is untouched


def test_a_malformed_manifest_is_one_line(tmp_path, store, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a"}\n{"text": "no id"}\n')
    code, _, err = run_cli(capsys, "export", store, "-o", tmp_path / "o", "--manifest", manifest)
    assert code == 2 and "m.jsonl:2" in err and "\"id\"" in err and not (tmp_path / "o").exists()


def test_overwrite_removes_the_previous_export_s_shards_and_nothing_else(tmp_path, store):
    out = tmp_path / "out"
    export_store(store, out, "jsonl", shard_size=2)
    (out / "mine.txt").write_text("keep")
    assert len(list(out.glob("tokens-*"))) == 4
    with pytest.raises(DmcodecError, match="shard_size, shards differ"):
        export_store(store, out, "jsonl", shard_size=10)
    export_store(store, out, "jsonl", shard_size=10, overwrite=True)
    assert sorted(p.name for p in out.glob("tokens-*")) == ["tokens-00000-of-00001.jsonl"]  # no stale shards
    assert (out / "mine.txt").read_text() == "keep" and len(read_jsonl(out)) == len(NAMES)
