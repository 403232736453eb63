"""``prep``: utterances -> 16 kHz mono segments (FLAC) + a JSONL manifest, idempotent.

Layout of the output folder::

    manifest.jsonl            one Segment per line (see manifest.py)
    prep.json                 the options and counts of the run that wrote it
    audio/<xx>/<id>.flac      segment audio, 16-bit FLAC; <xx> = 2 hex digits of sha256(utterance id)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import soundfile as sf

from ..atomic import write_text_atomic
from ..audio import save_audio
from ..config import OFFICIAL
from ..errors import DmcodecError, printable
from .manifest import Segment, write_segments
from .segments import TAIL_RULES, Cut, consecutive_cuts, cut_audio, one_crop
from .sources import Utterance
from .splits import choose_subset, rng_for, split_groups, split_key

SAMPLE_RATE = OFFICIAL.sample_rate  #: segments are made for the official frame geometry
PREP_FORMAT = "dmcodec-prep"
MIN_SEGMENT_SECONDS = 0.02  #: one code frame (320 samples at 16 kHz)
MAX_SEGMENT_SECONDS = 3600.0
TOO_SHORT = "no segment under the tail rule (shorter than --min-tail-seconds, or --tail drop)"
UNREADABLE = "could not be read"


@dataclass(frozen=True)
class PrepOptions:
    """How utterances become segments (see segments.py for the tail rule)."""

    segment_seconds: float = 3.0
    tail: str = "pad"
    min_tail_seconds: float = 0.5
    one_crop: bool = False
    ratio: float = 1.0
    seed: int = 1234
    valid_fraction: float = 0.05

    def __post_init__(self) -> None:
        seconds = self.segment_seconds
        if not (math.isfinite(seconds) and MIN_SEGMENT_SECONDS <= seconds <= MAX_SEGMENT_SECONDS):
            raise DmcodecError(f"--segment-seconds must lie in [{MIN_SEGMENT_SECONDS:g}, {MAX_SEGMENT_SECONDS:g}] "
                               f"(at least one code frame, at most an hour), got {self.segment_seconds}")
        if self.tail not in TAIL_RULES:
            raise DmcodecError(f"--tail must be one of {', '.join(TAIL_RULES)}, got {self.tail!r}")
        if not 0 <= self.min_tail_seconds <= self.segment_seconds:
            raise DmcodecError(f"--min-tail-seconds must lie in [0, segment seconds], got {self.min_tail_seconds}")
        if not 0 < self.ratio <= 1:
            raise DmcodecError(f"--ratio must lie in (0, 1], got {self.ratio}")
        if not 0 <= self.valid_fraction < 1:
            raise DmcodecError(f"--valid-fraction must lie in [0, 1), got {self.valid_fraction}")

    @property
    def segment_samples(self) -> int:
        return round(self.segment_seconds * SAMPLE_RATE)

    @property
    def min_tail_samples(self) -> int:
        return max(1, round(self.min_tail_seconds * SAMPLE_RATE))


@dataclass
class PrepReport:
    manifest: str
    utterances: int = 0  #: given (outside the output folder)
    chosen_utterances: int = 0  #: chosen by --ratio
    used_utterances: int = 0  #: chosen and cut into at least one segment
    segments: int = 0
    train: int = 0
    valid: int = 0
    seconds: float = 0.0
    written: int = 0
    reused: int = 0
    removed: int = 0
    split_by: str = "utterance"
    failures: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  #: chosen but not used: reason -> utterances

    def summary(self) -> str:
        """One line: what was used of what was given, why the rest was skipped, what was written."""
        chosen = f" ({self.chosen_utterances} chosen by --ratio)" if self.chosen_utterances != self.utterances else ""
        skipped = "; ".join(f"{count} {reason}" for reason, count in self.skipped.items())
        return (f"{self.used_utterances} of {self.utterances} utterances used{chosen}"
                f"{f', skipped: {skipped}' if skipped else ''} -> {self.segments} segments "
                f"({self.seconds / 3600:.2f} h; train {self.train}, valid {self.valid}, split by {self.split_by}); "
                f"{self.written} written, {self.reused} already there, {self.removed} stale removed -> {self.manifest}")


def segment_id(utterance: str, index: int) -> str:
    """Unique as long as utterance ids are: the fixed-width suffix can be stripped back off."""
    return f"{utterance}-{index:04d}"


def segment_relpath(utterance: str, sid: str) -> str:
    shard = hashlib.sha256(utterance.encode()).hexdigest()[:2]
    return f"audio/{shard}/{sid}.flac"


def plan_cuts(num_samples: int, options: PrepOptions, utterance: str) -> list[Cut]:
    if options.one_crop:
        return one_crop(num_samples, options.segment_samples, options.tail, rng_for(options.seed, utterance))
    return consecutive_cuts(num_samples, options.segment_samples, options.tail, options.min_tail_samples)


def _check_unique(utterances: list[Utterance]) -> None:
    first: dict[str, str] = {}
    for utt in utterances:
        if utt.id in first:
            raise DmcodecError(f"{utt.source}: utterance id {utt.id!r} is also the id of {first[utt.id]}; "
                               "give the sources in separate prep runs or rename one of them")
        first[utt.id] = utt.source


def _split_by(utterances: list[Utterance]) -> str:
    known = sum(utt.speaker is not None for utt in utterances)
    if known == len(utterances):
        return "speaker"
    return "utterance" if known == 0 else "speaker where known, else utterance"


def _inside(source: str, folder: Path) -> bool:
    return not source.startswith("hf:") and Path(source).is_relative_to(folder)


def _reusable(path: Path, frames: int) -> bool:
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False
    return info.frames == frames and info.samplerate == SAMPLE_RATE and info.channels == 1


def _check_ours(out_dir: Path) -> None:
    """Never delete files of a folder that prep did not write."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "prep.json").is_file():
        raise DmcodecError(f"{out_dir}: the folder is not empty and was not written by dmcodec prep; "
                           "give a new or empty output folder")


def _previous_options(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / "prep.json").read_text()).get("options")
    except (OSError, ValueError, AttributeError):
        return None


def prepare(utterances: Iterable[Utterance], out_dir: str | os.PathLike, options: PrepOptions,
            progress: Callable[[int, int], None] | None = None) -> PrepReport:
    """Cut ``utterances`` into segments under ``out_dir``; returns what was done.

    Re-running with the same sources and options rewrites nothing and gives the same manifest; with other
    options every segment is rewritten. Segment files that are no longer in the manifest are removed. A file
    that cannot be read is reported in ``failures`` and the run goes on.
    """
    out_dir = Path(out_dir).resolve()
    utterances = [utt for utt in utterances if not _inside(utt.source, out_dir)]
    _check_unique(utterances)
    report = PrepReport(manifest=str(out_dir / "manifest.jsonl"), utterances=len(utterances))
    chosen = choose_subset([utt.id for utt in utterances], options.ratio, options.seed)
    utterances = [utt for utt in utterances if utt.id in chosen]
    report.chosen_utterances, report.split_by = len(utterances), _split_by(utterances)
    valid_groups = split_groups([split_key(u.id, u.speaker) for u in utterances], options.valid_fraction, options.seed)
    _check_ours(out_dir)
    if _previous_options(out_dir) != asdict(options):
        # other options make every old segment file stale; with prep.json written first, a cut run resumes
        report.removed = _remove_stale(out_dir, set())
        _write_prep_json(out_dir, options, None)
    segments: list[Segment] = []
    for done, utt in enumerate(utterances, 1):
        try:
            cut = _cut_one(utt, out_dir, options, split_key(utt.id, utt.speaker) in valid_groups, report)
        except DmcodecError as exc:
            report.failures.append({"source": utt.source, "error": printable(str(exc))})
            cut = None
        if cut:
            report.used_utterances += 1
            segments += cut
        else:
            reason = UNREADABLE if cut is None else TOO_SHORT
            report.skipped[reason] = report.skipped.get(reason, 0) + 1
        if progress:
            progress(done, len(utterances))
    report.removed += _remove_stale(out_dir, {s.path for s in segments})
    write_segments(out_dir / "manifest.jsonl", segments)
    report.segments = len(segments)
    report.valid = sum(s.split == "valid" for s in segments)
    report.train = report.segments - report.valid
    report.seconds = round(sum(s.duration for s in segments), 3)
    _write_prep_json(out_dir, options, report)
    return report


def _write_prep_json(out_dir: Path, options: PrepOptions, report: PrepReport | None) -> None:
    """The options of the run (written first, so an interrupted run resumes) and its report (None: unfinished)."""
    data = {"format": PREP_FORMAT, "format_version": 1, "sample_rate": SAMPLE_RATE, "options": asdict(options),
            "report": asdict(report) if report else None}
    write_text_atomic(out_dir / "prep.json", json.dumps(data, indent=2) + "\n")


def _cut_one(utt: Utterance, out_dir: Path, options: PrepOptions, valid: bool, report: PrepReport) -> list[Segment]:
    samples = utt.load(SAMPLE_RATE)
    segments = []
    for index, cut in enumerate(plan_cuts(len(samples), options, utt.id)):
        sid = segment_id(utt.id, index)
        relpath = segment_relpath(utt.id, sid)
        if _reusable(out_dir / relpath, cut.total):
            report.reused += 1
        else:
            save_audio(out_dir / relpath, cut_audio(samples, cut), SAMPLE_RATE)
            report.written += 1
        whole = cut.offset == 0 and cut.length == len(samples)
        segments.append(Segment(sid, relpath, utt.source, round(cut.offset / SAMPLE_RATE, 6),
                                round(cut.total / SAMPLE_RATE, 6), utt.speaker, utt.text if whole else None,
                                "valid" if valid else "train"))
    return segments


def _remove_stale(out_dir: Path, keep: set[str]) -> int:
    removed = 0
    for path in sorted((out_dir / "audio").glob("*/*.flac")):
        if path.relative_to(out_dir).as_posix() not in keep:
            path.unlink()
            removed += 1
    return removed
