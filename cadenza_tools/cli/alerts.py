"""``cadenza alerts``: hanging runs and given-up slices the supervisor raised."""

from __future__ import annotations

from typing import Annotated

import typer

from cadenza_tools.cli.context import command, state
from cadenza_tools.cli.output import Column, emit, table

app = typer.Typer(help="Alerts raised by the supervisor.", no_args_is_help=True)
ALERT_COLUMNS: list[Column] = [
    ("created", "created"),
    ("reason", "reason"),
    ("job_id", "job_id"),
    ("ex_id", "ex_id"),
    ("slot", "slot"),
    ("detail", "detail"),
]


@command(app, "list")
def list_alerts(
    ctx: typer.Context,
    size: Annotated[int | None, typer.Option(min=1, help="At most this many.")] = None,
) -> None:
    """Alerts, newest first (GET /v1/alerts)."""
    cli = state(ctx)
    rows = cli.client.get("/v1/alerts", {"size": size})
    emit(cli.json_output, rows, lambda r: table(r, ALERT_COLUMNS, "alerts"))
