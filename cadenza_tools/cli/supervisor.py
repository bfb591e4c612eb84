"""``cadenza supervisor``: the scheduler admin API (state, halt, restart)."""

from __future__ import annotations

from typing import Annotated

import typer

from cadenza_tools.cli.context import command, state
from cadenza_tools.cli.output import document, emit

app = typer.Typer(help="The supervisor: state, halt, restart.", no_args_is_help=True)


@command(app, "state")
def supervisor_state(ctx: typer.Context) -> None:
    """RUNNING, HALTED or FINISHED (GET /api/supervisor/state)."""
    cli = state(ctx)
    emit(cli.json_output, cli.client.get("/api/supervisor/state"), document)


@command(app, "halt")
def halt(
    ctx: typer.Context,
    reason: Annotated[str | None, typer.Option(help="Why, kept with the state.")] = None,
) -> None:
    """Stop creating runs; runs going on finish (POST /api/supervisor/halt)."""
    cli = state(ctx)
    emit(cli.json_output, cli.client.post("/api/supervisor/halt", {"reason": reason}), document)


@command(app, "restart")
def restart(ctx: typer.Context) -> None:
    """Restart a halted supervisor (POST /api/supervisor/restart)."""
    cli = state(ctx)
    emit(cli.json_output, cli.client.post("/api/supervisor/restart"), document)
