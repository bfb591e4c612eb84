"""Following an execution to its end: a progress bar of its slices, polled over the API."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
)

from cadenza_tools.cli.client import EXIT_FAILED, Client
from cadenza_tools.cli.context import Cli
from cadenza_tools.cli.output import console, document, emit, print_json
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus

SUCCESS = str(ExStatus.completed)
EXIT_INTERRUPTED = 130  # as a shell reports a command ended by SIGINT
TERMINAL = frozenset(str(s) for s in TERMINAL_EX)  # the API's statuses, the domain's words


def _counts(ex: dict[str, Any]) -> tuple[int, int, int]:
    stats = ex.get("_slicer_stats") or {}
    return (
        int(stats.get("processed") or 0),
        int(stats.get("failed") or 0),
        int(stats.get("slices_total") or 0),
    )


def elapsed(ex: dict[str, Any], now: float) -> str:
    """How long the execution has run: from its start to its end, or to `now`."""
    started = _epoch(ex.get("started_at"))
    if started is None:
        return "-:--:--"
    ended = _epoch(ex.get("finished_at"))
    seconds = int(max(0.0, (ended if ended is not None else now) - started))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _epoch(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def follow(client: Client, ex_id: str, interval: float = 1.0, show: bool = True) -> dict[str, Any]:
    """Poll GET /v1/ex/{ex_id} until its status is terminal; the last document. The time
    shown is the execution's own, from its start."""
    con = console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.fields[status]:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TextColumn("[yellow]{task.fields[elapsed]}"),
        console=con,
        disable=not show,
    )
    with progress:
        task = progress.add_task(ex_id, total=None, status="pending", failed=0, elapsed="")
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
                elapsed=elapsed(ex, time.time()),
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
    """Follow an execution, print how it ended; exit non-zero unless it completed. Ctrl-C
    stops following (the execution goes on) and says how to follow it again."""
    try:
        ex = follow(cli.client, ex_id, interval, show=not cli.json_output)
    except KeyboardInterrupt:
        console(stderr=True).print(
            f"stopped following {ex_id}; it goes on. Follow it again: cadenza ex watch {ex_id}"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
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
