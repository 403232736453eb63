"""Helpers of the hostile-input suites: what a command may leave behind, and how a refusal must read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cli import run_cli


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under ``root`` (links not followed) -> (kind, content hash or link target)."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                state[rel] = ("dir", "")
            else:
                state[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def changes(before: dict, after: dict, allowed: tuple[str, ...] = ()) -> list[str]:
    """Entries added, removed or changed between two snapshots, except under the ``allowed`` prefixes."""
    keys = set(before) | set(after)
    changed = sorted(k for k in keys if before.get(k) != after.get(k))
    return [k for k in changed if not any(k == a or k.startswith(a.rstrip("/") + "/") for a in allowed)]


def assert_one_line_error(result, *needles: str, code: int = 2) -> None:
    """A refusal: status ``code``, nothing on stdout, one ``error:`` line on stderr naming every needle."""
    assert result.code == code, (result.code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    text = lines[0]
    for needle in needles:
        assert needle in text, (needle, result.stderr)


def refused(capsys, root: Path, args, *needles, allowed=()):
    """Run the CLI with ``args``; expect a one-line refusal naming ``needles`` and nothing changed under ``root``
    (except under the ``allowed`` prefixes)."""
    before = snapshot(root)
    result = run_cli(capsys, *args)
    assert_one_line_error(result, *needles)
    assert changes(before, snapshot(root), allowed) == []
    return result
