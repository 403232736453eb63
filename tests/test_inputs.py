"""One module of audio inputs: every command sees the same folder the same way (ids, order, what is skipped
and why), the same manifest in every format, and the same transcripts in every format."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from dmcodec_cli.data.extract import ExtractOptions, extract
from dmcodec_cli.data.features import FeatureReader
from dmcodec_cli.data.manifest import Segment, write_segments
from dmcodec_cli.data.sources import local_source
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.inputs import Item, collect_inputs, flat_id, read_transcripts, transcript_for
from dmcodec_cli.quality.roundtrip import store_inputs
from dmcodec_cli.quality.scoring import Scorers, match_pairs, roundtrip_inputs, text_reference

SR = 16000


def tone(path: Path, seconds: float = 0.3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.sin(np.linspace(0, 900, int(seconds * SR))).astype(np.float32), SR)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    """A folder with what a real corpus holds: names whose path order is not their id order, an upper-case
    extension, a file that is not audio, hidden files and folders, links to a file and to a folder outside,
    and a broken link."""
    root = tmp_path / "corpus"
    for name in ("a.wav", "a-b.wav", "sub/C.WAV", "sub/deep/d.flac", ".hidden.wav", ".cache/x.wav"):
        tone(root / name)
    (root / "notes.txt").write_text("not audio\n")
    tone(tmp_path / "outside" / "e.wav")
    (root / "linked").symlink_to(tmp_path / "outside")
    (root / "again.wav").symlink_to("a.wav")  # the same file: taken once, under its own path
    (root / "gone.wav").symlink_to("nowhere.wav")
    return root


IDS = ["a", "a-b", "linked/e", "sub/C", "sub/deep/d"]  #: id order: "a" before "a-b" (path order has "a-b.wav" first)


def test_every_command_sees_one_folder_the_same_way(tree, capsys):
    seen = {
        "encode": [(item.id, item.path) for item in collect_inputs(tree)],
        "prep": [(utt.id, Path(utt.source)) for utt in local_source(tree)],
        "roundtrip": [(pair.stem, pair.reference) for pair in roundtrip_inputs(tree)],
        "score": [(pair.stem, pair.reference) for pair in match_pairs(tree, tree)[0]],
        "roundtrip --audio": [(pair.stem, pair.reference) for pair in store_inputs(SimpleNamespace(ids=IDS), tree)],
    }
    warnings = capsys.readouterr().err.splitlines()
    assert [name for name, _ in seen["encode"]] == IDS
    assert [name for name, _ in seen["prep"]] == [flat_id(name) for name in IDS]  # the flat form of the same ids
    paths = [path.resolve() for _, path in seen["encode"]]
    for command, found in seen.items():
        assert [path.resolve() for _, path in found] == paths, command
        if command != "prep":
            assert [name for name, _ in found] == IDS, command
    # six walks (score walks both folders): each skipped the broken link with the same one line
    assert len(warnings) == 6 and len(set(warnings)) == 1 and "gone.wav: broken symbolic link" in warnings[0]


def test_prep_ids_are_the_flat_form_of_encode_ids(tmp_path):
    tone(tmp_path / "audio" / "spk1" / "u1.wav")
    tone(tmp_path / "elsewhere" / "u2.flac")
    lists = tmp_path / "audio"
    (lists / "list.tsv").write_text(f"path\tid\nspk1/u1.wav\t\n{tmp_path / 'elsewhere' / 'u2.flac'}\tgiven/id\n")
    encode = collect_inputs(lists / "list.tsv")
    prep = local_source(lists / "list.tsv")
    assert [item.id for item in encode] == ["spk1/u1", "given/id"]  # relative to the manifest, or its own
    assert [utt.id for utt in prep] == [flat_id(item.id) for item in encode] == ["spk1__u1", "given__id"]


def test_every_manifest_format_lists_the_same_items(tmp_path):
    for name in ("a/x.wav", "b/y.flac"):
        tone(tmp_path / name)
    rows = [("a/x.wav", "s1", "hello"), (str(tmp_path / "b/y.flac"), "s2", "world")]
    (tmp_path / "m.txt").write_text("# audio\n" + "".join(f"{path}\n" for path, _, _ in rows))
    (tmp_path / "m.tsv").write_text("path\tspeaker\ttext\n" + "".join("\t".join(row) + "\n" for row in rows))
    (tmp_path / "m.csv").write_text("file,speaker,text\n" + "".join(",".join(row) + "\n" for row in rows))
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"audio": p, "speaker": s, "text": t}) + "\n"
                                              for p, s, t in rows))
    want = [("a/x", tmp_path / "a/x.wav"), ("b/y", tmp_path / "b/y.flac")]
    for manifest in ("m.txt", "m.tsv", "m.csv", "m.jsonl"):
        assert [(item.id, item.path) for item in collect_inputs(tmp_path / manifest)] == want, manifest
        utts = local_source(tmp_path / manifest)  # prep takes every format encode takes, and the reverse
        assert [utt.id for utt in utts] == ["a__x", "b__y"], manifest
        labels = [(utt.speaker, utt.text) for utt in utts]
        assert labels == ([(None, None)] * 2 if manifest == "m.txt" else [("s1", "hello"), ("s2", "world")])


def test_a_bad_manifest_line_is_named(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"path": "a.wav"}\n{"speaker": "s1"}\n')
    with pytest.raises(DmcodecError, match=r"m\.jsonl:2: no audio path"):
        collect_inputs(tmp_path / "m.jsonl")
    (tmp_path / "n.jsonl").write_text('{"path": ["a.wav"]}\n')
    with pytest.raises(DmcodecError, match=r"n\.jsonl:1: 'path' must be a string or a number, got list"):
        local_source(tmp_path / "n.jsonl")


def test_lhotse_cuts_give_prep_the_span_encode_reads(tmp_path, speech_dir):
    lhotse = pytest.importorskip("lhotse")
    audio = speech_dir / "vctk_p225_003.wav"
    recording = lhotse.Recording.from_file(audio)
    cut = lhotse.MonoCut("c1", 0.5, 0.75, 0, recording=recording,
                         supervisions=[lhotse.SupervisionSegment("s", recording.id, 0.5, 0.75, text="hi",
                                                                 speaker="p225")])
    lhotse.CutSet.from_cuts([cut]).to_file(tmp_path / "cuts.jsonl.gz")
    item, = collect_inputs(tmp_path / "cuts.jsonl.gz")
    utt, = local_source(tmp_path / "cuts.jsonl.gz")
    assert (utt.id, utt.speaker, utt.text) == ("c1", "p225", "hi")
    whole = sf.read(audio, dtype="float32")[0]
    rate = sf.info(audio).samplerate
    np.testing.assert_array_equal(utt.load(rate), whole[int(0.5 * rate): int(1.25 * rate)])
    np.testing.assert_array_equal(utt.load(rate), item.load(rate))


# ---------------------------------------------------------------- transcripts

TEXTS = [("sub/x.flac", "hello there"), ("take.2-0000", "first part"), ("y.wav", "")]


def _transcripts_files(folder: Path) -> list[Path]:
    """The same transcripts in every accepted format."""
    rows = TEXTS
    files = {
        "bare.tsv": "".join(f"{name}\t{text}\n" for name, text in rows),
        "file.tsv": "speaker\tfile\ttext\n" + "".join(f"s\t{name}\t{text}\n" for name, text in rows),
        "id.tsv": "id\ttext\n" + "".join(f"{name}\t{text}\n" for name, text in rows),
        "id.jsonl": "".join(json.dumps({"id": name, "text": text}) + "\n" for name, text in rows),
        "file.json": "".join(json.dumps({"file": name, "transcript": text}) + "\n" for name, text in rows),
    }
    for name, content in files.items():
        (folder / name).write_text(content)
    return [folder / name for name in files]


def test_every_transcripts_format_reads_the_same(tmp_path):
    first, *others = [read_transcripts(path) for path in _transcripts_files(tmp_path)]
    assert all(texts == first for texts in others)
    found = {name: transcript_for(name, first) for name in
             ("sub/x.flac", "other/x.wav", "sub/x", "x", "take.2-0000", "take.2-0001", "y.wav")}
    assert found == {"sub/x.flac": "hello there", "other/x.wav": "hello there", "sub/x": "hello there",
                     "x": "hello there", "take.2-0000": "first part",
                     "take.2-0001": None,  # an id is not shortened: take.2-0001 is not take.2-0000
                     "y.wav": None}  # an empty text is no text


def test_a_short_name_two_lines_share_finds_nothing(tmp_path):
    (tmp_path / "t.tsv").write_text("a/1.wav\tone\nb/1.wav\ttwo\n")
    texts = read_transcripts(tmp_path / "t.tsv")
    assert [transcript_for(name, texts) for name in ("a/1.wav", "b/1", "c/1.wav", "1")] == ["one", "two", None, None]


def test_extract_and_roundtrip_find_the_same_text(tmp_path, speech_dir):
    from tiny_teachers import make_tiny_bert

    path = _transcripts_files(tmp_path)[3]  # JSONL
    texts = read_transcripts(path)
    audio = sf.read(speech_dir / "vctk_p225_003.wav", dtype="float32")[0][:16160]
    sf.write(tmp_path / "seg.flac", audio, SR)
    manifest = tmp_path / "manifest.jsonl"
    write_segments(manifest, [Segment("take.2-0000", "seg.flac", "x", 0.0, 1.01, None, "manifest text", "train"),
                              Segment("take.2-0001", "seg.flac", "x", 0.0, 1.01, None, "its own", "train")])
    lm = str(make_tiny_bert(tmp_path / "bert"))
    report = extract(manifest, tmp_path / "f.h5", ExtractOptions(lm=lm, transcripts=texts, dtype="float32"))
    with FeatureReader(tmp_path / "f.h5") as store:
        extracted = {sid: store.file["lm"][sid].attrs["text"] for sid in ("take.2-0000", "take.2-0001")}
    assert report.texts == {"known": 2, "asr": 0}
    assert extracted == {"take.2-0000": "first part", "take.2-0001": "its own"}  # the file's, else the manifest's

    def asr_must_not_run(_):
        raise AssertionError("the given transcript was not found")

    scorers = Scorers(asr=SimpleNamespace(transcribe=asr_must_not_run), texts=texts)
    reference = text_reference("take.2-0000", np.zeros(SR, np.float32), scorers)
    assert (reference.text, reference.source) == ("first part", "transcripts")


def test_items_keep_the_one_id_rule_for_one_file(tmp_path):
    path = tone(tmp_path / "clip.take.2.wav")
    assert collect_inputs(path) == [Item("clip.take.2", path)]
    assert [utt.id for utt in local_source(path)] == ["clip.take.2"]
    assert roundtrip_inputs(path)[0].stem == "clip.take.2"
