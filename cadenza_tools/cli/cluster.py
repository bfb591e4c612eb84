"""``cadenza cluster``: the cluster's state, stats and live execution controllers."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cadenza_tools.cli.columns import CONTROLLER_COLUMNS
from cadenza_tools.cli.context import command, state
from cadenza_tools.cli.output import document, emit, table

app = typer.Typer(help="The cluster: state, stats, controllers.", no_args_is_help=True)
OPENMETRICS = "application/openmetrics-text"


@command(app, "info")
def info(ctx: typer.Context) -> None:
    """System information (GET /v1)."""
    cli = state(ctx)
    emit(cli.json_output, cli.client.get("/v1"), document)


@command(app, "state")
def cluster_state(ctx: typer.Context) -> None:
    """The supervisor and the active workers (GET /v1/cluster/state)."""
    cli = state(ctx)
    emit(cli.json_output, cli.client.get("/v1/cluster/state"), document)


@command(app, "stats")
def stats(
    ctx: typer.Context,
    openmetrics: Annotated[
        bool, typer.Option("--openmetrics", help="The OpenMetrics (Prometheus) text instead.")
    ] = False,
) -> None:
    """Slice and worker counters (GET /v1/cluster/stats)."""
    cli = state(ctx)
    if openmetrics:
        response = cli.client.request("GET", "/v1/cluster/stats", headers={"Accept": OPENMETRICS})
        sys.stdout.write(response.text)
        sys.stdout.flush()
        return
    emit(cli.json_output, cli.client.get("/v1/cluster/stats"), document)


@command(app, "controllers")
def controllers(ctx: typer.Context) -> None:
    """Every live execution controller (GET /v1/cluster/controllers)."""
    cli = state(ctx)
    rows = cli.client.get("/v1/cluster/controllers")
    emit(cli.json_output, rows, lambda r: table(r, CONTROLLER_COLUMNS, "controllers"))
