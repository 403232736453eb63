"""Run the dmcodec CLI in this process (fast) or as a real subprocess (the shell path)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def __iter__(self):
        """``code, stdout, stderr = run_cli(...)``."""
        return iter((self.code, self.stdout, self.stderr))


def run_cli(capsys, *args) -> Result:
    """Call ``dmcodec ARGS`` through its console entry point, capturing output and the exit status."""
    from dmcodec_cli.cli import main

    capsys.readouterr()
    with mock.patch.object(sys, "argv", ["dmcodec", *map(str, args)]):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return Result(code, out.out, out.err)


def run_shell(*args, timeout: float = 300) -> Result:
    """``python -m dmcodec_cli ARGS`` in a fresh process, as a user would run it."""
    done = subprocess.run([sys.executable, "-m", "dmcodec_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    return Result(done.returncode, done.stdout, done.stderr)
