"""The ``dmcodec`` command line: a thin shell over the library. Each area registers its commands."""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from ..errors import DmcodecError
from ..walk import printable
from . import codec, corpus, data, export, quality, training
from .common import console_err, state

app = typer.Typer(name="dmcodec", help="Speech tokenizer built on DM-Codec: audio <-> discrete codes.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    state.debug = debug


for _area in (codec, corpus, export, quality, data, training):
    _area.register(app)


INTERRUPTED = "interrupted (Ctrl-C)"


def _one_line(text: str) -> None:
    """``error: TEXT`` on stderr as one line: never wrapped by rich, names that are not UTF-8 escaped."""
    text = " ".join(printable(text).split())
    console_err.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True, crop=False)


def _os_error_line(exc: OSError) -> str:
    """``<filename>: <strerror>`` (both names of a rename or link), else the error's own text."""
    names = [str(name) if not isinstance(name, bytes) else os.fsdecode(name)
             for name in (exc.filename, exc.filename2) if name is not None]
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{' -> '.join(names)}: {reason}" if names else reason


def main() -> None:
    """Console entry point: every failure ends as one line on stderr.

    User errors (DmcodecError) and file-system errors (OSError: permission, missing folder, disk full, name
    too long, read-only file system) exit with status 2; any other exception is an internal error (status
    1) and Ctrl-C exits with 130. ``--debug`` shows the traceback instead.
    """
    try:
        app()  # click itself handles usage errors, --help and exit codes
    except SystemExit as exc:
        if exc.code == 130 and not state.debug:  # typer turns Ctrl-C into a silent exit 130
            _one_line(INTERRUPTED)
        raise
    except KeyboardInterrupt:
        if state.debug:
            raise
        _one_line(INTERRUPTED)
        sys.exit(130)
    except DmcodecError as exc:
        if state.debug:
            raise
        _one_line(str(exc))
        sys.exit(2)
    except OSError as exc:
        if state.debug:
            raise
        _one_line(_os_error_line(exc))
        sys.exit(2)
    except Exception as exc:  # the last line of defence: no traceback without --debug
        if state.debug:
            raise
        _one_line(f"internal error ({type(exc).__name__}: {exc}); run with --debug for the traceback")
        sys.exit(1)
