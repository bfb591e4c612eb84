"""The HTTP API and the Lambda handlers, driven through chalice.test.Client on moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.ports import FakeClock
from tests.conftest import drain

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

JOB = {"name": "http", "operations": [{"_op": "range", "end": 3}, {"_op": "noop"}], "workers": 2}


def _post(client: Client, path: str, body: object) -> tuple[int, dict[str, Any]]:
    r = client.http.post(path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return r.status_code, r.json_body


def test_system_info(client: Client) -> None:
    r = client.http.get("/v1")
    assert r.status_code == 200
    assert r.json_body["clustering_type"] == "serverless"
    assert r.json_body["name"] == "cadenza"


def test_submit_without_start_only_stores(client: Client, queue: MemoryQueue) -> None:
    status, body = _post(client, "/v1/jobs", JOB)
    assert status == 201 and set(body) == {"job_id"}
    assert queue.messages == []
    job = client.http.get(f"/v1/jobs/{body['job_id']}").json_body
    for key in ("job_id", "_created", "_updated", "_context", "name", "operations", "workers"):
        assert key in job
    assert job["_context"] == "job" and job["operations"] == JOB["operations"]
    assert client.http.get(f"/v1/jobs/{body['job_id']}/ex").status_code == 404


def test_start_true_runs_to_completion_with_teraslice_fields(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    status, body = _post(client, "/v1/jobs?start=true", JOB)
    assert status == 202 and set(body) == {"job_id", "ex_id"}
    ex = client.http.get(f"/v1/ex/{body['ex_id']}").json_body
    assert ex["_status"] == "pending" and ex["_context"] == "ex"
    drain(container, queue)
    ex = client.http.get(f"/v1/jobs/{body['job_id']}/ex").json_body
    assert ex["ex_id"] == body["ex_id"]
    assert ex["_status"] == "completed" and ex["_has_errors"] is False
    stats = ex["_slicer_stats"]
    assert (stats["processed"], stats["failed"], stats["queued"]) == (3, 0, 0)
    for key in (
        "workers_active",
        "workers_joined",
        "job_duration",
        "started",
        "queuing_complete",
        "slicers",
        "subslices",
        "workers_available",
    ):
        assert key in stats
    # every route also answers without the /v1 prefix
    assert client.http.get(f"/ex/{body['ex_id']}").json_body["ex_id"] == body["ex_id"]


def test_start_route_creates_a_new_execution_each_time(
    client: Client, queue: MemoryQueue, clock: FakeClock
) -> None:
    _, body = _post(client, "/v1/jobs", {**JOB, "overlap": "allow"})
    first = client.http.post(f"/v1/jobs/{body['job_id']}/_start")
    clock.advance(1)
    second = client.http.post(f"/v1/jobs/{body['job_id']}/_start")
    assert first.status_code == second.status_code == 202
    assert first.json_body["ex_id"] != second.json_body["ex_id"]
    assert len(queue.messages) == 2


def test_scheduled_submit_reports_the_first_slot(client: Client) -> None:
    status, body = _post(
        client, "/v1/jobs?start=true", {**JOB, "schedule": {"cron": "*/5 * * * *"}}
    )
    assert status == 201
    assert body["schedule_state"] == "SCHEDULED"
    assert body["next_fire_at"] == "2027-01-15T08:05:00.000Z"


@pytest.mark.parametrize(
    "path, raw, field",
    [
        ("/v1/jobs", "{not json", "body"),
        ("/v1/jobs", "", "body"),
        ("/v1/jobs", "[1, 2]", "body"),
        ("/v1/jobs", json.dumps({**JOB, "workers": "many"}), "workers"),
        ("/v1/jobs", json.dumps({**JOB, "operations": [{"_op": "nope"}]}), "operations[0]._op"),
        ("/v1/jobs?start=maybe", json.dumps(JOB), "start"),
        ("/v1/jobs", json.dumps({**JOB, "schedule": {"cron": "* * *"}}), "schedule.cron"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: Client, container: Container, path: str, raw: str, field: str
) -> None:
    r = client.http.post(path, body=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.body
    assert r.json_body["error"] == "invalid_input"
    assert field in [e["field"] for e in r.json_body["errors"]]
    assert r.json_body["message"]


def test_unknown_ids_are_404(client: Client) -> None:
    for path in ("/v1/jobs/nope", "/v1/jobs/nope/ex", "/v1/ex/nope"):
        r = client.http.get(path)
        assert r.status_code == 404 and r.json_body["error"] == "not_found"
    assert client.http.post("/v1/jobs/nope/_start").status_code == 404


def test_sqs_handlers_report_partial_batch_failures(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    _, body = _post(client, "/v1/jobs?start=true", JOB)
    start = queue.take()[0].body
    event = client.events.generate_sqs_event(
        queue_name="cadenza-dev-start",
        message_bodies=[json.dumps(start), "not json", json.dumps({"job_id": "x"})],
    )
    resp = client.lambda_.invoke("start_worker", event).payload
    failed = {f["itemIdentifier"] for f in resp["batchItemFailures"]}
    ids = [r["messageId"] for r in event["Records"]]
    assert failed == {ids[1], ids[2]}  # only the poison ones return; the good one is done
    slices = queue.take()
    assert len(slices) == 2
    event = client.events.generate_sqs_event(
        queue_name="cadenza-dev-slices", message_bodies=[json.dumps(m.body) for m in slices]
    )
    assert client.lambda_.invoke("slice_worker", event).payload == {"batchItemFailures": []}
    drain(container, queue)
    ex = client.http.get(f"/v1/ex/{body['ex_id']}").json_body
    assert ex["_status"] == "completed" and ex["_slicer_stats"]["processed"] == 3


def test_supervisor_handler_ticks(client: Client, container: Container) -> None:
    _post(client, "/v1/jobs?start=true", {**JOB, "schedule": {"rate": "rate(1 minute)"}})
    # container.clock is typed as the Clock port; the fixture's is a FakeClock
    container.clock.advance(58)  # type: ignore[attr-defined]
    out = client.lambda_.invoke(
        "supervisor",
        client.events.generate_cw_event(
            source="aws.events",
            detail_type="Scheduled Event",
            detail={},
            resources=["arn:aws:events:us-east-1:123456789012:rule/x"],
        ),
    ).payload
    assert out["runs_created"] == 1 and out["jobs_read"] == 1


def test_a_body_posted_as_a_form_is_refused(client: Client) -> None:
    """`curl -d @job.json` posts a form: a web page could post that across sites, so only
    application/json is read (tests/integration/test_bad_input.py has the rest)."""
    r = client.http.post(
        "/v1/jobs",
        body=json.dumps(JOB),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415 and r.json_body["errors"][0]["field"] == "Content-Type"


def test_start_refuses_a_second_active_run_by_default(client: Client, queue: MemoryQueue) -> None:
    """OpenSpecimen: at most one IN_PROGRESS run per job (overlap 'skip', the default)."""
    _, body = _post(client, "/v1/jobs", JOB)
    first = client.http.post(f"/v1/jobs/{body['job_id']}/_start")
    assert first.status_code == 202
    second = client.http.post(f"/v1/jobs/{body['job_id']}/_start")
    assert second.status_code == 409
    assert second.json_body["error"] == "conflict" and len(second.json_body["active_slots"]) == 1
    assert len(queue.messages) == 1
