"""score / roundtrip: pairing, JSON schema, resuming, bad files, reconstructions and plots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli import run_cli
from dmcodec_cli.audio import load_audio
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.inference import decode_codes, encode_samples
from dmcodec_cli.inputs import read_transcripts
from dmcodec_cli.quality import scoring
from dmcodec_cli.quality.metrics import METRICS, Missing
from dmcodec_cli.quality.roundtrip import parse_n_q, reconstruct
from dmcodec_cli.quality.scoring import Journal, match_pairs

SHARED_SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech"
SCHEMA_KEYS = {"file", "n_q", *METRICS}



#: The CLI tests of pairing, resuming and outputs leave out the slow metrics (tests/test_quality_extra.py has them).
FAST = ("--skip", "visqol,dnsmos,speaker")


def check_schema(result: dict) -> None:
    """The documented JSON: rows with every metric (number or null with a reason); ``summary`` once for
    ``score``, and per n_q (``summary[K]``, ``corpus[K]``, ``bitrate_bps[K]``) for ``roundtrip``."""
    assert set(result) >= {"files", "summary", "corpus"}
    for row in result["files"]:
        assert SCHEMA_KEYS <= set(row), row
        assert isinstance(row["file"], str) and (row["n_q"] is None or isinstance(row["n_q"], int))
        for metric in METRICS:
            assert row[metric] is None or isinstance(row[metric], float)
            assert (row[metric] is None) == (metric in row["missing"])
        assert "error" in row or isinstance(row["length_mismatch"], bool)
    roundtrip = any(row["n_q"] is not None for row in result["files"])
    summaries = result["summary"].values() if roundtrip else [result["summary"]]
    if roundtrip:
        levels = {str(row["n_q"]) for row in result["files"]}
        assert set(result["summary"]) == set(result["corpus"]) == set(result["bitrate_bps"]) == levels
    for summary in summaries:
        assert set(summary) == set(METRICS)
        for stats in summary.values():
            assert set(stats) == {"mean", "std", "ci95", "n"} and isinstance(stats["n"], int)


def degrade(source: Path, target: Path, rate: int | None = None, noise: float = 0.01) -> None:
    """A resampled (to ``rate``) noisy copy of ``source``."""
    from dmcodec_cli.audio import resample

    audio, source_rate = sf.read(source, dtype="float32")
    rate = rate or source_rate
    noisy = resample(audio, source_rate, rate) + np.random.default_rng(0).normal(0, noise, 1).astype(np.float32)
    noisy = noisy + np.random.default_rng(1).normal(0, noise, len(noisy)).astype(np.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, noisy, rate)


@pytest.fixture
def pair_dirs(tmp_path, speech_dir) -> tuple[Path, Path]:
    """ref/ with 3 short real clips (one in a sub-folder), deg/ with noisy copies saved as .wav at 22.05 kHz."""
    names = {"vctk_p225_003.wav": "vctk_p225_003.wav", "ljspeech_LJ001-0002.flac": "lj/ljspeech_LJ001-0002.flac",
             "cmu_arctic_awb_arctic_a0007.wav": "cmu_arctic_awb_arctic_a0007.wav"}
    for name, relative in names.items():
        (tmp_path / "ref" / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(speech_dir / name, tmp_path / "ref" / relative)
        degrade(speech_dir / name, (tmp_path / "deg" / relative).with_suffix(".wav"), rate=22050)
    return tmp_path / "ref", tmp_path / "deg"


def test_folders_are_matched_by_relative_path_ignoring_the_extension(pair_dirs):
    ref, deg = pair_dirs
    (deg / "extra.wav").write_bytes((deg / "vctk_p225_003.wav").read_bytes())
    (deg / "vctk_p225_003.wav").unlink()
    pairs, unmatched = match_pairs(ref, deg)
    by_name = {p.name: p for p in pairs}
    assert sorted(by_name) == ["cmu_arctic_awb_arctic_a0007.wav", "lj/ljspeech_LJ001-0002.flac", "vctk_p225_003.wav"]
    assert by_name["lj/ljspeech_LJ001-0002.flac"].degraded == deg / "lj" / "ljspeech_LJ001-0002.wav"
    assert by_name["vctk_p225_003.wav"].degraded is None
    assert unmatched == [deg / "extra.wav"]
    with pytest.raises(DmcodecError, match="two audio files or two folders"):
        match_pairs(ref, deg / "extra.wav")


def test_score_cli_writes_json_plots_and_goes_past_bad_files(pair_dirs, tmp_path, capsys):
    ref, deg = pair_dirs
    (ref / "broken.wav").write_bytes(b"not audio at all")
    (deg / "broken.wav").write_bytes(b"not audio at all")
    out = tmp_path / "scores.json"
    code, stdout, stderr = run_cli(capsys, "score", ref, deg, "--json-file", out, "--plots", tmp_path / "plots",
                                   *FAST)
    assert code == 1  # one file failed; the others are scored
    assert "could not be scored" in stderr and "STOI" in stdout and "summary" in stdout
    result = json.loads(out.read_text())
    check_schema(result)
    rows = {row["file"]: row for row in result["files"]}
    assert "not a readable audio file" in rows["broken.wav"]["error"]
    scored = [row for name, row in rows.items() if name != "broken.wav"]
    assert len(scored) == 3 and all(0.5 < row["stoi"] <= 1 and row["pesq_wb"] > 1 for row in scored)
    assert result["summary"]["stoi"]["n"] == 3
    assert result["summary"]["stoi"]["mean"] == pytest.approx(np.mean([row["stoi"] for row in scored]))
    for name in rows:
        if name != "broken.wav":
            png = (tmp_path / "plots" / name).with_suffix(".png")
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_matches_metrics_on_the_same_aligned_arrays(pair_dirs):
    """What `score` reports is the metrics of both files read at 16 kHz and cut to the common length."""
    from dmcodec_cli.quality.metrics import signal_metrics

    ref, deg = pair_dirs
    pair = scoring.Pair("vctk_p225_003.wav", ref / "vctk_p225_003.wav", deg / "vctk_p225_003.wav")
    row = scoring.score_pairs([pair], Journal.open(None, {}))["files"][0]
    expected = signal_metrics(load_audio(pair.reference, 16000).samples, load_audio(pair.degraded, 16000).samples)
    assert {m: row[m] for m in expected} == pytest.approx(expected)


def test_rerun_with_the_same_json_skips_scored_files(pair_dirs, tmp_path, monkeypatch, capsys):
    ref, deg = pair_dirs
    out = tmp_path / "scores.json"
    missing_one = tmp_path / "deg_partial"
    shutil.copytree(deg, missing_one)
    (missing_one / "vctk_p225_003.wav").unlink()
    assert run_cli(capsys, "score", ref, missing_one, "--json-file", out, *FAST).code == 1
    first = json.loads(out.read_text())
    # Mark a scored row: a re-run must keep it as it is, and score only what is not scored yet.
    first["files"][0]["stoi"] = 0.123456
    out.write_text(json.dumps(first))
    shutil.copy(deg / "vctk_p225_003.wav", missing_one / "vctk_p225_003.wav")
    calls = []
    original = scoring._score_pair
    monkeypatch.setattr(scoring, "_score_pair", lambda pair, *a: calls.append(pair.name) or original(pair, *a))
    assert run_cli(capsys, "score", ref, missing_one, "--json-file", out, *FAST).code == 0
    assert calls == ["vctk_p225_003.wav"]
    second = json.loads(out.read_text())
    check_schema(second)
    assert second["files"][0]["stoi"] == 0.123456
    assert len(second["files"]) == 3 and not any("error" in row for row in second["files"])


def test_resume_refuses_a_json_made_with_other_settings(pair_dirs, tmp_path, capsys):
    ref, deg = pair_dirs
    out = tmp_path / "scores.json"
    Journal.open(out, {"mode": "roundtrip", "model": "abc"}).flush()
    code, _, stderr = run_cli(capsys, "score", ref, deg, "--json-file", out, *FAST)
    assert code == 2 and "other settings" in stderr and "Traceback" not in stderr
    out.write_text("{not json")
    code, _, stderr = run_cli(capsys, "score", ref, deg, "--json-file", out, *FAST)
    assert code == 2 and "not a readable JSON" in stderr


def test_bad_arguments_are_one_line_errors(pair_dirs, tmp_path, capsys):
    ref, _ = pair_dirs
    code, _, stderr = run_cli(capsys, "score", ref / "vctk_p225_003.wav", tmp_path / "nope.wav")
    assert code == 2 and "no such file" in stderr and len(stderr.strip().splitlines()) == 1
    assert parse_n_q("8,1,2,2", 8) == [1, 2, 8]
    for bad in ("0", "1,9", "a"):
        with pytest.raises(DmcodecError, match="--n-q"):
            parse_n_q(bad, 8)


def test_transcripts_tsv_with_or_without_header(tmp_path):
    with_header = tmp_path / "a.tsv"
    with_header.write_text("speaker\tfile\ttext\ns1\tsub/x.flac\tHello there\ns2\ty.wav\t\n")
    assert read_transcripts(with_header) == {"sub/x.flac": "Hello there", "x.flac": "Hello there", "x": "Hello there"}
    bare = tmp_path / "b.tsv"
    bare.write_text("x.wav\tone two\n")
    assert scoring.transcript_for("deep/x.wav", read_transcripts(bare)) == "one two"
    broken = tmp_path / "c.tsv"
    broken.write_text("only-one-column\n")
    with pytest.raises(DmcodecError, match="line 1"):
        read_transcripts(broken)


def test_missing_matplotlib_skips_plots_with_a_note(pair_dirs, tmp_path, monkeypatch, capsys):
    import sys

    ref, deg = pair_dirs
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, stdout, _ = run_cli(capsys, "score", ref / "vctk_p225_003.wav", deg / "vctk_p225_003.wav", "--plots",
                              tmp_path / "plots", *FAST)
    assert code == 0 and "plots skipped: matplotlib not installed (install dmcodec[eval])" in stdout
    assert not (tmp_path / "plots").exists()


# ---------------------------------------------------------------- roundtrip


def test_reconstruct_decodes_prefixes_of_one_encoding(small_model, speech_dir):
    samples = load_audio(speech_dir / "vctk_p225_003.wav", small_model.sample_rate).samples[4000:12000]
    got = reconstruct(small_model, samples, [1, 4])
    for k, audio in got.items():
        expected = decode_codes(small_model, encode_samples(small_model, samples, k))[: len(samples)]
        np.testing.assert_allclose(audio, expected, atol=1e-5)
        assert len(audio) == len(samples)


def test_roundtrip_cli_writes_reconstructions_plots_and_bitrate_table(small_checkpoint, small_model, speech_dir,
                                                                     tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    for name in ("vctk_p225_003.wav", "ljspeech_LJ001-0002.flac"):  # 1 s excerpts keep the test fast
        audio, rate = sf.read(speech_dir / name, dtype="float32")
        sf.write(source / name, audio[int(0.3 * rate): int(1.3 * rate)], rate)
    out, result_json = tmp_path / "out", tmp_path / "rt.json"
    args = ["roundtrip", source, "-o", out, "--model", small_checkpoint, "--n-q", "1,4", "--json-file", result_json,
            "--device", "cpu", *FAST]
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and "bitrate" in stdout
    result = json.loads(result_json.read_text())
    check_schema(result)
    assert sorted((row["file"], row["n_q"]) for row in result["files"]) == [
        ("ljspeech_LJ001-0002.flac", 1), ("ljspeech_LJ001-0002.flac", 4),
        ("vctk_p225_003.wav", 1), ("vctk_p225_003.wav", 4)]
    config = small_model.config
    assert result["bitrate_bps"] == {"1": config.bitrate(1), "4": config.bitrate(4)}
    for k in ("1", "4"):  # each bitrate's summary is over its own rows only
        level = [row["stoi"] for row in result["files"] if row["n_q"] == int(k)]
        assert result["summary"][k]["stoi"]["mean"] == pytest.approx(np.mean(level))
    for row in result["files"]:
        wav = out / f"nq{row['n_q']}" / Path(row["file"]).with_suffix(".wav")
        original = load_audio(source / row["file"], config.sample_rate).samples
        reconstruction, rate = sf.read(wav, dtype="float32")
        assert rate == config.sample_rate and len(reconstruction) == len(original)
        assert wav.with_suffix(".png").stat().st_size > 1000
        # The row's metrics are those of the roundtrip (float, before the 16-bit file) against the original.
        direct = reconstruct(small_model, original, [row["n_q"]])[row["n_q"]]
        np.testing.assert_allclose(reconstruction, np.clip(direct, -1, 1), atol=2 / 32768)  # 16-bit file
        expected = {m: None if isinstance(v, Missing) else v
                    for m, v in scoring.signal_metrics(original, direct).items()}
        assert {m: row[m] for m in expected} == pytest.approx(expected, rel=1e-3, abs=1e-3)
    assert (out / "bitrate_quality.png").read_bytes()[:4] == b"\x89PNG"
    # Adding a level only roundtrips that level.
    code, _, _ = run_cli(capsys, *args[:7], "1,2,4", *args[8:])
    rows = json.loads(result_json.read_text())["files"]
    assert code == 0 and sorted({row["n_q"] for row in rows}) == [1, 2, 4] and len(rows) == 6
    assert [r for r in rows if r["n_q"] == 1] == [r for r in result["files"] if r["n_q"] == 1]


@pytest.mark.skipif(not SHARED_SPEECH.is_dir(), reason="needs ../shared/data/speech")
def test_score_real_clips_from_the_shared_set(tmp_path, capsys):
    names = ["librispeech_dev-clean_2412-153948-0001.flac", "ljspeech_LJ001-0002.flac", "vctk_p225_003.wav"]
    for name in names:
        degrade(SHARED_SPEECH / name, tmp_path / "deg" / Path(name).with_suffix(".wav"), rate=8000, noise=0.002)
    args = ["score", SHARED_SPEECH, tmp_path / "deg", "--json-file", tmp_path / "s.json", "--plots", tmp_path / "plots",
            *FAST]
    code, stdout, stderr = run_cli(capsys, *args)
    result = json.loads((tmp_path / "s.json").read_text())
    scored = [row for row in result["files"] if "error" not in row]
    assert sorted(row["file"] for row in scored) == sorted(names)
    assert code == 1 and "no degraded file" in json.dumps(result)  # the other shared clips have no copy
    assert all(row["stoi"] > 0.6 and 1 < row["pesq_wb"] < 4.7 for row in scored)
    assert len(list((tmp_path / "plots").glob("*.png"))) == 3
    assert "PESQ-WB" in stdout


def test_roundtrip_refuses_to_overwrite_its_inputs(tmp_path, speech_dir):
    from dmcodec_cli.quality.roundtrip import roundtrip_files

    shutil.copy(speech_dir / "vctk_p225_003.wav", tmp_path / "a.wav")
    files = scoring.roundtrip_inputs(tmp_path)
    with pytest.raises(DmcodecError, match="overwrite this input"):
        roundtrip_files(files, None, [4], Journal.open(None, {}), outdir=tmp_path)
    assert (tmp_path / "a.wav").read_bytes() == (speech_dir / "vctk_p225_003.wav").read_bytes()


def test_roundtrip_of_a_code_store_scores_its_decoded_codes(small_checkpoint, small_model, speech_dir, tmp_path,
                                                             capsys):
    import dataclasses

    from dmcodec_cli.corpus.store import Entry, StoreMeta, write_store

    audio_dir = tmp_path / "audio"
    (audio_dir / "sub").mkdir(parents=True)
    entries = []
    for name, stem in (("vctk_p225_003.wav", "a"), ("ljspeech_LJ001-0002.flac", "sub/b")):
        audio, rate = sf.read(speech_dir / name, dtype="float32")
        # 1.15 s: DNSMOS doubles it to 9.2 s, one window (a 1 s clip would be rated as seven)
        sf.write(audio_dir / f"{stem}{Path(name).suffix}", audio[int(0.3 * rate): int(1.45 * rate)], rate)
        samples = load_audio(audio_dir / f"{stem}{Path(name).suffix}", small_model.sample_rate).samples
        entries.append(Entry(stem, len(samples), encode_samples(small_model, samples, 3)))
    meta = StoreMeta.for_model(small_model, 3)
    store = write_store(tmp_path / "codes.h5", meta, entries)
    out, result_json = tmp_path / "out", tmp_path / "rt.json"
    code, stdout, stderr = run_cli(capsys, "roundtrip", store, "--audio", audio_dir, "--model", small_checkpoint,
                                   "--n-q", "1,3", "-o", out, "--json-file", result_json, "--device", "cpu",
                                   *FAST)
    assert code == 0, stderr
    result = json.loads(result_json.read_text())
    check_schema(result)
    assert sorted((r["file"], r["n_q"]) for r in result["files"]) == [("a", 1), ("a", 3), ("sub/b", 1), ("sub/b", 3)]
    for row in result["files"]:
        entry = next(e for e in entries if e.id == row["file"])
        original = load_audio(next(audio_dir.glob(f"{entry.id}.*")), small_model.sample_rate).samples
        decoded = decode_codes(small_model, entry.codes[: row["n_q"]])[: entry.num_samples]
        expected = scoring.signal_metrics(original, decoded)
        assert row["mel_distance"] == pytest.approx(expected["mel_distance"], rel=1e-3)
        assert (out / f"nq{row['n_q']}" / f"{entry.id}.wav").is_file()
    # Without --audio: the reference-free DNSMOS of the decoded codes, the reference metrics missing.
    code, stdout, stderr = run_cli(capsys, "roundtrip", store, "--model", small_checkpoint, "--n-q", "3", "--json",
                                   "--skip", "visqol,speaker", "--device", "cpu")
    assert code == 0, stderr
    from speechmos import dnsmos

    from dmcodec_cli.quality.roundtrip import NO_ORIGINAL

    for row in json.loads(stdout)["files"]:
        entry = next(e for e in entries if e.id == row["file"])
        decoded = decode_codes(small_model, entry.codes)[: entry.num_samples]
        direct = dnsmos.run(np.clip(decoded.astype(np.float64), -1, 1), sr=16000)
        assert row["dnsmos_ovrl"] == pytest.approx(direct["ovrl_mos"]) and 1 < row["dnsmos_ovrl"] < 5
        assert row["dnsmos_p808"] == pytest.approx(direct["p808_mos"])
        assert row["stoi"] is None and row["missing"]["stoi"] == row["missing"]["original_dnsmos_ovrl"] == NO_ORIGINAL
    other = write_store(tmp_path / "other.h5", dataclasses.replace(meta, model_fingerprint="f" * 64), entries)
    code, _, stderr = run_cli(capsys, "roundtrip", other, "--audio", audio_dir, "--model", small_checkpoint)
    assert code == 2 and "was made by model" in stderr
