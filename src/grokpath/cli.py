"""`grokpath`: the tools people run by hand, built by typer from the library functions themselves.

Workflow steps do not go through here: each rule calls its library function through
``grokpath.step``. A command's options are its function's parameters; what the function
returns is printed, one ``key<TAB>value`` line per item.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from grokpath.standin.data import write_standin_data
from grokpath.standin.hub import build_standin_repo, serve
from grokpath.standin.real_rows import fetch_real_rows
from grokpath.step import run_logged, setup_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__.splitlines()[0])
standin_hub = typer.Typer(no_args_is_help=True, help="A local stand-in of the hub (HF_ENDPOINT) for rehearsing the real study.")
app.add_typer(standin_hub, name="standin-hub")


@app.callback()
def options(log: Annotated[Path | None, typer.Option(help="also append the log to this file")] = None) -> None:
    setup_logging(log)


def command(group: typer.Typer, name: str, fn: Callable) -> None:
    """Register ``fn`` as ``name``: its signature gives the options, grokpath's exit policy its status."""

    @functools.wraps(fn)
    def run(**kwargs):
        returned: dict = {}
        status = run_logged(lambda: returned.update(fn(**kwargs) or {}), name)
        for key, value in returned.items():
            typer.echo(f"{key}\t{value}")
        raise typer.Exit(status)

    group.command(name)(run)


command(app, "standin-data", write_standin_data)
command(app, "real-rows", fetch_real_rows)
command(standin_hub, "build", build_standin_repo)
command(standin_hub, "serve", serve)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (2 for a usage error, as click does)."""
    try:
        app(args=argv, prog_name="grokpath")
    except SystemExit as done:
        return int(done.code or 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
