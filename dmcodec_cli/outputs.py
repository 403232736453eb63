"""Where a command may write: one output policy for every command, checked before any work.

- An output is never one of the command's inputs (same file, also through links or another spelling),
  even with ``--overwrite``.
- An existing file or folder that dmcodec did not make is never replaced unless ``--overwrite``.
- A single-file output is named like what it holds (codes ``.npy`` / ``.npz``, audio ``.wav`` / ``.flac`` / ``.ogg``).
- A folder output is filled, never wiped; ids that become paths inside it are checked (:func:`id_path`).
- Unwritable folders, parents that are files and over-long names are refused before the model loads.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from .atomic import write_text_atomic
from .audio import AUDIO_EXTENSIONS, WRITE_FORMATS
from .errors import DmcodecError

CODE_SUFFIXES = (".npy", ".npz")  #: bare codes, or codes with their metadata (``codes.py``)
AUDIO_OUT_SUFFIXES = tuple(WRITE_FORMATS)  #: what ``save_audio`` / ``AudioWriter`` write
STORE_SUFFIXES = (".h5", ".hdf5")
#: extensions that say "file": a folder output named so is a mistake (``-o codes.npy/``, ``-o out.wav`` for a store)
FILE_SUFFIXES = (*AUDIO_EXTENSIONS, *CODE_SUFFIXES, *STORE_SUFFIXES, ".pt", ".pth", ".safetensors", ".json",
                 ".jsonl", ".tsv", ".txt")
OVERWRITE_HINT = "pass --overwrite to replace it or choose another"


class BadId(DmcodecError):
    """An utterance id that cannot be a path inside the output folder (a failed item, not a failed run)."""


# -- inputs --------------------------------------------------------------------------------------

def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both name one existing file or folder (links, ``./x`` and hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_inputs(targets: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike],
                  option: str = "-o") -> None:
    """Refuse, whatever ``--overwrite`` says, to write any of ``targets`` over one of ``inputs``."""
    targets = [Path(t) for t in targets if os.path.exists(t)]  # a path that does not exist is no input
    if not targets:
        return
    for source in map(Path, inputs):
        for target in targets:
            if same_file(target, source):
                raise DmcodecError(f"{target}: is also an input of this command ({source}); dmcodec never writes "
                                   f"over its inputs, even with --overwrite; choose another {option}")


# -- can we write there at all -------------------------------------------------------------------

def _existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if os.path.lexists(parent):
            return parent
    return Path("/")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_name_lengths(path: Path, within: Path | None = None, option: str = "-o") -> None:
    """Refuse a path with a component longer than the file system allows (ENAMETOOLONG) or over PATH_MAX."""
    limit = _name_max(_existing_ancestor(path) if within is None else within)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise DmcodecError(f"{path}: the name {part[:24]!r}... is {size} bytes, longer than this file system "
                               f"allows ({limit}); give a shorter {option}")
    if len(os.fsencode(str(path.absolute()))) >= 4096:
        raise DmcodecError(f"{path}: the path is longer than this system allows (4096 bytes); give a shorter {option}")


def probe_folder(folder: Path, option: str = "-o") -> None:
    """Create and remove a temporary file in ``folder`` (an existing folder): refuse it if that fails."""
    try:
        fd, name = tempfile.mkstemp(prefix=".dmcodec-probe-", dir=folder)
    except OSError as exc:
        raise DmcodecError(f"{folder}: cannot write here ({exc.strerror or exc}); fix its permissions or give "
                           f"another {option}") from None
    os.close(fd)
    os.unlink(name)


def check_writable(path: str | os.PathLike, option: str = "-o") -> None:
    """The file or folder ``path`` can be created (or replaced): names fit, no parent is a file, the nearest
    existing folder above it takes a new file. Nothing is left behind."""
    path = Path(path)
    check_name_lengths(path, option=option)
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise DmcodecError(f"{ancestor}: is a file, so {path} cannot be created inside it; give another {option}")
    probe_folder(path if os.path.isdir(path) else ancestor, option)


# -- single files ----------------------------------------------------------------------------------

def check_file_output(path: str | os.PathLike, suffixes: tuple[str, ...], holds: str, *,
                      inputs: Iterable[str | os.PathLike] = (), overwrite: bool | None = False,
                      ours: Callable[[Path], bool] | None = None, option: str = "-o") -> Path:
    """Check a single-file output before any work; returns it as a Path.

    ``suffixes``: the extensions it may have (what it ``holds``, for the message). An existing file is
    replaced only with ``overwrite`` or when ``ours(path)`` says dmcodec made it for this kind of output;
    ``overwrite=None``: the command has no ``--overwrite`` (the refusal does not offer it).
    """
    text = os.fspath(path)
    path = Path(path)
    check_name_lengths(path, option=option)
    refuse_inputs([path], inputs, option)
    if text.endswith(("/", os.sep)) or (path.is_dir() and not path.is_symlink()):
        kind = "is a folder" if path.is_dir() else "ends in a slash (a folder)"
        raise DmcodecError(f"{text}: {kind}, but this output is one file ({holds}); give {option} NAME{suffixes[0]}")
    if path.suffix.lower() not in suffixes:
        raise DmcodecError(f"{path}: this output holds {holds} and must end in {' / '.join(suffixes)}, not "
                           f"{path.suffix or 'no extension'!r}; give {option} NAME{suffixes[0]}")
    if os.path.lexists(path) and not overwrite and not (ours and ours(path)):
        hint = (f"{OVERWRITE_HINT} {option}" if overwrite is not None
                else f"this command does not replace it; choose another {option} or remove the file")
        raise DmcodecError(f"{path}: exists and was not written by dmcodec; {hint}")
    check_writable(path, option)
    return path


# -- folders ---------------------------------------------------------------------------------------

def check_folder_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                        option: str = "-o") -> Path:
    """Check a folder output before any work (what may be replaced inside it is each writer's business)."""
    path = Path(path)
    check_name_lengths(path, option=option)
    if path.exists() and not path.is_dir():
        raise DmcodecError(f"{path}: exists and is a file, not a folder; give another {option}")
    if not path.exists() and path.suffix.lower() in FILE_SUFFIXES:
        raise DmcodecError(f"{path}: this output is a folder but is named like a file ({path.suffix}); give "
                           f"{option} a folder name without that extension")
    refuse_inputs([path], inputs, option)
    check_writable(path, option)
    return path


def is_empty_folder(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def read_record(folder: Path, name: str, fmt: str) -> dict | None:
    """The record ``folder/name`` that dmcodec writes into a folder it fills, or None when absent / foreign."""
    try:
        data = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == fmt else None


def write_record(folder: Path, name: str, data: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / name, json.dumps(data, indent=2, sort_keys=True) + "\n")


# -- ids as paths ----------------------------------------------------------------------------------

def id_path(root: str | os.PathLike, name: str, suffix: str) -> Path:
    """``root/<name><suffix>``, refusing (:class:`BadId`) an id that would not stay a plain path inside ``root``.

    Refused: empty, absolute, a ``..`` / ``.`` / empty component, a NUL, a backslash, a component over
    the file system's name limit, or a path that leaves ``root`` through a link already inside it.
    """
    root = Path(root)
    if not isinstance(name, str) or not name:
        raise BadId(f"id {name!r}: empty; an id must be a relative path")
    for bad, why in (("\0", "a NUL character"), ("\\", "a backslash")):
        if bad in name:
            raise BadId(f"id {name!r}: contains {why}; it cannot be a file name")
    if name.startswith("/") or os.path.isabs(name):
        raise BadId(f"id {name!r}: absolute; an id must be a relative path inside the output folder")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BadId(f"id {name!r}: has an empty, '.' or '..' component; an id must be a plain relative path")
    limit = _name_max(root if root.is_dir() else _existing_ancestor(root))
    for part in parts[:-1] + [parts[-1] + suffix]:
        if len(os.fsencode(part)) > limit:
            raise BadId(f"id {name[:40]!r}...: a name of {len(os.fsencode(part))} bytes, longer than this file "
                        f"system allows ({limit})")
    target = root.joinpath(*parts[:-1], parts[-1] + suffix)
    inside = root.resolve()
    if not target.resolve().is_relative_to(inside):
        raise BadId(f"id {name!r}: {target} leads outside {root} (through a link); not written")
    return target


def write_error(exc: OSError) -> str:
    """A file system error while writing one item, as the item's reason."""
    if exc.errno == errno.ENAMETOOLONG:
        return f"{exc.filename}: name too long for this file system"
    return f"{exc.filename or 'output'}: cannot write ({exc.strerror or exc})"
