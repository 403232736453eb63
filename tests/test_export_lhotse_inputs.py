"""encode takes lhotse manifests: a RecordingSet (one utterance per recording) and a CutSet (one per cut, its span
of the recording), ids from the manifest, codes equal to encoding the same audio as plain files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from cli import run_cli
from conftest import REFERENCE, SPEECH
from dmcodec_cli.corpus.store import CodeStore

lhotse = pytest.importorskip("lhotse")

MODEL = REFERENCE / "dmcodec_small.pt"
CLIP16 = SPEECH / "librispeech_train-clean-100_19-198-0000.flac"
CLIP22 = SPEECH / "ljspeech_LJ001-0002.flac"  # 22.05 kHz: the span is resampled


def encode(capsys, source, output) -> dict[str, np.ndarray]:
    code, _, err = run_cli(capsys, "encode", source, "-o", output, "--model", MODEL, "--workers", "0", "--json")
    assert code == 0, err
    with CodeStore(output) as store:
        return dict(iter(store))


def test_a_cutset_s_spans_encode_like_the_same_audio_cut_into_files(tmp_path, capsys, one_thread):
    cuts, reference = [], []
    for name, clip, start, duration in [("spk/a", CLIP16, 0.5, 1.2), ("b.c", CLIP22, 0.25, 1.0),
                                        ("whole", CLIP16, 0.0, None)]:
        recording = lhotse.Recording.from_file(clip, recording_id=name + "-rec")
        duration = recording.duration if duration is None else duration
        cuts.append(lhotse.MonoCut(name, start, duration, 0, recording=recording))
        samples, rate = sf.read(clip, dtype="float32")
        piece = tmp_path / f"{len(reference)}.wav"
        sf.write(piece, samples[round(start * rate):round(start * rate) + round(duration * rate)], rate,
                 subtype="FLOAT")
        reference.append({"id": name, "path": str(piece)})
    manifest = tmp_path / "cuts.jsonl.gz"
    lhotse.CutSet.from_cuts(cuts).to_file(manifest)
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in reference))

    got, want = encode(capsys, manifest, tmp_path / "cuts.h5"), encode(capsys, plain, tmp_path / "plain.h5")
    assert sorted(got) == ["b.c", "spk/a", "whole"]
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert got["spk/a"].shape[1] == 60  # 1.2 s at 50 frames/s


def test_a_recordingset_gives_one_utterance_per_recording(tmp_path, capsys, one_thread):
    recordings = lhotse.RecordingSet.from_recordings([lhotse.Recording.from_file(CLIP16, recording_id="r16"),
                                                      lhotse.Recording.from_file(CLIP22, recording_id="r22")])
    manifest = tmp_path / "recordings.jsonl"  # plain JSONL, known as lhotse's by its fields
    recordings.to_file(manifest)
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"id": name, "path": str(clip)}) + "\n"
                             for name, clip in [("r16", CLIP16), ("r22", CLIP22)]))
    got, want = encode(capsys, manifest, tmp_path / "r.h5"), encode(capsys, plain, tmp_path / "p.h5")
    assert sorted(got) == ["r16", "r22"]
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_a_cut_without_a_recording_is_one_line(tmp_path, capsys):
    manifest = tmp_path / "cuts.jsonl.gz"
    lhotse.CutSet.from_cuts([lhotse.MonoCut("x", 0.0, 1.0, 0)]).to_file(manifest)
    code, _, err = run_cli(capsys, "encode", manifest, "-o", tmp_path / "o.h5", "--model", MODEL)
    assert code == 2 and "cut 'x'" in err and "no recording" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.h5").exists()


def test_export_takes_a_cutset_s_supervisions_as_labels(tmp_path):
    from dmcodec_cli.lm.labels import read_labels

    recording = lhotse.Recording.from_file(CLIP16, recording_id="r")
    cuts = [lhotse.MonoCut("a", 0.0, 1.0, 0, recording=recording, supervisions=[
                lhotse.SupervisionSegment("a-0", "r", 0.0, 0.5, text="HELLO", speaker="s1"),
                lhotse.SupervisionSegment("a-1", "r", 0.5, 0.5, text="WORLD", speaker="s1")]),
            lhotse.MonoCut("b", 1.0, 1.0, 0, recording=recording)]
    manifest = tmp_path / "cuts.jsonl.gz"
    lhotse.CutSet.from_cuts(cuts).to_file(manifest)
    labels = read_labels(manifest)
    assert labels.columns == ("text", "speaker")
    assert labels.of("a") == {"text": "HELLO WORLD", "speaker": "s1"}
    assert labels.of("b") == {"text": None, "speaker": None}
