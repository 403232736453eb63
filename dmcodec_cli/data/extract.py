"""``extract``: teacher features of every segment of a manifest, into an HDF5 feature store (resumable).

Segments are batched only with segments of exactly the same length, so no padding ever enters a speech
model (HuBERT's group norm would see it) and batched features equal one-by-one features.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf
import torch

from ..config import OFFICIAL as CODEC
from ..errors import DmcodecError
from ..hdf5_guard import open_hdf5
from ..inputs import transcript_for
from .align import ALIGNMENTS, align_ctc, align_pad, even_word_spans, rescale_span
from .features import DTYPES, FeatureWriter, GroupSpec
from .manifest import Segment, read_segments
from .teachers import CtcTranscriber, Layer, SpeechFeatureTeacher, TextEncoderTeacher, load_teacher


@dataclass(frozen=True)
class ExtractOptions:
    """Which teachers, layers and alignment; see teachers.py and align.py for the rules."""

    sm: str | None = None
    sm_layer: Layer = "avg"
    stt: str | None = None
    lm: str | None = None
    lm_layer: Layer = "avg"
    lm_align: str = "pad"
    transcripts: dict[str, str] | None = None  #: known texts by segment id (``inputs.read_transcripts``)
    use_manifest_text: bool = True
    batch_size: int = 8
    dtype: str = "float16"
    splits: tuple[str, ...] = ("train", "valid")

    def __post_init__(self) -> None:
        if not self.sm and not self.lm:
            raise DmcodecError("nothing to extract: give --sm (speech model) and/or --lm (language model)")
        if self.lm_align not in ALIGNMENTS:
            raise DmcodecError(f"--lm-align must be one of {', '.join(ALIGNMENTS)}, got {self.lm_align!r}")
        if self.lm and self.lm_align == "ctc" and not self.stt:
            raise DmcodecError("--lm-align ctc needs word timings from a CTC model: give --stt")
        if self.dtype not in DTYPES:
            raise DmcodecError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.batch_size < 1:
            raise DmcodecError(f"--batch-size must be >= 1, got {self.batch_size}")


@dataclass
class ExtractReport:
    output: str
    segments: int = 0
    computed: dict[str, int] = field(default_factory=lambda: {"sm": 0, "lm": 0})
    already_done: int = 0
    texts: dict[str, int] = field(default_factory=lambda: {"known": 0, "asr": 0})
    word_timings: dict[str, int] = field(default_factory=lambda: {"greedy": 0, "forced": 0, "even": 0})
    audio_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class _Teachers:
    """The teachers one run loaded (None: not asked for, or for ``stt`` not needed)."""

    sm: SpeechFeatureTeacher | None = None
    lm: TextEncoderTeacher | None = None
    stt: CtcTranscriber | None = None


def _group_specs(options: ExtractOptions, teachers: _Teachers) -> list[GroupSpec]:
    specs = []
    if (sm := teachers.sm) is not None:
        specs.append(GroupSpec("sm", sm.spec, "sm", options.sm_layer, sm.alignment, sm.dim, options.dtype))
    if (lm := teachers.lm) is not None:
        specs.append(GroupSpec("lm", lm.spec, "lm", options.lm_layer, options.lm_align, lm.dim, options.dtype))
    return specs


def _known_text(segment: Segment, options: ExtractOptions) -> str | None:
    known = transcript_for(segment.id, options.transcripts) if options.transcripts else None
    if known is not None:
        return known
    return segment.text if options.use_manifest_text else None


def _load_teachers(options: ExtractOptions, device: torch.device, stt: str | None) -> _Teachers:
    """The ``sm`` and ``lm`` teachers the options ask for, and the CTC model ``stt`` when given."""
    sm = load_teacher("sm", options.sm, device) if options.sm else None
    lm = load_teacher("lm", options.lm, device) if options.lm else None
    return _Teachers(sm, lm, load_teacher("stt", stt, device) if stt else None)


def _batches(items: list[tuple[Segment, int]], batch_size: int) -> list[list[tuple[Segment, int]]]:
    """Segments grouped by exact sample count, then cut into batches (manifest order kept within a length)."""
    by_length: dict[int, list] = defaultdict(list)
    for item in items:
        by_length[item[1]].append(item)
    return [group[i:i + batch_size] for _, group in sorted(by_length.items()) for i in range(0, len(group), batch_size)]


def _probe(segment: Segment, root: Path) -> int:
    """Sample count of a segment file; DmcodecError unless it is 16 kHz mono."""
    path = segment.audio_path(root)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DmcodecError(f"{path}: cannot read segment audio ({str(exc).splitlines()[0]})") from None
    if info.samplerate != CODEC.sample_rate or info.channels != 1:
        raise DmcodecError(f"{path}: {info.samplerate} Hz, {info.channels} channel(s); segments must be "
                           f"{CODEC.sample_rate} Hz mono (make them with dmcodec prep)")
    return info.frames


def extract(manifest: str | os.PathLike, output: str | os.PathLike, options: ExtractOptions,
            device: torch.device | str = "cpu", progress: Callable[[int, int], None] | None = None,
            overwrite: bool = False) -> ExtractReport:
    """Compute the requested teacher features of the manifest's segments into ``output`` (appending: segments
    already there are skipped, so an interrupted run resumes). Unreadable segments are reported and skipped.

    ``overwrite``: start ``output`` again; the old file is removed only once the teachers have loaded, so a
    run that cannot start leaves it as it was."""
    started = time.monotonic()
    manifest = Path(manifest)
    root = manifest.parent
    segments = [s for s in read_segments(manifest) if s.split in options.splits]
    report = ExtractReport(output=str(output), segments=len(segments))
    if options.lm and not options.stt:
        unknown = [s.id for s in segments if _known_text(s, options) is None]
        if unknown:
            raise DmcodecError(f"{len(unknown)} segment(s) have no known text (first: {unknown[0]}); give --stt to "
                               "transcribe them, or --transcripts")
    if not overwrite and _all_done(Path(output), segments, options):  # nothing to compute: no teachers
        report.already_done = len(segments)
        report.elapsed_seconds = round(time.monotonic() - started, 3)
        return report
    device = torch.device(device)
    need_stt = bool(options.lm) and (options.lm_align == "ctc" or
                                     any(_known_text(s, options) is None for s in segments))
    teachers = _load_teachers(options, device, options.stt if need_stt else None)
    if overwrite:
        Path(output).unlink(missing_ok=True)
    with FeatureWriter(output, CODEC.sample_rate, CODEC.frame_rate, _group_specs(options, teachers)) as store:
        groups = list(store.specs)
        todo = []
        for segment in segments:
            if all(store.has(g, segment.id) for g in groups):
                report.already_done += 1
                continue
            try:
                todo.append((segment, _probe(segment, root)))
            except DmcodecError as exc:
                report.failures.append({"id": segment.id, "error": str(exc)})
        done = 0
        for batch in _batches(todo, options.batch_size):
            _run_batch(batch, root, teachers, options, store, report)
            store.flush()
            done += len(batch)
            if progress:
                progress(done, len(todo))
    report.elapsed_seconds = round(time.monotonic() - started, 3)
    return report


def _all_done(output: Path, segments: list[Segment], options: ExtractOptions) -> bool:
    """True when ``output`` already holds every segment in every requested group, made with these settings."""
    if not output.is_file():
        return False
    wanted = {"sm": (options.sm, options.sm_layer), "lm": (options.lm, options.lm_layer)}
    try:
        with open_hdf5(output) as f:
            for group, (teacher, layer) in wanted.items():
                if teacher is None:
                    continue
                attrs = f[group].attrs if group in f else {}
                found = (attrs.get("teacher"), _plain(attrs.get("layer")), attrs.get("dtype"))
                if found != (teacher, layer, options.dtype):
                    return False
                if group == "lm" and attrs.get("alignment") != options.lm_align:
                    return False
                if any(s.id not in f[group] for s in segments):
                    return False
    except OSError:
        return False
    return True


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _read_batch(batch: Sequence[tuple[Segment, int]], root: Path) -> torch.Tensor:
    signals = [sf.read(segment.audio_path(root), dtype="float32")[0] for segment, _ in batch]
    return torch.from_numpy(np.stack(signals))


def _run_batch(batch: list[tuple[Segment, int]], root: Path, teachers: _Teachers, options: ExtractOptions,
               store: FeatureWriter, report: ExtractReport) -> None:
    audio = _read_batch(batch, root)
    frames = CODEC.num_frames(audio.shape[1])
    report.audio_seconds = round(report.audio_seconds + audio.numel() / CODEC.sample_rate, 3)
    ids = [segment.id for segment, _ in batch]
    if teachers.sm is not None:
        rows = [i for i, sid in enumerate(ids) if not store.has("sm", sid)]
        if rows:
            features = teachers.sm.features(audio[rows], frames, options.sm_layer).cpu().numpy()
            for row, feats in zip(rows, features, strict=True):
                store.write("sm", ids[row], feats)
            report.computed["sm"] += len(rows)
    if teachers.lm is not None:
        rows = [i for i, sid in enumerate(ids) if not store.has("lm", sid)]
        if rows:
            texts, aligned = _lm_features([batch[i][0] for i in rows], audio[rows], frames, teachers.lm, teachers.stt,
                                          options, report)
            for row, text, feats in zip(rows, texts, aligned, strict=True):
                store.write("lm", ids[row], feats, attrs={"text": text})
            report.computed["lm"] += len(rows)


def _lm_features(segments: list[Segment], audio: torch.Tensor, frames: int, lm: TextEncoderTeacher,
                 stt: CtcTranscriber | None, options: ExtractOptions,
                 report: ExtractReport) -> tuple[list[str], list[np.ndarray]]:
    """Texts (known, else ASR) and LM features [frames, D] aligned with the chosen rule, per segment."""
    known = [_known_text(segment, options) for segment in segments]
    spans: list[Sequence[tuple[int, int] | None]] = []
    if stt is None or (options.lm_align == "pad" and None not in known):  # no CTC pass: extract() made all known
        words = [text.split() for text in known if text is not None]
        report.texts["known"] += len(words)
    else:
        words, spans = _ctc_words(stt, stt.log_probs(audio, frames), known, frames, options.lm_align == "ctc",
                                  report)
    texts = [" ".join(w) for w in words]
    if options.lm_align == "pad":
        padded = lm.pad_features(texts, frames, options.lm_layer)
        return texts, [align_pad(row, frames) for row in padded]
    encoded = lm.word_features(words, options.lm_layer)
    return texts, [align_ctc(feats, owner, span, frames) for (feats, owner), span in zip(encoded, spans, strict=True)]


def _ctc_words(stt: CtcTranscriber, log_probs: np.ndarray, known: list[str | None], frames: int, timed: bool,
               report: ExtractReport) -> tuple[list[list[str]], list[Sequence[tuple[int, int] | None]]]:
    """Words of each text (known, else the greedy CTC transcript of ``log_probs[i]`` [T, vocab]) and, when
    ``timed``, their codec frames per text (forced alignment for a known text)."""
    words: list[list[str]] = []
    spans: list[Sequence[tuple[int, int] | None]] = []
    for index, text in enumerate(known):
        if text is not None:
            report.texts["known"] += 1
            words.append(text.split())
            if timed:
                spans.append(_known_spans(stt, log_probs, index, words[-1], frames, report))
        else:
            report.texts["asr"] += 1
            recognised = stt.transcribe(log_probs[index])
            words.append([w.word for w in recognised])
            if timed:
                spans.append([rescale_span((w.start, w.end), log_probs.shape[1], frames) for w in recognised])
                report.word_timings["greedy"] += 1
    return words, spans


def _known_spans(stt: CtcTranscriber, log_probs: np.ndarray, index: int, words: list[str], frames: int,
                 report: ExtractReport) -> Sequence[tuple[int, int] | None]:
    """Word frames of a known text: forced alignment, else (it cannot fit) the frames shared evenly."""
    spans = stt.align(log_probs[index], words)
    if any(span is not None for span in spans) or not words:
        report.word_timings["forced"] += 1
        return [None if span is None else rescale_span(span, log_probs.shape[1], frames) for span in spans]
    report.word_timings["even"] += 1
    return even_word_spans(len(words), frames)
