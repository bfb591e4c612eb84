"""``cadenza ex``: executions (Teraslice's /v1/ex routes) and the hanging-run repair."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from cadenza_tools.cli.columns import EX_COLUMNS, SLICE_COLUMNS
from cadenza_tools.cli.context import command, state
from cadenza_tools.cli.control import EX, add_control_commands
from cadenza_tools.cli.logs import printer, show_logs
from cadenza_tools.cli.options import From, Interval, Size, Sort
from cadenza_tools.cli.output import document, emit, table
from cadenza_tools.cli.watch import EXIT_INTERRUPTED
from cadenza_tools.cli.watch import watch as follow_ex
from chalicelib.domain.logs import LogLevel

app = typer.Typer(help="Executions: list, follow, stop, recover, repair.", no_args_is_help=True)
ExId = Annotated[str, typer.Argument(help="The execution's id (ex_id).")]


class Resolution(enum.StrEnum):
    complete = "complete"
    rerun = "rerun"


class SliceState(enum.StrEnum):
    pending = "pending"
    started = "started"
    completed = "completed"
    error = "error"


@command(app, "list")
def list_ex(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="Only this status (running, completed, failed, ...).")
    ] = None,
    deleted: Annotated[
        bool, typer.Option("--deleted", help="Executions of deleted jobs instead.")
    ] = False,
    start: From = None,
    size: Size = None,
    sort: Sort = None,
) -> None:
    """List executions (GET /v1/ex)."""
    cli = state(ctx)
    params = {"status": status, "deleted": deleted or None, "from": start, "size": size}
    rows = cli.client.get("/v1/ex", {**params, "sort": sort})
    emit(cli.json_output, rows, lambda r: table(r, EX_COLUMNS, "executions"))


@command(app, "get")
def get_ex(ctx: typer.Context, ex_id: ExId) -> None:
    """Show one execution (GET /v1/ex/{ex_id})."""
    cli = state(ctx)
    emit(cli.json_output, cli.client.get(f"/v1/ex/{ex_id}"), document)


@command(app, "watch")
def watch(ctx: typer.Context, ex_id: ExId, interval: Interval = 1.0) -> None:
    """Follow an execution to its end; exit 0 if it completed, 1 if not."""
    follow_ex(state(ctx), ex_id, interval)


add_control_commands(app, EX)


@command(app, "errors")
def errors(
    ctx: typer.Context,
    ex_id: Annotated[
        str | None, typer.Argument(help="One execution's errors; none: every execution's.")
    ] = None,
    start: From = None,
    size: Size = None,
    sort: Sort = None,
) -> None:
    """Failed slices (GET /v1/ex/{ex_id}/errors, or GET /v1/ex/errors)."""
    cli = state(ctx)
    path = f"/v1/ex/{ex_id}/errors" if ex_id else "/v1/ex/errors"
    rows = cli.client.get(path, {"from": start, "size": size, "sort": sort})
    emit(cli.json_output, rows, lambda r: table(r, SLICE_COLUMNS, "errors"))


@command(app, "slices")
def slices(
    ctx: typer.Context,
    ex_id: ExId,
    slice_state: Annotated[
        SliceState | None, typer.Option("--state", help="Only slices in this state.")
    ] = None,
    start: From = None,
    size: Size = None,
    sort: Sort = None,
) -> None:
    """An execution's slices (GET /v1/ex/{ex_id}/slices)."""
    cli = state(ctx)
    params = {"state": slice_state.value if slice_state else None, "from": start, "size": size}
    rows = cli.client.get(f"/v1/ex/{ex_id}/slices", {**params, "sort": sort})
    emit(cli.json_output, rows, lambda r: table(r, SLICE_COLUMNS, "slices"))


@command(app, "resolve")
def resolve(
    ctx: typer.Context,
    ex_id: ExId,
    action: Annotated[
        Resolution,
        typer.Argument(help="complete: mark it and its slices done; rerun: run its slot again."),
    ],
) -> None:
    """Repair a hanging execution (POST /v1/ex/{ex_id}/_resolve?action=)."""
    cli = state(ctx)
    answer = cli.client.post(f"/v1/ex/{ex_id}/_resolve", {"action": action.value})
    emit(cli.json_output, answer, document)


@command(app, "logs")
def logs(
    ctx: typer.Context,
    ex_id: ExId,
    slice_id: Annotated[
        str | None, typer.Option("--slice", help="Only this slice's lines (its slice_id, e.g. 3).")
    ] = None,
    level: Annotated[
        LogLevel | None, typer.Option(help="Only lines at this level or above.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Poll for new lines until the execution ends.")
    ] = False,
    interval: Interval = 1.0,
) -> None:
    """An execution's run log: what its ops printed and logged, and tracebacks (GET
    /v1/ex/{ex_id}/logs); with --follow, new lines as they come, until it ends."""
    cli = state(ctx)
    params = {"slice": slice_id, "level": level.value if level else None}
    print_line = printer(cli.json_output, lambda text: print(text, flush=True))
    try:
        show_logs(cli.client, ex_id, params, print_line, interval if follow else None)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
