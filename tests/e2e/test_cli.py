"""The `cadenza` CLI against a running local stack (one `cadenza dev --backend moto` per
module), driven through typer's CliRunner, and as a subprocess where the exit code of the
real process is the point."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cadenza_tools.cli.main import app
from cadenza_tools.local.dynamodb_local import free_port
from tests.e2e.test_local_stack import FAST, REPO, StackProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

runner = CliRunner()
JOB = {"name": "cli-e2e", "operations": [{"_op": "range", "end": 3}, {"_op": "noop"}]}
ECHO_JOB = {"name": "cli-echo", "operations": [{"_op": "noop"}, {"_op": "echo"}]}
CSV = {"_op": "csv_result"}
FAILING_JOB = {
    "name": "cli-failing",
    "operations": [{"_op": "range", "end": 3}, {"_op": "fail", "slices": [1]}],
    "max_retries": 0,
}
SLOW_JOB = {
    "name": "cli-slow",
    "operations": [{"_op": "range", "end": 15}, {"_op": "sleep", "seconds": 0.4}],
    "workers": 1,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    log = tmp_path_factory.mktemp("cli") / "stack.log"
    process = StackProcess("cli", ["--backend", "moto", *FAST], free_port(), log)
    process.start()
    yield process
    process.stop()


def cli(stack: StackProcess, *args: str, input: str | None = None) -> Result:
    env = {"CADENZA_URL": stack.url, "CADENZA_CREDENTIALS": str(stack.credentials)}
    return runner.invoke(app, list(args), env=env, input=input)


def cli_json(stack: StackProcess, *args: str, input: str | None = None) -> Any:
    result = cli(stack, "--json", *args, input=input)
    assert result.exit_code == 0, (args, result.output, stack.tail(20))
    return json.loads(result.stdout)


def cadenza(*args: str, credentials: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as its own process, for its real exit code and streams (signing with the
    users in `credentials`, when given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    if credentials is not None:
        env["CADENZA_CREDENTIALS"] = str(credentials)
    return subprocess.run(
        [sys.executable, "-m", "cadenza_tools.cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def submit(stack: StackProcess, body: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / f"{body['name']}.json"
    path.write_text(json.dumps(body))
    answer = cli_json(stack, "jobs", "submit", str(path))
    assert set(answer) == {"job_id"}, answer  # not started: only the job id
    return str(answer["job_id"])


@pytest.fixture(scope="module")
def finished(stack: StackProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A job submitted from a file, started with --follow, ended completed."""
    job_id = submit(stack, JOB, tmp_path_factory.mktemp("jobs"))
    result = cli(stack, "jobs", "start", job_id, "--follow", "--interval", "0.2")
    assert result.exit_code == 0, (result.output, stack.tail(20))
    ex_id = stack.get(f"/v1/jobs/{job_id}/ex").json()["ex_id"]
    assert f"{ex_id} completed: 3 processed, 0 failed of 3 slices" in result.stdout
    return {"job_id": job_id, "ex_id": ex_id}


def test_submit_start_follow_and_watch(stack: StackProcess, finished: dict[str, str]) -> None:
    watched = cli(stack, "ex", "watch", finished["ex_id"])
    assert watched.exit_code == 0, watched.output
    assert "completed: 3 processed" in watched.stdout
    ex = cli_json(stack, "ex", "get", finished["ex_id"])
    assert ex["_status"] == "completed"
    assert ex["_slicer_stats"]["processed"] == ex["_slicer_stats"]["slices_total"] == 3


def test_submit_from_stdin_with_start_and_follow(stack: StackProcess) -> None:
    result = cli(
        stack, "jobs", "submit", "--start", "-f", "--interval", "0.2", input=json.dumps(JOB)
    )
    assert result.exit_code == 0, result.output
    assert "completed: 3 processed, 0 failed of 3 slices" in result.stdout


def test_json_output_is_the_api_document(stack: StackProcess, finished: dict[str, str]) -> None:
    job_id = finished["job_id"]
    assert cli_json(stack, "jobs", "get", job_id) == stack.get(f"/v1/jobs/{job_id}").json()
    assert cli_json(stack, "jobs", "ex", job_id) == stack.get(f"/v1/ex/{finished['ex_id']}").json()
    table = cli(stack, "jobs", "get", job_id)
    assert table.exit_code == 0 and "cli-e2e" in table.stdout and "{" not in table.stdout[:20]


def test_a_bad_job_file_shows_the_api_field_error(stack: StackProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**JOB, "workers": 0}))
    result = cli(stack, "jobs", "submit", str(bad))
    assert result.exit_code == 1
    assert "error: invalid_input:" in result.stderr and "(HTTP 400)" in result.stderr
    assert "workers: " in result.stderr
    garbage = cli(stack, "jobs", "submit", "-", input="{not json")
    assert garbage.exit_code == 1
    assert "body: not valid JSON" in garbage.stderr
    missing = cli(stack, "jobs", "submit", str(tmp_path / "absent.json"))
    assert missing.exit_code == 1 and "cannot read" in missing.stderr


def test_unknown_ids_exit_not_found(stack: StackProcess) -> None:
    job = cadenza("--url", stack.url, "jobs", "get", "no-such-job", credentials=stack.credentials)
    assert job.returncode == 3, job.stderr
    assert "not_found" in job.stderr and job.stdout == ""
    ex = cli(stack, "ex", "watch", "no-such-ex")
    assert ex.exit_code == 3, ex.output


def test_an_illegal_transition_exits_conflict(
    stack: StackProcess, finished: dict[str, str]
) -> None:
    result = cli(stack, "jobs", "pause", finished["job_id"])
    assert result.exit_code == 4, result.output
    assert "conflict" in result.stderr and "current_state: completed" in result.stderr


def test_usage_errors_exit_2(stack: StackProcess) -> None:
    result = cli(stack, "ex", "resolve", "some-ex", "maybe")
    assert result.exit_code == 2 and "maybe" in result.stderr


def test_supervisor_halt_state_restart(stack: StackProcess) -> None:
    try:
        halted = cli_json(stack, "supervisor", "halt", "--reason", "cli e2e")
        assert (halted["state"], halted["reason"]) == ("HALTED", "cli e2e")
        assert cli_json(stack, "supervisor", "state")["state"] == "HALTED"
        shown = cli(stack, "supervisor", "state")
        assert shown.exit_code == 0 and "HALTED" in shown.stdout
    finally:
        restarted = cli_json(stack, "supervisor", "restart")
    assert restarted["state"] in ("RUNNING", "FINISHED")
    assert stack.get("/api/supervisor/state").json()["state"] == restarted["state"]


def test_runs_create_list_and_result_file(stack: StackProcess, tmp_path: Path) -> None:
    job_id = submit(stack, ECHO_JOB, tmp_path)
    run = cli_json(stack, "runs", "create", job_id, "--args", "a 'b c'")
    assert run["rtArgs"] == "a 'b c'" and run["status"] == "IN_PROGRESS"
    assert cli(stack, "ex", "watch", run["id"], "--interval", "0.2").exit_code == 0

    succeeded = cli_json(stack, "runs", "list", job_id, "--status", "SUCCEEDED")
    assert [(r["id"], r["status"], r["rtArgs"]) for r in succeeded] == [
        (run["id"], "SUCCEEDED", "a 'b c'")
    ]
    assert cli_json(stack, "runs", "list", job_id, "--status", "FAILED") == []
    assert cli_json(stack, "runs", "list", job_id, "--to-date", "20200101") == []
    assert cli_json(stack, "runs", "get", job_id, run["id"])["id"] == run["id"]
    bad_date = cli(stack, "runs", "list", job_id, "--from-date", "yesterday")
    assert bad_date.exit_code == 1 and "fromDate" in bad_date.stderr

    no_file = cli(stack, "runs", "result-file", job_id, run["id"])
    assert no_file.exit_code == 3 and "no_result_file" in no_file.stderr  # echo writes none
    assert cli_json(stack, "ex", "get", run["id"])["result"]["args"] == ["a", "b c"]

    csv_job = submit(stack, {**ECHO_JOB, "operations": [*ECHO_JOB["operations"], CSV]}, tmp_path)
    csv_run = cli_json(stack, "runs", "create", csv_job, "--args", "a 'b c'")
    assert cli(stack, "ex", "watch", csv_run["id"], "--interval", "0.2").exit_code == 0
    saved = cli(
        stack, "runs", "result-file", csv_job, csv_run["id"], "-o", str(tmp_path / "r.json")
    )
    assert saved.exit_code == 0, saved.output
    out = tmp_path / "r.csv"  # named by its content
    assert out.read_text().splitlines() == ["request,args", '{},"[""a"",""b c""]"']
    printed = cli(stack, "runs", "result-file", csv_job, csv_run["id"])
    assert printed.stdout_bytes == out.read_bytes()


def test_a_failed_execution_exits_non_zero_and_its_errors_are_listed(
    stack: StackProcess, tmp_path: Path
) -> None:
    job_id = submit(stack, FAILING_JOB, tmp_path)
    result = cli(stack, "jobs", "start", job_id, "--follow", "--interval", "0.2")
    assert result.exit_code == 1, result.output
    assert "failed: 2 processed, 1 failed of 3 slices" in result.stdout
    ex_id = stack.get(f"/v1/jobs/{job_id}/ex").json()["ex_id"]
    errors = cli_json(stack, "jobs", "errors", job_id)
    assert [(e["ex_id"], e["slicer_order"], e["state"]) for e in errors] == [(ex_id, 1, "error")]
    assert cli_json(stack, "ex", "errors", ex_id) == errors
    table = cli(stack, "ex", "slices", ex_id, "--state", "error")
    assert table.exit_code == 0 and errors[0]["slice_id"] in table.stdout


def test_execution_controls(stack: StackProcess, tmp_path: Path) -> None:
    job_id = submit(stack, SLOW_JOB, tmp_path)
    ex_id = cli_json(stack, "jobs", "start", job_id)["ex_id"]
    wait_for(
        lambda: True if stack.get(f"/v1/ex/{ex_id}").json()["_status"] == "running" else None,
        20,
        "the execution to run",
        0.1,
    )
    assert cli_json(stack, "ex", "pause", ex_id) == {"status": "paused"}

    controllers = cli_json(stack, "ex", "controller", ex_id)
    assert [c["ex_id"] for c in controllers] == [ex_id]
    # the same controller through its job; its counters may move between the two reads (a
    # slice handed out before the pause still finishes)
    ident = ("ex_id", "job_id", "name", "_status", "started")
    by_job = cli_json(stack, "jobs", "controller", job_id)
    assert [{k: c[k] for k in ident} for c in by_job] == [
        {k: c[k] for k in ident} for c in controllers
    ]
    assert ex_id in cli(stack, "cluster", "controllers").stdout
    workers = cli(stack, "ex", "workers", ex_id, "--total", "3")
    assert workers.exit_code == 0, workers.output
    assert cli_json(stack, "ex", "get", ex_id)["workers"] == 3
    assert cli_json(stack, "ex", "resume", ex_id) == {"status": "running"}
    stopped = cli_json(stack, "ex", "stop", ex_id, "--timeout", "10")
    assert stopped["status"] == "stopped"
    watched = cli(stack, "ex", "watch", ex_id)
    assert watched.exit_code == 1 and "stopped" in watched.stdout

    recovered = cli(stack, "ex", "recover", ex_id, "--follow", "--interval", "0.2")
    assert recovered.exit_code == 0, recovered.output
    assert "completed" in recovered.stdout
    again = cli_json(stack, "jobs", "ex", job_id)
    assert again["ex_id"] != ex_id and again["recovered_from"] == ex_id
    resolved = cli_json(stack, "ex", "resolve", again["ex_id"], "complete")
    assert resolved == {"status": "completed", "ex_id": again["ex_id"]}


def test_schedule_states(stack: StackProcess, tmp_path: Path) -> None:
    job_id = submit(stack, {**JOB, "name": "cli-cron", "schedule": {"cron": "0 0 1 1 *"}}, tmp_path)
    assert cli_json(stack, "jobs", "schedule", job_id)["schedule_state"] == "SCHEDULED"
    assert cli_json(stack, "jobs", "suspend", job_id)["schedule_state"] == "SUSPENDED"
    assert cli_json(stack, "jobs", "expire", job_id)["schedule_state"] == "EXPIRED"
    assert cli(stack, "jobs", "schedule", job_id).exit_code == 4


def test_alerts_and_system_info(stack: StackProcess) -> None:
    assert isinstance(cli_json(stack, "alerts", "list", "--size", "5"), list)
    assert cli_json(stack, "cluster", "info")["clustering_type"] == "serverless"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    proc = cadenza("--url", url, "jobs", "get", "x")
    assert proc.returncode == 6
    assert f"cannot connect to the Cadenza API at {url}" in proc.stderr


# ---- routes other branches add: GET /v1/jobs, ?ex=, PUT/DELETE, _active/_inactive,
# GET /v1/ex, /v1/ex/errors, /v1/cluster/state and /stats, /v1/assets ----


def test_list_shows_the_job(stack: StackProcess, finished: dict[str, str]) -> None:
    listed = cli(stack, "jobs", "list", "--size", "100")
    assert listed.exit_code == 0, listed.output
    assert finished["job_id"] in listed.stdout
    jobs = cli_json(stack, "jobs", "list", "--size", "100", "--sort", "_created:desc")
    assert finished["job_id"] in [j["job_id"] for j in jobs]


def test_jobs_update_activity_and_delete(stack: StackProcess, tmp_path: Path) -> None:
    job_id = submit(stack, {**JOB, "name": "cli-update"}, tmp_path)
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({**JOB, "name": "cli-updated", "workers": 2}))
    updated = cli_json(stack, "jobs", "update", job_id, str(changed))
    assert (updated["job_id"], updated["name"], updated["workers"]) == (job_id, "cli-updated", 2)
    assert cli_json(stack, "jobs", "inactive", job_id)["active"] is False
    inactive = cli_json(stack, "jobs", "list", "--inactive")
    assert job_id in [j["job_id"] for j in inactive]
    assert cli_json(stack, "jobs", "active", job_id)["active"] is True
    deleted = cli_json(stack, "jobs", "delete", job_id)
    assert deleted["_deleted"] is True and deleted["active"] is False and deleted["_deleted_on"]
    assert job_id in [j["job_id"] for j in cli_json(stack, "jobs", "list", "--deleted")]
    assert job_id not in [j["job_id"] for j in cli_json(stack, "jobs", "list")]


def test_job_with_its_execution_fields(stack: StackProcess, finished: dict[str, str]) -> None:
    job = cli_json(stack, "jobs", "get", finished["job_id"], "--ex", "_status,ex_id")
    assert job["ex"] == {"_status": "completed", "ex_id": finished["ex_id"]}


def test_ex_listing_and_cluster(stack: StackProcess, finished: dict[str, str]) -> None:
    completed = cli_json(stack, "ex", "list", "--status", "completed", "--size", "100")
    assert finished["ex_id"] in [e["ex_id"] for e in completed]
    assert all(e["_status"] == "completed" for e in completed)
    table = cli(stack, "ex", "list", "--size", "100")
    assert table.exit_code == 0 and finished["ex_id"] in table.stdout
    assert isinstance(cli_json(stack, "ex", "errors"), list)
    assert isinstance(cli_json(stack, "cluster", "state"), dict)
    stats = cli_json(stack, "cluster", "stats")
    assert {"controllers", "slicer"} <= set(stats)
    metrics = cli(stack, "cluster", "stats", "--openmetrics")
    assert metrics.exit_code == 0 and "# TYPE" in metrics.stdout


def test_assets_upload_list_delete(stack: StackProcess, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("asset.json", json.dumps({"name": "cli-asset", "version": "1.0.0"}))
    path = tmp_path / "asset.zip"
    path.write_bytes(buffer.getvalue())
    asset_id = cli_json(stack, "assets", "upload", str(path), "--blocking")["_id"]
    listed = cli_json(stack, "assets", "list")
    assert {"id": asset_id, "name": "cli-asset", "version": "1.0.0"}.items() <= next(
        a for a in listed if a["id"] == asset_id
    ).items()
    assert cli_json(stack, "assets", "delete", asset_id) == {"_id": asset_id}
    assert asset_id not in [a["id"] for a in cli_json(stack, "assets", "list")]
