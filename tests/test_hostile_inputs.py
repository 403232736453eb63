"""Hostile inputs as found in the wild: symlink loops, names that are not UTF-8, unreadable or special files,
absurd levels, option values that cannot be meant, file-system errors reaching the CLI, a 1-sample clip in a
roundtrip folder, and prep's count of what it skipped. Each case: status, message, nothing else changed."""

from __future__ import annotations

import errno
import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest
import soundfile as sf

from cli import run_cli
from dmcodec_cli.audio import MAX_PEAK, load_audio
from dmcodec_cli.data.prep import PrepOptions, prepare
from dmcodec_cli.data.sources import local_source
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.inputs import collect_inputs
from dmcodec_cli.quality.scoring import roundtrip_inputs
from hostile import assert_one_line_error, changes, snapshot

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
SPEECH = Path(__file__).parent / "fixtures" / "speech"
MODEL = REFERENCE / "dmcodec_small.pt"
BAD_NAME = os.fsdecode(b"n\xffme.wav")  #: a Linux name whose bytes are not UTF-8
ROOT = os.geteuid() == 0  #: root reads anything: permission cases then fake the refusal


def clip(path: Path, seconds: float = 0.4) -> Path:
    """A short real-speech clip at ``path`` (16 kHz mono wav)."""
    samples, rate = sf.read(SPEECH / "ljspeech_LJ002-0020.wav", dtype="float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(os.fsencode(path), samples[: int(seconds * rate)], rate, format="WAV")  # bytes: any name
    return path


def no_weights():
    """Single-file encode without loading weights: the refusals under test come before any encoding (a
    read that is not refused reaches the mock and fails the test with an internal error)."""
    return mock.patch("dmcodec_cli.cli.codec.load_model", return_value=mock.MagicMock(n_q=8, sample_rate=16000))


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging) if the block takes longer than ``seconds``."""
    def expired(*_):
        raise TimeoutError(f"took longer than {seconds} s (a walk that loops?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- the folder walk

def _loop_tree(root: Path, kind: str) -> set[str]:
    """A corpus with links that loop or duplicate; returns the ids each real file must have."""
    clip(root / "a.wav")
    clip(root / "sub" / "b.wav")
    if kind == "up":  # sub/up -> ..  : a loop
        (root / "sub" / "up").symlink_to("..")
    elif kind == "two_parents":  # two links to the parent: made encode hang with growing memory
        (root / "sub" / "p1").symlink_to("..")
        (root / "sub" / "p2").symlink_to("..")
        (root / "sub" / "deeper").mkdir()
        (root / "sub" / "deeper" / "p3").symlink_to("../..")
    elif kind == "file_links":  # links to files of the tree: the real path wins, each file once
        (root / "0_first.wav").symlink_to("sub/b.wav")
        (root / "sub" / "again.wav").symlink_to("../a.wav")
    elif kind == "self":  # a link to itself (ELOOP) and one to the root
        (root / "me").symlink_to("me")
        (root / "sub" / "root").symlink_to(root)
    return {"a", "sub/b"}


WALKERS = {
    "corpus": lambda root: [item.id for item in collect_inputs(root)],
    "prep": lambda root: [utt.id.replace("__", "/") for utt in local_source(root)],
    "roundtrip": lambda root: [Path(pair.name).with_suffix("").as_posix() for pair in roundtrip_inputs(root)],
}


@pytest.mark.parametrize("walker", sorted(WALKERS))
@pytest.mark.parametrize("kind", ["up", "two_parents", "file_links", "self"])
def test_links_neither_loop_nor_duplicate(tmp_path, capsys, kind, walker):
    root = tmp_path / "corpus"
    expected = _loop_tree(root, kind)
    before = snapshot(tmp_path)
    with deadline(20):
        ids = WALKERS[walker](root)
    assert sorted(ids) == sorted(expected)  # every real file once, under its own path
    assert changes(before, snapshot(tmp_path)) == []
    err = capsys.readouterr().err
    assert ("me: cannot look at it" in err) == (kind == "self")  # a looping link is reported, not followed


def test_link_out_of_the_tree_is_followed_once(tmp_path):
    outside = tmp_path / "elsewhere"
    clip(outside / "x.wav")
    root = tmp_path / "corpus"
    clip(root / "a.wav")
    (root / "l1").symlink_to(outside)
    (root / "l2").symlink_to(outside)
    assert [item.id for item in collect_inputs(root)] == ["a", "l1/x"]


def test_broken_link_fifo_and_unreadable_folder_are_warned_and_skipped(tmp_path, capsys):
    root = tmp_path / "corpus"
    clip(root / "a.wav")
    (root / "gone.wav").symlink_to("nowhere.wav")
    os.mkfifo(root / "pipe.wav")
    (root / "locked").mkdir()
    clip(root / "locked" / "c.wav")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == root / "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    with deadline(20), mock.patch("os.scandir", scandir):
        ids = [item.id for item in collect_inputs(root)]
    assert ids == ["a"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(warnings) == 3 and all(line.startswith("warning: ") and line.endswith("skipped") for line in warnings)
    text = "\n".join(warnings)
    assert "gone.wav: broken symbolic link" in text and "pipe.wav: a FIFO" in text
    assert "locked: cannot read the folder (Permission denied)" in text


def test_encode_of_a_looping_folder_with_a_non_utf8_name(tmp_path, capsys):
    """One run (the model is loaded once): links to parents neither hang nor duplicate, and the file whose
    name is not UTF-8 is encoded under an escaped, valid UTF-8 id while read from its real path."""
    root = tmp_path / "corpus"
    expected = _loop_tree(root, "two_parents") | {"n\\xffme"}
    clip(root / BAD_NAME)
    before = snapshot(root)
    with deadline(120):
        result = run_cli(capsys, "encode", root, "-o", tmp_path / "c.h5", "--model", MODEL, "--workers", "0")
    assert result.code == 0, result.stderr
    with h5py.File(tmp_path / "c.h5") as f:
        ids = [s.decode("utf-8") for s in f["ids"][:]]  # valid UTF-8 in the store
        offsets = f["offsets"][:]
    assert sorted(ids) == sorted(expected) and len(set(ids)) == len(ids)
    assert np.all(np.diff(offsets) > 0)  # every item encoded
    assert changes(before, snapshot(root)) == []


# ---------------------------------------------------------------- names that are not UTF-8

def test_non_utf8_name_in_prep_and_roundtrip_inputs(tmp_path):
    root = tmp_path / "corpus"
    clip(root / BAD_NAME, seconds=1.0)
    report = prepare(local_source(root), tmp_path / "out", PrepOptions(segment_seconds=0.5))
    manifest = (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8")  # valid UTF-8
    assert report.failures == [] and report.segments == 2 and "n\\\\xffme-0000" in manifest
    pair, = roundtrip_inputs(root)
    assert pair.name == "n\\xffme.wav" and pair.reference.is_file()  # escaped name, real path


# ---------------------------------------------------------------- reading audio

def test_permission_denied_is_named(tmp_path, capsys):
    path = clip(tmp_path / "locked.wav")
    real_open = os.open

    def refuse(name, *args, **kwargs):
        if Path(os.fsdecode(name)) == path:
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(name))
        return real_open(name, *args, **kwargs)

    before = snapshot(tmp_path)
    if ROOT:
        with mock.patch("os.open", refuse), no_weights():
            result = run_cli(capsys, "encode", path, "-o", tmp_path / "x.npy")
    else:
        path.chmod(0)
        with no_weights():
            result = run_cli(capsys, "encode", path, "-o", tmp_path / "x.npy")
        path.chmod(0o644)
    assert_one_line_error(result, str(path), "permission denied")
    assert "not a readable audio file" not in result.stderr
    assert changes(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_special_files_given_as_audio(tmp_path, capsys, kind):
    work = tmp_path / "work"
    work.mkdir()
    if kind == "fifo":
        path = tmp_path / "pipe.wav"
        os.mkfifo(path)
    path = {"fifo": tmp_path / "pipe.wav", "device": Path("/dev/zero"), "folder": work}[kind]
    before = snapshot(work)
    with deadline(60):
        if kind == "folder":  # a folder is a corpus to encode; as a file it reaches the reader from elsewhere
            with pytest.raises(DmcodecError, match="is a folder, not an audio file"):
                load_audio(path, 16000)
            return
        with no_weights():
            result = run_cli(capsys, "encode", path, "-o", work / "x.npy")
    words = {"fifo": "is a FIFO", "device": "is a character device"}[kind]
    assert_one_line_error(result, str(path), words)
    assert changes(before, snapshot(work)) == []


@pytest.mark.parametrize("peak", [1e6, MAX_PEAK * 1.5, float("nan")])
def test_absurd_levels_are_refused(tmp_path, capsys, peak):
    path = tmp_path / "loud.wav"
    samples = np.sin(np.linspace(0, 300, 8000)).astype(np.float32) * (1.0 if np.isnan(peak) else peak)
    samples[100] = peak
    sf.write(path, samples, 16000, subtype="FLOAT")
    before = snapshot(tmp_path)
    result = run_cli(capsys, "encode", path, "-o", tmp_path / "x.npy", "--model", MODEL)  # levels: read while encoding
    needles = ("NaN or infinite",) if np.isnan(peak) else ("peak level", "more than 1000", "60 dB above full scale")
    assert_one_line_error(result, str(path), *needles)
    assert changes(before, snapshot(tmp_path)) == []


def test_loud_but_plausible_levels_are_accepted(tmp_path):
    path = tmp_path / "hot.wav"
    sf.write(path, np.sin(np.linspace(0, 300, 8000)).astype(np.float32) * 4.0, 16000, subtype="FLOAT")
    assert np.abs(load_audio(path, 16000).samples).max() > 3.9  # 12 dB over full scale: a hot mix, kept


# ---------------------------------------------------------------- options

ENCODE_OPTIONS = [
    ("--batch-seconds", "nan", "--batch-seconds"), ("--batch-seconds", "inf", "--batch-seconds"),
    ("--batch-seconds", "-1", "--batch-seconds"), ("--batch-seconds", "0", "--batch-seconds"),
    ("--window-seconds", "0.001", "at least 1 s"), ("--window-seconds", "nan", "--window-seconds"),
    ("--window-seconds", "-inf", "--window-seconds"), ("--context-seconds", "-1", "--context-seconds"),
    ("--context-seconds", "nan", "--context-seconds"), ("--context-seconds", "20", "less than --window-seconds"),
    ("--whole-seconds", "inf", "--whole-seconds"), ("--whole-seconds", "-1", "--whole-seconds"),
    ("--workers", "-1", "--workers must be in 0..64"), ("--workers", "100000", "--workers must be in 0..64"),
    ("--commit-every", "0", "--commit-every must be in 1.."), ("--num-shards", "0", "--num-shards must be at least 1"),
    ("--shard-index", "3", "--shard-index must be in 0..1"),
]


@pytest.mark.parametrize("option, value, needle", ENCODE_OPTIONS, ids=[f"{o}={v}" for o, v, _ in ENCODE_OPTIONS])
def test_encode_options_are_validated(tmp_path, capsys, option, value, needle):
    corpus = tmp_path / "corpus"
    clip(corpus / "a.wav")
    extra = ["--num-shards", "2"] if option == "--shard-index" else []
    before = snapshot(tmp_path)
    with mock.patch("dmcodec_cli.cli.corpus.load_model", return_value=mock.MagicMock(n_q=8)):  # fast: no weights
        result = run_cli(capsys, "encode", corpus, "-o", tmp_path / "c.h5", option, value, *extra)
    assert_one_line_error(result, needle, f"got {value}" if value not in ("nan", "inf", "-inf") else "got")
    assert "[0, -1]" not in result.stderr
    assert changes(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("value", ["1,x", "0", "nan", ",", "1,99"])
def test_roundtrip_n_q_junk(tmp_path, capsys, value):
    path = clip(tmp_path / "a.wav")
    before = snapshot(tmp_path)
    result = run_cli(capsys, "roundtrip", path, "--model", MODEL, "--n-q", value, "-o", tmp_path / "out")
    assert_one_line_error(result, f"--n-q {value!r}")
    assert changes(before, snapshot(tmp_path)) == []


PREP_OPTIONS = [("--segment-seconds", "nan"), ("--segment-seconds", "inf"), ("--segment-seconds", "0"),
                ("--segment-seconds", "-3"), ("--segment-seconds", "1e-9"), ("--ratio", "nan"), ("--ratio", "0"),
                ("--valid-fraction", "nan"), ("--valid-fraction", "1"), ("--min-tail-seconds", "nan"),
                ("--min-tail-seconds", "-1")]


@pytest.mark.parametrize("option, value", PREP_OPTIONS, ids=[f"{o}={v}" for o, v in PREP_OPTIONS])
def test_prep_options_are_validated(tmp_path, capsys, option, value):
    clip(tmp_path / "src" / "a.wav")
    before = snapshot(tmp_path)
    result = run_cli(capsys, "prep", tmp_path / "src", "-o", tmp_path / "out", option, value)
    assert_one_line_error(result, option)
    assert changes(before, snapshot(tmp_path)) == []


# ---------------------------------------------------------------- the CLI's last line of defence

OS_ERRORS = [(errno.ENOSPC, "No space left on device"), (errno.EACCES, "Permission denied"),
             (errno.ENAMETOOLONG, "File name too long"), (errno.EROFS, "Read-only file system"),
             (errno.ENOENT, "No such file or directory")]


@pytest.mark.parametrize("code, reason", OS_ERRORS, ids=[errno.errorcode[c] for c, _ in OS_ERRORS])
def test_os_error_reaching_the_cli_is_one_line(tmp_path, capsys, code, reason):
    target = tmp_path / ("x" * 300 + ".npy")
    with mock.patch("dmcodec_cli.cli.app", side_effect=OSError(code, reason, str(target))):
        result = run_cli(capsys, "encode", "in.wav", "-o", target)
    assert_one_line_error(result, f"error: {target}: {reason}")  # long, and still one line: never wrapped


@pytest.mark.parametrize("exc, code, needles", [
    (ValueError("boom\nsecond line"), 1, ("internal error (ValueError: boom second line)", "run with --debug")),
    (KeyboardInterrupt(), 130, ("interrupted",)),
], ids=["internal", "ctrl-c"])
def test_other_exceptions_are_one_line(capsys, exc, code, needles):
    with mock.patch("dmcodec_cli.cli.app", side_effect=exc):
        result = run_cli(capsys, "info", "x")
    assert_one_line_error(result, *needles, code=code)


def test_debug_still_shows_the_traceback():
    from dmcodec_cli.cli import main, state

    with mock.patch("dmcodec_cli.cli.app", side_effect=ValueError("boom")), mock.patch.object(state, "debug", True):
        with pytest.raises(ValueError, match="boom"):
            main()


def test_ctrl_c_inside_a_command_exits_130_with_one_line(tmp_path, capsys):
    path = clip(tmp_path / "a.wav")
    with mock.patch("dmcodec_cli.audio.AudioReader.__init__", side_effect=KeyboardInterrupt), no_weights():
        result = run_cli(capsys, "encode", path, "-o", tmp_path / "x.npy")
    assert_one_line_error(result, "interrupted", code=130)
    assert not (tmp_path / "x.npy").exists()


# ---------------------------------------------------------------- batches go on

def test_roundtrip_folder_with_a_one_sample_clip(tmp_path, capsys):
    src = tmp_path / "in"
    clip(src / "a.wav", seconds=0.6)
    sf.write(src / "one.wav", np.array([0.1], np.float32), 16000)
    before = snapshot(src)
    result = run_cli(capsys, "roundtrip", src, "--model", MODEL, "--json-file", tmp_path / "r.json")
    assert result.code == 1 and "Traceback" not in result.stderr
    rows = {row["file"]: row for row in json.loads((tmp_path / "r.json").read_text())["files"]}
    assert "too short to roundtrip (1 samples" in rows["one.wav"]["error"]
    assert "error" not in rows["a.wav"] and rows["a.wav"]["stoi"] is not None
    assert changes(before, snapshot(src)) == []


def test_prep_says_how_many_were_skipped_and_why(tmp_path, capsys):
    src = tmp_path / "src"
    for name in ("a", "b"):
        clip(src / f"{name}.wav", seconds=1.0)
    clip(src / "short.wav", seconds=0.1)  # under --min-tail-seconds 0.5: no segment
    (src / "broken.wav").write_bytes(b"RIFF not really a wav")
    result = run_cli(capsys, "prep", src, "-o", tmp_path / "out", "--segment-seconds", "1", "--json")
    assert result.code == 1
    report = json.loads(result.stdout)
    assert report["utterances"] == 4 and report["used_utterances"] == 2 and report["segments"] == 2
    assert report["skipped"] == {"could not be read": 1, "no segment under the tail rule (shorter than "
                                 "--min-tail-seconds, or --tail drop)": 1}
    again = prepare(local_source(src), tmp_path / "out", PrepOptions(segment_seconds=1.0))
    line = again.summary()
    assert line.startswith("2 of 4 utterances used, skipped: 1 could not be read; 1 no segment") and "\n" not in line


def test_a_failing_input_with_a_non_utf8_name_is_listed_escaped(tmp_path, capsys):
    """The failures file is valid UTF-8 even when the failing input's name is not."""
    root = tmp_path / "corpus"
    clip(root / "good.wav")
    (root / BAD_NAME).write_bytes(b"not audio at all")
    before = snapshot(root)
    result = run_cli(capsys, "encode", root, "-o", tmp_path / "c.h5", "--model", MODEL, "--workers", "0")
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    rows = (tmp_path / "c.failures.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2 and rows[1].startswith("n\\\\xffme\t") and "n\\xffme.wav" in rows[1]
    assert changes(before, snapshot(root)) == []
