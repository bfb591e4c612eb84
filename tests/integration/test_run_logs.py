"""Run logs (issue #11): what ops print and log, and the traceback of a failure, per slice
attempt, served by GET /v1/ex/{ex_id}/logs and `cadenza ex logs` (following a running
execution too); the execution's errors keep their one line."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import responses
from typer.testing import CliRunner

from app import app
from cadenza_tools.cli.main import app as cli
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.logs import LogEntry, LogLevel
from chalicelib.ops.registry import REGISTRY, AnyParams, OpSpec
from chalicelib.ports import FakeClock
from tests.clients import ADMIN, OTHER, SignedClient
from tests.conftest import drain, moto_container
from tests.conftest import test_settings as make_settings
from tests.helpers import deliver, field_error, get_ok
from tests.integration.test_assets import make_zip, upload

pytestmark = pytest.mark.fakes

URL = "http://cadenza.test"
JSON = {"Content-Type": "application/json"}
ONE_SLICE_FAILING = {
    "name": "one",
    "max_retries": 0,
    "operations": [{"_op": "noop"}, {"_op": "fail", "message": "boom"}],
}
SLICED = {
    "name": "sliced",
    "max_retries": 1,
    "workers": 1,
    "operations": [{"_op": "range", "end": 3}, {"_op": "fail", "slices": [1], "times": 1}],
}


def start(client: SignedClient, job: dict[str, Any]) -> str:
    r = client.http.post("/v1/jobs?start=true", body=json.dumps(job), headers=JSON)
    assert r.status_code == 202, r.json_body
    return str(r.json_body["ex_id"])


def test_a_one_slice_runs_traceback_is_in_its_log_and_its_error_stays_one_line(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    ex_id = start(client, ONE_SLICE_FAILING)
    drain(container, queue)
    [error] = get_ok(client, f"/v1/ex/{ex_id}/errors")
    assert error["error"] == "OpFailed: boom (slice 0, attempt 1)"
    page = get_ok(client, f"/v1/ex/{ex_id}/logs?slice={error['slice_id']}")
    assert page["ex_id"] == ex_id and page["status"] == "failed"
    [line] = page["entries"]
    assert set(line) == {"ts", "slice_id", "attempt", "seq", "level", "source", "message"}
    assert (line["slice_id"], line["attempt"], line["level"]) == ("000000", 1, "error")
    assert line["source"] == "traceback"
    assert line["message"].startswith("Traceback (most recent call last):")
    assert 'File "chalicelib/ops/registry.py"' in line["message"]
    assert line["message"].endswith(error["error"])
    assert "/work/" not in line["message"] and "site-packages" not in line["message"]


def test_a_sliced_runs_log_filters_by_slice_and_level_and_keeps_each_attempt(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    ex_id = start(client, SLICED)
    drain(container, queue)
    assert get_ok(client, f"/v1/ex/{ex_id}")["_status"] == "completed"
    entries = get_ok(client, f"/v1/ex/{ex_id}/logs")["entries"]
    assert [(e["slice_id"], e["attempt"], e["source"]) for e in entries] == [
        ("000001", 1, "traceback")
    ]
    assert get_ok(client, f"/v1/ex/{ex_id}/logs?slice=1&level=error")["entries"] == entries
    assert get_ok(client, f"/v1/ex/{ex_id}/logs?slice=000002")["entries"] == []


def test_another_user_gets_the_same_not_found_as_for_the_execution(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    ex_id = start(client, ONE_SLICE_FAILING)
    drain(container, queue)
    other = client.as_(OTHER)
    logs, ex = other.http.get(f"/v1/ex/{ex_id}/logs"), other.http.get(f"/v1/ex/{ex_id}")
    assert logs.status_code == ex.status_code == 404
    assert logs.json_body["message"] == ex.json_body["message"]
    assert client.http.get(f"/ex/{ex_id}/logs").status_code == 200  # the seed's mount too


def test_pages_of_a_given_size_go_on_from_their_token(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    ex_id = start(client, ONE_SLICE_FAILING)
    drain(container, queue)
    container.worker.run_logs.append(  # type: ignore[union-attr]  # the fixture's store
        [LogEntry(ex_id, "000000", 2, 0.0, i, LogLevel.INFO, "stdout", f"l{i}") for i in (1, 2)]
    )
    first = get_ok(client, f"/v1/ex/{ex_id}/logs?size=2")
    second = get_ok(client, f"/v1/ex/{ex_id}/logs?size=2&token={first['next_token']}")
    assert [e["message"] for e in first["entries"]][1:] == ["l1"]
    assert [e["message"] for e in second["entries"]] == ["l2"]
    assert get_ok(client, f"/v1/ex/{ex_id}/logs?token={second['next_token']}")["entries"] == []


def test_bad_parameters_are_400s_naming_the_field(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    ex_id = start(client, ONE_SLICE_FAILING)
    assert field_error(client, f"/v1/ex/{ex_id}/logs?level=loud") == ["level"]
    assert field_error(client, f"/v1/ex/{ex_id}/logs?size=0") == ["size"]
    assert field_error(client, f"/v1/ex/{ex_id}/logs?size=1001") == ["size"]
    assert field_error(client, f"/v1/ex/{ex_id}/logs?token=x") == ["token"]


# ---- the CLI ------------------------------------------------------------------------------


def answered_by_app(client: SignedClient) -> Iterator[responses.RequestsMock]:
    """The CLI's requests answered by the app (as the test client's user)."""

    def forward(request: Any) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(request.url)
        r = client.http.get(parts.path + (f"?{parts.query}" if parts.query else ""))
        return r.status_code, {"Content-Type": "application/json"}, r.body.decode()

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback("GET", re.compile(re.escape(URL) + ".*"), callback=forward)
        yield rsps


@pytest.fixture
def api(client: SignedClient) -> Iterator[responses.RequestsMock]:
    yield from answered_by_app(client)


@pytest.fixture
def api_on_moto(on_moto: tuple[Container, str]) -> Iterator[responses.RequestsMock]:
    with SignedClient(app) as client:
        yield from answered_by_app(client)


def run_cli(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["--url", URL, "ex", "logs", *args])
    assert result.exit_code == 0, result.output
    return result


def test_the_cli_prints_the_log_and_its_traceback(
    client: SignedClient, container: Container, queue: MemoryQueue, api: Any
) -> None:
    ex_id = start(client, SLICED)
    drain(container, queue)
    out = run_cli(ex_id, "--slice", "1", "--level", "warning").stdout
    assert re.match(r"\S+Z 000001#1 ERROR   traceback: Traceback \(most recent call", out)
    assert "OpFailed: injected failure (slice 1, attempt 1)" in out
    [line] = (
        CliRunner()
        .invoke(cli, ["--url", URL, "--json", "ex", "logs", ex_id])
        .stdout.split("\n")[:1]
    )
    assert json.loads(line)["source"] == "traceback"


def test_follow_prints_new_lines_once_each_until_the_execution_ends(
    client: SignedClient,
    container: Container,
    queue: MemoryQueue,
    clock: FakeClock,
    api: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each poll's wait delivers one queued message: the execution runs while it is
    followed, slice by slice, each slice failing once then passing."""
    job = {**SLICED, "operations": [{"_op": "range", "end": 3}, {"_op": "fail", "times": 1}]}
    ex_id = start(client, job)
    polls: list[int] = []

    def step(_seconds: float) -> None:
        polls.append(len(queue.messages))
        clock.advance(5)
        got = queue.receive(1)
        if got:
            deliver(container, got[0])
            queue.delete(got[0])

    monkeypatch.setattr("cadenza_tools.cli.logs.time.sleep", step)
    out = run_cli(ex_id, "--follow").stdout.splitlines()
    tracebacks = [line.split(" ")[1] for line in out if "traceback:" in line]
    assert sorted(tracebacks) == ["000000#1", "000001#1", "000002#1"]
    assert len(polls) > 3  # it followed a running execution
    assert get_ok(client, f"/v1/ex/{ex_id}")["_status"] == "completed"


# ---- an asset op, in its child process; the logs in the bucket (moto S3) -------------------

CHATTY_PY = """
import logging

log = logging.getLogger("chatty")


def numbers(params, args):
    print("slicing", params.get("count", 1))
    log.info("numbers for %s", args)
    for i in range(params.get("count", 1)):
        yield {"n": i}


def divide(params, data, ctx):
    n = data.get("n", 0)
    print("dividing", n)
    log.warning("about to divide %s", n)
    return {"q": 1 / (n - params.get("zero_at", 0))}
"""
CHATTY = {
    "asset.json": {
        "name": "chatty",
        "version": "1.0.0",
        "ops": {
            "readers": {"numbers": "chatty.ops:numbers"},
            "processors": {"divide": "chatty.ops:divide"},
        },
    },
    "chatty/__init__.py": "",
    "chatty/ops.py": CHATTY_PY,
}


@pytest.fixture
def on_moto(
    aws: None, clock: FakeClock, queue: MemoryQueue, tmp_path: Any
) -> Iterator[tuple[Container, str]]:
    settings = make_settings(asset_cache_dir=str(tmp_path / "cache"))
    for c in moto_container(settings, clock, queue, bucket=True):
        with SignedClient(app, ADMIN) as admin:
            r = upload(admin, make_zip(CHATTY))
        assert r.status_code == 201, r.json_body
        yield c, str(r.json_body["_id"])


def test_an_asset_ops_prints_log_records_and_traceback_come_back_from_its_child(
    on_moto: tuple[Container, str], queue: MemoryQueue, api_on_moto: Any
) -> None:
    container, asset_id = on_moto
    job = {
        "name": "chatty",
        "assets": [asset_id],
        "max_retries": 0,
        "operations": [{"_op": "numbers", "count": 3}, {"_op": "divide", "zero_at": 1}],
    }
    with SignedClient(app) as client:
        ex_id = start(client, job)
        drain(container, queue)
        [error] = get_ok(client, f"/v1/ex/{ex_id}/errors")
        assert error["error"].endswith("ZeroDivisionError: division by zero")
        assert "\n" not in error["error"]
        failed = get_ok(client, f"/v1/ex/{ex_id}/logs?slice={error['slice_id']}")["entries"]
    shown = [(e["source"], e["level"], e["message"].splitlines()[-1]) for e in failed]
    assert shown == [
        ("stdout", "info", "dividing 1"),
        ("logging", "warning", "chatty: about to divide 1"),
        ("traceback", "error", "ZeroDivisionError: division by zero"),
        ("cadenza", "error", error["error"].split(": ", 1)[1]),
    ]
    traceback = failed[2]["message"]
    assert 'File "<asset>/bundle/chatty/ops.py", line 18, in divide' in traceback
    assert "cadenza-op-" not in traceback
    with SignedClient(app) as client:
        sliced = get_ok(client, f"/v1/ex/{ex_id}/logs?slice=slicing")["entries"]
    assert [(e["slice_id"], e["attempt"], e["source"], e["message"]) for e in sliced] == [
        ("slicing", 1, "stdout", "slicing 3"),
        ("slicing", 1, "logging", "chatty: numbers for None"),
    ]
    keys = container.files.keys(f"logs/{ex_id}/")
    assert len(keys) == 4  # one object per slice attempt, written at its end, and the slicing
    out = run_cli(ex_id).stdout
    assert "000000#1 INFO    stdout: dividing 0" in out
    assert "ZeroDivisionError: division by zero" in out


# ---- the reader's own output while it slices the run ----------------------------------------


def talkative_reader(p: Any, args: str | None) -> Iterator[dict[str, Any]]:
    print("listing", p.as_dict().get("prefix"))
    logging.getLogger("talkative").warning("two slices")
    if p.as_dict().get("prefix") == "missing/":
        raise ValueError("no such listing")
    yield from ({"n": n} for n in range(2))


@pytest.fixture
def talkative(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = OpSpec("talkative", AnyParams, reader=talkative_reader)
    monkeypatch.setitem(REGISTRY, "talkative", spec)


def test_what_a_reader_prints_and_logs_while_slicing_is_in_the_runs_log(
    client: SignedClient, container: Container, queue: MemoryQueue, talkative: None
) -> None:
    job = {"name": "talk", "operations": [{"_op": "talkative", "prefix": "in/"}, {"_op": "noop"}]}
    ex_id = start(client, job)
    drain(container, queue)
    assert get_ok(client, f"/v1/ex/{ex_id}")["_status"] == "completed"
    entries = get_ok(client, f"/v1/ex/{ex_id}/logs?slice=slicing")["entries"]
    assert [(e["slice_id"], e["attempt"], e["level"], e["message"]) for e in entries] == [
        ("slicing", 1, "info", "listing in/"),
        ("slicing", 1, "warning", "talkative: two slices"),
    ]
    assert get_ok(client, f"/v1/ex/{ex_id}/logs")["entries"] == entries  # no slice printed


def test_a_reader_that_cannot_slice_leaves_its_output_and_traceback_in_the_log(
    client: SignedClient, container: Container, queue: MemoryQueue, talkative: None
) -> None:
    reader = {"_op": "talkative", "prefix": "missing/"}
    ex_id = start(client, {"name": "talk", "operations": [reader, {"_op": "noop"}]})
    drain(container, queue)
    assert get_ok(client, f"/v1/ex/{ex_id}")["_status"] == "failed"
    entries = get_ok(client, f"/v1/ex/{ex_id}/logs?slice=slicing")["entries"]
    assert [(e["source"], e["message"].splitlines()[-1]) for e in entries] == [
        ("stdout", "listing missing/"),
        ("logging", "talkative: two slices"),
        ("traceback", "ValueError: no such listing"),
    ]


# ---- secrets: redacted in every line, as in errors ------------------------------------------

DB, DB_VALUE = "/cadenza/dev/db-password", "hunter2-s3cr3t-db"


def leaky(p: Any, data: Any, ctx: Any) -> Any:
    password = p.as_dict()["password"]
    print("logging in with", password)
    logging.getLogger("leaky").warning("password=%s", password)
    raise RuntimeError(f"could not log in with {password}")


def test_secrets_values_are_redacted_from_prints_records_and_the_traceback(
    aws: None, clock: FakeClock, queue: MemoryQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, "leaky", OpSpec("leaky", AnyParams, processor=leaky))
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=DB, Value=DB_VALUE, Type="SecureString"
    )
    for container in moto_container(make_settings(), clock, queue, bucket=True):
        job = {
            "name": "leaky",
            "max_retries": 0,
            "operations": [
                {"_op": "noop"},
                {"_op": "leaky", "password": "{{resolve:ssm:" + DB + "}}"},
            ],
        }
        with SignedClient(app) as client:
            ex_id = start(client, job)
            drain(container, queue)
            [error] = get_ok(client, f"/v1/ex/{ex_id}/errors")
            entries = get_ok(client, f"/v1/ex/{ex_id}/logs")["entries"]
    assert error["error"] == "RuntimeError: could not log in with ***"
    assert [(e["source"], e["message"].splitlines()[-1]) for e in entries] == [
        ("stdout", "logging in with ***"),
        ("logging", "leaky: password=***"),
        ("traceback", "RuntimeError: could not log in with ***"),
    ]
    assert DB_VALUE not in json.dumps(entries)
