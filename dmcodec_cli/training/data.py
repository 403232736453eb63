"""Training data: segments of a prep manifest, random hop-aligned crops, and their teacher features.

The order of the data is a pure function of (seed, step, rank, world size): the trainer resumes a run
at any step without saving sampler state, and every process of a multi-process run reads its own share.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import Tensor

from ..audio import load_audio
from ..config import CodecConfig
from ..data.features import FeatureReader
from ..data.manifest import Segment, read_segments
from ..errors import DmcodecError

Key = tuple[int, int]  # (segment index, crop seed; -1 = crop from the start)


@dataclass
class Batch:
    audio: Tensor  #: [B, 1, L], L a multiple of the hop length
    features: dict[str, Tensor]  #: group ("sm" / "lm") -> [B, L / hop, D] float32
    ids: list[str]

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.audio.to(device), {k: v.to(device) for k, v in self.features.items()}, self.ids)


def load_segments(manifest: str | os.PathLike, split: str) -> tuple[list[Segment], Path]:
    """The manifest's segments of ``split`` and the folder their paths are relative to."""
    manifest = Path(manifest)
    segments = [s for s in read_segments(manifest) if s.split == split]
    root = manifest.resolve().parent
    missing = [s for s in segments if not s.audio_path(root).is_file()]
    if missing:
        raise DmcodecError(f"{manifest}: {len(missing)} segment file(s) not found "
                           f"(e.g. {missing[0].audio_path(root)}); run `dmcodec prep` again or fix the paths")
    return segments, root


def check_features(path: str | os.PathLike, groups: Sequence[str], segments: Sequence[Segment],
                   config: CodecConfig) -> None:
    """Refuse a feature file that cannot serve this run: wrong rate, wrong dimension, missing segments."""
    with FeatureReader(path) as reader:
        if reader.sample_rate != config.sample_rate or abs(reader.frame_rate - config.frame_rate) > 1e-6:
            raise DmcodecError(f"{path}: features at {reader.sample_rate} Hz / {reader.frame_rate:g} frames/s, the "
                               f"model runs at {config.sample_rate} Hz / {config.frame_rate:g}; extract again")
        for group in groups:
            dim = int(reader.attrs(group).get("dim", -1))
            if dim != config.semantic_dimension:
                raise DmcodecError(f"{path}: {group} features have dimension {dim}, the model's distillation "
                                   f"projection gives {config.semantic_dimension}; set semantic_dimension in the "
                                   "config to the teacher's size")
            have = set(reader.ids(group))
            missing = [s.id for s in segments if s.id not in have]
            if missing:
                raise DmcodecError(f"{path}: no {group} features for {len(missing)} segment(s) (e.g. {missing[0]}); "
                                   "run `dmcodec extract` on this manifest")


@dataclass(frozen=True)
class Augment:
    """Random changes to each training crop, drawn from its crop seed (a resumed run sees the same crops)."""

    speed: float = 0.0  #: resample by a factor in [1 - speed, 1 + speed]: tempo and pitch together
    gain_db: float = 0.0  #: scale by a gain in [-gain_db, +gain_db] dB, then bring a peak over 1 down to 1

    def draw(self, seed: int) -> tuple[float, float]:
        """(speed factor, linear gain) for the crop of this seed; (1, 1) for seed -1, a crop from the start."""
        if seed < 0:
            return 1.0, 1.0
        speed, gain_db = np.random.default_rng([seed, 1]).uniform(-1.0, 1.0, 2) * (self.speed, self.gain_db)
        return 1.0 + float(speed), 10.0 ** (float(gain_db) / 20)


class SegmentDataset(torch.utils.data.Dataset):
    """Item ``(index, seed)`` -> (audio [L] float32, {group: features [frames, D]}, id).

    A crop of at most ``segment_size`` samples starts at a multiple of the hop length (so it meets the
    teacher frames exactly), drawn from ``seed``; seed -1 takes the start. ``augment`` then changes it (a
    crop sped up by f is read f times longer). The HDF5 file is opened lazily in each process (a handle must
    not cross a fork into data-loader workers).
    """

    def __init__(self, segments: Sequence[Segment], root: Path, config: CodecConfig, segment_size: int,
                 features: str | os.PathLike | None = None, groups: Sequence[str] = (),
                 augment: Augment = Augment()):
        self.segments, self.root, self.config, self.augment = list(segments), root, config, augment
        self.segment_size = segment_size - segment_size % config.hop_length
        self.features_path, self.groups = features, tuple(groups)
        self._reader: FeatureReader | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.segments)

    def _features(self) -> FeatureReader:
        if self.features_path is None:
            raise ValueError("this dataset has teacher groups but no feature file")
        if self._reader is None or self._pid != os.getpid():
            self._reader, self._pid = FeatureReader(self.features_path), os.getpid()
        return self._reader

    def _audio(self, segment: Segment, seed: int) -> tuple[np.ndarray, int]:
        speed, gain = self.augment.draw(seed)
        # one sample more than speed x the crop, so that the resampled crop is never short of it
        length = self.segment_size if speed == 1.0 else math.ceil(self.segment_size * speed) + 1
        samples, first_frame = self._crop(segment, seed, length)
        if speed != 1.0:
            rate = self.config.sample_rate
            samples = soxr.resample(samples, rate * speed, rate)[:self.segment_size]
        if gain != 1.0:
            samples = samples * np.float32(gain)
            samples /= max(1.0, float(np.abs(samples).max(initial=0.0)))
        return np.ascontiguousarray(samples, dtype=np.float32), first_frame

    def _crop(self, segment: Segment, seed: int, length: int) -> tuple[np.ndarray, int]:
        """At most ``length`` samples from a hop-aligned start drawn from ``seed``, and that start's frame."""
        path = segment.audio_path(self.root)
        try:
            info = sf.info(path)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise DmcodecError(f"{path}: not a readable audio file ({exc})") from None
        if info.samplerate != self.config.sample_rate:  # prep writes model-rate files; anything else is resampled
            samples = load_audio(path, self.config.sample_rate).samples
            total = len(samples)
        else:
            samples, total = None, info.frames
        hop = self.config.hop_length
        slots = max(0, (total - length) // hop)
        start = 0 if seed < 0 or slots == 0 else int(np.random.default_rng(seed).integers(0, slots + 1)) * hop
        if samples is None:
            samples, _ = sf.read(path, start=start, frames=length, dtype="float32", always_2d=True)
            samples = samples.mean(axis=1)
        else:
            samples = samples[start:start + length]
        return np.ascontiguousarray(samples, dtype=np.float32), start // hop

    def __getitem__(self, key: Key) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
        index, seed = key
        segment = self.segments[index]
        samples, first_frame = self._audio(segment, seed)
        frames = self.config.num_frames(len(samples))
        features = {}
        for group in self.groups:
            features[group] = self._features().get(group, segment.id)[first_frame:first_frame + frames]
        return samples, features, segment.id


def collate(items: Sequence[tuple[np.ndarray, dict[str, np.ndarray], str]], hop: int) -> Batch:
    """Cut every item to the batch's shortest length, rounded down to whole frames (at least one)."""
    length = max(hop, min(len(a) for a, _, _ in items) // hop * hop)
    audio = np.stack([np.pad(a[:length], (0, max(0, length - len(a)))) for a, _, _ in items])
    features = {}
    for group in items[0][1]:
        frames = min(length // hop, *(len(f[group]) for _, f, _ in items))
        features[group] = torch.from_numpy(np.stack([f[group][:frames] for _, f, _ in items]).astype(np.float32))
    return Batch(torch.from_numpy(audio).unsqueeze(1), features, [i for _, _, i in items])


class BatchOrder:
    """The keys of batch ``step`` for process ``rank`` of ``world``: a fresh permutation every epoch.

    Each epoch drops the last incomplete global batch, so every process sees the same number of batches.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.num_items, self.batch_size, self.seed, self.rank, self.world = num_items, batch_size, seed, rank, world
        self.batches_per_epoch = num_items // (batch_size * world)
        if self.batches_per_epoch == 0:
            raise DmcodecError(f"{num_items} training segment(s) cannot fill one batch of {batch_size} on "
                               f"{world} process(es); lower batch_size or add data")

    def keys(self, step: int) -> list[Key]:
        epoch, position = divmod(step, self.batches_per_epoch)
        order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed + epoch))
        first = (position * self.world + self.rank) * self.batch_size
        indices = order[first:first + self.batch_size].tolist()
        return [(i, (self.seed * 1_000_003 + epoch * 7919 + i) % 2**32) for i in indices]

    def epoch(self, step: int) -> int:
        return step // self.batches_per_epoch


class StepSampler(torch.utils.data.Sampler):
    """Batch sampler over steps ``start`` .. ``stop - 1`` of a :class:`BatchOrder`."""

    def __init__(self, order: BatchOrder, start: int, stop: int):
        self.order, self.start, self.stop = order, start, stop

    def __iter__(self) -> Iterator[list[Key]]:
        return (self.order.keys(step) for step in range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)
