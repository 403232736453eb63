"""The one reader of audio-list manifests (``encode`` and ``prep`` take the same ones), by extension:

* ``.txt``, ``.list``: one audio path per line; blank lines and lines starting with ``#`` are skipped;
* ``.tsv``, ``.csv``: a header line, then one row per file: a path column (``path``, ``file``, ``audio``,
  ``audio_path``, ``wav`` or ``filename``) and optional ``id``, speaker and text columns (``tables``);
* ``.jsonl`` (also ``.json``): one object per line with the same fields as a TSV row;
* lhotse's ``.jsonl.gz``, or a ``.jsonl`` whose first line is a lhotse cut or recording (``lhotse_manifest``).

Relative paths are relative to the manifest's folder (``~`` is expanded). An utterance without an ``id`` is
named by the id rule (``ids.relative_id``: its path relative to the manifest's folder, less the extension).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DmcodecError
from .ids import relative_id
from .items import Item
from .lhotse_manifest import is_lhotse_manifest, read_lhotse_manifest
from .tables import ID_COLUMN, PATH_COLUMNS, SPEAKER_COLUMNS, TEXT_COLUMNS, Row, cell, pick, read_table

LIST_EXTENSIONS = (".txt", ".list")
TABLE_EXTENSIONS = (".tsv", ".csv", ".jsonl", ".json")
MANIFEST_EXTENSIONS = (*LIST_EXTENSIONS, *TABLE_EXTENSIONS, ".jsonl.gz")  #: ``.jsonl.gz``: lhotse's


def is_manifest(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(MANIFEST_EXTENSIONS)


def read_manifest(manifest: Path) -> list[Item]:
    """The items of a manifest, in its order (see the module docstring). Raises DmcodecError, naming the file
    and line, for anything it cannot take."""
    if is_lhotse_manifest(manifest):
        return read_lhotse_manifest(manifest)
    if manifest.name.lower().endswith(LIST_EXTENSIONS):
        return [_item(manifest, written) for written in _listed_paths(manifest)]
    return [_row_item(manifest, row, f"{manifest}:{number}") for number, row in read_table(manifest, "manifest")]


def _listed_paths(manifest: Path) -> list[str]:
    try:
        lines = manifest.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DmcodecError(f"{manifest}: cannot read the manifest ({exc}); give a UTF-8 text file") from None
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _row_item(manifest: Path, row: Row, where: str) -> Item:
    written = pick(row, PATH_COLUMNS, where)
    if written is None:
        raise DmcodecError(f"{where}: no audio path; name its column one of {', '.join(PATH_COLUMNS)}")
    return _item(manifest, written, cell(row, ID_COLUMN, where), pick(row, SPEAKER_COLUMNS, where),
                 pick(row, TEXT_COLUMNS, where))


def _item(manifest: Path, written: str, uid: str | None = None, speaker: str | None = None,
          text: str | None = None) -> Item:
    """The item of an audio path as the manifest writes it."""
    path = Path(written).expanduser()
    path = path if path.is_absolute() else manifest.parent / path
    return Item(uid or relative_id(path, manifest.parent), path, speaker=speaker, text=text)
