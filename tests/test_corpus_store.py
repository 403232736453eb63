"""The HDF5 code store: documented layout readable with plain h5py, reader, refusal of other models, merge."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from dmcodec_cli.corpus.store import CodeStore, Entry, StoreMeta, merge_stores, write_store
from dmcodec_cli.errors import DmcodecError

META = StoreMeta(16000, 50.0, 3, 64, "f" * 64, json.dumps({"n_q": 3}))


def entries(seed: int, names: list[str]) -> list[Entry]:
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        frames = int(rng.integers(1, 400))
        out.append(Entry(name, frames * 320 - int(rng.integers(0, 320)), rng.integers(0, 64, (3, frames))))
    return out


NAMES = ["spk1/a", "spk1/b", "spk2/ümlaut ü", "c", "spk3/deep/x.y"]


def test_round_trip_through_the_reader_and_plain_h5py(tmp_path):
    written = entries(0, NAMES)
    path = write_store(tmp_path / "s.h5", META, written)
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary file, renamed
    with CodeStore(path) as store:
        assert len(store) == 5 and store.ids == NAMES and store.meta == META
        for i, e in enumerate(written):
            np.testing.assert_array_equal(store[i], e.codes)
            np.testing.assert_array_equal(store[e.id], e.codes)
        assert [name for name, _ in store] == NAMES
        np.testing.assert_array_equal(store[-1], written[-1].codes)
        with pytest.raises(KeyError):
            store["nope"]
        with pytest.raises(IndexError):
            store[5]
    # the documented layout, read as a downstream loader would
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        assert attrs["format"] == b"dmcodec-codes" and attrs["format_version"] == 1  # fixed-length strings: bytes
        assert (attrs["sample_rate"], attrs["frame_rate"], attrs["n_q"], attrs["codebook_size"]) == (16000, 50.0, 3, 64)
        assert attrs["model_fingerprint"].decode() == "f" * 64 and json.loads(attrs["config"]) == {"n_q": 3}
        strings = [f.attrs.get_id(name).dtype for name in ("format", "model_fingerprint", "config", "dtype")]
        assert [h5py.check_string_dtype(t).length is not None for t in [*strings, f["ids"].dtype]] == [True] * 5
        codes, offsets = f["codes"], f["offsets"][:]
        assert codes.dtype == np.int16 and codes.chunks is not None and codes.maxshape == (None, 3)
        assert offsets.dtype == np.int64 and offsets[0] == 0 and len(offsets) == 6
        assert f["num_samples"].dtype == np.int64
        assert list(f["num_samples"][:]) == [e.num_samples for e in written]
        assert [s.decode() for s in f["ids"][:]] == NAMES
        for i, e in enumerate(written):
            np.testing.assert_array_equal(codes[offsets[i]:offsets[i + 1]].T, e.codes)
        assert codes.shape[0] == offsets[-1] == sum(e.codes.shape[1] for e in written)


def test_ids_of_any_lengths_and_a_config_too_long_for_the_header_round_trip(tmp_path):
    """Fixed-length ids are padded to the longest one and read back exactly; a config beyond what an HDF5
    object header holds is the one string kept variable-length."""
    names = ["a", "b" * 3000, "spk/ü", *(f"x{i}" for i in range(2000))]
    meta = StoreMeta(16000, 50.0, 3, 64, "f" * 64, json.dumps({"n_q": 3, "extra": {"notes": "n" * 70_000}}))
    path = write_store(tmp_path / "long.h5", meta, entries(1, names))
    with CodeStore(path) as store:
        assert store.ids == names and store.meta == meta
    with h5py.File(path, "r") as f:
        assert h5py.check_string_dtype(f.attrs.get_id("config").dtype).length is None
        assert h5py.check_string_dtype(f["ids"].dtype).length == 3000 and f["ids"].compression == "gzip"
        assert f["ids"].id.get_storage_size() < len(names) * 3000 // 50  # the padding compresses away
    with pytest.raises(ValueError, match="NUL"):
        write_store(tmp_path / "nul.h5", META, entries(0, ["a\0b"]))
    assert not (tmp_path / "nul.h5").exists()


def test_empty_store_and_bad_files_are_clear(tmp_path):
    with CodeStore(write_store(tmp_path / "e.h5", META, [])) as store:
        assert len(store) == 0 and store.total_frames == 0
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(DmcodecError, match="not a readable HDF5"):
        CodeStore(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(DmcodecError, match="not a dmcodec code store"):
        CodeStore(tmp_path / "other.h5")
    with pytest.raises(DmcodecError, match="no such code store"):
        CodeStore(tmp_path / "missing.h5")


def test_merge_concatenates_and_refuses_another_model(tmp_path):
    a, b = entries(1, NAMES[:3]), entries(2, NAMES[2:])  # NAMES[2] in both: the first copy is kept
    write_store(tmp_path / "a.h5", META, a)
    write_store(tmp_path / "b.h5", META, b)
    summary = merge_stores(tmp_path / "m.h5", [tmp_path / "a.h5", tmp_path / "b.h5"])
    assert summary["utterances"] == 5 and summary["duplicates_skipped"] == 1
    with CodeStore(tmp_path / "m.h5") as merged:
        assert merged.ids == NAMES
        for e in a + b[1:]:
            np.testing.assert_array_equal(merged[e.id], e.codes)
    other = StoreMeta(**{**vars(META), "model_fingerprint": "0" * 64})
    write_store(tmp_path / "o.h5", other, entries(3, ["z"]))
    with pytest.raises(DmcodecError, match="another model"):
        merge_stores(tmp_path / "m2.h5", [tmp_path / "a.h5", tmp_path / "o.h5"])
    assert not (tmp_path / "m2.h5").exists()
