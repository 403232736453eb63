"""dmcodec prep: segmentation rules, deterministic splits, the manifest and FLAC files, idempotence, sources."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli import run_cli
from dmcodec_cli.audio import load_audio
from dmcodec_cli.data.manifest import FIELDS, read_segments
from dmcodec_cli.data.prep import PrepOptions, prepare
from dmcodec_cli.data.segments import consecutive_cuts, one_crop
from dmcodec_cli.data.sources import Utterance, hf_source, local_source
from dmcodec_cli.data.splits import rng_for
from dmcodec_cli.errors import DmcodecError

SR = 16000
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def synthetic(uid: str, seconds: float, speaker: str | None = None, text: str | None = None,
              seed: int = 0) -> Utterance:
    samples = (np.random.default_rng(seed).uniform(-0.5, 0.5, round(seconds * SR))).astype(np.float32)
    return Utterance(uid, f"/nowhere/{uid}.wav", speaker, text, lambda rate: samples)


# -- cutting rules ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, tail, expected", [
    (10.0, "pad", [3.0, 3.0, 3.0, 1.0]),  # 1 s tail >= 0.5 s: padded
    (10.0, "drop", [3.0, 3.0, 3.0]),
    (9.3, "pad", [3.0, 3.0, 3.0]),        # 0.3 s tail < min tail: dropped
    (9.0, "pad", [3.0, 3.0, 3.0]),        # no tail at all
    (2.0, "pad", [2.0]),                  # shorter than a segment: the whole utterance, padded
    (2.0, "drop", []),
    (0.2, "pad", []),
])
def test_consecutive_cuts_follow_the_tail_rule(seconds, tail, expected):
    n, seg = round(seconds * SR), 3 * SR
    cuts = consecutive_cuts(n, seg, tail, min_tail=SR // 2)
    assert [c.length / SR for c in cuts] == expected
    assert all(c.total == seg for c in cuts)  # every segment has the full length, zeros after a tail
    assert [c.offset for c in cuts] == [i * seg for i in range(len(cuts))]
    assert all(c.offset + c.length <= n for c in cuts)


def test_one_crop_is_inside_the_utterance_seeded_and_per_utterance():
    seg = 3 * SR
    offsets = {one_crop(10 * SR, seg, "pad", rng_for(7, f"u{i}"))[0].offset for i in range(50)}
    assert all(0 <= o <= 7 * SR for o in offsets) and len(offsets) > 40  # random, not a fixed position
    assert one_crop(10 * SR, seg, "pad", rng_for(7, "u1")) == one_crop(10 * SR, seg, "pad", rng_for(7, "u1"))
    assert one_crop(10 * SR, seg, "pad", rng_for(8, "u1")) != one_crop(10 * SR, seg, "pad", rng_for(7, "u1"))
    short = one_crop(SR, seg, "pad", rng_for(7, "s"))
    assert len(short) == 1 and short[0].offset == 0 and short[0].length == SR and short[0].total == seg
    assert one_crop(SR, seg, "drop", rng_for(7, "s")) == []


def test_options_are_validated():
    for bad in ({"tail": "wrap"}, {"ratio": 0}, {"ratio": 1.5}, {"segment_seconds": 0}, {"valid_fraction": 1.0}):
        with pytest.raises(DmcodecError):
            PrepOptions(**bad)


# -- prepare on real speech -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepped(tmp_path_factory, speech_dir):
    out = tmp_path_factory.mktemp("prep") / "out"
    report = prepare(local_source(speech_dir), out, PrepOptions(valid_fraction=0.3))
    return out, report


def test_segments_of_real_speech_have_the_expected_count_length_and_content(prepped, speech_dir):
    out, report = prepped
    segments = read_segments(out / "manifest.jsonl")
    assert report.segments == len(segments) and report.failures == []
    by_source: dict[str, list] = {}
    for s in segments:
        by_source.setdefault(s.source, []).append(s)
    sources = sorted(p for p in speech_dir.iterdir() if p.suffix in (".wav", ".flac"))
    assert sorted(by_source) == [str(p.resolve()) for p in sources]
    for path in sources:
        samples = load_audio(path, SR).samples
        n, seg = len(samples), 3 * SR
        tail = n % seg
        assert len(by_source[str(path.resolve())]) == n // seg + (tail >= SR // 2), path.name
        for s in by_source[str(path.resolve())]:
            data, rate = sf.read(out / s.path, dtype="float32")
            assert rate == SR and data.ndim == 1 and len(data) == seg and s.duration == 3.0
            start = round(s.offset * SR)
            real = samples[start:start + seg]
            np.testing.assert_allclose(data[:len(real)], real, atol=1.5 / 32768)  # 16-bit FLAC
            assert not data[len(real):].any()  # the padded tail is silence


def test_manifest_has_the_contract_fields_and_keeps_text_only_for_whole_utterances(prepped, speech_dir):
    out, _ = prepped
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert all(tuple(obj) == FIELDS for obj in lines)
    assert all("/" not in obj["id"] and obj["split"] in ("train", "valid") for obj in lines)
    assert all(obj["speaker"] for obj in lines)  # transcripts.tsv gives every clip's speaker
    rows = (speech_dir / "transcripts.tsv").read_text().splitlines()[1:]
    texts = {row.split("\t")[0]: row.split("\t")[1] for row in rows}
    short = [obj for obj in lines if obj["source"].endswith("ljspeech_LJ001-0002.flac")]  # 1.9 s: one whole segment
    assert len(short) == 1 and short[0]["text"] == texts["ljspeech_LJ001-0002.flac"]
    long = [obj for obj in lines if obj["source"].endswith("librispeech_dev-clean_2412-153948-0000.flac")]
    assert len(long) > 1 and all(obj["text"] is None for obj in long)  # a part of an utterance: words unknown


def test_split_is_by_speaker_deterministic_and_order_independent(prepped, speech_dir, tmp_path):
    out, report = prepped
    segments = read_segments(out / "manifest.jsonl")
    assert report.split_by == "speaker" and report.valid > 0 and report.train > 0
    valid_speakers = {s.speaker for s in segments if s.split == "valid"}
    train_speakers = {s.speaker for s in segments if s.split == "train"}
    assert not valid_speakers & train_speakers
    again = prepare(reversed(list(local_source(speech_dir))), tmp_path / "b", PrepOptions(valid_fraction=0.3))
    assert again.valid == report.valid
    again_splits = {s.id: s.split for s in read_segments(tmp_path / "b" / "manifest.jsonl")}
    assert again_splits == {s.id: s.split for s in segments}
    other = [s.split for s in read_segments(
        _prep(list(local_source(speech_dir)), tmp_path / "c", PrepOptions(valid_fraction=0.3, seed=99)))]
    assert other != [s.split for s in segments]  # another seed, another split


def _prep(utterances, out, options):
    prepare(utterances, out, options)
    return out / "manifest.jsonl"


def test_split_by_utterance_without_speakers_and_ratio_subset(tmp_path):
    utts = [synthetic(f"u{i:02d}", 3.0, seed=i) for i in range(40)]
    report = prepare(utts, tmp_path / "a", PrepOptions(valid_fraction=0.25, ratio=0.5, seed=3))
    segments = read_segments(tmp_path / "a" / "manifest.jsonl")
    assert report.split_by == "utterance" and report.used_utterances == 20 and len(segments) == 20
    assert report.valid == 5  # round(0.25 * 20) utterances
    prepare(utts[::-1], tmp_path / "b", PrepOptions(valid_fraction=0.25, ratio=0.5, seed=3))
    again = read_segments(tmp_path / "b" / "manifest.jsonl")
    assert sorted(again, key=lambda s: s.id) == sorted(segments, key=lambda s: s.id)  # same subset and split
    prepare(utts, tmp_path / "c", PrepOptions(valid_fraction=0.25, ratio=0.5, seed=4))
    assert {s.id for s in read_segments(tmp_path / "c" / "manifest.jsonl")} != {s.id for s in segments}


def test_one_crop_gives_one_segment_per_utterance(tmp_path):
    utts = [synthetic("long", 7.5, "a", seed=1), synthetic("short", 1.0, "b", text="hi there", seed=2)]
    prepare(utts, tmp_path, PrepOptions(one_crop=True, valid_fraction=0))
    segments = {s.id: s for s in read_segments(tmp_path / "manifest.jsonl")}
    assert sorted(segments) == ["long-0000", "short-0000"]
    crop = segments["long-0000"]
    data, _ = sf.read(tmp_path / crop.path, dtype="float32")
    start = round(crop.offset * SR)
    np.testing.assert_allclose(data, utts[0].load(SR)[start:start + 3 * SR], atol=1.5 / 32768)
    assert segments["short-0000"].text == "hi there" and segments["short-0000"].duration == 3.0


# -- idempotence, odd paths, bad files, other sources ----------------------------------------------------------

def test_rerun_is_idempotent_and_other_options_rewrite(tmp_path, speech_dir):
    src = tmp_path / "my corpus.v1"
    shutil.copytree(speech_dir, src)
    (src / "vctk_p225_003.wav").rename(src / "clip one.take.2.wav")  # spaces and dots in the file name
    out = tmp_path / "out dir.x"
    first = prepare(local_source(src), out, PrepOptions())
    manifest = (out / "manifest.jsonl").read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")}
    second = prepare(local_source(src), out, PrepOptions())
    assert (out / "manifest.jsonl").read_bytes() == manifest
    assert second.written == 0 and second.reused == first.written and second.removed == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")} == stamps
    ids = [s.id for s in read_segments(out / "manifest.jsonl")]
    assert "clip one.take.2-0000" in ids and (out / read_segments(out / "manifest.jsonl")[0].path).is_file()
    third = prepare(local_source(src), out, PrepOptions(segment_seconds=2.0))
    assert third.reused == 0 and third.written == third.segments
    assert len(list((out / "audio").rglob("*.flac"))) == third.segments  # old 3 s files are gone


def test_bad_file_is_reported_and_the_rest_goes_on(tmp_path, speech_dir, capsys):
    src = tmp_path / "src"
    shutil.copytree(speech_dir, src)
    (src / "broken.wav").write_bytes(b"RIFF not really a wav")
    result = run_cli(capsys, "prep", src, "-o", tmp_path / "out", "--json")
    assert result.code == 1
    report = json.loads(result.stdout)
    assert [Path(f["source"]).name for f in report["failures"]] == ["broken.wav"]
    assert report["used_utterances"] == 10 and report["skipped"] == {"could not be read": 1}
    assert report["segments"] > 0
    assert "broken.wav" in result.stderr and "Traceback" not in result.stderr
    assert len(read_segments(tmp_path / "out" / "manifest.jsonl")) == report["segments"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    missing = run_cli(capsys, "prep", tmp_path / "nope", "-o", tmp_path / "out")
    assert missing.code == 2 and "no such folder" in missing.stderr and "Traceback" not in missing.stderr
    bad = run_cli(capsys, "prep", tmp_path, "-o", tmp_path / "out", "--tail", "wrap")
    assert bad.code == 2 and "--tail" in bad.stderr


def test_tsv_and_jsonl_manifests_as_sources(tmp_path, speech_dir):
    rel = "../" + speech_dir.name
    shutil.copytree(speech_dir, tmp_path / speech_dir.name)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "a.tsv").write_text(f"path\tspeaker\ttext\n{rel}/vctk_p226_005.wav\tp226\tsome words\n")
    (lists / "b.jsonl").write_text(json.dumps({"audio": f"{rel}/ljspeech_LJ001-0002.flac", "speaker_id": "lj",
                                               "sentence": "in being comparatively modern."}) + "\n")
    utts = list(local_source(lists / "a.tsv")) + list(local_source(lists / "b.jsonl"))
    assert [(u.speaker, u.text) for u in utts] == [("p226", "some words"), ("lj", "in being comparatively modern.")]
    report = prepare(utts, tmp_path / "out", PrepOptions(valid_fraction=0.5))
    segments = read_segments(tmp_path / "out" / "manifest.jsonl")
    assert report.failures == [] and {s.speaker for s in segments} == {"p226", "lj"}
    assert {s.split for s in segments} == {"train", "valid"}  # two speakers: one of them is held out


def test_hf_dataset_saved_to_disk(tmp_path, speech_dir):
    datasets = pytest.importorskip("datasets")
    files = [str(speech_dir / "vctk_p225_003.wav"), str(speech_dir / "ljspeech_LJ001-0002.flac")]
    data = datasets.Dataset.from_dict({"audio": files, "text": ["first", "second"], "speaker_id": [225, 7],
                                       "id": ["p225/003", "lj/0002"]}).cast_column("audio", datasets.Audio())
    data.save_to_disk(str(tmp_path / "hf"))
    utts = list(hf_source(str(tmp_path / "hf"), "train"))
    assert [(u.id, u.speaker, u.text) for u in utts] == [("p225__003", "225", "first"), ("lj__0002", "7", "second")]
    np.testing.assert_allclose(utts[1].load(SR), load_audio(files[1], SR).samples, atol=1e-6)
    report = prepare(utts, tmp_path / "out", PrepOptions())
    lengths = [len(load_audio(f, SR).samples) for f in files]  # 6.01 s: 2 segments (tail < 0.5 s), 1.9 s: 1
    assert report.failures == [] and report.segments == sum(n // (3 * SR) + (n % (3 * SR) >= SR // 2) for n in lengths)
    with pytest.raises(DmcodecError, match="no audio column"):
        list(hf_source(str(tmp_path / "hf"), "train", audio_column="wav"))


@pytest.mark.skipif(not (SHARED / "data" / "train-mini" / "manifest.tsv").is_file(), reason="shared train-mini absent")
def test_train_mini_split_keeps_speakers_apart(tmp_path):
    report = prepare(local_source(SHARED / "data" / "train-mini"), tmp_path, PrepOptions(ratio=0.15, seed=5))
    segments = read_segments(tmp_path / "manifest.jsonl")
    assert report.failures == [] and report.used_utterances == round(0.15 * 292) and report.split_by == "speaker"
    valid = {s.speaker for s in segments if s.split == "valid"}
    assert valid and not valid & {s.speaker for s in segments if s.split == "train"}


def test_hf_dataset_with_decoded_arrays(tmp_path):
    datasets = pytest.importorskip("datasets")
    stereo = np.stack([np.full(8000, 0.2), np.full(8000, 0.4)]).astype(np.float32)  # [channels, L] at 8 kHz
    data = datasets.Dataset.from_dict({"audio": [{"array": stereo.tolist(), "sampling_rate": 8000}]})
    data.save_to_disk(str(tmp_path / "hf"))
    (utt,) = list(hf_source(str(tmp_path / "hf"), "dev"))
    samples = utt.load(SR)
    assert utt.id == "dev-00000000" and utt.speaker is None and len(samples) == 2 * 8000
    np.testing.assert_allclose(samples[2000:-2000], 0.3, atol=1e-3)  # mean of the channels, resampled


def test_a_foreign_output_folder_is_left_alone(tmp_path):
    (tmp_path / "audio" / "ab").mkdir(parents=True)
    (tmp_path / "audio" / "ab" / "precious.flac").write_bytes(b"x")
    with pytest.raises(DmcodecError, match="not written by dmcodec prep"):
        prepare([synthetic("u", 3.0)], tmp_path, PrepOptions())
    assert (tmp_path / "audio" / "ab" / "precious.flac").is_file()
