"""Crash safety that cannot wedge: every state a kill -9 can leave in ``X.h5.work/`` (made by hand, and
made by real SIGKILLs at named points) is completed by the next run to the store an uninterrupted run
writes; a second run on a store being written is refused in one line; a dead run's lock is taken over."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest

from cli import REPO, run_cli
from conftest import REFERENCE, SPEECH
from dmcodec_cli.corpus import runner
from dmcodec_cli.corpus.lock import StoreLock
from dmcodec_cli.corpus.runner import RunOptions, tokenize_corpus
from dmcodec_cli.engine.encoder import EngineOptions
from dmcodec_cli.inputs import collect_inputs
from dmcodec_cli.registry import load_model
from hostile import assert_one_line_error, changes, snapshot

MODEL = REFERENCE / "dmcodec_small.pt"
CLIPS = ["ljspeech_LJ002-0020.wav", "ljspeech_LJ001-0002.flac", "librispeech_train-clean-100_19-198-0000.flac",
         "librispeech_test-other_1998-15444-0008.flac"]  # the 4 shortest (1.5 - 2.9 s): 4 segments
ONE_PER_COMMIT = RunOptions(EngineOptions(batch_seconds=4.0), workers=0, commit_every=1)
ENCODE = ("--model", MODEL, "--device", "cpu", "--workers", 0, "--batch-seconds", 4, "--commit-every", 1)
OUTPUTS = ("c.h5", "c.h5.work", ".c.h5.tmp", "c.h5.lock")  #: what a run on c.h5 may create or change


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("journal") / "corpus"
    root.mkdir()
    for clip in CLIPS:
        shutil.copy(SPEECH / clip, root / clip)
    return root


@pytest.fixture(scope="module")
def model():
    return load_model(str(MODEL), "cpu")


@pytest.fixture(scope="module")
def reference(corpus, model) -> Path:
    """An uninterrupted run: what every interrupted run must complete to."""
    out = corpus.parent / "reference" / "c.h5"
    tokenize_corpus(model, collect_inputs(corpus), out, ONE_PER_COMMIT)
    return out


@pytest.fixture(scope="module")
def journal(corpus, model) -> Path:
    """A run killed just before its final merge: a full journal (one segment per utterance), no store."""
    root = corpus.parent / "journal"
    with mock.patch.object(runner.StoreSink, "finalize", lambda self, items: self.lock.release()):
        tokenize_corpus(model, collect_inputs(corpus), root / "c.h5", ONE_PER_COMMIT)
    assert not (root / "c.h5").exists() and len(list((root / "c.h5.work").glob("seg-*.json"))) == len(CLIPS)
    return root / "c.h5.work"


def store_content(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {"attrs": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()},
                **{k: f[k][:].tolist() for k in ("codes", "offsets", "ids", "num_samples")}}


def segments(work: Path) -> list[tuple[Path, Path]]:
    """(json, codes) of each segment, in commit order."""
    return [(p, p.with_name(p.name[: -len(".json")] + ".codes.npy")) for p in sorted(work.glob("seg-*.json"))]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def rewrite_index(path: Path, change) -> None:
    index = json.loads(path.read_text())
    change(index)
    path.write_text(json.dumps(index))


def resave_codes(path: Path, change) -> None:
    np.save(path, change(np.load(path)), allow_pickle=True)


# state name -> (the store of the finished run is already in place, how many utterances must be encoded
# again, what to do to the journal); seg[i] = (json, codes) of the i-th segment
STATES = {
    # a commit cut short
    "codes-without-json": (False, 1, lambda w, seg: seg[3][0].unlink()),
    "json-without-codes": (False, 1, lambda w, seg: seg[1][1].unlink()),
    "temporary-files": (False, 0, lambda w, seg: [(w / n).write_bytes(os.urandom(300)) for n in
                                                  (".seg-r0000-x-000009.codes.npy.tmp",
                                                   ".seg-r0000-x-000009.json.tmp")]),
    "json-truncated": (False, 1, lambda w, seg: truncate(seg[2][0])),
    "json-empty": (False, 1, lambda w, seg: seg[0][0].write_bytes(b"")),
    "json-not-an-index": (False, 1, lambda w, seg: seg[1][0].write_text('["ids", 1]')),
    "json-offsets-inconsistent": (False, 1, lambda w, seg: rewrite_index(
        seg[1][0], lambda i: i.update(offsets=i["offsets"][:-1] + [i["offsets"][-1] + 7]))),
    "json-ids-not-strings": (False, 1, lambda w, seg: rewrite_index(seg[2][0], lambda i: i.update(ids=[3]))),
    "codes-truncated": (False, 1, lambda w, seg: truncate(seg[0][1])),
    "codes-empty": (False, 1, lambda w, seg: seg[1][1].write_bytes(b"")),
    "codes-random-bytes": (False, 1, lambda w, seg: seg[2][1].write_bytes(os.urandom(1000))),
    "codes-extra-bytes": (False, 1, lambda w, seg: seg[3][1].write_bytes(seg[3][1].read_bytes() + b"\0" * 64)),
    "codes-one-frame-short": (False, 1, lambda w, seg: resave_codes(seg[0][1], lambda c: c[:-1])),
    "codes-int32": (False, 1, lambda w, seg: resave_codes(seg[1][1], lambda c: c.astype(np.int32))),
    "codes-pickled-objects": (False, 1, lambda w, seg: resave_codes(seg[2][1], lambda c: c.astype(object))),
    "all-damaged": (False, 4, lambda w, seg: [truncate(s[k]) for k, s in enumerate(seg[:2])]
                    + [s[k].unlink() for k, s in enumerate(seg[2:])]),
    "temporary-store-left": (False, 0, lambda w, seg: (w.parent / ".c.h5.tmp").write_bytes(os.urandom(5000))),
    # the clean-up after the store was renamed into place, cut short
    "store-renamed-journal-kept": (True, 0, lambda w, seg: None),
    "clean-up-some-marks-gone": (True, 0, lambda w, seg: [s[0].unlink() for s in seg[:2]]),
    "clean-up-all-marks-gone": (True, 0, lambda w, seg: [s[0].unlink() for s in seg]),
    "clean-up-half-of-each": (True, 0, lambda w, seg: [seg[0][1].unlink(), seg[2][0].unlink(), truncate(seg[3][1])]),
    "clean-up-empty-folder": (True, 0, lambda w, seg: [p.unlink() for s in seg for p in s]),
    "store-renamed-temporary-left": (True, 0, lambda w, seg: [shutil.rmtree(w),
                                                              (w.parent / ".c.h5.tmp").write_bytes(b"\x89HDF")]),
}


def assert_completed(result, out: Path, reference: Path, encoded: int) -> None:
    """The run ended well and left exactly the store of an uninterrupted run, nothing else."""
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["encoded"], summary["skipped"]) == (encoded, len(CLIPS) - encoded)
    assert store_content(out) == store_content(reference)
    assert sorted(p.name for p in out.parent.iterdir()) == ["c.h5"]  # no journal, temporary store or lock


@pytest.mark.parametrize("state", list(STATES))
def test_any_partial_state_is_completed_to_the_uninterrupted_store(state, one_thread, journal, reference, corpus,
                                                                   capsys, tmp_path):
    stored, encoded, damage = STATES[state]
    work = tmp_path / "c.h5.work"
    shutil.copytree(journal, work)
    if stored:
        shutil.copy(reference, tmp_path / "c.h5")
    damage(work, segments(work))
    before, corpus_before = snapshot(tmp_path), snapshot(corpus)
    result = run_cli(capsys, "encode", corpus, "-o", tmp_path / "c.h5", *ENCODE, "--json")
    assert_completed(result, tmp_path / "c.h5", reference, encoded)
    assert changes(before, snapshot(tmp_path), OUTPUTS) == [] and snapshot(corpus) == corpus_before


def shell(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dmcodec_cli", "encode", *map(str, args), *map(str, ENCODE), "--json"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


# a few real kills here (each a process start); benchmarks/kill_soak.py kills at every point and at random times
@pytest.mark.parametrize("point", ["commit:codes@2", "finalize:writing", "remove:mark@2"])
def test_sigkill_at_a_named_point_then_rerun_equals_the_uninterrupted_store(point, reference, corpus, capsys,
                                                                            tmp_path):
    out = tmp_path / "c.h5"
    killed = shell(corpus, "-o", out, env={"DMCODEC_TEST_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL, f"never reached {point}: {killed.stderr[-2000:]}"
    left = {p.name for p in tmp_path.iterdir()}
    assert "c.h5.work" in left and "c.h5.lock" in left  # what the kill left behind (a stale lock too)
    assert ("c.h5" in left) == point.startswith("remove")
    result = run_cli(capsys, "encode", corpus, "-o", out, *ENCODE, "--json")
    assert_completed(result, out, reference, {"commit:codes@2": len(CLIPS) - 1}.get(point, 0))


HOLD = """import sys, time
from dmcodec_cli.corpus.lock import StoreLock
StoreLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process that holds the lock of tmp_path/c.h5 (killed with SIGKILL at the end)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "c.h5")], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_a_second_run_is_refused_and_touches_nothing_then_a_dead_runs_lock_is_taken_over(
        holder, journal, reference, corpus, capsys, tmp_path):
    out = tmp_path / "c.h5"
    shutil.copytree(journal, tmp_path / "c.h5.work")
    segments(tmp_path / "c.h5.work")[0][1].unlink()  # damage that a run which went on would repair
    (tmp_path / ".c.h5.tmp").write_bytes(b"half a store")
    before = snapshot(tmp_path)
    refused = run_cli(capsys, "encode", corpus, "-o", out, *ENCODE, "--json")
    assert_one_line_error(refused, str(out), "another dmcodec run", f"pid {holder.pid}", "wait")
    assert changes(before, snapshot(tmp_path)) == []
    holder.kill()  # SIGKILL: the lock file stays, the lock dies with the process
    holder.wait()
    assert (tmp_path / "c.h5.lock").exists()
    assert_completed(run_cli(capsys, "encode", corpus, "-o", out, *ENCODE, "--json"), out, reference, 1)


def test_a_lock_file_left_by_a_dead_process_is_taken_over(journal, reference, corpus, capsys, tmp_path):
    (tmp_path / "c.h5.lock").write_text("0" * 16 + "999999\n")  # as a killed run leaves it, unlocked
    result = run_cli(capsys, "encode", corpus, "-o", tmp_path / "c.h5", *ENCODE, "--json")
    assert_completed(result, tmp_path / "c.h5", reference, len(CLIPS))


def test_a_segment_of_another_model_is_refused_not_discarded(journal, corpus, capsys, tmp_path):
    shutil.copytree(journal, tmp_path / "c.h5.work")
    rewrite_index(segments(tmp_path / "c.h5.work")[0][0], lambda i: i.update(model_fingerprint="0" * 64))
    before = snapshot(tmp_path)
    result = run_cli(capsys, "encode", corpus, "-o", tmp_path / "c.h5", *ENCODE)
    assert_one_line_error(result, str(tmp_path / "c.h5.work"), "another model")
    assert changes(before, snapshot(tmp_path), ("c.h5.lock",)) == [] and not (tmp_path / "c.h5.lock").exists()


def test_the_lock_is_taken_over_within_one_process_and_its_file_goes_with_it(tmp_path):
    first, second = StoreLock(tmp_path / "c.h5"), StoreLock(tmp_path / "c.h5")
    first.acquire()  # e.g. a call that raised before it could let go
    assert (tmp_path / "c.h5.lock").read_bytes()[16:].decode().strip() == str(os.getpid())
    second.acquire()
    first.release()  # no longer the holder: nothing happens
    assert (tmp_path / "c.h5.lock").exists()
    second.release()
    assert list(tmp_path.iterdir()) == []


def test_merge_is_refused_while_a_run_writes_its_output(holder, reference, capsys, tmp_path):
    before = snapshot(tmp_path)
    refused = run_cli(capsys, "merge", reference, "-o", tmp_path / "c.h5")
    assert_one_line_error(refused, str(tmp_path / "c.h5"), "another dmcodec run", f"pid {holder.pid}")
    assert changes(before, snapshot(tmp_path)) == []


def test_the_clean_up_removes_only_what_a_journal_writes(journal, reference, corpus, capsys, tmp_path):
    work = tmp_path / "c.h5.work"
    shutil.copytree(journal, work)
    (work / "notes.txt").write_text("a user's file in a folder named like a journal")
    result = run_cli(capsys, "encode", corpus, "-o", tmp_path / "c.h5", *ENCODE, "--json")
    assert result.code == 0, result.stderr
    assert store_content(tmp_path / "c.h5") == store_content(reference)
    assert [p.name for p in work.iterdir()] == ["notes.txt"]
