"""ViSQOL, DNSMOS and speaker similarity: each equals its library called directly on the same arrays, a
degraded copy scores lower, and what cannot be computed is missing with a reason (never 0).

Excerpts of 4.6 s: DNSMOS repeats a clip shorter than its 9.01 s window until it is longer, and rates
every 1 s hop of that, so 4.6 s (repeated to 9.2 s) is one window; 2 s would be seven."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from cli import run_cli
from dmcodec_cli.audio import load_audio, resample
from dmcodec_cli.quality import metrics
from dmcodec_cli.quality.dnsmos import dnsmos
from dmcodec_cli.quality.metrics import HIGHER_IS_BETTER, METRICS, Missing
from dmcodec_cli.quality.report import LABELS
from dmcodec_cli.quality.speaker import TOO_SHORT, load_speaker_similarity
from dmcodec_cli.quality.visqol import VisqolWorkers, visqol

RATE = 16000


def excerpt(speech_dir, name: str, seconds: float = 4.6) -> np.ndarray:
    samples = load_audio(speech_dir / name, RATE).samples.astype(np.float64)
    return samples[int(0.3 * RATE): int((0.3 + seconds) * RATE)]


def band_limited(signal: np.ndarray) -> np.ndarray:
    """Resampled to 8 kHz and back (a 4 kHz band limit)."""
    return resample(resample(signal.astype(np.float32), RATE, 8000), 8000, RATE)[: len(signal)].astype(np.float64)


def noisy(signal: np.ndarray, sigma: float = 0.03) -> np.ndarray:
    return signal + np.random.default_rng(0).normal(0, sigma, len(signal))


@pytest.fixture(scope="module")
def clip(speech_dir) -> np.ndarray:
    return excerpt(speech_dir, "vctk_p225_003.wav")


def direct_visqol(reference: np.ndarray, degraded: np.ndarray) -> float:
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode="speech", use_lattice_model=True)
    return api.measure_from_arrays(reference, degraded, RATE).moslqo


def test_every_metric_has_a_direction_and_a_label():
    assert set(HIGHER_IS_BETTER) == set(METRICS) == set(LABELS)
    assert all(HIGHER_IS_BETTER[m] for m in ("visqol", "dnsmos_ovrl", "original_dnsmos_p808", "speaker_similarity"))


def test_visqol_equals_the_library_and_ranks_degraded_copies_lower(clip):
    band, worse = band_limited(clip), noisy(band_limited(clip))
    values = [visqol(clip, x) for x in (clip, band, worse)]
    assert values[1] == direct_visqol(clip, band)
    assert 1 <= values[2] < values[1] < values[0] <= 5


def test_visqol_in_worker_processes_equals_the_direct_call(clip, speech_dir):
    other = excerpt(speech_dir, "ljspeech_LJ001-0002.flac")
    pairs = [(clip, band_limited(clip)), (other, noisy(other))]
    with VisqolWorkers(jobs=2) as workers:
        futures = [workers.submit(*pair) for pair in pairs]
        values = [future.result() for future in futures]
    assert values == [direct_visqol(*pair) for pair in pairs]


def test_score_cli_runs_visqol_in_jobs_processes(clip, speech_dir, tmp_path, capsys):
    """`score --jobs 2` writes, per file, the value of a direct library call on the 16 kHz arrays."""
    other = excerpt(speech_dir, "cmu_arctic_awb_arctic_a0007.wav")
    for folder, transform in (("ref", lambda x: x), ("deg", band_limited)):
        (tmp_path / folder).mkdir()
        for name, signal in (("a.wav", clip), ("b.wav", other)):
            sf.write(tmp_path / folder / name, transform(signal), RATE, subtype="FLOAT")
    code, stdout, stderr = run_cli(capsys, "score", tmp_path / "ref", tmp_path / "deg", "--jobs", "2", "--json",
                                   "--skip", "dnsmos,speaker")
    assert code == 0, stderr
    rows = {row["file"]: row for row in json.loads(stdout)["files"]}
    for name, signal in (("a.wav", clip), ("b.wav", other)):
        reference = load_audio(tmp_path / "ref" / name, RATE).samples.astype(np.float64)
        degraded = load_audio(tmp_path / "deg" / name, RATE).samples.astype(np.float64)
        assert rows[name]["visqol"] == pytest.approx(direct_visqol(reference, degraded), abs=1e-9)
        assert rows[name]["dnsmos_ovrl"] is None and rows[name]["missing"]["dnsmos_ovrl"] == metrics.SKIPPED


def test_visqol_missing_library_short_or_silent_clip_give_a_reason(clip, monkeypatch):
    assert visqol(clip[:4000], clip[:4000]) == Missing("clip too short for ViSQOL (needs 0.7 s or more)")
    assert visqol(np.zeros_like(clip), clip) == Missing("reference is silent")  # the library would say 4.7
    assert visqol(clip, clip[: len(clip) // 2]) == Missing(metrics.LENGTH_MISMATCH)
    monkeypatch.setitem(sys.modules, "visqol", None)
    reason = visqol(clip, clip)
    assert isinstance(reason, Missing) and "not installed (install dmcodec[eval])" in reason.reason


def test_dnsmos_equals_speechmos_and_rates_a_noisy_copy_lower(clip, monkeypatch):
    from speechmos import dnsmos as speechmos_dnsmos

    clean, dirty = dnsmos(clip), dnsmos(noisy(clip))
    direct = speechmos_dnsmos.run(clip, sr=RATE)
    assert clean == {f"dnsmos_{s}": pytest.approx(float(direct[f"{s}_mos"])) for s in metrics.DNSMOS_SCALES}
    assert dirty["dnsmos_bak"] < clean["dnsmos_bak"] and dirty["dnsmos_ovrl"] < clean["dnsmos_ovrl"]
    assert set(dnsmos(clip[:8000]).values()) == {Missing("clip too short for DNSMOS (needs 1 s or more)")}
    assert set(dnsmos(np.zeros_like(clip)).values()) == {Missing("signal is silent")}
    monkeypatch.setitem(sys.modules, "speechmos", None)
    assert set(dnsmos(clip).values()) == {Missing("speechmos not installed (install dmcodec[eval])")}


def test_resemblyzer_similarity_equals_its_embeddings_and_separates_speakers(clip, speech_dir, monkeypatch):
    from resemblyzer import VoiceEncoder, preprocess_wav

    similarity = load_speaker_similarity("resemblyzer")
    encoder = VoiceEncoder(device="cpu", verbose=False)
    embed = [encoder.embed_utterance(preprocess_wav(x.astype(np.float32))) for x in (clip, band_limited(clip))]
    same = similarity(clip, band_limited(clip))
    assert same == pytest.approx(float(embed[0] @ embed[1]), abs=1e-6)
    other_speaker = similarity(clip, excerpt(speech_dir, "ljspeech_LJ001-0002.flac"))
    assert other_speaker < same < 1.0 + 1e-6
    assert similarity(clip, clip[:4000]) == Missing(TOO_SHORT)
    assert similarity(clip, np.zeros_like(clip)) == Missing(TOO_SHORT)
    monkeypatch.setitem(sys.modules, "resemblyzer", None)
    missing = load_speaker_similarity("resemblyzer")(clip, clip)
    assert missing == Missing("resemblyzer not installed (install dmcodec[eval])")


@pytest.fixture(scope="module")
def tiny_xvector(tmp_path_factory):
    """A 2-layer wav2vec2 speaker-verification model (x-vector head) saved as a local directory."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForXVector

    directory = tmp_path_factory.mktemp("tiny_xvector")
    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, tdnn_dim=(32, 32, 64),
                            tdnn_kernel=(5, 3, 1), tdnn_dilation=(1, 2, 1), xvector_output_dim=16)
    Wav2Vec2ForXVector(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0,
                             do_normalize=True).save_pretrained(directory)
    return directory


def test_a_local_speaker_verification_model_gives_the_cosine_of_its_embeddings(tiny_xvector, clip, tmp_path,
                                                                                capsys):
    from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

    model = AutoModelForAudioXVector.from_pretrained(tiny_xvector).eval()
    extractor = AutoFeatureExtractor.from_pretrained(tiny_xvector)
    with torch.no_grad():
        a, b = (model(**extractor(x.astype(np.float32), sampling_rate=RATE, return_tensors="pt")).embeddings[0]
                for x in (clip, noisy(clip)))
    expected = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    assert load_speaker_similarity(str(tiny_xvector))(clip, noisy(clip)) == pytest.approx(expected, abs=1e-5)
    sf.write(tmp_path / "ref.wav", clip, RATE, subtype="FLOAT")
    sf.write(tmp_path / "deg.wav", noisy(clip), RATE, subtype="FLOAT")
    code, stdout, stderr = run_cli(capsys, "score", tmp_path / "ref.wav", tmp_path / "deg.wav", "--speaker",
                                   tiny_xvector, "--skip", "visqol,dnsmos", "--json", "--device", "cpu")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["files"][0]["speaker_similarity"] == pytest.approx(expected, abs=1e-4)
    assert result["settings"]["speaker"] == str(tiny_xvector)
    code, _, stderr = run_cli(capsys, "score", tmp_path / "ref.wav", tmp_path / "deg.wav", "--speaker",
                              tmp_path / "nothing-here")
    assert code == 2 and "cannot load a speaker-verification model" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_score_of_half_a_file_is_flagged_not_a_perfect_score(clip, tmp_path, capsys):
    sf.write(tmp_path / "ref.wav", clip, RATE, subtype="FLOAT")
    sf.write(tmp_path / "half.wav", clip[: len(clip) // 2], RATE, subtype="FLOAT")
    args = ["score", tmp_path / "ref.wav", tmp_path / "half.wav", "--skip", "speaker", "--jobs", "1"]
    code, stdout, _ = run_cli(capsys, *args, "--json-file", tmp_path / "r.json")
    assert code == 0 and "Δ length" in stdout and "differ in length" in stdout
    row = json.loads((tmp_path / "r.json").read_text())["files"][0]
    assert row["length_mismatch"] is True
    assert row["length_difference_s"] == pytest.approx(-(len(clip) - len(clip) // 2) / RATE, abs=1e-3)
    for name in ("stoi", "pesq_wb", "si_sdr", "mel_distance", "visqol"):
        assert row[name] is None and row["missing"][name] == metrics.LENGTH_MISMATCH
    assert 1 < row["dnsmos_ovrl"] < 5 and 1 < row["original_dnsmos_ovrl"] < 5  # reference-free: still rated
    code, _, stderr = run_cli(capsys, "score", tmp_path / "ref.wav", tmp_path / "half.wav", "--skip", "nonsense")
    assert code == 2 and "unknown metric 'nonsense'" in stderr
