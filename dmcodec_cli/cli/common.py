"""Shared CLI helpers: consoles, the global state, the one vocabulary of options, JSON output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from rich.console import Console

from ..atomic import write_text_atomic
from ..config import check_n_q as codebooks_to_keep
from ..outputs import check_file_output, read_record

#: Where output goes to a log or a pipe rather than a terminal, lines are this wide: tables and long
#: paths are not cut at rich's default of 80 columns.
LOG_WIDTH = 4096


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.width = LOG_WIDTH
    return console


console = _console()
console_err = _console(stderr=True)

MODEL_HELP = "Model: registered name, release directory, .pt / .safetensors checkpoint or Hugging Face id."
DEVICE_HELP = "auto, cpu or cuda[:N]."
JSON_HELP = "Print a machine-readable JSON summary on stdout (and nothing else there)."
JSON_FILE_HELP = "Also write the JSON summary to this file (.json); one dmcodec wrote is replaced."
SUMMARY_FORMAT = "dmcodec-summary"  #: the ``format`` field of a ``--json-file``: dmcodec may replace such a file


@dataclass
class _State:
    debug: bool = False


state = _State()


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (nothing else is printed there when --json is given)."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def check_json_file(path: Optional[Path], inputs: Iterable[Path] = (), overwrite: Optional[bool] = None) -> None:
    """Before the work: ``--json-file`` names a writable ``.json`` file that is no input and is new, one
    dmcodec wrote, or replaced with ``--overwrite`` (None: the command has no ``--overwrite``)."""
    if path is not None:
        check_file_output(path, (".json",), "a JSON summary", inputs=inputs, overwrite=overwrite,
                          ours=lambda p: read_record(p.parent, p.name, SUMMARY_FORMAT) is not None,
                          option="--json-file")


def report_json(summary: dict, json_out: bool, json_file: Optional[Path]) -> bool:
    """``--json-file``: the summary (with ``format``) written to the file; ``--json``: printed on stdout.
    True when stdout got the JSON, so that the caller prints nothing else there."""
    if json_file is not None:
        write_text_atomic(json_file, json.dumps({"format": SUMMARY_FORMAT, **summary}, indent=2) + "\n")
    if json_out:
        print_json(summary)
    return json_out


def check_n_q(n_q: Optional[int], available: int) -> Optional[int]:
    """``--n-q``: None (all codebooks) or 1..available."""
    return codebooks_to_keep(n_q, available, "--n-q")
