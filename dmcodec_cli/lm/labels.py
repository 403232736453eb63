"""Transcripts and speakers for an export: read from a JSONL manifest keyed by utterance id.

Any JSONL file with one object per line, each with an ``"id"`` and optionally ``"text"`` and
``"speaker"`` strings, is accepted; ``dmcodec prep``'s segment manifests are such files. So is a lhotse
CutSet: a cut's supervisions give its text (joined) and speaker (the first).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DmcodecError
from ..inputs.lhotse_manifest import is_lhotse_manifest, load_lhotse_manifest, supervision_labels

COLUMNS = ("text", "speaker")


@dataclass(frozen=True)
class Labels:
    """Per-id labels; ``columns`` are those the manifest gives for at least one utterance."""

    by_id: dict[str, dict[str, str | None]] = field(default_factory=dict)
    columns: tuple[str, ...] = ()

    def of(self, name: str) -> dict[str, str | None]:
        """The columns for utterance ``name`` (None where the manifest has no value or no line)."""
        found = self.by_id.get(name, {})
        return {column: found.get(column) for column in self.columns}

    def digest(self) -> str:
        """Identifies the labels, so that an export resumed with other labels is noticed."""
        text = json.dumps([self.columns, sorted(self.by_id.items())], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _label(record: dict, name: str, where: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise DmcodecError(f"{where}: {name!r} must be a string or null, got {type(value).__name__}")
    return value


def _lhotse_labels(path: Path) -> dict[str, dict[str, str | None]]:
    from lhotse import CutSet

    cuts = load_lhotse_manifest(path)
    if not isinstance(cuts, CutSet):
        raise DmcodecError(f"{path}: a lhotse {type(cuts).__name__} holds no transcripts; give a CutSet")
    labels = {}
    for cut in cuts:
        speaker, text = supervision_labels(cut)
        labels[cut.id] = {"text": text, "speaker": speaker}
    return labels


def _with_columns(by_id: dict[str, dict[str, str | None]]) -> Labels:
    return Labels(by_id, tuple(c for c in COLUMNS if any(values[c] is not None for values in by_id.values())))


def read_labels(path: str | os.PathLike) -> Labels:
    """Labels from a JSONL manifest or a lhotse CutSet; one line naming the file (and line) for anything
    malformed."""
    path = Path(path)
    if is_lhotse_manifest(path):
        return _with_columns(_lhotse_labels(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DmcodecError(f"{path}: cannot read the manifest ({exc}); give a UTF-8 JSONL file") from None
    by_id: dict[str, dict[str, str | None]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise DmcodecError(f"{where}: not valid JSON; a manifest has one JSON object per line") from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
            raise DmcodecError(f"{where}: each line needs an \"id\" string (and optionally \"text\", \"speaker\")")
        by_id[record["id"]] = {name: _label(record, name, where) for name in COLUMNS}
    return _with_columns(by_id)
