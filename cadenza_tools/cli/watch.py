"""Following an execution to its end: a progress bar of its slices, polled over the API."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from cadenza_tools.cli.client import EXIT_FAILED, Client
from cadenza_tools.cli.context import Cli
from cadenza_tools.cli.output import console, document, emit, print_json
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus

SUCCESS = str(ExStatus.completed)
TERMINAL = frozenset(str(s) for s in TERMINAL_EX)  # the API's statuses, the domain's words


def _counts(ex: dict[str, Any]) -> tuple[int, int, int]:
    stats = ex.get("_slicer_stats") or {}
    return (
        int(stats.get("processed") or 0),
        int(stats.get("failed") or 0),
        int(stats.get("slices_total") or 0),
    )


def follow(client: Client, ex_id: str, interval: float = 1.0, show: bool = True) -> dict[str, Any]:
    """Poll GET /v1/ex/{ex_id} until its status is terminal; the last document."""
    con = console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.fields[status]:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        console=con,
        disable=not show,
    )
    with progress:
        task = progress.add_task(ex_id, total=None, status="pending", failed=0)
        while True:
            ex: dict[str, Any] = client.get(f"/v1/ex/{ex_id}")
            processed, failed, total = _counts(ex)
            status = str(ex.get("_status"))
            progress.update(
                task,
                total=total or None,
                completed=processed + failed,
                status=status,
                failed=failed,
            )
            if status in TERMINAL:
                return ex
            time.sleep(interval)


def outcome(ex: dict[str, Any]) -> tuple[int, str]:
    """Exit code and a one-line summary of a finished execution."""
    processed, failed, total = _counts(ex)
    status = str(ex.get("_status"))
    line = f"{ex.get('ex_id')} {status}: {processed} processed, {failed} failed of {total} slices"
    if ex.get("_failureReason"):
        line += f" ({ex['_failureReason']})"
    return (0 if status == SUCCESS else EXIT_FAILED), line


def watch(cli: Cli, ex_id: str, interval: float) -> None:
    """Follow an execution, print how it ended; exit non-zero unless it completed."""
    ex = follow(cli.client, ex_id, interval, show=not cli.json_output)
    code, line = outcome(ex)
    if cli.json_output:
        print_json(ex)
    else:
        console().print(escape(line))
    if code:
        raise typer.Exit(code)


def answer_then_follow(cli: Cli, answer: Any, follow_it: bool, interval: float) -> None:
    """Print a command's answer; with `follow_it`, then follow the execution it names (with
    --json only the final document is printed)."""
    if not (follow_it and cli.json_output):
        emit(cli.json_output, answer, document)
    if follow_it:
        watch(cli, str(answer["ex_id"]), interval)
