"""Files from another person's disk, validated on the way in: code stores, .npy code files, configs, checkpoints.

Each case starts from a valid file made with the small reference model, breaks one thing, runs the CLI and
asserts the exit status, the one-line message (what is wrong and which file) and that nothing outside the
command's output changed.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from cli import run_cli, run_shell
from conftest import REFERENCE
from dmcodec_cli.config import CodecConfig, ConfigFile, parameter_estimate
from dmcodec_cli.corpus.report import store_summary
from dmcodec_cli.corpus.store import CodeStore, Entry, StoreMeta, write_store
from dmcodec_cli.data.features import FeatureWriter, GroupSpec
from dmcodec_cli.errors import DmcodecError
from hostile import assert_one_line_error, changes, snapshot

MODEL = REFERENCE / "dmcodec_small.pt"
CONFIG = REFERENCE / "config_small.json"
REPO = Path(__file__).resolve().parents[1]
FRAMES = {"spk1/a": 20, "spk1/b": 15, "c": 10}


# -- a valid store of the small model, then one thing broken ---------------------------------------------

def _entries() -> list[Entry]:
    rng = np.random.default_rng(0)
    return [Entry(name, frames * 320 - 7, rng.integers(0, 64, (8, frames))) for name, frames in FRAMES.items()]


@pytest.fixture(scope="module")
def valid_store(tmp_path_factory, small_model) -> Path:
    return write_store(tmp_path_factory.mktemp("valid") / "corpus.h5", StoreMeta.for_model(small_model), _entries())


def _replace(f: h5py.File, name: str, data, **kwargs) -> None:
    del f[name]
    f.create_dataset(name, data=data, **kwargs)


def _set_codes(f: h5py.File, row: int, value: int) -> None:
    codes = f["codes"]
    codes[row, 3] = value


STR = h5py.string_dtype("utf-8")
# case -> (what to break, a needle of the message)
STORE_CASES = {
    "attr-missing-n_q": (lambda f: f.attrs.__delitem__("n_q"), "missing attribute(s) n_q"),
    "attr-missing-config": (lambda f: f.attrs.__delitem__("config"), "missing attribute(s) config"),
    "attr-sample_rate-string": (lambda f: f.attrs.__setitem__("sample_rate", "16000"),
                                "attribute sample_rate must be an integer from 8000 to 192000"),
    "attr-sample_rate-1": (lambda f: f.attrs.__setitem__("sample_rate", 1), "attribute sample_rate must be"),
    "attr-frame_rate-nan": (lambda f: f.attrs.__setitem__("frame_rate", float("nan")), "attribute frame_rate"),
    "attr-frame_rate-not-a-hop": (lambda f: f.attrs.__setitem__("frame_rate", 47.3), "attribute frame_rate"),
    "attr-n_q-0": (lambda f: f.attrs.__setitem__("n_q", 0), "attribute n_q must be an integer from 1 to 64"),
    "attr-codebook_size-bool": (lambda f: f.attrs.__setitem__("codebook_size", True), "attribute codebook_size"),
    "attr-codebook_size-vs-config": (lambda f: f.attrs.__setitem__("codebook_size", 128), "its config says 64"),
    "attr-fingerprint-garbage": (lambda f: f.attrs.__setitem__("model_fingerprint", "xyz"), "model_fingerprint"),
    "attr-config-not-json": (lambda f: f.attrs.__setitem__("config", "{not json"), "attribute config"),
    "attr-format_version-0": (lambda f: f.attrs.__setitem__("format_version", 0), "attribute format_version"),
    "dataset-missing-offsets": (lambda f: f.__delitem__("offsets"), "missing dataset 'offsets'"),
    "dataset-missing-ids": (lambda f: f.__delitem__("ids"), "missing dataset 'ids'"),
    "dataset-codes-is-a-group": (lambda f: (f.__delitem__("codes"), f.create_group("codes")),
                                 "'codes' must be a 2-dimensional dataset"),
    "codes-float": (lambda f: _replace(f, "codes", np.zeros((45, 8), np.float32)), "must be integers [frames, 8]"),
    "codes-wrong-n_q": (lambda f: _replace(f, "codes", np.zeros((45, 4), np.int16)), "must be integers [frames, 8]"),
    "codes-absurd-shape": (lambda f: (f.__delitem__("codes"),
                                      f.create_dataset("codes", (10 ** 12, 8), np.int16, chunks=(16384, 8))),
                           "claims 1,000,000,000,000 frames, more than the file can hold"),
    "offsets-not-from-0": (lambda f: _replace(f, "offsets", np.array([1, 20, 35, 45])), "offsets must start at 0"),
    "offsets-decreasing": (lambda f: _replace(f, "offsets", np.array([0, 30, 20, 45])), "never decrease"),
    "offsets-past-codes": (lambda f: _replace(f, "offsets", np.array([0, 20, 35, 90])), "end at the 45 frames"),
    "offsets-float": (lambda f: _replace(f, "offsets", np.array([0.0, 20, 35, 45])), "'offsets' must hold integers"),
    "ids-duplicate": (lambda f: _replace(f, "ids", np.array(["a", "b", "a"], dtype=object), dtype=STR),
                      "id 'a' appears more than once"),
    "ids-empty": (lambda f: _replace(f, "ids", np.array(["a", "", "c"], dtype=object), dtype=STR),
                  "id of utterance 1 is empty"),
    "ids-not-strings": (lambda f: _replace(f, "ids", np.array([1, 2, 3])), "'ids' must hold strings"),
    "ids-count": (lambda f: _replace(f, "ids", np.array(["a", "b"], dtype=object), dtype=STR),
                  "must describe the same utterances"),
    "num_samples-negative": (lambda f: _replace(f, "num_samples", np.array([6393, -5, 3193])),
                             "num_samples of utterance 1 is negative"),
    "num_samples-vs-frames": (lambda f: _replace(f, "num_samples", np.array([6393, 99999, 3193])),
                              "utterance 1 has 15 frames but num_samples 99999 needs ceil(99999 / 320) = 313"),
}


def _broken_store(valid: Path, tmp_path: Path, case: str) -> Path:
    path = tmp_path / "broken.h5"
    shutil.copy(valid, path)
    with h5py.File(path, "r+") as f:
        STORE_CASES[case][0](f)
    return path


@pytest.mark.parametrize("case", list(STORE_CASES))
def test_a_broken_store_is_one_line_in_info_and_merge(valid_store, tmp_path, capsys, case):
    path = _broken_store(valid_store, tmp_path, case)
    needle = STORE_CASES[case][1]
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli(capsys, "info", path), str(path), needle)
    assert_one_line_error(run_cli(capsys, "merge", valid_store, path, "-o", tmp_path / "merged.h5"), str(path), needle)
    assert changes(before, snapshot(tmp_path)) == []


def test_the_valid_store_and_extra_attributes_or_datasets_are_read(valid_store, tmp_path, capsys):
    """Attributes and datasets besides the documented ones are tools' annotations: ignored, not refused."""
    path = tmp_path / "annotated.h5"
    shutil.copy(valid_store, path)
    with h5py.File(path, "r+") as f:
        f.attrs["description"] = "made on my laptop"
        f.create_dataset("speaker", data=np.array([1, 2, 3]))
    result = run_cli(capsys, "info", path, "--json")
    assert result.code == 0, result
    assert json.loads(result.stdout)["utterances"] == 3


def test_a_store_of_a_newer_version_says_upgrade(valid_store, tmp_path, capsys):
    path = tmp_path / "future.h5"
    shutil.copy(valid_store, path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 7
    assert_one_line_error(run_cli(capsys, "info", path), str(path), "version 7 is newer", "upgrade dmcodec")


def test_out_of_range_codes_fail_that_utterance_before_its_wav_is_written(valid_store, tmp_path, capsys):
    """Code values are only seen when an utterance is read: decode fails it, no (partial) wav of it is left."""
    path = tmp_path / "corpus.h5"
    shutil.copy(valid_store, path)
    with h5py.File(path, "r+") as f:
        _set_codes(f, 25, 64)  # frame 5 of spk1/b; the codebook holds 0..63
    before = snapshot(tmp_path)
    result = run_cli(capsys, "decode", path, "-o", tmp_path / "out", "--model", MODEL)
    assert result.code in (1, 2) and "Traceback" not in result.stderr, result
    failures = tmp_path / "out" / "failures.tsv"  # a failed item in a batch, or the whole run refused
    reason = failures.read_text() if failures.exists() else result.stderr
    assert "'spk1/b' holds code values in [" in reason and "64], outside 0..63" in reason, reason
    assert not (tmp_path / "out" / "spk1" / "b.wav").exists()
    assert [p.name for p in (tmp_path / "out").rglob("*") if "tmp" in p.name] == []  # no temporary file left
    assert changes(before, snapshot(tmp_path), allowed=("out",)) == []
    assert_one_line_error(run_cli(capsys, "info", path), str(path), "64], outside 0..63")
    assert_one_line_error(run_cli(capsys, "merge", path, "-o", tmp_path / "m.h5"), str(path),
                          "'spk1/b' holds code values")
    assert not (tmp_path / "m.h5").exists() and not list(tmp_path.glob(".m.h5*"))


@pytest.mark.parametrize("value", [-1, 32767])
def test_reading_an_utterance_checks_its_codes(valid_store, tmp_path, value):
    path = tmp_path / "corpus.h5"
    shutil.copy(valid_store, path)
    with h5py.File(path, "r+") as f:
        _set_codes(f, 40, value)  # in utterance c
    with CodeStore(path) as store:
        assert store["spk1/a"].shape == (8, 20)  # the others stay readable
        pattern = r"\[-1, \d+\]" if value < 0 else r"\[\d+, 32767\]"
        with pytest.raises(DmcodecError, match=r"'c' holds code values in " + pattern):
            store["c"]


def test_a_truncated_store_is_one_line(valid_store, tmp_path, capsys):
    path = tmp_path / "cut.h5"
    path.write_bytes(valid_store.read_bytes()[:5000])
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli(capsys, "info", path), str(path))
    assert changes(before, snapshot(tmp_path)) == []


def _data_offset(node: h5py.Dataset) -> int:
    """Where a dataset's data starts in its file: contiguous, or its first chunk."""
    offset = node.id.get_offset()
    return offset if offset is not None else node.id.get_chunk_info(0).byte_offset


def test_bit_flips_anywhere_in_the_metadata_give_a_line_or_a_valid_read(valid_store, tmp_path):
    """Flip one bit at every 17th byte of the HDF5 header and every 7th of the index: reading the store whole
    (what ``info`` does) either works or raises DmcodecError naming the store, never anything else."""
    data = valid_store.read_bytes()
    with h5py.File(valid_store, "r") as f:
        index = sorted(_data_offset(f[name]) for name in ("offsets", "ids", "num_samples"))
    positions = [*range(0, 4096, 17), *range(index[0] - 512, index[-1] + 64, 7)]
    outcomes = {"ok": 0, "line": 0}
    path = tmp_path / "flipped.h5"
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        path.write_bytes(flipped)
        try:
            store_summary(path)
            outcomes["ok"] += 1
        except DmcodecError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            outcomes["line"] += 1
    assert outcomes["line"] > 20, outcomes  # the sweep does reach the parts that matter


# -- stores with variable-length strings, whose values live in the file's global heap ------------------------

def _vlen_store(path: Path, meta: StoreMeta, entries: list[Entry]) -> Path:
    """A store as dmcodec wrote them while its strings were variable-length (format_version 1 all the same):
    the values of ``format``, ``model_fingerprint``, ``config`` and every id are objects of the global heap."""
    with h5py.File(path, "w") as f:
        f.attrs.update({**vars(meta), "dtype": np.bytes_(meta.dtype), "format": "dmcodec-codes", "format_version": 1})
        f.create_dataset("codes", data=np.concatenate([e.codes.T for e in entries]).astype(np.int16),
                         maxshape=(None, meta.n_q), chunks=(16384, meta.n_q))
        f.create_dataset("offsets", data=np.cumsum([0] + [e.codes.shape[1] for e in entries]).astype(np.int64))
        f.create_dataset("ids", data=np.asarray([e.id for e in entries], dtype=object), dtype=STR)
        f.create_dataset("num_samples", data=np.asarray([e.num_samples for e in entries], dtype=np.int64))
    return path


@pytest.fixture(scope="module")
def vlen_store(tmp_path_factory, small_model) -> Path:
    return _vlen_store(tmp_path_factory.mktemp("vlen") / "old.h5", StoreMeta.for_model(small_model), _entries())


def _number(data: bytes, at: int, size: int) -> int:
    return int.from_bytes(data[at:at + size], "little")


def _heap_walk(data: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """The first global heap collection's address and its objects: (address of the header, index, size)."""
    at = data.index(b"GCOL")
    end, cursor, objects = at + _number(data, at + 8, 8), at + 16, []
    while cursor + 16 <= end:
        objects.append((cursor, _number(data, cursor, 2), _number(data, cursor + 8, 8)))
        if objects[-1][1] == 0:  # the free space comes last
            break
        cursor += 16 + -(-objects[-1][2] // 8) * 8
    return at, objects


def _heap_objects(data: bytes) -> tuple[int, dict[str, tuple[int, int]]]:
    """The collection's address and its objects by name (``free-space``, ``format``, ``config``,
    ``fingerprint``, ``id-<id>``) -> (address of the header, size)."""
    at, walk = _heap_walk(data)
    objects = {}
    for header, index, size in walk:
        value = data[header + 16:header + 16 + size]
        name = ("free-space" if index == 0 else "format" if value == b"dmcodec-codes" else
                "config" if value.startswith(b"{") else "fingerprint" if len(value) == 64 else
                "id-" + value.decode().replace("/", "-"))
        objects[name] = (header, size)
    return at, objects


def _with_heap_size(store: Path, target: Path, name: str, size: int) -> Path:
    """A copy of ``store`` in which heap object ``name`` (see ``_heap_objects``) claims ``size`` bytes."""
    data = bytearray(store.read_bytes())
    header = _heap_objects(bytes(data))[1][name][0]
    data[header + 8:header + 16] = size.to_bytes(8, "little")
    target.write_bytes(data)
    return target


#: one field of the heap each: read by libhdf5 2.0 without hdf5_guard, each one loops forever
HEAP_LOOPS = {"free-space-size-0": ("free-space", 0), "free-space-size-1": ("free-space", 1),
              "format-size-1": ("format", 1), "id-size-0": ("id-c", 0), "id-size-2**64-1": ("id-spk1-a", 2 ** 64 - 1)}


@pytest.mark.parametrize("command", ["info", "merge", "decode"])
def test_a_damaged_global_heap_is_one_line_not_an_endless_loop(vlen_store, tmp_path, command):
    """The free space of the heap claiming 0 bytes (one byte changed) sent libhdf5 round the collection forever,
    at 100 % CPU and deaf to Ctrl-C: run as a user would, in a subprocess with a deadline, it is one line."""
    path = _with_heap_size(vlen_store, tmp_path / "damaged.h5", *HEAP_LOOPS["free-space-size-0"])
    args = {"info": [path], "merge": [path, "-o", tmp_path / "merged.h5"],
            "decode": [path, "-o", tmp_path / "out", "--model", MODEL]}[command]
    before = snapshot(tmp_path)
    result = run_shell(command, *args, timeout=240)
    assert_one_line_error(result, str(path), "global heap free space at byte", "has size 0", "re-create it")
    assert changes(before, snapshot(tmp_path)) == []


_READ_WHOLE = """import json, sys
from dmcodec_cli.corpus.report import store_summary
from dmcodec_cli.errors import DmcodecError
for path in sys.argv[1:]:
    try:
        store_summary(path)
        print(json.dumps([path, "ok"]), flush=True)
    except DmcodecError as exc:
        print(json.dumps([path, str(exc)]), flush=True)
"""


def test_every_size_and_index_of_the_global_heap_damaged_is_a_line_or_a_valid_read(vlen_store, tmp_path):
    """The collection's size and each object's index and size set to values that loop, overflow or run past
    the end; every store read whole (what ``info`` does) in one subprocess with a deadline: a valid read or one
    line naming the store, and each of the values that used to loop is refused as a damaged heap."""
    data = vlen_store.read_bytes()
    at, objects = _heap_objects(data)
    fields = {f"collection-size-{v}": (at + 8, 8, v) for v in (0, 4095, 8192, 2 ** 40)}
    for name, (header, size) in objects.items():
        for v in {0, 1, size - 1, size + 8, 4096, 2 ** 63, 2 ** 64 - 1}:
            fields[f"{name}-size-{v}"] = (header + 8, 8, v)
        for v in (0, 7, 0xFFFF):
            fields[f"{name}-index-{v}"] = (header, 2, v)
    paths = {}
    for name, (offset, width, value) in fields.items():
        damaged = bytearray(data)
        damaged[offset:offset + width] = value.to_bytes(width, "little")
        paths[name] = tmp_path / f"{name}.h5"
        paths[name].write_bytes(damaged)
    done = subprocess.run([sys.executable, "-c", _READ_WHOLE, *map(str, paths.values())], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = dict(json.loads(line) for line in done.stdout.splitlines())
    assert set(outcomes) == {str(p) for p in paths.values()}
    for name, path in paths.items():
        outcome = outcomes[str(path)]
        assert outcome == "ok" or (outcome.startswith(f"{path}: ") and "\n" not in outcome), (name, outcome)
    for name, (obj, size) in HEAP_LOOPS.items():
        assert "global heap" in outcomes[str(paths[f"{obj}-size-{size}"])], name
    assert outcomes[str(paths[f"id-c-size-{objects['id-c'][1]}"])] == "ok"  # unchanged values: the read


def test_a_store_with_variable_length_strings_reads_and_merges_into_fixed_length_ones(vlen_store, valid_store,
                                                                                     tmp_path, capsys):
    old, new = (run_cli(capsys, "info", path, "--json") for path in (vlen_store, valid_store))
    assert old.code == new.code == 0, (old, new)
    assert {**json.loads(old.stdout), "store": ""} == {**json.loads(new.stdout), "store": ""}
    merged = tmp_path / "merged.h5"
    assert run_cli(capsys, "merge", vlen_store, "-o", merged).code == 0
    assert b"GCOL" not in merged.read_bytes()  # what dmcodec writes has no global heap
    with CodeStore(vlen_store) as a, CodeStore(merged) as b:
        assert a.ids == b.ids == list(FRAMES) and a.meta == b.meta
        assert all(np.array_equal(a[i], b[i]) for i in range(len(a)))


def test_variable_length_ids_over_several_heap_collections_read(tmp_path, small_model):
    entries = [Entry(f"speaker{i % 40:02d}/chapter{i % 7}/utterance-{i:05d}", 320, np.zeros((8, 1), np.int16))
               for i in range(3000)]
    path = _vlen_store(tmp_path / "old.h5", StoreMeta.for_model(small_model), entries)
    assert path.read_bytes().count(b"GCOL") >= 2
    with CodeStore(path) as store:
        assert store.ids == [e.id for e in entries]


_OPEN_FEATURES = """import sys
from dmcodec_cli.data.features import FeatureReader, FeatureWriter, GroupSpec
from dmcodec_cli.errors import DmcodecError
path = sys.argv[1]
spec = GroupSpec("sm", "teacher", "sm", "avg", "none", 4)
for opening in (lambda: FeatureReader(path), lambda: FeatureWriter(path, 16000, 50.0, [spec])):
    try:
        opening().close()
        print("opened", flush=True)
    except DmcodecError as exc:
        print(exc, flush=True)
"""


def test_a_feature_file_with_a_damaged_global_heap_is_one_line(tmp_path):
    """Feature files keep their attributes (teacher, layer, ...) variable-length: train reads them, extract
    resumes into them; with the heap's free space claiming 0 bytes both refuse the file instead of looping."""
    path = tmp_path / "features.h5"
    with FeatureWriter(path, 16000, 50.0, [GroupSpec("sm", "teacher", "sm", "avg", "none", 4)]) as writer:
        writer.write("sm", "seg0", np.zeros((5, 4), np.float32))
    data = bytearray(path.read_bytes())
    free_space = _heap_walk(bytes(data))[1][-1][0]
    data[free_space + 8:free_space + 16] = bytes(8)
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", _OPEN_FEATURES, str(path)], capture_output=True, text=True,
                          timeout=240, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: global heap free space") for line in lines), lines


# -- .npy code files ----------------------------------------------------------------------------------------

def _npy_header_only(path: Path, shape, dtype="<i2") -> Path:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
        f.write(b"\0" * 64)
    return path


NPY_CASES = {
    "absurd-shape": (lambda p: _npy_header_only(p, (8, 10 ** 12)),
                     "the header claims [8, 1000000000000] int16 (16,000,000,000,000 bytes) but the file holds 64"),
    "truncated-data": (lambda p: p.write_bytes(_valid_npy_bytes()[:-40]), "the file is truncated or damaged"),
    "three-dimensions": (lambda p: _npy_header_only(p, (2, 2, 8)), "shape [n_q, frames], the file holds [2, 2, 8]"),
    "float-header": (lambda p: _npy_header_only(p, (2, 8), "<f4"), "codes must be integers, the file holds float32"),
    "object-header": (lambda p: _npy_header_only(p, (2, 8), "|O"), "refused: the array holds Python objects"),
    "bad-magic": (lambda p: p.write_bytes(b"\x93NUMPY\x09\x00" + b"x" * 40), "not a readable .npy code file"),
    "header-garbage": (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': lambda}\n"),
                       "not a readable .npy code file"),
}


def _valid_npy_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((8, 30), np.int16))
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(NPY_CASES))
def test_a_bad_code_file_is_refused_from_its_header(tmp_path, capsys, case):
    path = tmp_path / "codes.npy"
    make, needle = NPY_CASES[case]
    make(path)
    before = snapshot(tmp_path)
    result = run_cli(capsys, "decode", path, "-o", tmp_path / "out.wav", "--model", MODEL)
    assert_one_line_error(result, str(path), needle)
    assert changes(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("layout", ["fortran", "big-endian-int16", "int64", "uint8"])
def test_code_files_in_any_integer_layout_decode_the_same(tmp_path, capsys, layout):
    codes = np.random.default_rng(1).integers(0, 64, (8, 12))
    array = {"fortran": np.asfortranarray(codes.astype(np.int16)), "big-endian-int16": codes.astype(">i2"),
             "int64": codes.astype(np.int64), "uint8": codes.astype(np.uint8)}[layout]
    np.save(tmp_path / "plain.npy", codes.astype(np.int16))
    np.save(tmp_path / "other.npy", array)
    assert run_cli(capsys, "decode", tmp_path / "plain.npy", "-o", tmp_path / "plain.wav", "--model", MODEL).code == 0
    assert run_cli(capsys, "decode", tmp_path / "other.npy", "-o", tmp_path / "other.wav", "--model", MODEL).code == 0
    assert (tmp_path / "plain.wav").read_bytes() == (tmp_path / "other.wav").read_bytes()


# -- configs ------------------------------------------------------------------------------------------------

def _small_config() -> dict:
    return json.loads(CONFIG.read_text())


CONFIG_CASES = {
    "bool-as-string": ({"bidirectional": "false"}, "bidirectional must be true or false, got 'false'"),
    "int-as-float": ({"n_filters": 3.5}, "n_filters must be an integer, got 3.5"),
    "int-as-string": ({"dimension": "16"}, "dimension must be an integer, got '16'"),
    "int-as-bool": ({"lstm_layers": True}, "lstm_layers must be an integer, got True"),
    "float-nan": ({"learning_rate": float("nan")}, "learning_rate must be a finite number, got nan"),
    "sample_rate-1": ({"sample_rate": 1}, "sample_rate must be from 8000 to 192000, got 1"),
    "n_q-65": ({"n_q": 65}, "n_q must be from 1 to 64, got 65"),
    "codebook-over-int16": ({"codebook_size": 65536}, "codebook_size must be from 2 to 32768, got 65536"),
    "stride-0": ({"strides": [8, 0, 4, 2]}, "strides must be 1 to 8 integers from 1 to 64"),
    "strides-not-a-list": ({"strides": "8542"}, "strides must be a list of integers"),
    "hop-over-a-second": ({"strides": [64, 64, 8]}, "hop of 32768 samples, more than one second"),
    "fmax-over-nyquist": ({"fmax": 12000}, "fmin < fmax <= sample_rate / 2"),
    "gigantic": ({"n_filters": 1024, "dimension": 8192, "lstm_layers": 8}, "parameters, more than the 2,000,000,000"),
    "unknown-key": ({"n_filter": 8}, "unknown codec config keys: n_filter"),
    "extra-not-object": ({"extra": [1]}, "extra must be a JSON object"),
}


def _release_with_config(tmp_path: Path, config_bytes: bytes) -> Path:
    release = tmp_path / "release"
    release.mkdir()
    save_file(load_file(REFERENCE / "dmcodec_small.safetensors"), release / "model.safetensors",
              metadata={"format": "dmcodec-model", "format_version": "1"})
    (release / "config.json").write_bytes(config_bytes)
    return release


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_a_bad_config_json_is_one_line_naming_it(tmp_path, capsys, case):
    changed, needle = CONFIG_CASES[case]
    release = _release_with_config(tmp_path, json.dumps({**_small_config(), **changed}).encode())
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli(capsys, "info", release), str(release / "config.json"), needle)
    assert changes(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("content, needle", [(b"[1, 2]", "a codec config must be a JSON object, got list"),
                                             (b'{"n_q": 8,', "not valid JSON"),
                                             (b'{"project_name": "caf\xe9"}', "must be UTF-8 JSON text"),
                                             (b"", "not valid JSON")],
                         ids=["not-an-object", "truncated-json", "latin-1", "empty"])
def test_a_config_that_is_not_a_json_object_names_the_file(tmp_path, capsys, content, needle):
    release = _release_with_config(tmp_path, content)
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli(capsys, "info", release), str(release / "config.json"), needle)
    assert changes(before, snapshot(tmp_path)) == []


def test_a_gigantic_config_is_refused_before_any_allocation(tmp_path, capsys):
    """convert --config of a config that would need ~12 GB: refused with the count, nothing built or written."""
    import resource

    config = tmp_path / "big.json"
    config.write_text(json.dumps({**_small_config(), **CONFIG_CASES["gigantic"][0]}))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before = snapshot(tmp_path)
    result = run_cli(capsys, "convert", MODEL, "--config", config, "-o", tmp_path / "out")
    assert_one_line_error(result, str(config), "parameters, more than the 2,000,000,000 allowed")
    assert changes(before, snapshot(tmp_path)) == []
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # KiB: nothing of 12 GB was made


def test_every_shipped_config_and_recipe_is_written_back_as_it_was_read():
    shared = REPO.parent / "shared" / "reference" / "config_small.json"
    paths = [*sorted((REPO / "train" / "configs").glob("*.json")), CONFIG,
             REPO / "dmcodec_cli" / "models" / "dmcodec-mini" / "config.json", *([shared] if shared.is_file() else [])]
    assert len(paths) > 10
    for path in paths:
        assert ConfigFile.from_json(path).to_dict() == json.loads(path.read_text()), path  # same keys and values
    official = json.loads((REFERENCE / "full_state_dict_keys.json").read_text())["config"]
    assert ConfigFile.from_dict(official).to_dict() == official
    assert CodecConfig.from_dict({}) == CodecConfig()  # the official config


def test_the_parameter_estimate_is_the_real_count():
    from dmcodec_cli.model import DMCodec

    for config in (CodecConfig.from_json(CONFIG), CodecConfig(n_filters=4, dimension=32, semantic_dimension=32,
                                                              codebook_size=16, lstm_layers=3, bidirectional=False,
                                                              n_residual_layers=2, strides=(4, 2, 3))):
        assert parameter_estimate(config) == sum(t.numel() for t in DMCodec(config).state_dict().values())


# -- checkpoints --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def state() -> dict:
    return torch.load(MODEL, weights_only=True)


def _nan_codebook(state: dict) -> dict:
    state = dict(state)
    embed = state["quantizer.vq.layers.0._codebook.embed"].clone()
    embed[3, 1] = float("nan")
    state["quantizer.vq.layers.0._codebook.embed"] = embed
    return state


def _inf_conv(state: dict) -> dict:
    key = "decoder.model.0.conv.conv.weight_v"
    return {**state, key: torch.full_like(state[key], float("inf"))}


class _Evil:
    """A pickle that would create ``marker`` if it were ever unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _without(state: dict, key: str) -> dict:
    return {k: v for k, v in state.items() if k != key}


CHECKPOINT_CASES = {
    "nan-codebook-pt": (lambda s, p: torch.save(_nan_codebook(s), p), "ckpt.pt",
                        "tensor quantizer.vq.layers.0._codebook.embed holds NaN or inf values"),
    "inf-conv-safetensors": (lambda s, p: save_file(_inf_conv(s), p), "ckpt.safetensors",
                             "tensor decoder.model.0.conv.conv.weight_v holds NaN or inf values"),
    "random-bytes": (lambda s, p: p.write_bytes(np.random.default_rng(2).bytes(4096)), "ckpt.pt",
                     "neither a PyTorch checkpoint (zip) nor a safetensors file"),
    "random-bytes-safetensors": (lambda s, p: p.write_bytes(b"\x07" + np.random.default_rng(3).bytes(999)),
                                 "ckpt.safetensors", "neither a PyTorch checkpoint (zip) nor a safetensors file"),
    "deleted-lstm-key": (lambda s, p: torch.save(_without(s, "encoder.model.13.lstm.weight_hh_l1"), p), "ckpt.pt",
                         "1 missing keys (encoder.model.13.lstm.weight_hh_l1)"),
    "deleted-codebook": (lambda s, p: torch.save(_without(s, "quantizer.vq.layers.7._codebook.embed"), p), "ckpt.pt",
                         "1 missing keys (quantizer.vq.layers.7._codebook.embed)"),
    "deleted-bias": (lambda s, p: torch.save(_without(s, "encoder.model.0.conv.conv.bias"), p), "ckpt.pt",
                     "1 missing keys (encoder.model.0.conv.conv.bias)"),
    "truncated-zip": (lambda s, p: p.write_bytes(MODEL.read_bytes()[:100_000]), "ckpt.pt",
                      "not a readable PyTorch checkpoint, truncated or damaged"),
    "truncated-safetensors": (lambda s, p: p.write_bytes((REFERENCE / "dmcodec_small.safetensors").read_bytes()[:9000]),
                              "ckpt.safetensors", "not a readable safetensors file, truncated or damaged"),
    "pickled-code": (lambda s, p: p.write_bytes(pickle.dumps(_Evil(p.parent / "ran"))), "ckpt.pt",
                     "refused: the file holds Python objects"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_a_bad_checkpoint_is_one_line_naming_it(state, tmp_path, capsys, case):
    make, name, needle = CHECKPOINT_CASES[case]
    path = tmp_path / name
    make(state, path)
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli(capsys, "info", path), str(path), needle)
    assert_one_line_error(run_cli(capsys, "convert", path, "-o", tmp_path / "out"), str(path), needle)
    assert changes(before, snapshot(tmp_path)) == []


def test_a_checkpoint_that_does_not_fit_its_config_names_the_key(state, tmp_path, capsys):
    (tmp_path / "ckpt.pt").write_bytes(MODEL.read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({**_small_config(), "codebook_size": 128}))
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli(capsys, "info", tmp_path / "ckpt.pt"), "ckpt.pt",
                          "shape mismatches (e.g. quantizer.vq.layers.0._codebook.cluster_size: file (64,), "
                          "model (128,))")
    assert changes(before, snapshot(tmp_path)) == []


def test_a_release_with_damaged_metadata_is_one_line(tmp_path, capsys):
    release = tmp_path / "release"
    release.mkdir()
    save_file(load_file(REFERENCE / "dmcodec_small.safetensors"), release / "model.safetensors",
              metadata={"format": "dmcodec-model", "format_version": "one"})
    (release / "config.json").write_text(CONFIG.read_text())
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli(capsys, "info", release), str(release / "model.safetensors"),
                          "format_version 'one'")
    assert changes(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("spec, needle", [("acme/a..b", "not a valid Hugging Face id"),
                                          ("acme/" + "x" * 120, "not a valid Hugging Face id"),
                                          ("acme/not-cached", "not in the local Hugging Face cache")],
                         ids=["dots", "too-long", "offline"])
def test_a_hub_id_that_cannot_be_had_is_one_line(tmp_path, capsys, monkeypatch, spec, needle):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli(capsys, "info", spec), spec, needle)
    assert changes(before, snapshot(tmp_path), allowed=("hub",)) == []
