"""The one exception type for problems a user can fix (bad file, bad option, missing model), and the one way a
file name is written as text (in messages, warnings and ids)."""

from __future__ import annotations

import os


class DmcodecError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


def printable(text: str | os.PathLike) -> str:
    """A file name as valid UTF-8 text: bytes that were not UTF-8 (surrogate escapes) become ``\\xNN``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")
