"""``cadenza secrets``: the local stack's secrets, which jobs name by reference
(`{{resolve:ssm:NAME}}`). No API call: they are kept beside the stack's credentials file and
put into its moto, which serves SSM and Secrets Manager as AWS would. On AWS, create them with
`aws ssm put-parameter` or `aws secretsmanager create-secret` (docs/api.md)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cadenza_tools.cli.output import Column, table
from cadenza_tools.local.secrets import SERVICES, LocalSecret, LocalSecrets, put_into
from chalicelib.config import Settings

app = typer.Typer(help="Secrets of the local stack (cadenza dev) that jobs name by reference.")
COLUMNS: list[Column] = [("service", "service"), ("name", "name"), ("reference", "reference")]


@app.command("put")
def put(
    name: Annotated[str, typer.Argument(help="The name, under the stage's prefix: /cadenza/dev/…")],
    service: Annotated[
        str, typer.Option(help="Where it is kept: ssm (a SecureString) or secretsmanager.")
    ] = "ssm",
    value: Annotated[
        str | None,
        typer.Option(help="The value (default: read from standard input, or asked for)."),
    ] = None,
) -> None:
    """Create or replace a secret; print the reference a job uses to name it."""
    if service not in SERVICES:
        typer.echo(f"error: --service is one of {', '.join(SERVICES)}", err=True)
        raise typer.Exit(2)
    if value is None:
        value = (
            typer.prompt("value", hide_input=True)
            if sys.stdin.isatty()
            else sys.stdin.read().rstrip("\n")
        )
    prefix = Settings.from_env().secrets_prefix  # the local stack's, from the same variables
    if not name.startswith(prefix):
        typer.echo(f"warning: jobs of the local stack name only secrets under {prefix}", err=True)
    secret = LocalSecret(service, name, value)
    secrets = LocalSecrets.default()
    secrets.put(secret)
    running = secrets.running_endpoint()
    if running is not None:
        try:
            put_into(*running, [secret])
        except Exception as exc:  # a stack that died without removing its file
            typer.echo(f"kept; the running stack did not take it ({exc})", err=True)
    typer.echo(secret.reference)


@app.command("list")
def list_secrets() -> None:
    """The kept secrets' names and references (never their values)."""
    secrets = LocalSecrets.default()
    rows = [{"service": s.service, "name": s.name, "reference": s.reference} for s in secrets.all()]
    table(rows, COLUMNS, f"secrets ({secrets.path})")
