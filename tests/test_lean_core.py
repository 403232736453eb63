"""The core commands (encode, decode, info, models, convert, merge, prep) need none of the extras:
they run in a process where every extra's package fails to import, as on `pip install dmcodec` alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from cli import REPO
from conftest import SPEECH
from dmcodec_cli.registry import REGISTERED

#: The packages only the extras bring (pyproject.toml); the core dependencies are the rest.
EXTRAS = ("transformers", "accelerate", "tensorboard", "pystoi", "pesq", "jiwer", "matplotlib", "scipy", "visqol",
          "speechmos", "onnxruntime", "librosa", "resemblyzer", "datasets", "webdataset", "lhotse", "codec_bpe")

SCRIPT = """
import sys
for name in {extras!r}:
    sys.modules[name] = None  # `import name` raises ImportError, as when the package is not installed
from dmcodec_cli.cli import main
sys.argv = ["dmcodec", *sys.argv[1:]]
main()
"""


def _dmcodec_without_extras(*args) -> subprocess.CompletedProcess:
    code = textwrap.dedent(SCRIPT.format(extras=EXTRAS))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_core_commands_run_without_any_extra(tmp_path):
    clip = SPEECH / "librispeech_train-clean-100_19-198-0000.flac"
    steps = [("encode", clip, "-o", tmp_path / "c.npz"), ("decode", tmp_path / "c.npz", "-o", tmp_path / "d.wav"),
             ("info", "dmcodec-mini"), ("models",), ("convert", REGISTERED["dmcodec-mini"], "-o", tmp_path / "release"),
             ("encode", SPEECH, "-o", tmp_path / "s.h5"), ("decode", tmp_path / "s.h5", "-o", tmp_path / "audio"),
             ("merge", tmp_path / "s.h5", "-o", tmp_path / "merged.h5"), ("prep", SPEECH, "-o", tmp_path / "prep")]
    for step in steps:
        done = _dmcodec_without_extras(*step)
        assert done.returncode == 0, (step, done.stderr[-2000:])
    assert (tmp_path / "d.wav").stat().st_size > 0 and (tmp_path / "release" / "model.safetensors").is_file()
    clips = [p for p in SPEECH.iterdir() if p.suffix in (".flac", ".wav")]
    assert len(list((tmp_path / "audio").rglob("*.wav"))) == len(clips)


def test_commands_of_an_extra_name_it_when_it_is_missing(tmp_path):
    done = _dmcodec_without_extras("train", "--config", REPO / "train/configs/tiny_cpu.json",
                                   "--data", tmp_path / "m.jsonl", "-o", tmp_path / "run")
    assert done.returncode == 2 and "pip install 'dmcodec[train]'" in done.stderr, done.stderr
    (tmp_path / "m.jsonl").write_text("")
    done = _dmcodec_without_extras("extract", tmp_path / "m.jsonl", "-o", tmp_path / "f.h5", "--sm", "some/model")
    assert done.returncode == 2 and "pip install 'dmcodec[data]'" in done.stderr, done.stderr
    assert not (tmp_path / "f.h5").exists() and "Traceback" not in done.stderr
