"""One CLI vocabulary on every command (-o/--output, --json / --json-file, --device), --version, `models`, tidy
help, and progress that reads well in a log."""

from __future__ import annotations

import io
import json
import re

import pytest
import typer
from rich.console import Console

import dmcodec_cli
from cli import run_cli, run_shell
from conftest import SPEECH
from dmcodec_cli import loglines
from dmcodec_cli.cli import app, tidy_help
from dmcodec_cli.corpus.progress import RichProgress, SecondsProgress
from dmcodec_cli.training.progress import TrainProgress

CLIP = SPEECH / "librispeech_train-clean-100_19-198-0000.flac"
OWN = ("encode", "decode", "info", "convert", "models", "merge", "export", "bpe", "roundtrip", "score", "prep",
       "extract", "train")
RUN_A_MODEL = ("encode", "decode", "roundtrip", "score", "extract", "train")  # score: ASR and speaker models


def commands() -> dict:
    return tidy_help(typer.main.get_command(app)).commands


def options(command) -> dict[str, list[str]]:
    return {param.name: param.opts for param in command.params if param.param_type_name == "option"}


def test_one_vocabulary_on_every_command():
    for name in OWN:
        found = options(commands()[name])
        if "output" in found:
            assert found["output"] == ["-o", "--output"], name
        assert "out" not in found and "cpu" not in found, name
        assert found["json_file"] == ["--json-file"] and found["json_out"] == ["--json"], name
        assert ("device" in found) == (name in RUN_A_MODEL), name
    assert all("output" in options(commands()[name]) for name in ("encode", "decode", "convert", "merge", "prep",
                                                                   "extract", "train"))


@pytest.mark.parametrize("name", OWN)
def test_help_has_no_stray_metavars(capsys, name):
    result = run_cli(capsys, name, "--help")
    assert result.code == 0
    text = result.stdout
    assert "<bool>" not in text and not re.search(r"\(\S+, \)", text), text
    (usage,) = [line for line in text.splitlines() if "Usage:" in line]
    assert not re.search(r"[{\[][a-z_]+[}\]]", usage), usage  # arguments in capitals, as in [OPTIONS]


def test_version(capsys):
    result = run_cli(capsys, "--version")
    assert result.code == 0 and result.stdout.strip() == f"dmcodec {dmcodec_cli.__version__}"


def test_models_lists_the_registered_models_with_their_fingerprints(capsys):
    result = run_cli(capsys, "models", "--json")
    assert result.code == 0
    (mini,) = [m for m in json.loads(result.stdout)["models"] if m["name"] == "dmcodec-mini"]
    assert mini["fingerprint"] == dmcodec_cli.load().fingerprint and mini["default"] is True
    assert (mini["sample_rate"], mini["frame_rate"], mini["n_q"]) == (16000, 50.0, 8)


def test_wide_tables_are_not_cut_in_a_log():
    result = run_shell("models")  # stdout is a pipe: no terminal width to fit
    fingerprint = dmcodec_cli.load().fingerprint
    assert result.code == 0 and any("dmcodec-mini" in line and fingerprint in line and "yes" in line
                                    for line in result.stdout.splitlines()), result.stdout


def test_json_file_holds_the_summary_and_is_replaced_only_when_dmcodec_wrote_it(capsys, tmp_path):
    summary_path = tmp_path / "s.json"
    args = ("encode", CLIP, "-o", tmp_path / "x.npz", "--device", "cpu", "--json-file", summary_path)
    first = run_cli(capsys, *args, "--json")
    assert first.code == 0, first.stderr
    assert json.loads(summary_path.read_text()) == {"format": "dmcodec-summary", **json.loads(first.stdout)}
    again = run_cli(capsys, *args)  # a summary dmcodec wrote is replaced; stdout is the human line
    assert again.code == 0 and "->" in again.stdout and json.loads(summary_path.read_text())["frames"] == 99
    summary_path.write_text("{}")
    refused = run_cli(capsys, *args)
    assert refused.code == 2 and "--json-file" in refused.stderr and summary_path.read_text() == "{}"
    over_input = run_cli(capsys, "models", "--json-file", tmp_path / "x.npz")
    assert over_input.code == 2 and "must end in .json" in over_input.stderr


def test_train_device_takes_auto_cpu_or_cuda(capsys, tmp_path):
    result = run_cli(capsys, "train", "--config", tmp_path / "c.json", "--data", tmp_path / "d.jsonl", "-o",
                     tmp_path / "exp", "--device", "cuda:1")
    assert result.code == 2 and "train --device takes auto, cpu or cuda" in result.stderr
    assert not (tmp_path / "exp").exists()


# -- progress in a log -------------------------------------------------------------------------------

def log_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=80), buffer


def test_log_lines_come_at_most_every_few_seconds():
    console, buffer = log_console()
    now = [0.0]
    lines = loglines.LogLines(console, every=5.0, clock=lambda: now[0])
    for t in (1.0, 4.9, 5.0, 7.0, 10.5):
        now[0] = t
        lines.tick(lambda: f"at {now[0]}")
    assert buffer.getvalue().splitlines() == ["at 5.0", "at 10.5"]
    assert loglines.eta(25, 100, 10.0) == "0:00:30" and loglines.eta(0, 100, 3.0) == "?"


def test_corpus_progress_is_plain_lines_in_a_log_and_a_bar_on_a_terminal(monkeypatch):
    monkeypatch.setattr(loglines, "LOG_EVERY_SECONDS", 0.0)
    console, buffer = log_console()
    progress = RichProgress(console)
    progress.start(3, "encode")
    progress.advance(1, 36.0)
    progress.advance(1, 0.0, failed=1)
    progress.stop()
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("encode: 1/3 utt, 0.010 h audio, ") and "ETA " in lines[0]
    assert lines[-1].startswith("encode: 2/3 utt, 0.010 h audio, ") and lines[-1].count(", 1 failed") == 1
    assert len(lines) == 3  # two ticks and the last line: no bar redrawn into the log
    terminal = io.StringIO()
    progress = RichProgress(Console(file=terminal, force_terminal=True, width=80))
    progress.start(3, "encode")
    progress.advance(1, 36.0)
    progress.stop()
    assert "encode: 1/3" not in terminal.getvalue() and "1/3 utt" in terminal.getvalue()


def test_one_long_input_and_training_log_plain_lines(monkeypatch):
    monkeypatch.setattr(loglines, "LOG_EVERY_SECONDS", 0.0)
    console, buffer = log_console()
    with SecondsProgress(120.0, "encode long.wav", console) as bar:
        bar.advance(60.0)
    assert buffer.getvalue().splitlines()[0].startswith("encode long.wav: 0.017 h audio, ")
    console, buffer = log_console()
    with TrainProgress(10, 0, console=console) as bar:
        bar.update(1, {"generator": 1.5, "mel_error": 0.25, "other": 9.0})
    first = buffer.getvalue().splitlines()[0]
    assert first.startswith("train: step 1/10, ETA ") and first.endswith("generator 1.500  mel_error 0.250")


def test_a_corpus_run_in_a_log_prints_progress_lines(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(loglines, "LOG_EVERY_SECONDS", 0.0)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.flac", "b.flac"):
        (folder / name).write_bytes(CLIP.read_bytes())
    result = run_cli(capsys, "encode", folder, "-o", tmp_path / "s.h5", "--device", "cpu", "--json")
    assert result.code == 0, result.stderr
    assert "encode: 1/2 utt, " in result.stderr and "encode: 2/2 utt, " in result.stderr
    assert json.loads(result.stdout)["encoded"] == 2  # stdout stays JSON
