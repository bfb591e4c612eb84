"""Secrets by reference, on moto's SSM and Secrets Manager: a reference is checked at submit
(400 naming the field outside the stage's prefix), resolved by the worker when the slice
runs, and its value is never stored (any table), logged, or returned (results, errors)."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.config import Settings
from chalicelib.domain.secrets import REDACTED, SecretRef, redact
from chalicelib.ops.registry import REGISTRY, AnyParams, OpSpec, SliceContext
from tests.clients import SignedClient
from tests.conftest import drain

DB = "/cadenza/dev/db-password"
DB_VALUE = "hunter2-s3cr3t-db"
API = "/cadenza/dev/api-key"
API_VALUE = "tok_9f8e7d6c5b4a"
SSM_REF = "{{resolve:ssm:" + DB + "}}"
SM_REF = "{{resolve:secretsmanager:" + API + "}}"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def secrets(container: Container) -> None:
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=DB, Value=DB_VALUE, Type="SecureString"
    )
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=API, SecretString=API_VALUE
    )


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, Any], str | None]]:
    """A processor `capture` that keeps the parameters and args it received and returns
    them (as a careless op would)."""
    calls: list[tuple[dict[str, Any], str | None]] = []

    def capture(p: Any, data: Any, ctx: SliceContext) -> Any:
        calls.append((p.as_dict(), ctx.args))
        return {"params": p.as_dict(), "args": ctx.args, "data": data}

    monkeypatch.setitem(REGISTRY, "capture", OpSpec("capture", AnyParams, processor=capture))
    return calls


def _submit(client: SignedClient, operations: list[dict[str, Any]]) -> Any:
    body = json.dumps({"name": "s", "operations": operations})
    return client.http.post("/v1/jobs", body=body, headers=JSON)


def _run(client: SignedClient, job_id: str, args: str | None) -> Any:
    body = json.dumps({"args": args})
    return client.http.post(f"/scheduled-jobs/{job_id}/runs", body=body, headers=JSON)


def _result(client: SignedClient, run_id: str) -> Any:
    """A one-slice run's result, as the run shows it."""
    return client.http.get(f"/v1/ex/{run_id}").json_body["result"]


def _everything_stored(settings: Settings) -> str:
    """Every item of every table, as text."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    tables = [settings.jobs_table, settings.runs_table, settings.slices_table]
    tables += [settings.supervisor_table, settings.alerts_table]
    return json.dumps([ddb.scan(TableName=t)["Items"] for t in tables], default=str)


def _assert_field(r: Any, field: str, words: str) -> None:
    assert r.status_code == 400, r.body
    assert r.json_body["error"] == "invalid_input"
    [error] = r.json_body["errors"]
    assert error["field"] == field and words in error["reason"], r.json_body


# ---- checked at submit -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"password": "{{resolve:ssm:/cadenza/prod/db}}"}, "operations[1].password", "prefix"),
        ({"h": {"auth": "{{resolve:ssm:/other/x}}"}}, "operations[1].h.auth", "prefix"),
        ({"l": ["ok", "{{resolve:vault:/cadenza/dev/x}}"]}, "operations[1].l[1]", "service"),
        ({"p": "{{resolve:ssm:/cadenza/dev/../prod/db}}"}, "operations[1].p", "not a secret"),
        ({"p": "{{resolve:secretsmanager:/cadenza/devx/db}}"}, "operations[1].p", "prefix"),
    ],
)
def test_a_reference_outside_the_stage_prefix_is_400_naming_the_field(
    client: SignedClient, seen: list[Any], params: dict[str, Any], field: str, words: str
) -> None:
    r = _submit(client, [{"_op": "noop"}, {"_op": "capture", **params}])
    _assert_field(r, field, words)
    assert client.http.get("/v1/jobs").json_body == []  # nothing written


def test_a_reader_cannot_name_a_secret(client: SignedClient) -> None:
    r = _submit(client, [{"_op": "range", "end": 2, "x": SSM_REF}, {"_op": "echo"}])
    assert r.status_code == 400  # `range` has no `x`: its own check comes first
    r = _submit(client, [{"_op": "noop", "x": SSM_REF}, {"_op": "echo"}])
    assert r.status_code == 400


def test_run_args_outside_the_prefix_are_400_naming_args(
    client: SignedClient, queue: MemoryQueue
) -> None:
    job_id = _submit(client, [{"_op": "noop"}, {"_op": "echo"}]).json_body["job_id"]
    r = _run(client, job_id, "--password={{resolve:ssm:/cadenza/prod/db}}")
    _assert_field(r, "args", "prefix")
    assert client.http.get(f"/scheduled-jobs/{job_id}/runs").json_body == []
    assert queue.sent == []


# ---- resolved when the slice runs, never kept ---------------------------------------------
def test_the_worker_resolves_references_and_nothing_keeps_the_values(
    client: SignedClient,
    container: Container,
    queue: MemoryQueue,
    secrets: None,
    seen: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ops = [{"_op": "noop"}, {"_op": "capture", "token": f"Bearer {SM_REF}"}]
    job_id = _submit(client, ops).json_body["job_id"]
    run = _run(client, job_id, f"--user=app --password={SSM_REF}").json_body
    assert run["rtArgs"] == f"--user=app --password={SSM_REF}"
    drain(container, queue)

    [(params, args)] = seen
    assert params == {"token": f"Bearer {API_VALUE}"}
    assert args == f"--user=app --password={DB_VALUE}"
    assert _result(client, run["id"]) == {
        "params": {"token": f"Bearer {REDACTED}"},
        "args": f"--user=app --password={REDACTED}",
        "data": {},
    }
    shown = json.dumps(
        [
            client.http.get(f"/scheduled-jobs/{job_id}/runs/{run['id']}").json_body,
            client.http.get(f"/v1/ex/{run['executionId']}").json_body
            if "executionId" in run
            else None,
            client.http.get(f"/v1/jobs/{job_id}").json_body,
        ]
    )
    stored = _everything_stored(container.settings)
    for value in (DB_VALUE, API_VALUE):
        assert value not in shown and value not in stored and value not in caplog.text
    assert SSM_REF in stored  # what is kept is the reference


def test_a_sliced_run_resolves_on_every_slice(
    client: SignedClient, container: Container, queue: MemoryQueue, secrets: None
) -> None:
    job_id = _submit(client, [{"_op": "range", "end": 2}, {"_op": "echo"}]).json_body["job_id"]
    run = _run(client, job_id, f"-p {SSM_REF}").json_body
    drain(container, queue)
    assert [sl.result for sl in container.store.list_slices(run["id"])] == [
        {"request": {"start": 0, "end": 1}, "args": ["-p", REDACTED]},
        {"request": {"start": 1, "end": 2}, "args": ["-p", REDACTED]},
    ]
    assert DB_VALUE not in _everything_stored(container.settings)


def test_an_error_that_shows_a_secret_is_redacted(
    client: SignedClient,
    container: Container,
    queue: MemoryQueue,
    secrets: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ops = [{"_op": "noop"}, {"_op": "fail", "slices": [0], "message": f"bad password {SM_REF}"}]
    body = json.dumps({"name": "f", "operations": ops, "max_retries": 0})
    job_id = client.http.post("/v1/jobs", body=body, headers=JSON).json_body["job_id"]
    run = _run(client, job_id, None).json_body
    drain(container, queue)
    done = client.http.get(f"/scheduled-jobs/{job_id}/runs/{run['id']}").json_body
    assert done["status"] == "FAILED"
    assert f"bad password {REDACTED}" in done["message"]
    errors = client.http.get(f"/v1/jobs/{job_id}/errors").json_body
    shown = json.dumps([done, errors])
    assert API_VALUE not in shown and API_VALUE not in caplog.text
    assert API_VALUE not in _everything_stored(container.settings)


def test_a_missing_secret_fails_the_slice_naming_the_reference_only(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    ops = [{"_op": "noop"}, {"_op": "echo"}]
    body = json.dumps({"name": "m", "operations": ops, "max_retries": 0})
    job_id = client.http.post("/v1/jobs", body=body, headers=JSON).json_body["job_id"]
    run = _run(client, job_id, "{{resolve:ssm:/cadenza/dev/nope}}").json_body
    drain(container, queue)
    done = client.http.get(f"/scheduled-jobs/{job_id}/runs/{run['id']}").json_body
    assert done["status"] == "FAILED"
    assert "{{resolve:ssm:/cadenza/dev/nope}}: not found" in done["message"]
    assert "arn:" not in done["message"] and "GetParameter" not in done["message"]


def test_redact_replaces_the_longest_secret_first() -> None:
    assert redact({"k abc": ["abcdef", 1]}, ["abc", "abcdef"]) == {"k ***": ["***", 1]}
    assert SecretRef("ssm", DB).text == SSM_REF
