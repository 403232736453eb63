"""lhotse manifests as inputs: a CutSet (one item per cut: its span of one recording, speaker and text from
its supervisions) or a RecordingSet (one item per recording), ids the cut or recording ids. Needs the
``lhotse`` extra.

A manifest is recognised by its name (``.jsonl.gz``) or, for ``.jsonl``, by its first line holding a
lhotse cut or recording (``"recording"`` or ``"sources"``). Relative audio paths are taken as lhotse
takes them (relative to the working folder). Only JSON is read (lhotse's JSONL reader), never a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DmcodecError
from .items import Item

LHOTSE_KEYS = ("recording", "sources")  #: a cut's and a recording's own fields


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return line
    return ""


def is_lhotse_manifest(path: Path) -> bool:
    if not path.is_file():
        return False
    name = path.name.lower()
    if name.endswith(".jsonl.gz"):
        return True
    if not name.endswith(".jsonl"):
        return False
    try:
        record = json.loads(_first_line(path))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False  # manifest.read_manifest reports what is wrong with it
    return isinstance(record, dict) and any(key in record for key in LHOTSE_KEYS)


def _audio_file(recording, manifest: Path) -> Path:
    sources = recording.sources
    if len(sources) != 1 or sources[0].type != "file":
        kinds = ", ".join(source.type for source in sources) or "none"
        raise DmcodecError(f"{manifest}: recording {recording.id!r} has sources of type {kinds}; dmcodec reads "
                           "recordings of one audio file (type 'file')")
    return Path(sources[0].source)


def supervision_labels(cut) -> tuple[str | None, str | None]:
    """(speaker, text) of a cut: its first supervision's speaker, the texts of its supervisions joined."""
    texts = [s.text for s in cut.supervisions if s.text]
    speakers = [s.speaker for s in cut.supervisions if s.speaker]
    return (speakers[0] if speakers else None), (" ".join(texts) or None)


def _cut_item(cut, manifest: Path) -> Item:
    recording = getattr(cut, "recording", None)
    if recording is None:
        raise DmcodecError(f"{manifest}: cut {cut.id!r} ({type(cut).__name__}) has no recording of its own; "
                           "dmcodec encodes cuts of one recording (MonoCut)")
    speaker, text = supervision_labels(cut)
    return Item(cut.id, _audio_file(recording, manifest), float(cut.start), float(cut.duration), speaker, text)


def load_lhotse_manifest(manifest: Path):
    """The CutSet / RecordingSet / ... lhotse reads from ``manifest``; one DmcodecError line if it cannot."""
    try:
        from lhotse import load_manifest
    except ImportError as exc:
        raise DmcodecError(f"{manifest}: a lhotse manifest needs lhotse, which cannot be imported ({exc}); "
                           "pip install 'dmcodec[lhotse]'") from None
    try:
        loaded = load_manifest(manifest)
    except Exception as exc:  # lhotse raises many kinds for a file it cannot take
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DmcodecError(f"{manifest}: lhotse cannot read it as a manifest ({reason})") from None
    return loaded


def read_lhotse_manifest(manifest: Path) -> list[Item]:
    """Items of a lhotse CutSet or RecordingSet manifest, in its order."""
    from lhotse import CutSet, RecordingSet

    loaded = load_lhotse_manifest(manifest)
    if isinstance(loaded, RecordingSet):
        return [Item(recording.id, _audio_file(recording, manifest)) for recording in loaded]
    if isinstance(loaded, CutSet):
        return [_cut_item(cut, manifest) for cut in loaded]
    raise DmcodecError(f"{manifest}: a lhotse {type(loaded).__name__}; give a CutSet or a RecordingSet")
