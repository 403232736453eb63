"""Shared helpers of the tests/test_train*.py files (no tests here): a tiny codec recipe, a small prepared
corpus of real speech (16 kHz FLAC segments + manifest) and a feature file of random teacher features."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import soundfile as sf

from dmcodec_cli.audio import load_audio
from dmcodec_cli.config import ConfigFile

SPEECH = Path(__file__).parent / "fixtures" / "speech"
CLIPS = ("librispeech_dev-clean_2412-153948-0000.flac", "ljspeech_LJ001-0002.flac", "vctk_p225_003.wav",
         "librispeech_train-clean-100_19-198-0000.flac", "cmu_arctic_awb_arctic_a0007.wav")
#: a tiny but complete model: 4 quantizers of 64 codes, distillation projection 32 -> 16
TINY = dict(n_filters=4, dimension=32, semantic_dimension=16, codebook_size=64, n_q=4, lstm_layers=1,
            batch_size=2, segment_size=8000, log_steps=1, seed=7)
TINY_EXTRA = {"discriminator": {"width": 0.0625, "stft_filters": 4}, "valid_every": 1000, "save_every": 1000}


def tiny_config(**changes) -> ConfigFile:
    extra = {**TINY_EXTRA, **changes.pop("extra", {})}
    return ConfigFile().replace(**{**TINY, **changes}, extra=extra)


def write_config(path: Path, config: ConfigFile) -> Path:
    path.write_text(config.to_json())
    return path


def make_corpus(root: Path, seconds: float = 1.0, clips=CLIPS, valid: int = 1) -> Path:
    """Segments of ``seconds`` from the start of real clips (the last ``valid`` ones in the valid split)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, name in enumerate(clips):
        samples = load_audio(SPEECH / name, 16000).samples[4000:4000 + int(seconds * 16000)]
        sf.write(root / f"seg{i}.flac", samples, 16000)
        split = "valid" if i >= len(clips) - valid else "train"
        lines.append(json.dumps({"id": f"seg{i}", "path": f"seg{i}.flac", "source": name, "offset": 0.25,
                                 "duration": len(samples) / 16000, "speaker": None, "text": None, "split": split}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root / "manifest.jsonl"


def write_features(path: Path, manifest: Path, dim: int = 16, groups=("sm", "lm"), seed: int = 0,
                   fill=None) -> Path:
    """A feature store in the `extract` format: random [ceil(samples / 320), dim] per segment, or
    ``fill(frames, dim)``."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs.update(format="dmcodec-features", format_version=1, sample_rate=16000, frame_rate=50.0)
        for group in groups:
            f.create_group(group).attrs.update(teacher=f"random-{group}", kind=group, layer="last",
                                               alignment="none", dim=dim, dtype="float32")
        for line in manifest.read_text().splitlines():
            segment = json.loads(line)
            frames = -(-sf.info(manifest.parent / segment["path"]).frames // 320)
            for group in groups:
                data = fill(frames, dim) if fill else rng.standard_normal((frames, dim))
                f[group].create_dataset(segment["id"], data=np.asarray(data, dtype=np.float32))
    return path
