"""Self-describing ``.npz`` code files, bare ``.npy`` ones, single-utterance stores, and the arithmetic record."""

from __future__ import annotations

import io
import json
import zipfile

import h5py
import numpy as np
import pytest
import soundfile as sf

from cli import run_cli
from conftest import SPEECH
from dmcodec_cli.codes import EncodedAudio, load_encoded
from dmcodec_cli.corpus.store import CodeStore, Entry, StoreMeta, merge_stores, read_meta, write_store
from dmcodec_cli.errors import DmcodecError

CLIP = SPEECH / "librispeech_train-clean-100_19-198-0000.flac"  # 16 kHz, 1.97 s: not a whole number of frames
CLIP_22K = SPEECH / "ljspeech_LJ002-0020.wav"


def cli(capsys, *args):
    result = run_cli(capsys, *args, "--device", "cpu")
    assert result.code == 0, result.stderr
    return result


def encode(capsys, tmp_path, source=CLIP, name="x.npz", *extra):
    cli(capsys, "encode", source, "-o", tmp_path / name, *extra)
    return tmp_path / name


def test_npz_round_trip_gives_back_the_original_length(capsys, tmp_path):
    for source in (CLIP, CLIP_22K):
        path = encode(capsys, tmp_path, source, f"{source.stem}.npz")
        encoded = load_encoded(path)
        length = len(sf.read(source)[0]) if source == CLIP else round(sf.info(source).frames * 16000 / 22050)
        assert encoded.num_samples == length and encoded.num_samples % 320 != 0
        assert encoded.codes.shape == (8, -(-length // 320)) and encoded.sample_rate == 16000
        assert encoded.dtype == "fp32" and len(encoded.model_fingerprint) == 64
        summary = json.loads(cli(capsys, "decode", path, "-o", tmp_path / "y.wav", "--json", "--overwrite").stdout)
        assert sf.info(tmp_path / "y.wav").frames == length == summary["num_samples"]


def test_npz_holds_the_metadata_as_plain_arrays(capsys, tmp_path):
    path = encode(capsys, tmp_path, CLIP, "x.npz", "--n-q", "3")
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["codes", "header"] and data["codes"].dtype == np.int16
        header = json.loads(str(data["header"]))
    assert header == {"format": "dmcodec-code-file", "format_version": 1, "n_q": 3, "dtype": "fp32",
                      "num_samples": len(sf.read(CLIP)[0]), "sample_rate": 16000,
                      "model_fingerprint": header["model_fingerprint"]}


def test_codes_of_another_model_are_refused_unless_forced(capsys, tmp_path):
    encoded = load_encoded(encode(capsys, tmp_path))
    other = tmp_path / "other.npz"
    EncodedAudio(encoded.codes, encoded.num_samples, 16000, "0" * 64).save(other)
    refused = run_cli(capsys, "decode", other, "-o", tmp_path / "y.wav", "--device", "cpu")
    assert refused.code == 2 and "not this one" in refused.stderr and "--force" in refused.stderr
    assert not (tmp_path / "y.wav").exists()
    cli(capsys, "decode", other, "-o", tmp_path / "y.wav", "--force")
    assert sf.info(tmp_path / "y.wav").frames == encoded.num_samples


def test_encode_replaces_an_npz_it_wrote_but_not_a_foreign_one(capsys, tmp_path):
    path = encode(capsys, tmp_path, CLIP_22K)
    encode(capsys, tmp_path, CLIP)
    assert load_encoded(path).num_samples == len(sf.read(CLIP)[0])
    path.write_bytes(b"mine")
    refused = run_cli(capsys, "encode", CLIP, "-o", path, "--device", "cpu")
    assert refused.code == 2 and "not written by dmcodec" in refused.stderr and path.read_bytes() == b"mine"


def test_bare_npy_is_unchanged_and_num_samples_trims_it(capsys, tmp_path):
    npy, npz = encode(capsys, tmp_path, CLIP, "x.npy"), encode(capsys, tmp_path, CLIP, "x.npz")
    codes = np.load(npy)
    assert codes.dtype == np.int16 and codes.shape == load_encoded(npz).codes.shape
    np.testing.assert_array_equal(codes, load_encoded(npz).codes)
    cli(capsys, "decode", npy, "-o", tmp_path / "whole.wav")
    assert sf.info(tmp_path / "whole.wav").frames == codes.shape[1] * 320
    length = load_encoded(npz).num_samples
    cli(capsys, "decode", npy, "-o", tmp_path / "trimmed.wav", "--num-samples", str(length))
    assert sf.info(tmp_path / "trimmed.wav").frames == length
    for bad in (str(codes.shape[1] * 320 + 1), str((codes.shape[1] - 1) * 320), "0"):
        result = run_cli(capsys, "decode", npy, "-o", tmp_path / "bad.wav", "--num-samples", bad, "--device", "cpu")
        assert result.code == 2 and "frames decode to" in result.stderr
    result = run_cli(capsys, "decode", npz, "-o", tmp_path / "bad.wav", "--num-samples", "10")
    assert result.code == 2 and "--num-samples is for bare .npy codes" in result.stderr
    assert not (tmp_path / "bad.wav").exists()


def test_a_store_of_one_utterance_decodes_to_one_file(capsys, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.flac", "b.flac"):
        (folder / name).write_bytes(CLIP.read_bytes())
    cli(capsys, "encode", folder / "a.flac", "-o", tmp_path / "one.h5")
    cli(capsys, "decode", tmp_path / "one.h5", "-o", tmp_path / "a.wav")
    assert sf.info(tmp_path / "a.wav").frames == len(sf.read(CLIP)[0])
    cli(capsys, "encode", folder, "-o", tmp_path / "two.h5")
    refused = run_cli(capsys, "decode", tmp_path / "two.h5", "-o", tmp_path / "both.wav", "--device", "cpu")
    assert refused.code == 2 and "holds 2 utterances" in refused.stderr and not (tmp_path / "both.wav").exists()
    cli(capsys, "decode", tmp_path / "two.h5", "-o", tmp_path / "b.wav", "--ids", "b")
    assert sf.info(tmp_path / "b.wav").frames == len(sf.read(CLIP)[0])


# -- hostile .npz files ---------------------------------------------------------------------------------

def _zip(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _npy(array: np.ndarray, allow_pickle=False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


HEADER = {"format": "dmcodec-code-file", "format_version": 1, "model_fingerprint": "a" * 64, "num_samples": 640,
          "sample_rate": 16000, "n_q": 2, "dtype": "fp32"}
CODES = np.zeros((2, 2), np.int16)


def _file(tmp_path, codes=CODES, header=HEADER, **changes):
    return _zip(tmp_path / "x.npz", {"codes.npy": _npy(codes),
                                     "header.npy": _npy(np.array(json.dumps({**header, **changes})))})


def _absurd_shape() -> bytes:
    data = bytearray(_npy(CODES))
    return bytes(data.replace(b"(2, 2)", b"(2, 99999999999)"))


@pytest.mark.parametrize("make, needle", [
    (lambda p: p / "missing.npz", "no such file"),
    (lambda p: (p / "x.npz").write_bytes(b"not a zip") and p / "x.npz", "not a readable .npz code file"),
    (lambda p: _zip(p / "x.npz", {"codes.npy": _npy(np.array([{"a": 1}], dtype=object), allow_pickle=True),
                                  "header.npy": _npy(np.array(json.dumps(HEADER)))}), "Python objects"),
    (lambda p: _zip(p / "x.npz", {"codes.npy": _absurd_shape(), "header.npy": _npy(np.array(json.dumps(HEADER)))}),
     "the header claims"),
    (lambda p: _zip(p / "x.npz", {"codes.npy": _npy(CODES), "header.npy": _npy(np.array(json.dumps(HEADER))),
                                  "more.npy": _npy(CODES)}), "holds the arrays codes and header"),
    (lambda p: _zip(p / "x.npz", {"codes.npy": _npy(CODES), "header.npy": _npy(np.array(json.dumps(HEADER)))},
                    zipfile.ZIP_DEFLATED), "is compressed"),
    (lambda p: _file(p, codes=CODES.astype(np.float32)), "codes must be integers"),
    (lambda p: _file(p, codes=np.zeros((2, 2, 2), np.int16)), "shape [n_q, frames]"),
    (lambda p: _file(p, format="other"), "not a dmcodec code file"),
    (lambda p: _file(p, format_version=2), "newer than this dmcodec reads"),
    (lambda p: _file(p, num_samples="640"), "header field num_samples"),
    (lambda p: _file(p, model_fingerprint="../etc"), "header field model_fingerprint"),
    (lambda p: _file(p, sample_rate=True), "header field sample_rate"),
    (lambda p: _file(p, dtype="fp64"), "header field dtype"),
    (lambda p: _file(p, n_q=3), "header says 3 codebooks"),
    (lambda p: _zip(p / "x.npz", {"codes.npy": _npy(CODES), "header.npy": _npy(np.array([1, 2]))}),
     "header must be one JSON string"),
    (lambda p: _zip(p / "x.npz", {"codes.npy": _npy(CODES), "header.npy": _npy(np.array("{not json"))}),
     "not a dmcodec code file"),
])
def test_hostile_npz_files_are_one_clear_error(tmp_path, make, needle):
    """Each is refused with one line before any array is allocated or anything unpickled."""
    with pytest.raises(DmcodecError) as error:
        load_encoded(make(tmp_path))
    assert needle in str(error.value)


def test_a_zip_directory_claiming_a_huge_member_is_refused_before_reading(tmp_path):
    path = _file(tmp_path)
    data = bytearray(path.read_bytes())
    member = _npy(CODES)
    size = len(member).to_bytes(4, "little")
    huge = (1 << 31).to_bytes(4, "little")
    start = data.index(b"PK\x01\x02")  # the central directory: patch both sizes of the codes entry
    entry = data[start:]
    assert entry.count(size * 2) >= 1
    data[start:] = entry.replace(size * 2, huge * 2, 1)
    path.write_bytes(data)
    with pytest.raises(DmcodecError, match="codes.npy claims 2,147,483,648 bytes, more than the file holds"):
        load_encoded(path)


def test_a_length_that_does_not_fit_the_frames_is_refused_at_decode(capsys, tmp_path):
    encoded = load_encoded(encode(capsys, tmp_path))
    bad = tmp_path / "bad.npz"
    EncodedAudio(encoded.codes, encoded.frames * 320 + 1, 16000, encoded.model_fingerprint).save(bad)
    result = run_cli(capsys, "decode", bad, "-o", tmp_path / "y.wav", "--device", "cpu")
    assert result.code == 2 and "frames decode to" in result.stderr and len(result.stderr.splitlines()) == 1


# -- the store's arithmetic record ---------------------------------------------------------------------

META = StoreMeta(16000, 50.0, 2, 64, "f" * 64, json.dumps({"n_q": 2}))


def _store(path, meta=META, name="a"):
    return write_store(path, meta, [Entry(name, 640, np.zeros((2, 2), np.int16))])


def test_stores_record_the_arithmetic_and_refuse_to_mix_it(tmp_path):
    fp32, bf16 = _store(tmp_path / "a.h5"), _store(tmp_path / "b.h5", StoreMeta(**{**vars(META), "dtype": "bf16"}), "b")
    assert (read_meta(fp32).dtype, read_meta(bf16).dtype) == ("fp32", "bf16")
    with pytest.raises(DmcodecError, match="bf16 arithmetic, this run makes fp32"):
        merge_stores(tmp_path / "m.h5", [fp32, bf16])
    assert not (tmp_path / "m.h5").exists()


def test_a_store_without_the_record_reads_as_fp32_and_a_bad_one_is_refused(tmp_path):
    path = _store(tmp_path / "a.h5")
    with h5py.File(path, "a") as f:
        del f.attrs["dtype"]
    assert read_meta(path).dtype == "fp32"
    with h5py.File(path, "a") as f:
        f.attrs["dtype"] = "fp64"
    with pytest.raises(DmcodecError, match="attribute dtype must be one of fp32, bf16, fp16"):
        CodeStore(path)


def test_an_encode_run_with_another_dtype_is_refused_on_an_existing_store(capsys, tmp_path):
    cli(capsys, "encode", CLIP, "-o", tmp_path / "s.h5")
    result = run_cli(capsys, "encode", CLIP_22K, "-o", tmp_path / "s.h5", "--dtype", "bf16", "--device", "cpu")
    assert result.code == 2 and "fp32 arithmetic, this run makes bf16" in result.stderr
    info = json.loads(run_cli(capsys, "info", tmp_path / "s.h5", "--json").stdout)
    assert info["dtype"] == "fp32" and info["utterances"] == 1
