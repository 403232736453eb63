"""The ``dmcodec`` command line: a thin shell over the library. Each area registers its commands."""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from .. import __version__
from ..errors import DmcodecError, printable
from . import codec, corpus, data, export, quality, training
from .common import console, console_err, state


def tidy_help(command):
    """Help without stray metavars (on the click command typer built): a flag, --help included, shows no
    ``<bool>`` value; an argument shows its name in capitals."""
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)
    help_option = command.get_help_option(command.context_class(command))  # made once, then cached
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.param_type_name == "argument" and param.metavar is None:
            param.metavar = param.name.upper()
    return command


class _TidyGroup(typer.core.TyperGroup):
    """The ``dmcodec`` group: its help is tidied (``tidy_help``) once all commands are in, before it runs."""

    def main(self, *args, **kwargs):
        tidy_help(self)
        return super().main(*args, **kwargs)


app = typer.Typer(name="dmcodec", cls=_TidyGroup, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, help="Speech tokenizer built on DM-Codec: audio <-> discrete codes.")


def _print_version(asked: bool) -> None:
    if asked:
        console.print(f"dmcodec {__version__}")
        raise typer.Exit()


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
             version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
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
