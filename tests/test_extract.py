"""dmcodec extract: teacher features aligned to codec frames, layers, pad / ctc alignment, the HDF5 store, resume.

Teachers are tiny random HuBERT / wav2vec2-CTC / BERT models built by tests/tiny_teachers.py (no network).
"""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

from cli import run_cli, run_shell
from dmcodec_cli.data.align import align_ctc, align_pad, forced_word_spans, greedy_word_spans
from dmcodec_cli.data.extract import ExtractOptions, extract
from dmcodec_cli.data.features import FeatureReader
from dmcodec_cli.data.manifest import Segment, read_segments, write_segments
from dmcodec_cli.data.prep import PrepOptions, prepare
from dmcodec_cli.data.sources import local_source
from dmcodec_cli.data.teachers import CtcTranscriber
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.inputs import read_transcripts
from tiny_teachers import ctc_vocab, make_tiny_bert, make_tiny_teachers

SR = 16000
CLIPS = ("vctk_p225_003.wav", "ljspeech_LJ001-0002.flac", "cmu_arctic_awb_arctic_a0007.wav")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    return {kind: str(path) for kind, path in make_tiny_teachers(tmp_path_factory.mktemp("teachers")).items()}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, speech_dir):
    """Segments of 1.01 s (16160 samples: 50.5 hops, so ceil matters) from three real clips."""
    root = tmp_path_factory.mktemp("data")
    (root / "list.tsv").write_text("path\tspeaker\n" + "".join(f"{speech_dir / c}\t{c[:6]}\n" for c in CLIPS))
    prepare(local_source(root / "list.tsv"), root / "prep", PrepOptions(segment_seconds=1.01, valid_fraction=0.3))
    return root / "prep" / "manifest.jsonl"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, manifest, teachers):
    out = tmp_path_factory.mktemp("features") / "features.h5"
    options = ExtractOptions(sm=teachers["sm"], stt=teachers["stt"], lm=teachers["lm"], dtype="float32", batch_size=4)
    return out, extract(manifest, out, options)


def _audio(manifest, segment_id: str) -> np.ndarray:
    segment = next(s for s in read_segments(manifest) if s.id == segment_id)
    return sf.read(manifest.parent / segment.path, dtype="float32")[0]


def test_feature_shapes_equal_the_codec_frame_count(full_run, manifest, small_model):
    out, report = full_run
    segments = read_segments(manifest)
    assert report.failures == [] and report.computed == {"sm": len(segments), "lm": len(segments)}
    with FeatureReader(out) as store:
        assert store.groups == ["sm", "lm"] and store.ids() == sorted(s.id for s in segments)
        assert (store.sample_rate, store.frame_rate) == (16000, 50.0)
        for segment in segments[:3]:
            audio = _audio(manifest, segment.id)
            with torch.no_grad():
                codes = small_model.encode(torch.from_numpy(audio)[None, None])
            assert codes.shape[-1] == math.ceil(len(audio) / 320) == 51
            for group in ("sm", "lm"):
                features = store.get(group, segment.id)
                assert features.shape == (codes.shape[-1], 32) and features.dtype == np.float32


def test_store_attributes_record_teachers_layers_and_alignment(full_run, teachers):
    out, _ = full_run
    with h5py.File(out) as f:
        assert f.attrs["format"] == "dmcodec-features" and f.attrs["format_version"] == 1
    with FeatureReader(out) as store:
        assert store.attrs("sm") == {"teacher": teachers["sm"], "kind": "sm", "layer": "avg",
                                     "alignment": "audio-pad", "dim": 32, "dtype": "float32"}
        assert store.attrs("lm")["alignment"] == "pad" and store.attrs("lm")["teacher"] == teachers["lm"]


def test_sm_avg_is_the_mean_of_hidden_states_and_layers_select(full_run, manifest, teachers, tmp_path):
    from transformers import HubertModel

    out, _ = full_run
    model = HubertModel.from_pretrained(teachers["sm"]).eval()
    segment_id = read_segments(manifest)[1].id
    audio = torch.from_numpy(_audio(manifest, segment_id))[None]
    frames = math.ceil(audio.shape[1] / 320)
    padded = torch.nn.functional.pad(audio, (0, (frames - 1) * 320 + 400 - audio.shape[1]))
    with torch.no_grad():
        hidden = model(padded, output_hidden_states=True).hidden_states
    assert len(hidden) == 3 and hidden[0].shape[1] == frames
    expected = torch.stack(hidden).mean(0)[0].numpy()
    with FeatureReader(out) as store:
        np.testing.assert_allclose(store.get("sm", segment_id), expected, atol=1e-5)
    for layer, index in (("last", -1), (1, 1)):
        options = ExtractOptions(sm=teachers["sm"], sm_layer=layer, dtype="float32")
        extract(manifest, tmp_path / f"{layer}.h5", options)
        with FeatureReader(tmp_path / f"{layer}.h5") as store:
            got = store.get("sm", segment_id)
            np.testing.assert_allclose(got, hidden[index][0].numpy(), atol=1e-5)
            assert not np.allclose(got, expected, atol=1e-3)


def test_lm_pad_is_the_padded_token_sequence(full_run, manifest, teachers):
    from transformers import AutoTokenizer, BertModel

    out, _ = full_run
    tokenizer, model = AutoTokenizer.from_pretrained(teachers["lm"]), BertModel.from_pretrained(teachers["lm"]).eval()
    with FeatureReader(out) as store:
        segment_id = store.ids()[0]
        text = store.file["lm"][segment_id].attrs["text"]  # the ASR transcript of the tiny CTC model
        batch = tokenizer(text, padding="max_length", truncation=True, max_length=51, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch, output_hidden_states=True).hidden_states
        np.testing.assert_allclose(store.get("lm", segment_id), torch.stack(hidden).mean(0)[0].numpy(), atol=1e-5)


def test_batched_equals_one_by_one(full_run, manifest, teachers, tmp_path):
    out, _ = full_run
    options = ExtractOptions(sm=teachers["sm"], stt=teachers["stt"], lm=teachers["lm"], dtype="float32", batch_size=1)
    extract(manifest, tmp_path / "single.h5", options)
    with FeatureReader(out) as batched, FeatureReader(tmp_path / "single.h5") as single:
        for group in ("sm", "lm"):
            for segment_id in batched.ids():
                np.testing.assert_allclose(batched.get(group, segment_id), single.get(group, segment_id), atol=1e-4)


# -- alignment ------------------------------------------------------------------------------------------------

VOCAB = ctc_vocab()


def constructed_log_probs(frames: int, emissions: dict[int, str]) -> np.ndarray:
    """Log-probabilities [frames, V] whose argmax is `emissions[frame]` (a character or '|'), blank elsewhere."""
    logits = np.full((frames, len(VOCAB)), -8.0, dtype=np.float32)
    logits[:, VOCAB["<pad>"]] = 0.0
    for frame, char in emissions.items():
        logits[frame, VOCAB["<pad>"]] = -8.0
        logits[frame, VOCAB[char]] = 0.0
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


# HELLO on frames 10-19 (the two Ls split by a blank), a delimiter, WORLD on frames 30-40, silence elsewhere
EMISSIONS = {10: "H", 11: "H", 13: "E", 14: "L", 16: "L", 17: "O", 18: "O", 19: "O", 24: "|",
             30: "W", 32: "O", 34: "R", 36: "L", 40: "D"}


def test_greedy_and_forced_alignment_find_the_constructed_word_timings():
    log_probs = constructed_log_probs(51, EMISSIONS)
    id_to_token = {i: t for t, i in VOCAB.items()}
    words = greedy_word_spans(log_probs.argmax(-1), VOCAB["<pad>"], VOCAB["|"], id_to_token)
    assert [(w.word, w.start, w.end) for w in words] == [("HELLO", 10, 20), ("WORLD", 30, 41)]
    tokens = [[VOCAB[c] for c in "HELLO"], [VOCAB[c] for c in "WORLD"]]
    assert forced_word_spans(log_probs, tokens, VOCAB["<pad>"], VOCAB["|"]) == [(10, 20), (30, 41)]
    assert forced_word_spans(log_probs[:6], tokens, VOCAB["<pad>"], VOCAB["|"]) == [None, None]  # cannot fit


def test_align_ctc_spreads_tokens_over_their_word_and_leaves_silence_zero():
    features = np.arange(1, 7, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # token k = k + 1
    owner = [-1, 0, 0, 1, 1, 1]  # a special token, a 2-token word, a 3-token word
    out = align_ctc(features, owner, [(1, 5), (6, 8)], frames=9)
    assert out[:, 0].tolist() == [0, 2, 2, 3, 3, 0, (4 + 5) / 2, (5 + 6) / 2, 0]
    padded = align_pad(features, 9)
    assert padded[:6, 0].tolist() == [1, 2, 3, 4, 5, 6] and not padded[6:].any()
    assert align_pad(features, 4)[:, 0].tolist() == [1, 2, 3, 4]


def _one_segment_manifest(tmp_path, speech_dir, text=None) -> tuple:
    audio = sf.read(speech_dir / "vctk_p225_003.wav", dtype="float32")[0][:16160]
    sf.write(tmp_path / "seg.flac", audio, SR)
    manifest = tmp_path / "manifest.jsonl"
    write_segments(manifest, [Segment("seg", "seg.flac", "test", 0.0, 1.01, None, text, "train")])
    return manifest, 51


def _bert_word_features(teachers, words) -> tuple:
    """BERT (avg of hidden states) on [CLS] words [SEP]: (features [N, D], word id per token)."""
    from transformers import AutoTokenizer, BertModel

    tokenizer, model = AutoTokenizer.from_pretrained(teachers["lm"]), BertModel.from_pretrained(teachers["lm"]).eval()
    batch = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    return torch.stack(hidden).mean(0)[0].numpy(), batch.word_ids(0)


@pytest.mark.parametrize("known_text", [None, "hello world"])
def test_ctc_alignment_puts_each_word_on_its_frames(tmp_path, speech_dir, teachers, monkeypatch, known_text):
    manifest, frames = _one_segment_manifest(tmp_path, speech_dir, known_text)
    log_probs = constructed_log_probs(frames, EMISSIONS)
    monkeypatch.setattr(CtcTranscriber, "log_probs", lambda self, audio, n: np.stack([log_probs] * audio.shape[0]))
    options = ExtractOptions(stt=teachers["stt"], lm=teachers["lm"], lm_align="ctc", dtype="float32")
    report = extract(manifest, tmp_path / "ctc.h5", options)
    assert report.word_timings == ({"greedy": 1, "forced": 0, "even": 0} if known_text is None
                                   else {"greedy": 0, "forced": 1, "even": 0})
    words = ["HELLO", "WORLD"] if known_text is None else ["hello", "world"]
    hidden, word_ids = _bert_word_features(teachers, words)  # [CLS] hello world [SEP]: one token per word
    assert word_ids == [None, 0, 1, None]
    with FeatureReader(tmp_path / "ctc.h5") as store:
        got = store.get("lm", "seg")
        assert store.file["lm"]["seg"].attrs["text"] == " ".join(words)
    np.testing.assert_allclose(got[10:20], np.repeat(hidden[1:2], 10, 0), atol=1e-5)
    np.testing.assert_allclose(got[30:41], np.repeat(hidden[2:3], 11, 0), atol=1e-5)
    silent = np.ones(frames, bool)
    silent[10:20] = silent[30:41] = False
    assert not got[silent].any()
    # the paper's rule on the same recognised text: position i of the padded token sequence on frame i
    extract(manifest, tmp_path / "pad.h5", ExtractOptions(stt=teachers["stt"], lm=teachers["lm"], dtype="float32"))
    with FeatureReader(tmp_path / "pad.h5") as store:
        padded = store.get("lm", "seg")
    np.testing.assert_allclose(padded[:4], hidden, atol=1e-4)  # [CLS] w1 w2 [SEP] first (pads attend to nothing)
    assert padded[4:].any()  # [PAD] positions have features of their own, as in the paper


def test_long_texts_beyond_the_lm_window(tmp_path, speech_dir, teachers):
    short_lm = str(make_tiny_bert(tmp_path / "bert16", max_positions=16))
    manifest, frames = _one_segment_manifest(tmp_path, speech_dir)
    words = ("the speech codec say nothing and " * 7).split()  # 42 words: far beyond 16 positions
    (tmp_path / "t.tsv").write_text(f"id\ttext\nseg\t{' '.join(words)}\n")
    texts = read_transcripts(tmp_path / "t.tsv")
    pad = extract(manifest, tmp_path / "pad.h5", ExtractOptions(lm=short_lm, transcripts=texts, dtype="float32"))
    assert pad.texts == {"known": 1, "asr": 0}
    with FeatureReader(tmp_path / "pad.h5") as store:
        got = store.get("lm", "seg")
    assert got.shape == (frames, 32) and got[:16].any() and not got[16:].any()  # window filled, then zeros
    ctc = extract(manifest, tmp_path / "ctc.h5", ExtractOptions(stt=teachers["stt"], lm=short_lm, transcripts=texts,
                                                                lm_align="ctc", dtype="float32"))
    assert ctc.word_timings["even"] == 1  # 42 words cannot fit 51 frames of CTC: shared evenly
    with FeatureReader(tmp_path / "ctc.h5") as store:
        assert np.abs(store.get("lm", "seg")).sum(1).min() > 0  # every frame holds a word's tokens


def test_known_text_wins_over_asr(tmp_path, speech_dir, teachers):
    manifest, _ = _one_segment_manifest(tmp_path, speech_dir, text="hello world")
    options = ExtractOptions(stt=teachers["stt"], lm=teachers["lm"])
    assert extract(manifest, tmp_path / "a.h5", options).texts == {"known": 1, "asr": 0}
    given = {"seg": "say nothing"}
    extract(manifest, tmp_path / "b.h5", ExtractOptions(stt=teachers["stt"], lm=teachers["lm"], transcripts=given))
    extract(manifest, tmp_path / "c.h5",
            ExtractOptions(stt=teachers["stt"], lm=teachers["lm"], use_manifest_text=False))
    texts = {}
    for name in "abc":
        with FeatureReader(tmp_path / f"{name}.h5") as store:
            texts[name] = store.file["lm"]["seg"].attrs["text"]
    assert texts["a"] == "hello world" and texts["b"] == "say nothing"
    assert texts["c"] not in ("hello world", "say nothing") and texts["c"] == texts["c"].upper()  # the CTC's output


def test_missing_teachers_and_texts_are_clear_errors(tmp_path, speech_dir, teachers):
    manifest, _ = _one_segment_manifest(tmp_path, speech_dir)
    with pytest.raises(DmcodecError, match="no known text"):
        extract(manifest, tmp_path / "x.h5", ExtractOptions(lm=teachers["lm"]))
    with pytest.raises(DmcodecError, match="needs word timings"):
        ExtractOptions(lm=teachers["lm"], lm_align="ctc")
    with pytest.raises(DmcodecError, match="nothing to extract"):
        ExtractOptions()
    with pytest.raises(DmcodecError, match="layer 7 does not exist"):
        extract(manifest, tmp_path / "y.h5", ExtractOptions(sm=teachers["sm"], sm_layer=7))
    with pytest.raises(DmcodecError, match="cannot load the speech feature model"):
        extract(manifest, tmp_path / "z.h5", ExtractOptions(sm=str(tmp_path / "no-such-model")))


# -- resume, settings, CLI --------------------------------------------------------------------------------------

def test_interrupted_run_resumes_to_the_same_features(full_run, manifest, teachers, tmp_path):
    options = ExtractOptions(sm=teachers["sm"], stt=teachers["stt"], lm=teachers["lm"], dtype="float32", batch_size=4)
    total = len(read_segments(manifest))

    def stop_after_first_batch(done, _total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract(manifest, tmp_path / "f.h5", options, progress=stop_after_first_batch)
    with FeatureReader(tmp_path / "f.h5") as store:
        assert len(store.ids()) == 4
    resumed = extract(manifest, tmp_path / "f.h5", options)
    assert resumed.already_done == 4 and resumed.computed == {"sm": total - 4, "lm": total - 4}
    with FeatureReader(tmp_path / "f.h5") as store, FeatureReader(full_run[0]) as straight:
        assert store.ids() == straight.ids()
        for group in ("sm", "lm"):
            for segment_id in store.ids():
                np.testing.assert_allclose(store.get(group, segment_id), straight.get(group, segment_id), atol=1e-5)
    assert extract(manifest, tmp_path / "f.h5", options).already_done == total


def test_other_settings_are_refused_and_fp16_is_the_default(tmp_path, manifest, teachers, capsys):
    out = tmp_path / "f.h5"
    first = run_cli(capsys, "extract", manifest, "-o", out, "--sm", teachers["sm"], "--split", "valid", "--json")
    assert first.code == 0, first.stderr
    valid = [s.id for s in read_segments(manifest) if s.split == "valid"]
    with FeatureReader(out) as store:
        assert store.ids("sm") == sorted(valid) and store.get("sm", valid[0]).dtype == np.float16
    other = run_cli(capsys, "extract", manifest, "-o", out, "--sm", teachers["sm"], "--sm-layer", "last")
    assert other.code == 2 and "layer 'avg' -> 'last'" in other.stderr and "Traceback" not in other.stderr
    again = run_cli(capsys, "extract", manifest, "-o", out, "--sm", teachers["sm"], "--sm-layer", "last",
                    "--overwrite", "--json")
    assert again.code == 0 and json.loads(again.stdout)["computed"]["sm"] == len(read_segments(manifest))


def test_prep_and_extract_from_the_shell(tmp_path, speech_dir, teachers, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    prep = run_shell("prep", speech_dir, "-o", tmp_path / "prep", "--ratio", "0.3", "--json")
    assert prep.code == 0, prep.stderr
    report = json.loads(prep.stdout)
    assert report["used_utterances"] == 3 and report["segments"] > 0
    done = run_shell("extract", tmp_path / "prep" / "manifest.jsonl", "-o", tmp_path / "f.h5", "--sm", teachers["sm"],
                     "--stt", teachers["stt"], "--lm", teachers["lm"], "--lm-align", "ctc", "--device", "cpu", "--json")
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["computed"] == {"sm": report["segments"], "lm": report["segments"]}


def test_cli_errors_are_one_line(tmp_path, teachers, capsys):
    bad = run_cli(capsys, "extract", tmp_path / "nope.jsonl", "-o", tmp_path / "g.h5", "--sm", teachers["sm"])
    assert bad.code == 2 and bad.stderr.strip().count("\n") == 0 and "no such manifest" in bad.stderr
    layer = run_cli(capsys, "extract", tmp_path / "nope.jsonl", "-o", tmp_path / "g.h5", "--sm", teachers["sm"],
                    "--sm-layer", "middle")
    assert layer.code == 2 and "layer must be 'avg', 'last' or a layer index" in layer.stderr


def test_ids_and_paths_with_dots_and_spaces(tmp_path, speech_dir, teachers):
    audio = sf.read(speech_dir / "vctk_p225_003.wav", dtype="float32")[0][:SR]
    folder = tmp_path / "my data.v2" / "audio dir"
    folder.mkdir(parents=True)
    sf.write(folder / "clip one.take.2-0000.flac", audio, SR)
    manifest = tmp_path / "my data.v2" / "manifest.jsonl"
    write_segments(manifest, [Segment("clip one.take.2-0000", "audio dir/clip one.take.2-0000.flac", "x", 0.0, 1.0,
                                      None, None, "train")])
    out = tmp_path / "feat ures.v1.h5"
    assert extract(manifest, out, ExtractOptions(sm=teachers["sm"])).computed["sm"] == 1
    with FeatureReader(out) as store:
        assert store.ids() == ["clip one.take.2-0000"] and store.get("sm", "clip one.take.2-0000").shape == (50, 32)
