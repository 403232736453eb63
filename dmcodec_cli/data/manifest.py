"""The segment manifest (``manifest.jsonl`` of a prep folder): JSONL, one object per training segment, the
contract between ``prep``, ``extract`` and training. Not an audio list: those are ``inputs.manifest``'s."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..errors import DmcodecError

SPLITS = ("train", "valid")
FIELDS = ("id", "path", "source", "offset", "duration", "speaker", "text", "split")


@dataclass(frozen=True)
class Segment:
    """One training segment. ``offset`` / ``duration`` are seconds; ``path`` is relative to the manifest's folder
    (or absolute). ``duration`` is the length of the segment file, zero padding included."""

    id: str
    path: str
    source: str
    offset: float
    duration: float
    speaker: str | None
    text: str | None
    split: str

    def audio_path(self, root: Path) -> Path:
        """The segment's audio file, ``root`` being the manifest's folder."""
        return root / self.path


def _segment_from(obj: object, where: str) -> Segment:
    if not isinstance(obj, dict):
        raise DmcodecError(f"{where}: expected a JSON object per line")
    missing = [name for name in FIELDS if name not in obj]
    if missing:
        raise DmcodecError(f"{where}: missing field(s) {', '.join(missing)}; "
                           f"a dmcodec manifest has {', '.join(FIELDS)}")
    wrong = [f"{name} {obj[name]!r} is not {kind}" for name, kind, ok in _FIELD_KINDS if not ok(obj[name])]
    if wrong:
        raise DmcodecError(f"{where}: {'; '.join(wrong)}")
    segment = Segment(**{name: obj[name] for name in FIELDS})
    if "/" in segment.id or segment.id in ("", ".", ".."):
        raise DmcodecError(f"{where}: segment id {segment.id!r} is empty, '.' or '..', or contains '/' (ids name "
                           "entries of the feature file)")
    if segment.split not in SPLITS:
        raise DmcodecError(f"{where}: split must be 'train' or 'valid', got {segment.split!r}")
    return segment


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


#: (field, what it must be, test): the JSON types of a manifest line
_FIELD_KINDS = (("id", "a string", lambda v: isinstance(v, str)), ("path", "a string", lambda v: isinstance(v, str)),
                ("source", "a string", lambda v: isinstance(v, str)),
                ("offset", "a number >= 0", _number), ("duration", "a number >= 0", _number),
                ("speaker", "a string or null", lambda v: v is None or isinstance(v, str)),
                ("text", "a string or null", lambda v: v is None or isinstance(v, str)))


def read_segments(path: str | os.PathLike) -> list[Segment]:
    """Read a segment manifest. Raises DmcodecError on a missing file, bad JSON, missing fields or duplicate ids."""
    path = Path(path)
    if not path.is_file():
        raise DmcodecError(f"{path}: no such manifest; run `dmcodec prep` first")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DmcodecError(f"{path}: not a UTF-8 text file; give the manifest.jsonl that `dmcodec prep` "
                           "wrote") from None
    segments, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DmcodecError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        segment = _segment_from(obj, f"{path}:{number}")
        if segment.id in seen:
            raise DmcodecError(f"{path}:{number}: duplicate segment id {segment.id!r}")
        seen.add(segment.id)
        segments.append(segment)
    return segments


def write_segments(path: str | os.PathLike, segments: list[Segment]) -> None:
    """Write segments as JSONL, atomically (temporary file renamed into place)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for segment in segments:
            f.write(json.dumps(asdict(segment), ensure_ascii=False) + "\n")
