"""``cadenza jobs``: Teraslice's /v1/jobs routes and Lens' schedule states."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cadenza_tools.cli.client import CliError
from cadenza_tools.cli.columns import JOB_COLUMNS, SLICE_COLUMNS
from cadenza_tools.cli.context import command, state
from cadenza_tools.cli.control import JOBS, add_control_commands
from cadenza_tools.cli.options import Follow, From, Interval, Size, Sort
from cadenza_tools.cli.output import document, emit, table
from cadenza_tools.cli.watch import answer_then_follow

app = typer.Typer(help="Jobs: submit, list, start, stop, schedule, delete.", no_args_is_help=True)
JobId = Annotated[str, typer.Argument(help="The job's id.")]
JobFile = Annotated[
    Path | None,
    typer.Argument(help="The job's JSON document; '-' or none reads standard input."),
]
ExFields = Annotated[
    str | None,
    typer.Option("--ex", help="Add the current execution: these fields (comma separated; '' all)."),
]


def read_body(path: Path | None) -> bytes:
    """The job document's bytes, unparsed: the API validates it and names bad fields."""
    if path is None or str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror or err}") from err


def _send(ctx: typer.Context, method: str, path: str, body: bytes, params: dict[str, Any]) -> Any:
    headers = {"Content-Type": "application/json"}
    return state(ctx).client.call(method, path, params=params, data=body, headers=headers)


def _job(ctx: typer.Context, data: Any) -> None:
    emit(state(ctx).json_output, data, document)


@command(app, "list")
def list_jobs(
    ctx: typer.Context,
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="Only active, or only inactive, jobs."),
    ] = None,
    deleted: Annotated[
        bool, typer.Option("--deleted", help="Deleted jobs instead of the others.")
    ] = False,
    start: From = None,
    size: Size = None,
    sort: Sort = None,
    ex: ExFields = None,
) -> None:
    """List jobs (GET /v1/jobs)."""
    cli = state(ctx)
    params = {"active": active, "deleted": deleted or None, "from": start, "size": size}
    jobs = cli.client.get("/v1/jobs", {**params, "sort": sort, "ex": ex})
    emit(cli.json_output, jobs, lambda rows: table(rows, JOB_COLUMNS, "jobs"))


@command(app, "get")
def get_job(ctx: typer.Context, job_id: JobId, ex: ExFields = None) -> None:
    """Show one job (GET /v1/jobs/{id}), with --ex its current execution's fields."""
    _job(ctx, state(ctx).client.get(f"/v1/jobs/{job_id}", {"ex": ex}))


@command(app, "submit")
def submit(
    ctx: typer.Context,
    path: JobFile = None,
    start: Annotated[bool, typer.Option("--start", help="Start an execution now.")] = False,
    follow: Follow = False,
    interval: Interval = 1.0,
) -> None:
    """Submit a job (POST /v1/jobs) from a JSON file or standard input."""
    cli = state(ctx)
    if follow and not start:
        raise typer.BadParameter("--follow needs --start", param_hint="--follow")
    answer = _send(ctx, "POST", "/v1/jobs", read_body(path), {"start": start})
    following = follow and isinstance(answer, dict) and bool(answer.get("ex_id"))
    answer_then_follow(cli, answer, following, interval)


@command(app, "update")
def update(ctx: typer.Context, job_id: JobId, path: JobFile = None) -> None:
    """Replace a job's definition (PUT /v1/jobs/{id}), validated like a submit."""
    _job(ctx, _send(ctx, "PUT", f"/v1/jobs/{job_id}", read_body(path), {}))


@command(app, "delete")
def delete(ctx: typer.Context, job_id: JobId) -> None:
    """Delete a job whose execution has ended (DELETE /v1/jobs/{id})."""
    _job(ctx, state(ctx).client.call("DELETE", f"/v1/jobs/{job_id}"))


@command(app, "start")
def start(
    ctx: typer.Context, job_id: JobId, follow: Follow = False, interval: Interval = 1.0
) -> None:
    """Start a new execution of a job (POST /v1/jobs/{id}/_start)."""
    cli = state(ctx)
    answer = cli.client.post(f"/v1/jobs/{job_id}/_start")
    answer_then_follow(cli, answer, follow, interval)


def _action(name: str, route: str, doc: str) -> None:
    def run(ctx: typer.Context, job_id: JobId) -> None:
        _job(ctx, state(ctx).client.post(f"/v1/jobs/{job_id}/{route}"))

    run.__doc__ = doc
    run.__name__ = f"job_{name}"
    command(app, name)(run)


_action("active", "_active", "Mark the job active (_active).")
_action("inactive", "_inactive", "Mark the job inactive (_inactive).")
_action("schedule", "_schedule", "Schedule the job: its schedule fires (_schedule).")
_action("suspend", "_suspend", "Suspend the job's schedule (_suspend).")
_action("expire", "_expire", "Expire the job's schedule for good (_expire).")


@command(app, "errors")
def errors(
    ctx: typer.Context, job_id: JobId, start: From = None, size: Size = None, sort: Sort = None
) -> None:
    """Failed slices of all the job's executions (GET /v1/jobs/{id}/errors)."""
    cli = state(ctx)
    rows = cli.client.get(f"/v1/jobs/{job_id}/errors", {"from": start, "size": size, "sort": sort})
    emit(cli.json_output, rows, lambda r: table(r, SLICE_COLUMNS, "errors"))


add_control_commands(app, JOBS)


@command(app, "ex")
def current_ex(ctx: typer.Context, job_id: JobId) -> None:
    """The job's current or latest execution (GET /v1/jobs/{id}/ex)."""
    _job(ctx, state(ctx).client.get(f"/v1/jobs/{job_id}/ex"))
