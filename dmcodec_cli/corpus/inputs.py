"""What to encode: a folder walked recursively or a manifest, as (utterance id, path) items.

Ids are the path relative to the folder (or to the manifest's folder) without its extension, with ``/``
separators, unless a JSONL manifest gives one. A lhotse CutSet or RecordingSet manifest gives one item per
cut (the span of its recording) or recording, id = the cut's or recording's id (``lhotse_inputs``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..audio import AUDIO_EXTENSIONS
from ..errors import DmcodecError
from ..walk import has_extension, walk_files
from .items import Item
from .lhotse_inputs import is_lhotse_manifest, read_lhotse_manifest

MANIFEST_EXTENSIONS = (".txt", ".list", ".jsonl", ".jsonl.gz")  #: ``.jsonl.gz``: lhotse's


def is_manifest(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(MANIFEST_EXTENSIONS)


def parse_extensions(text: str | None) -> tuple[str, ...]:
    """``"wav,flac"`` -> ``(".wav", ".flac")``; None -> every audio extension we read."""
    if not text:
        return AUDIO_EXTENSIONS
    return tuple("." + e.strip().lower().lstrip(".") for e in text.split(",") if e.strip())


def _relative_id(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    return rel.with_suffix("").as_posix()


def walk_folder(root: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Item]:
    """Audio files under ``root``, sorted by id, walked by the one policy of ``walk.walk_files`` (links
    followed, every real file once, hidden names skipped; ids of non-UTF-8 names escape the bytes)."""
    items = [Item(Path(found.relative).with_suffix("").as_posix(), found.path)
             for found in walk_files(root, has_extension(extensions))]
    return sorted(items, key=lambda item: item.id)


def _manifest_line(line: str, number: int, manifest: Path) -> tuple[str | None, str]:
    if manifest.suffix.lower() != ".jsonl":
        return None, line
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DmcodecError(f"{manifest}:{number}: not valid JSON ({exc.msg}); one object per line") from None
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        raise DmcodecError(f"{manifest}:{number}: each line needs a \"path\" string (and optionally \"id\")")
    name = record.get("id")
    if name is not None and (not isinstance(name, str) or not name):
        raise DmcodecError(f"{manifest}:{number}: \"id\" must be a non-empty string")
    return name, record["path"]


def read_manifest(manifest: Path) -> list[Item]:
    """Items of a manifest, in its order. Relative paths are relative to the manifest's folder."""
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DmcodecError(f"{manifest}: cannot read the manifest ({exc})") from None
    root = manifest.parent
    items = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, text = _manifest_line(line, number, manifest)
        path = Path(text).expanduser()
        path = path if path.is_absolute() else root / path
        items.append(Item(name or _relative_id(path, root), path))
    return items


def check_unique(items: list[Item], source: Path) -> list[Item]:
    seen: dict[str, Path] = {}
    for item in items:
        if item.id in seen:
            raise DmcodecError(f"{source}: utterance id {item.id!r} is given twice ({seen[item.id]} and "
                               f"{item.path}); ids must be unique (give \"id\" in a JSONL manifest)")
        seen[item.id] = item.path
    return items


def collect_inputs(source: str | os.PathLike, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Item]:
    """Items from a folder or a manifest (.txt / .list / .jsonl). Raises DmcodecError if there are none."""
    source = Path(source)
    if source.is_dir():
        items = walk_folder(source, extensions)
    elif is_lhotse_manifest(source):
        items = read_lhotse_manifest(source)
    elif is_manifest(source):
        items = read_manifest(source)
    elif not source.exists():
        raise DmcodecError(f"{source}: no such file or folder")
    else:
        raise DmcodecError(f"{source}: not a folder or a manifest ({', '.join(MANIFEST_EXTENSIONS)})")
    if not items:
        raise DmcodecError(f"{source}: no audio files found (extensions {', '.join(extensions)}); "
                           "check the folder or pass --extensions")
    return check_unique(items, source)
