"""``cadenza localstack``: set LocalStack up here (host mode, no Docker) and run it
(:mod:`cadenza_tools.local.localstack`)."""

from __future__ import annotations

from typing import Annotated

import typer

from cadenza_tools.local import localstack as ls

app = typer.Typer(help="LocalStack on this machine, without Docker: install it and run it.")

PortOption = Annotated[
    int, typer.Option(min=1, envvar="LOCALSTACK_PORT", help="Its port (it binds 0.0.0.0).")
]


def _say(text: str) -> None:
    typer.echo(text, err=True)


@app.command("install")
def install() -> None:
    """Make its Python 3.13 venv and place DynamoDB Local, Java and the loader it wants."""
    try:
        typer.echo(ls.install(say=_say))
    except ls.LocalStackError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(1) from exc


@app.command("start")
def start(
    port: PortOption = ls.DEFAULT_PORT,
    deploy: Annotated[
        bool,
        typer.Option(
            "--deploy", help="Also the services `cadenza deploy` needs (CloudFormation, ...)."
        ),
    ] = False,
) -> None:
    """Install it if needed, start it and keep it in the foreground until Ctrl-C."""
    services = ls.DEPLOY_SERVICES if deploy else ls.SERVICES
    server = ls.LocalStackServer(port, services=services, say=_say)
    try:
        code = ls.run_foreground(server)
    except ls.LocalStackError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(1) from exc
    raise typer.Exit(code)
