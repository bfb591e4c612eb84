"""The ``cadenza`` command line: one Typer app, each command group in its own module."""

from __future__ import annotations

import typer

from chalicelib.cli.dev import dev

app = typer.Typer(
    name="cadenza",
    help="Cadenza: a job scheduler on AWS serverless parts.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Cadenza: a job scheduler on AWS serverless parts."""


app.command("dev")(dev)


def main() -> None:
    """Console-script entry point (``cadenza``)."""
    app()


if __name__ == "__main__":
    main()
