"""The ``dmcodec`` command line: a thin shell over the library. Each area registers its commands."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

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
        app()  # click itself handles usage errors, --help and exit codes
    except DmcodecError as exc:
        if state.debug:
            raise
        console_err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
