"""Tables of inputs: TSV / CSV files and JSON Lines files, and the column names that every reader of them
(manifests, a folder's metadata files, transcripts) knows.

A TSV is read without quoting (a ``"`` is a character like any other), a CSV with the usual quoting. A JSONL
file (``.jsonl``, also ``.json``) holds one object per line. Blank lines, and in JSONL lines starting with
``#``, are skipped; a UTF-8 byte order mark is allowed. A cell is a string or a number, stripped; an empty
cell is no value.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from ..errors import DmcodecError

PATH_COLUMNS = ("path", "file", "audio", "audio_path", "wav", "filename")  #: an audio file, first found wins
ID_COLUMN = "id"
SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk", "client_id")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "normalized_text")
JSONL_SUFFIXES = (".jsonl", ".json")

Row = dict[str, object]


def is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in JSONL_SUFFIXES


def cell(row: Row, column: str, where: str) -> str | None:
    """The stripped text of ``row[column]``; None when absent or empty."""
    value = row.get(column)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DmcodecError(f"{where}: {column!r} must be a string or a number, got {type(value).__name__}")
    return str(value).strip() or None


def pick(row: Row, columns: tuple[str, ...], where: str) -> str | None:
    """The first of ``columns`` that has a value in ``row``."""
    for column in columns:
        value = cell(row, column, where)
        if value is not None:
            return value
    return None


def read_lines(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank line of a TSV (a CSV for ``.csv``)."""
    return list(_reading(path, what, lambda: _delimited(path)))


def read_objects(path: Path, what: str) -> list[tuple[int, Row]]:
    """(line number, object) of each line of a JSONL file."""
    return list(_reading(path, what, lambda: _objects(path)))


def read_table(path: Path, what: str) -> list[tuple[int, Row]]:
    """(line number, row) of a JSONL file, or of a TSV / CSV file by its header line."""
    if is_jsonl(path):
        return read_objects(path, what)
    lines = read_lines(path, what)
    if not lines:
        return []
    (_, header), rows = lines[0], lines[1:]
    return [(number, dict(zip(header, cells))) for number, cells in rows]


def _reading(path: Path, what: str, read) -> Iterator:
    try:
        yield from read()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DmcodecError(f"{path}: cannot read the {what} ({exc}); give a UTF-8 text file") from None


def _delimited(path: Path) -> Iterator[tuple[int, list[str]]]:
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
        for cells in reader:
            if any(text.strip() for text in cells):
                yield reader.line_num, cells


def _objects(path: Path) -> Iterator[tuple[int, Row]]:
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise DmcodecError(f"{path}:{number}: not valid JSON ({reason}); one object per line") from None
            if not isinstance(record, dict):
                raise DmcodecError(f"{path}:{number}: each line must be a JSON object")
            yield number, record
