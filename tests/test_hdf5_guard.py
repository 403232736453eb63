"""hdf5_guard: the check of a global heap collection, rule by rule, and a damaged collection larger than
libhdf5's first read refused as a whole (in a subprocess: without the guard libhdf5 would loop for ever)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dmcodec_cli.hdf5_guard import collection_problem

REPO = Path(__file__).resolve().parents[1]


def _strings_file(path: Path, count: int) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "variable-length"
        f.create_dataset("names", data=np.asarray([f"name-{i:06d}" for i in range(count)], dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
    return path


def _objects(collection: bytes) -> list[int]:
    """Where each object's header starts in ``collection``, the free space last."""
    size, at, headers = int.from_bytes(collection[8:16], "little"), 16, []
    while at + 16 <= size:
        headers.append(at)
        if int.from_bytes(collection[at:at + 2], "little") == 0:
            break
        at += 16 + -(-int.from_bytes(collection[at + 8:at + 16], "little") // 8) * 8
    return headers


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> bytes:
    """A global heap collection as libhdf5 writes it: 4 strings and the free space."""
    data = _strings_file(tmp_path_factory.mktemp("heap") / "s.h5", 3).read_bytes()
    at = data.index(b"GCOL")
    return data[at:at + int.from_bytes(data[at + 8:at + 16], "little")]


def _changed(collection: bytes, at: int, value: int, width: int = 8) -> bytes:
    data = bytearray(collection)
    data[at:at + width] = value.to_bytes(width, "little")
    return bytes(data)


def test_a_collection_libhdf5_wrote_passes(collection):
    assert len(_objects(collection)) == 5 and collection_problem(collection) is None


@pytest.mark.parametrize("case, needle", [
    ("free-space-0", "free space at byte"), ("free-space-12", "has size 12"), ("version-2", "version 2"),
    ("size-100", "claims 100 bytes, less than the smallest (4,096)"),
    ("size-past-the-data", "claims 8,192 bytes, more than the 4,096 that follow it"),
    ("object-past-the-end", "past the collection's"), ("index-twice", "appears twice")])
def test_each_rule_refuses_its_damage(collection, case, needle):
    first, second, free = _objects(collection)[0], _objects(collection)[1], _objects(collection)[-1]
    damaged = {"free-space-0": lambda: _changed(collection, free + 8, 0),
               "free-space-12": lambda: _changed(collection, free + 8, 12),
               "version-2": lambda: _changed(collection, 4, 2, 1),
               "size-100": lambda: _changed(collection, 8, 100),
               "size-past-the-data": lambda: _changed(collection, 8, 8192),
               "object-past-the-end": lambda: _changed(collection, first + 8, 4096),
               "index-twice": lambda: _changed(collection, second, int.from_bytes(collection[first:first + 2],
                                                                                  "little"), 2)}[case]()
    problem = collection_problem(damaged)
    assert problem is not None and needle in problem, problem


_READ = """import sys
from dmcodec_cli.hdf5_guard import DamagedHeap, open_hdf5
try:
    with open_hdf5(sys.argv[1]) as f:
        print(len(f["names"][:]), f.attrs["format"])
except DamagedHeap as exc:
    print(exc)
"""


def test_a_collection_larger_than_the_first_read_is_checked_whole(tmp_path):
    """libhdf5 reads 4096 bytes of a collection, then the rest: the guard reads and checks all of it at once."""
    path = _strings_file(tmp_path / "many.h5", 3000)
    data = bytearray(path.read_bytes())
    at = data.rindex(b"GCOL")
    size = int.from_bytes(data[at + 8:at + 16], "little")
    free = at + _objects(bytes(data[at:at + size]))[-1]
    assert size > 4096 and free - at > 4096  # the damage lies past libhdf5's first read
    read = subprocess.run([sys.executable, "-c", _READ, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert read.stdout.split() == ["3000", "variable-length"], read
    data[free + 8:free + 16] = bytes(8)
    path.write_bytes(data)
    read = subprocess.run([sys.executable, "-c", _READ, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert read.returncode == 0, read.stderr[-2000:]
    assert read.stdout.startswith(f"{path}: global heap free space at byte") and f"(collection at byte {at:,})" \
        in read.stdout, read.stdout
