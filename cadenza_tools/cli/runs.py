"""``cadenza runs``: OpenSpecimen's scheduled-job runs (/scheduled-jobs/{jobId}/runs)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from cadenza_tools.cli.client import CliError
from cadenza_tools.cli.context import command, state
from cadenza_tools.cli.output import Column, console, document, emit, table

app = typer.Typer(help="Runs of scheduled jobs: run now, list, download.", no_args_is_help=True)
JobId = Annotated[str, typer.Argument(help="The scheduled job's id.")]
RunId = Annotated[str, typer.Argument(help="The run's id (its ex_id).")]
RUN_COLUMNS: list[Column] = [
    ("id", "id"),
    ("status", "status"),
    ("execution", "executionStatus"),
    ("run by", "runBy"),
    ("args", "rtArgs"),
    ("started", "startedAt"),
    ("finished", "finishedAt"),
    ("message", "message"),
]


@command(app, "create")
def create(
    ctx: typer.Context,
    job_id: JobId,
    args: Annotated[
        str | None, typer.Option("--args", help="Space separated arguments of the run.")
    ] = None,
) -> None:
    """Run a scheduled job now (POST /scheduled-jobs/{jobId}/runs)."""
    cli = state(ctx)
    body = {} if args is None else {"args": args}
    emit(cli.json_output, cli.client.post(f"/scheduled-jobs/{job_id}/runs", json=body), document)


@command(app, "list")
def list_runs(
    ctx: typer.Context,
    job_id: JobId,
    from_date: Annotated[
        str | None, typer.Option(help="Created at or after: 20220221 or 20220221T061500 (UTC).")
    ] = None,
    to_date: Annotated[str | None, typer.Option(help="Created at or before (same forms).")] = None,
    status: Annotated[
        str | None, typer.Option(help="IN_PROGRESS, SUCCEEDED or FAILED (SKIPPED, MISSED).")
    ] = None,
    max_results: Annotated[int | None, typer.Option(min=1, help="Page size (1..1000).")] = None,
    next_page: Annotated[
        str | None, typer.Option("--next", help="The next page's token (printed after a page).")
    ] = None,
) -> None:
    """A job's runs, newest first (GET /scheduled-jobs/{jobId}/runs)."""
    cli = state(ctx)
    params = {
        "fromDate": from_date,
        "toDate": to_date,
        "status": status,
        "maxResults": max_results,
        "next": next_page,
    }
    response = cli.client.request("GET", f"/scheduled-jobs/{job_id}/runs", params=params)
    emit(cli.json_output, response.json(), lambda r: table(r, RUN_COLUMNS, "runs"))
    token = response.headers.get("X-Next")
    if token:
        console(stderr=True).print(f"more runs: --next {token}")


@command(app, "get")
def get_run(ctx: typer.Context, job_id: JobId, run_id: RunId) -> None:
    """One run (GET /scheduled-jobs/{jobId}/runs/{runId})."""
    cli = state(ctx)
    emit(cli.json_output, cli.client.get(f"/scheduled-jobs/{job_id}/runs/{run_id}"), document)


SUFFIXES = {"text/csv": ".csv", "application/json": ".json"}


def named_by_type(output: Path, content_type: str, served_as: str | None) -> Path:
    """Where to write a download: into a directory, under the name the API gave it; else at
    `output` with the suffix of the content type (`-o result.json` of a CSV file writes
    `result.csv`)."""
    if output.is_dir():
        return output / (served_as or "result")
    suffix = SUFFIXES.get(content_type.split(";")[0].strip().lower())
    return output if suffix is None else output.with_suffix(suffix)


def _served_as(disposition: str | None) -> str | None:
    """The file name of a `Content-Disposition: attachment; filename="..."` header."""
    match = re.search(r'filename="([^"/\\]+)"', disposition or "")
    return match.group(1) if match else None


@command(app, "result-file")
def result_file(
    ctx: typer.Context,
    job_id: JobId,
    run_id: RunId,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write here instead of to stdout: a directory (the file keeps its name) or a "
            "file, whose suffix follows the content (.csv).",
        ),
    ] = None,
) -> None:
    """Download the CSV file a run wrote (GET .../runs/{runId}/result-file)."""
    cli = state(ctx)
    response = cli.client.request("GET", f"/scheduled-jobs/{job_id}/runs/{run_id}/result-file")
    if output is None:
        sys.stdout.buffer.write(response.content)
        sys.stdout.flush()
        return
    served_as = _served_as(response.headers.get("Content-Disposition"))
    target = named_by_type(output, response.headers.get("Content-Type", ""), served_as)
    try:
        target.write_bytes(response.content)
    except OSError as err:
        raise CliError(f"cannot write {target}: {err.strerror or err}") from err
    console(stderr=True).print(f"wrote {len(response.content)} bytes to {target}")
