"""Audio inputs as items, from what a command is given: a folder, a manifest or one audio file.

A folder is walked by ``walk.audio_files`` (one policy for hidden names and links) and its files are named by
the id rule (``ids.audio_id``), in id order. A manifest is read by ``manifest.read_manifest``, in its order.
One audio file is named by its file name, less the extension.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..audio import AUDIO_EXTENSIONS
from ..errors import DmcodecError, printable
from .ids import audio_id
from .items import Item
from .manifest import MANIFEST_EXTENSIONS, is_manifest, read_manifest
from .tables import PATH_COLUMNS, SPEAKER_COLUMNS, TEXT_COLUMNS, pick, read_table
from .walk import audio_files

#: The files of a folder that give its audio files' speaker and text (TSV with a path column).
METADATA_FILES = ("manifest.tsv", "transcripts.tsv", "metadata.tsv")


def read_folder(root: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Item]:
    """The audio files under ``root`` as items, in id order."""
    return [Item(audio_id(found.relative), found.path) for found in audio_files(root, extensions)]


def read_inputs(source: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Item]:
    """The items of a folder (its files with one of ``extensions``), a manifest or one audio file."""
    if source.is_dir():
        return read_folder(source, extensions)
    if is_manifest(source):
        return read_manifest(source)
    if source.is_file():
        return [Item(audio_id(printable(source.name)), source)]
    if not source.exists():
        raise DmcodecError(f"{source}: no such folder, manifest or audio file")
    raise DmcodecError(f"{source}: not a folder, a manifest ({', '.join(MANIFEST_EXTENSIONS)}) or an audio file")


def collect_inputs(source: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Item]:
    """``read_inputs``, refusing a source without items or with an id given twice (what ``encode`` needs)."""
    source = Path(source)
    items = read_inputs(source, extensions)
    if not items:
        raise DmcodecError(f"{source}: no audio files found (extensions {', '.join(extensions)}); "
                           "check the folder or pass --extensions")
    check_unique(items, source)
    return items


def check_unique(items: list[Item], source: Path) -> None:
    """Refuse two items with one id (the second would take the first one's place)."""
    seen: dict[str, Path] = {}
    for item in items:
        if item.id in seen:
            raise DmcodecError(f"{source}: utterance id {item.id!r} is given twice ({seen[item.id]} and "
                               f"{item.path}); ids must be unique (give \"id\" in a JSONL manifest)")
        seen[item.id] = item.path


def folder_labels(folder: Path) -> dict[str, tuple[str | None, str | None]]:
    """(speaker, text) by id, from the ``METADATA_FILES`` of ``folder``; the first value given wins."""
    labels: dict[str, tuple[str | None, str | None]] = {}
    for name in METADATA_FILES:
        table = folder / name
        if not table.is_file():
            continue
        for number, row in read_table(table, "metadata file"):
            where = f"{table}:{number}"
            written = pick(row, PATH_COLUMNS, where)
            if written is None:
                continue
            speaker, text = labels.get(audio_id(written), (None, None))
            labels[audio_id(written)] = (speaker or pick(row, SPEAKER_COLUMNS, where),
                                         text or pick(row, TEXT_COLUMNS, where))
    return labels


def with_folder_labels(items: list[Item], folder: Path) -> list[Item]:
    """``items`` of ``folder`` with the speaker and text its metadata files give."""
    labels = folder_labels(folder)
    return [replace(item, speaker=labels[item.id][0], text=labels[item.id][1]) if item.id in labels else item
            for item in items]
