"""The one folder walk of dmcodec: audio files under a folder, found once each, in a fixed order.

Policy:

* names starting with ``.`` (files and folders) are skipped;
* symbolic links to files and folders are followed, but every real folder is entered once and every
  real file is taken once (both known by ``(st_dev, st_ino)``), so a link back up (``sub/up -> ..``) or
  two links to one folder can neither loop nor duplicate a file;
* a file's own path wins over a path through a link: the tree is first walked without entering links,
  then the links met are followed in sorted order (so a link only adds what the real tree lacks);
* broken links, links that loop, unreadable folders and entries that are not regular files (FIFOs,
  devices) are skipped, each with one ``warning:`` line on stderr; the folder given must be readable;
* names that are not valid UTF-8 keep their real path, and their relative name escapes the undecodable
  bytes (``\\xff``), so it is a valid UTF-8 string;
* ``audio_files`` (the walk every command uses) keeps the audio extensions and gives the files in id order
  (``ids.audio_id`` of the relative name, then the name): the order ``encode`` writes a folder's store in.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..audio import AUDIO_EXTENSIONS
from ..errors import DmcodecError, printable
from .ids import audio_id

#: Called with (path, reason) for every entry the walk skips.
OnSkip = Callable[[Path, str], None]


@dataclass(frozen=True)
class Found:
    """An audio file of a walk: where it is (the real, openable path) and its name relative to the root."""

    path: Path
    relative: str  #: ``/``-separated, valid UTF-8 (undecodable bytes escaped as ``\\xNN``)


def warn_skipped(path: Path, reason: str) -> None:
    """The default ``OnSkip``: one warning line on stderr."""
    sys.stderr.write(f"warning: {printable(path)}: {reason}; skipped\n")
    sys.stderr.flush()


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


class _Walk:
    def __init__(self, keep: Callable[[str], bool], on_skip: OnSkip):
        self.keep, self.on_skip = keep, on_skip
        self.folders: set[tuple[int, int]] = set()
        self.files: set[tuple[int, int]] = set()
        self.found: list[Found] = []
        self.links: list[tuple[tuple[str, ...], Path]] = []  # (relative parts, path): followed after the tree

    def folder(self, path: Path, parts: tuple[str, ...], info: os.stat_result) -> None:
        if (info.st_dev, info.st_ino) in self.folders:
            return
        self.folders.add((info.st_dev, info.st_ino))
        try:
            with os.scandir(path) as scan:
                entries = sorted((entry.name, entry.is_symlink()) for entry in scan)
        except OSError as exc:
            self.on_skip(path, f"cannot read the folder ({_reason(exc)})")
            return
        for name, is_link in entries:
            if name.startswith("."):
                continue
            if is_link:
                self.links.append(((*parts, name), path / name))
            else:
                self.entry(path / name, (*parts, name))

    def entry(self, path: Path, parts: tuple[str, ...]) -> None:
        try:
            info = os.stat(path)  # follows links
        except FileNotFoundError:
            self.on_skip(path, "broken symbolic link (its target does not exist)")
            return
        except OSError as exc:
            self.on_skip(path, f"cannot look at it ({_reason(exc)})")
            return
        if stat.S_ISDIR(info.st_mode):
            self.folder(path, parts, info)
        elif self.keep(parts[-1]):
            if not stat.S_ISREG(info.st_mode):
                self.on_skip(path, f"{_kind(info.st_mode)}, not an audio file")
            elif (info.st_dev, info.st_ino) not in self.files:
                self.files.add((info.st_dev, info.st_ino))
                self.found.append(Found(path, printable("/".join(parts))))

    def follow_links(self) -> None:
        while self.links:
            self.links.sort()
            parts, path = self.links.pop(0)
            self.entry(path, parts)


def walk_files(root: str | os.PathLike, keep: Callable[[str], bool],
               on_skip: OnSkip = warn_skipped) -> list[Found]:
    """Files under ``root`` whose name passes ``keep`` (see the module docstring), sorted by relative path.

    Raises DmcodecError when ``root`` itself cannot be read.
    """
    root = Path(root)
    try:
        info = os.stat(root)
        os.scandir(root).close()
    except OSError as exc:
        raise DmcodecError(f"{printable(root)}: cannot read the folder ({_reason(exc)})") from None
    walk = _Walk(keep, on_skip)
    walk.folder(root, (), info)
    walk.follow_links()
    return sorted(walk.found, key=lambda found: found.relative)


def has_extension(extensions: tuple[str, ...]) -> Callable[[str], bool]:
    """A ``keep`` for ``walk_files``: the name ends in one of ``extensions`` (``.wav``; any case)."""
    return lambda name: os.path.splitext(name)[1].lower() in extensions


def parse_extensions(text: str | None) -> tuple[str, ...]:
    """``"wav,flac"`` -> ``(".wav", ".flac")``; None -> every audio extension we read."""
    if not text:
        return AUDIO_EXTENSIONS
    return tuple("." + e.strip().lower().lstrip(".") for e in text.split(",") if e.strip())


def audio_files(root: str | os.PathLike, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Found]:
    """The audio files under ``root`` (names ending in one of ``extensions``, any case), in id order."""
    found = walk_files(root, has_extension(extensions))
    return sorted(found, key=lambda file: (audio_id(file.relative), file.relative))
