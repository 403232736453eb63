"""The one reader of ``--transcripts`` files (``roundtrip``, ``score`` and ``extract`` take the same ones).

Formats, by extension:

* ``.jsonl`` (also ``.json``): one object per line with a name (``id`` and / or a path column such as
  ``file``) and a text column (``text``, ``transcript``, ...; see ``tables``);
* anything else: a UTF-8 TSV. A first line naming a text column and a name column is a header, and those
  columns are used; otherwise every line is ``name<TAB>text`` (further columns are ignored).

Names and texts are stripped; a line with an empty text is left out (that utterance has no known text); a
line without a name is refused. A name is what a command looks up: a file's relative path (``sub/x.flac``),
an utterance id (``spk1/utt3``) or a segment id. The first line of a name wins.

A name is looked up as itself; an id (a name without an audio extension, ``spk1/utt3``) also as the audio
files it names (``spk1/utt3.wav``, ``spk1/utt3.flac``, ...); then by its file name (``utt3.flac``) and, when
that ends in an audio extension, by that file name's id (``utt3``). A line is found by its name, its file
name and that file name's id; a short name that some line has as its own name, or that lines of two texts
share, is no short name of any line (an ambiguous short name finds nothing). So ``take.2`` (an id) never
finds the line of ``take.1`` through ``take``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ..audio import AUDIO_EXTENSIONS
from ..errors import DmcodecError
from .ids import audio_id
from .tables import ID_COLUMN, PATH_COLUMNS, TEXT_COLUMNS, Row, cell, is_jsonl, pick, read_lines, read_objects

NAME_COLUMNS = (*PATH_COLUMNS, ID_COLUMN)
WHAT = "transcripts"
FORMAT_HINT = "each line is name<TAB>text, or a header naming 'file' or 'id' and 'text'"


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """{name: text} of a transcripts file, with the short names of the module docstring added."""
    path = Path(path)
    lines = _jsonl_lines(path) if is_jsonl(path) else _tsv_lines(path)
    texts: dict[str, str] = {}
    for names, text in lines:
        for name in names:
            texts.setdefault(name, text)
    short: dict[str, set[str]] = {}
    for names, text in lines:
        for key in {key for name in names for key in _short_names(name)} - set(texts):
            short.setdefault(key, set()).add(text)
    return {**texts, **{key: found.pop() for key, found in short.items() if len(found) == 1}}


def transcript_for(name: str, texts: dict[str, str]) -> str | None:
    """The text of ``name`` (a relative path or an id) in ``read_transcripts``'s result, or None."""
    return next((texts[key] for key in _lookup_keys(name) if key in texts), None)


def _lookup_keys(name: str) -> list[str]:
    keys = [name]
    if not _is_audio_name(name):
        keys += [name + extension for extension in AUDIO_EXTENSIONS]
    keys.append(_file_name(name))
    if _is_audio_name(name):
        keys.append(audio_id(_file_name(name)))
    return keys


def _is_audio_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in AUDIO_EXTENSIONS


def _file_name(name: str) -> str:
    return PurePosixPath(name).name or name


def _short_names(name: str) -> tuple[str, str]:
    """What else finds a line of ``name``: ``sub/x.flac`` -> ``("x.flac", "x")``."""
    return _file_name(name), audio_id(_file_name(name))


def _jsonl_lines(path: Path) -> list[tuple[list[str], str]]:
    rows = read_objects(path, WHAT)
    return [line for number, row in rows if (line := _named(row, f"{path}:{number}"))]


def _tsv_lines(path: Path) -> list[tuple[list[str], str]]:
    rows = read_lines(path, WHAT)
    table: list[tuple[int, Row]]
    if rows and _is_header(rows[0][1]):
        header = [text.strip() for text in rows[0][1]]
        table = [(number, dict(zip(header, cells))) for number, cells in rows[1:]]
    else:
        table = [(number, _bare(cells, path, number)) for number, cells in rows]
    return [line for number, row in table if (line := _named(row, f"{path}:{number}"))]


def _is_header(cells: list[str]) -> bool:
    names = {text.strip() for text in cells}
    return bool(names & set(NAME_COLUMNS)) and bool(names & set(TEXT_COLUMNS))


def _bare(cells: list[str], path: Path, number: int) -> Row:
    """A line of a TSV without header: name<TAB>text."""
    if len(cells) < 2:
        raise DmcodecError(f"{path}:{number}: no text column (line {number} has one cell); {FORMAT_HINT}")
    return {ID_COLUMN: cells[0], "text": cells[1]}


def _named(row: Row, where: str) -> tuple[list[str], str] | None:
    """(the line's names, its text); None for a line without text."""
    text = pick(row, TEXT_COLUMNS, where)
    if text is None:
        return None
    names = list(dict.fromkeys(name for column in NAME_COLUMNS if (name := cell(row, column, where))))
    if not names:
        raise DmcodecError(f"{where}: a text without a name ({', '.join(NAME_COLUMNS)}); {FORMAT_HINT}")
    return names, text
