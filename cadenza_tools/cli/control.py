"""The commands that act on an execution, written once for both groups: ``cadenza jobs X
JOB_ID`` acts on the job's current execution, ``cadenza ex X EX_ID`` on that execution
(Teraslice serves each action under both /v1/jobs/{job_id} and /v1/ex/{ex_id})."""

# No `from __future__ import annotations`: typer reads the parameters' annotations, and the
# target's argument type is built per group below, so they must be objects, not strings.

from dataclasses import dataclass
from typing import Annotated

import typer

from cadenza_tools.cli.client import Params
from cadenza_tools.cli.columns import CONTROLLER_COLUMNS
from cadenza_tools.cli.context import command, state
from cadenza_tools.cli.options import (
    Add,
    Blocking,
    Cleanup,
    Follow,
    Interval,
    Remove,
    StopTimeout,
    Total,
)
from cadenza_tools.cli.output import document, emit, table
from cadenza_tools.cli.watch import answer_then_follow


@dataclass(frozen=True)
class Target:
    """What a group's commands act on."""

    group: str  # the API's path segment: jobs or ex
    metavar: str  # the argument's name in usage and errors
    help: str  # the argument's help
    what: str  # the execution acted on, in the commands' help
    recovered_with: str  # whose configuration a recovered execution runs


JOBS = Target(
    "jobs", "job_id", "The job's id.", "the job's current execution", "the job's current definition"
)
EX = Target("ex", "ex_id", "The execution's id (ex_id).", "an execution", "its own configuration")


def _post(ctx: typer.Context, path: str, params: Params | None = None) -> None:
    cli = state(ctx)
    emit(cli.json_output, cli.client.post(path, params), document)


def add_control_commands(app: typer.Typer, target: Target) -> None:
    """stop, pause, resume, recover, workers and controller, on `app`, for `target`."""
    TargetId = Annotated[str, typer.Argument(metavar=target.metavar, help=target.help)]
    base = f"/v1/{target.group}"
    key = "{" + target.metavar + "}"

    @command(app, "stop", help=f"Stop {target.what} (POST {base}/{key}/_stop).")
    def stop(
        ctx: typer.Context,
        target_id: TargetId,
        timeout: StopTimeout = None,
        blocking: Blocking = True,
    ) -> None:
        _post(ctx, f"{base}/{target_id}/_stop", {"timeout": timeout, "blocking": blocking})

    @command(app, "pause", help=f"Pause {target.what}: no slice is handed out (_pause).")
    def pause(ctx: typer.Context, target_id: TargetId) -> None:
        _post(ctx, f"{base}/{target_id}/_pause")

    @command(app, "resume", help=f"Resume {target.what}, paused (_resume).")
    def resume(ctx: typer.Context, target_id: TargetId) -> None:
        _post(ctx, f"{base}/{target_id}/_resume")

    @command(
        app,
        "recover",
        help=f"Recover {target.what}, ended, with {target.recovered_with} (_recover).",
    )
    def recover(
        ctx: typer.Context,
        target_id: TargetId,
        cleanup_type: Cleanup = None,
        follow: Follow = False,
        interval: Interval = 1.0,
    ) -> None:
        cli = state(ctx)
        params = {"cleanup_type": cleanup_type.value if cleanup_type else None}
        answer = cli.client.post(f"{base}/{target_id}/_recover", params)
        answer_then_follow(cli, answer, follow, interval)

    @command(app, "workers", help=f"Change the workers of {target.what} (_workers).")
    def workers(
        ctx: typer.Context,
        target_id: TargetId,
        add: Add = None,
        remove: Remove = None,
        total: Total = None,
    ) -> None:
        _post(ctx, f"{base}/{target_id}/_workers", {"add": add, "remove": remove, "total": total})

    @command(app, "controller", help=f"The live controller of {target.what} (GET .../controller).")
    def controller(ctx: typer.Context, target_id: TargetId) -> None:
        cli = state(ctx)
        rows = cli.client.get(f"{base}/{target_id}/controller")
        emit(cli.json_output, rows, lambda r: table(r, CONTROLLER_COLUMNS, "controllers"))
