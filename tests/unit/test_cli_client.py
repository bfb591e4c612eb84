"""The CLI's HTTP client: error bodies to exceptions and exit codes, query encoding, and
how commands report them (fake HTTP with `responses`; no stack)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import responses
from typer.testing import CliRunner

from cadenza_tools.cli.client import (
    EXIT_CONFLICT,
    EXIT_CONNECTION,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_SERVER,
    ApiError,
    Client,
    ConflictError,
    ConnectionFailed,
    NotFoundError,
    ServerError,
)
from cadenza_tools.cli.main import app

URL = "http://cadenza.test"
runner = CliRunner()


def _raises(method: str, path: str, status: int, body: object) -> ApiError:
    with responses.RequestsMock() as rsps:
        if isinstance(body, str):
            rsps.add(method, f"{URL}{path}", body=body, status=status)
        else:
            rsps.add(method, f"{URL}{path}", json=body, status=status)
        with pytest.raises(ApiError) as info:
            Client(URL).call(method, path)
    return info.value


def test_not_found_maps_to_its_exit_code_with_the_api_message() -> None:
    err = _raises("GET", "/v1/jobs/x", 404, {"error": "not_found", "message": "job x not found"})
    assert isinstance(err, NotFoundError) and err.exit_code == EXIT_NOT_FOUND == 3
    assert err.message == "not_found: job x not found (HTTP 404)"


def test_conflict_keeps_the_extra_fields_of_the_body() -> None:
    body = {
        "error": "conflict",
        "message": "cannot pause",
        "current_state": "completed",
        "ex_id": "e1",
    }
    err = _raises("POST", "/v1/ex/e1/_pause", 409, body)
    assert isinstance(err, ConflictError) and err.exit_code == EXIT_CONFLICT == 4
    assert err.details == ["current_state: completed", "ex_id: e1"]


def test_invalid_input_lists_each_field_and_reason() -> None:
    body = {
        "error": "invalid_input",
        "message": "2 problems",
        "errors": [
            {"field": "workers", "reason": "must be >= 1"},
            {"field": "operations.0._op", "reason": "unknown op"},
        ],
    }
    err = _raises("POST", "/v1/jobs", 400, body)
    assert type(err) is ApiError and err.exit_code == EXIT_FAILED == 1
    assert err.details == ["workers: must be >= 1", "operations.0._op: unknown op"]
    assert err.body == body


def test_a_field_error_equal_to_the_message_is_not_repeated() -> None:
    body = {
        "error": "invalid_input",
        "message": "size: at most 10000",
        "errors": [{"field": "size", "reason": "at most 10000"}],
    }
    err = _raises("GET", "/v1/ex", 400, body)
    assert err.details == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_without_json_keep_the_text(status: int) -> None:
    err = _raises("GET", "/v1", status, "upstream exploded")
    assert isinstance(err, ServerError) and err.exit_code == EXIT_SERVER == 5
    assert err.message == f"HTTP {status}: upstream exploded"


def test_an_unknown_route_answered_with_missing_token_is_not_found() -> None:
    err = _raises("GET", "/v1/nowhere", 403, {"message": "Missing Authentication Token"})
    assert isinstance(err, NotFoundError)
    assert "no route GET /v1/nowhere" in err.message


def test_a_real_403_stays_a_plain_api_error() -> None:
    err = _raises("GET", "/v1", 403, {"error": "forbidden", "message": "no"})
    assert type(err) is ApiError and err.exit_code == EXIT_FAILED


def test_query_parameters_drop_none_and_spell_booleans() -> None:
    with responses.RequestsMock() as rsps:
        rsps.add("GET", f"{URL}/v1/jobs", json=[])
        Client(URL + "/").get(
            "/v1/jobs", {"active": False, "deleted": None, "size": 5, "timeout": 2.0}
        )
        sent = rsps.calls[0].request.url
    assert sent == f"{URL}/v1/jobs?active=false&size=5&timeout=2"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(ConnectionFailed) as info:
        Client(url, timeout=2).get("/v1")
    assert info.value.exit_code == EXIT_CONNECTION == 6
    assert info.value.message == f"cannot connect to the Cadenza API at {url}"
    assert "connection refused" in info.value.details[0]


def test_a_timeout_says_how_long_it_waited() -> None:
    with responses.RequestsMock() as rsps:
        rsps.add("GET", f"{URL}/v1", body=requests.exceptions.ReadTimeout("slow"))
        with pytest.raises(ConnectionFailed) as info:
            Client(URL, timeout=1.5).get("/v1")
    assert info.value.message == f"no answer from the Cadenza API at {URL} within 1.5s"


# ---- commands: what reaches stdout / stderr and the exit code ---------------------------


def test_command_prints_the_error_on_stderr_and_exits_with_its_code() -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(
            "POST",
            f"{URL}/v1/jobs",
            json={
                "error": "invalid_input",
                "message": "workers: too small",
                "errors": [{"field": "workers", "reason": "too small"}],
                "hint": "x",
            },
            status=400,
        )
        result = runner.invoke(app, ["--url", URL, "jobs", "submit", "-"], input='{"a": 1}')
        assert rsps.calls[0].request.body == b'{"a": 1}'
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "error: invalid_input: workers: too small (HTTP 400)" in result.stderr
    assert "hint: x" in result.stderr


def test_json_flag_prints_the_body_as_is_and_env_var_sets_the_url() -> None:
    doc = {"job_id": "j1", "name": "n", "_status": None, "operations": [{"_op": "noop"}]}
    with responses.RequestsMock() as rsps:
        rsps.add("GET", f"{URL}/v1/jobs/j1?ex=_status", json=doc)
        result = runner.invoke(
            app, ["--json", "jobs", "get", "j1", "--ex", "_status"], env={"CADENZA_URL": URL}
        )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == doc


def test_tables_show_each_row() -> None:
    rows = [
        {"job_id": "job-a", "name": "first", "schedule_state": "NEW", "active": True},
        {"job_id": "job-b", "name": "second", "schedule_state": "SCHEDULED", "active": False},
    ]
    with responses.RequestsMock() as rsps:
        rsps.add("GET", f"{URL}/v1/jobs?size=2&active=true", json=rows)
        result = runner.invoke(app, ["--url", URL, "jobs", "list", "--size", "2", "--active"])
    assert result.exit_code == 0, result.output
    for text in ("job-a", "first", "job-b", "SCHEDULED"):
        assert text in result.stdout


def test_watch_exits_non_zero_when_the_execution_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cadenza_tools.cli.watch.time.sleep", lambda _s: None)

    def ex(status: str, processed: int, failed: int) -> dict[str, object]:
        stats = {"processed": processed, "failed": failed, "slices_total": 4}
        return {"ex_id": "e1", "_status": status, "_slicer_stats": stats}

    with responses.RequestsMock() as rsps:
        for doc in (ex("running", 1, 0), ex("failing", 2, 1), ex("failed", 3, 1)):
            rsps.add("GET", f"{URL}/v1/ex/e1", json=doc)
        result = runner.invoke(app, ["--url", URL, "ex", "watch", "e1"])
        assert len(rsps.calls) == 3
    assert result.exit_code == 1
    assert "e1 failed: 3 processed, 1 failed of 4 slices" in result.stdout

    with responses.RequestsMock() as rsps:
        rsps.add("GET", f"{URL}/v1/ex/e1", json=ex("completed", 4, 0))
        done = runner.invoke(app, ["--url", URL, "--json", "ex", "watch", "e1"])
    assert done.exit_code == 0
    assert json.loads(done.stdout)["_status"] == "completed"


def test_usage_errors_exit_2_without_a_request() -> None:
    with responses.RequestsMock():  # any request would fail: none is registered
        result = runner.invoke(app, ["--url", URL, "jobs", "recover", "j", "--cleanup-type", "x"])
        follow = runner.invoke(app, ["--url", URL, "jobs", "submit", "-", "-f"], input="{}")
    assert result.exit_code == 2
    assert follow.exit_code == 2 and "--follow needs --start" in follow.stderr


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("cadenza ") and result.stdout.strip() != "cadenza"


def test_shell_completion_is_offered_and_completes_commands() -> None:
    script = Path(sys.executable).parent / "cadenza"
    if not script.exists():
        pytest.skip("the cadenza console script is not installed next to this python")
    # the script `--show-completion` prints, by name: that option detects the shell from
    # the process tree, and a test runner started outside a shell has none
    shown = subprocess.run(
        [str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "_CADENZA_COMPLETE": "source_bash"},
    )
    assert shown.returncode == 0 and "_cadenza_completion" in shown.stdout
    env = {
        **os.environ,
        "_CADENZA_COMPLETE": "complete_bash",
        "COMP_WORDS": "cadenza jobs st",
        "COMP_CWORD": "2",
    }
    completed = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert completed.stdout.split() == ["start", "stop"]


ID = "0b8a9c3e-6f1d-4d2a-9e57-3c1f2a4b5d6e"


def test_json_is_taken_after_the_subcommand_too() -> None:
    doc = {"job_id": "j1", "name": "n"}
    with responses.RequestsMock() as rsps:
        rsps.add("GET", f"{URL}/v1/jobs/j1", json=doc)
        result = runner.invoke(app, ["--url", URL, "jobs", "get", "j1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == doc


def test_tables_never_fold_an_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cadenza_tools.cli.output.PIPED_WIDTH", 100)
    rows = [
        {"job_id": ID, "name": "a name " * 5, "schedule_state": "SCHEDULED", "active": True},
    ]
    with responses.RequestsMock() as rsps:
        rsps.add("GET", f"{URL}/v1/jobs", json=rows)
        result = runner.invoke(app, ["--url", URL, "jobs", "list"])
    assert result.exit_code == 0, result.output
    assert ID in result.stdout


def test_piped_key_value_lines_are_not_padded() -> None:
    doc = {"job_id": "j1", "name": "n", "operations": [{"_op": "noop", "x": "y" * 300}]}
    with responses.RequestsMock() as rsps:
        rsps.add("GET", f"{URL}/v1/jobs/j1", json=doc)
        result = runner.invoke(app, ["--url", URL, "jobs", "get", "j1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "job_id      j1" and lines[1] == "name        n"
    assert all(line == line.rstrip() for line in lines)


def test_watch_counts_elapsed_time_from_the_executions_start() -> None:
    from cadenza_tools.cli.watch import elapsed

    start = "2027-01-15T08:00:00.000Z"
    now = 1800000000.0 + 3725  # T0 is 2027-01-15T08:00:00Z
    assert elapsed({"started_at": start}, now) == "1:02:05"
    assert elapsed({"started_at": start, "finished_at": "2027-01-15T08:00:09.000Z"}, now) == (
        "0:00:09"
    )
    assert elapsed({"started_at": None}, now) == "-:--:--"


def test_ctrl_c_while_following_says_how_to_follow_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(_s: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("cadenza_tools.cli.watch.time.sleep", interrupted)
    with responses.RequestsMock() as rsps:
        rsps.add("GET", f"{URL}/v1/ex/e1", json={"ex_id": "e1", "_status": "running"})
        result = runner.invoke(app, ["--url", URL, "ex", "watch", "e1"])
    assert result.exit_code == 130
    assert "cadenza ex watch e1" in result.stderr


@pytest.mark.parametrize(
    "given, written",
    [
        ("result.json", "result.csv"),
        ("result.csv", "result.csv"),
        ("out", "out.csv"),
        (".", "r1.csv"),
    ],
)
def test_result_file_is_named_by_its_content_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, written: str
) -> None:
    monkeypatch.chdir(tmp_path)
    headers = {"Content-Disposition": 'attachment; filename="r1.csv"'}
    with responses.RequestsMock() as rsps:
        rsps.add(
            "GET",
            f"{URL}/scheduled-jobs/j/runs/r1/result-file",
            body="a,b\r\n1,2\r\n",
            content_type="text/csv; charset=utf-8",
            headers=headers,
        )
        result = runner.invoke(app, ["--url", URL, "runs", "result-file", "j", "r1", "-o", given])
    assert result.exit_code == 0, result.output
    assert (tmp_path / written).read_bytes() == b"a,b\r\n1,2\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [written]
