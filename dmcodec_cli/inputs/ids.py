"""The one id rule: an audio file under a root is named by its path relative to the root, ``/``-separated,
without its extension (``spk1/utt3.flac`` -> ``spk1/utt3``). A manifest may give an id of its own instead.

These ids are what ``encode`` writes into code stores and ``roundtrip --audio`` matches originals by.
``prep`` names segment files after its ids and so cannot keep ``/``: it uses ``flat_id`` of the same id.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

#: What ``flat_id`` puts for each ``/`` of an id.
FLAT_SEPARATOR = "__"


def audio_id(relative: str) -> str:
    """The id of a file by its ``/``-separated path relative to the root: that path less its extension."""
    path = PurePosixPath(relative)
    return path.with_suffix("").as_posix() if path.suffix else path.as_posix()


def relative_id(path: Path, root: Path) -> str:
    """The id of ``path`` under ``root`` (a manifest's folder); a path outside it is named by its file name."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        relative = Path(path.name)
    return audio_id(relative.as_posix())


def flat_id(uid: str) -> str:
    """An id without ``/`` (``spk1/utt3`` -> ``spk1__utt3``), for ids that name files of one folder."""
    return uid.replace("/", FLAT_SEPARATOR)
