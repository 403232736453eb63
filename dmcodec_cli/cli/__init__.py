"""The ``dmcodec`` command line: a thin shell over the library. Each area registers its commands."""

from __future__ import annotations

import sys

import typer

from ..errors import DmcodecError
from . import codec, corpus, data, quality, training
from .common import console_err, state

app = typer.Typer(name="dmcodec", help="Speech tokenizer built on DM-Codec: audio <-> discrete codes.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    state.debug = debug


for _area in (codec, corpus, quality, data, training):
    _area.register(app)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 2."""
    try:
        app(standalone_mode=False)
    except DmcodecError as exc:
        if state.debug:
            raise
        console_err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console_err.print("interrupted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
