"""Input that cannot hurt (issue #10): every refusal is a 4xx naming the field or the limit,
nothing is written, and no error body says anything internal. Through chalice.test.Client
on moto, so what DynamoDB itself refuses (an item over 400 KB) is tried too."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from chalice.test import Client

from app import app
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.config import Limits
from chalicelib.domain.errors import StoreUnavailable
from chalicelib.entrypoints.http import ROOT_ONLY, VERSIONED
from chalicelib.entrypoints.http.routing import BODY_TYPES
from chalicelib.ports import FakeClock
from tests.clients import ADMIN, SignedClient
from tests.conftest import moto_container
from tests.conftest import test_settings as settings_for

JOB: dict[str, Any] = {"name": "b", "operations": [{"_op": "noop"}, {"_op": "noop"}]}
JSON_HEADERS = {"Content-Type": "application/json"}
# what no error body may carry: table or queue names (the test prefix), ARNs, file paths,
# DynamoDB's or botocore's own words, tracebacks
INTERNAL = re.compile(
    r"t-[0-9a-f]{8}-|arn:aws|/tmp/|/var/task|\.py\b|Traceback|ValidationException|botocore"
    r"|ConditionalCheck|dynamodb",
    re.IGNORECASE,
)


@pytest.fixture
def limits(request: pytest.FixtureRequest) -> Limits:
    """The stage's limits for the test (a test may parametrize this fixture indirectly)."""
    given: Limits = getattr(request, "param", Limits())
    return given


@pytest.fixture
def env(aws: None, limits: Limits, clock: FakeClock, queue: MemoryQueue) -> Iterator[Container]:
    yield from moto_container(settings_for(limits=limits), clock, queue)


@pytest.fixture
def client(env: Container) -> Iterator[Client]:
    with SignedClient(app, ADMIN) as c:  # an admin: every route, its own jobs
        yield c


def stored(c: Container) -> dict[str, int]:
    """Items in each table of the stage (a scan: tests only)."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    s = c.settings
    tables = (s.jobs_table, s.runs_table, s.slices_table)
    return {t: ddb.scan(TableName=t, Select="COUNT")["Count"] for t in tables}


def nothing_written(c: Container, queue: MemoryQueue) -> None:
    assert set(stored(c).values()) == {0}
    assert queue.messages == []


def post(client: Client, path: str, body: Any, **headers: str) -> Any:
    raw = body if isinstance(body, str | bytes) else json.dumps(body, ensure_ascii=False)
    return client.http.post(path, body=raw, headers={**JSON_HEADERS, **headers})


def refused(r: Any, status: int, field: str, limit: str | None = None) -> dict[str, Any]:
    """The answer is `status`, names `field` (and `limit`), and says nothing internal."""
    body: dict[str, Any] = r.json_body
    assert r.status_code == status, body
    assert field in [e["field"] for e in body["errors"]], body
    if limit is not None:
        assert body["limit"] == limit and body["max"] is not None, body
    assert not INTERNAL.search(r.body.decode()), r.body
    return body


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# ---- depth -----------------------------------------------------------------------------------


def test_a_hundred_thousand_nested_brackets_are_a_400(
    client: Client, env: Container, queue: MemoryQueue
) -> None:
    r = post(client, "/v1/jobs", "[" * 100_000)
    refused(r, 400, "body", "max_json_depth")
    r = post(client, "/scheduled-jobs/x/runs", "[" * 100_000 + "]" * 100_000)
    refused(r, 400, "body", "max_json_depth")
    nothing_written(env, queue)


@pytest.mark.parametrize("start", ["false", "true"])
def test_a_deep_op_parameter_is_refused_at_submit(
    client: Client, env: Container, queue: MemoryQueue, start: str
) -> None:
    deep = "[" * 960 + "1" + "]" * 960  # built as text: encoding it would recurse here too
    job = '{"name": "b", "operations": [{"_op": "noop"}, {"_op": "fail", "slices": ' + deep + "}]}"
    body = refused(post(client, f"/v1/jobs?start={start}", job), 400, "body", "max_json_depth")
    assert body["max"] == Limits().max_json_depth
    nothing_written(env, queue)


def test_a_deep_op_parameter_is_refused_at_put_and_the_job_stays(
    client: Client, env: Container
) -> None:
    job_id = post(client, "/v1/jobs", JOB).json_body["job_id"]
    before = client.http.get(f"/v1/jobs/{job_id}").json_body
    deep = {**JOB, "operations": [{"_op": "noop"}, {"_op": "fail", "slices": nested(40)}]}
    r = client.http.put(f"/v1/jobs/{job_id}", body=json.dumps(deep), headers=JSON_HEADERS)
    refused(r, 400, "body", "max_json_depth")
    assert client.http.get(f"/v1/jobs/{job_id}").json_body == before
    assert client.http.get("/v1/jobs").status_code == 200
    assert client.http.get("/scheduled-jobs").status_code == 200


# ---- size ------------------------------------------------------------------------------------


def test_a_body_over_the_size_limit_is_a_413(
    client: Client, env: Container, queue: MemoryQueue
) -> None:
    big = {**JOB, "operations": [{"_op": "noop"}, {"_op": "fail", "message": "x" * 300_000}]}
    for start in ("false", "true"):
        body = refused(post(client, f"/v1/jobs?start={start}", big), 413, "body", "max_body_bytes")
        assert body["max"] == Limits().max_body_bytes
    nothing_written(env, queue)


@pytest.mark.parametrize("text", ["x" * 150_000, "é" * 60_000])  # the second: 360 KB stored
def test_a_definition_over_the_stored_size_limit_is_a_413(
    client: Client, env: Container, queue: MemoryQueue, text: str
) -> None:
    job = {**JOB, "operations": [{"_op": "noop"}, {"_op": "fail", "message": text}]}
    for start in ("false", "true"):
        refused(post(client, f"/v1/jobs?start={start}", job), 413, "body", "max_job_bytes")
    nothing_written(env, queue)
    job_id = post(client, "/v1/jobs", JOB).json_body["job_id"]
    raw = json.dumps(job, ensure_ascii=False)
    refused(client.http.put(f"/v1/jobs/{job_id}", body=raw, headers=JSON_HEADERS), 413, "body")


LOOSE = Limits(max_body_bytes=4_000_000, max_job_bytes=4_000_000)


@pytest.mark.parametrize("limits", [LOOSE], indirect=True)
@pytest.mark.parametrize("start", ["false", "true"])
def test_what_dynamodb_cannot_hold_is_a_413_never_a_503(
    client: Client, env: Container, queue: MemoryQueue, start: str
) -> None:
    """With the stage's own limits loosened, DynamoDB's item size is what refuses: still a
    client error, naming the limit, and (with start=true) neither the job nor its run."""
    job = {**JOB, "operations": [{"_op": "noop"}, {"_op": "fail", "message": "x" * 500_000}]}
    refused(post(client, f"/v1/jobs?start={start}", job), 413, "body", "store_item_bytes")
    nothing_written(env, queue)


# ---- create and start: all or nothing ------------------------------------------------------


def test_a_job_whose_run_cannot_be_written_is_not_stored_either(
    client: Client, env: Container, queue: MemoryQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job and its first run are one transaction: a run item DynamoDB refuses (made
    too large here) takes the job with it."""
    from chalicelib.adapters.dynamodb.run_items import run_item

    def oversized(base: Any, run: Any) -> Any:
        item = run_item(base, run)
        item.reason = "x" * 420_000
        return item

    monkeypatch.setattr("chalicelib.adapters.dynamodb.jobs.run_item", oversized)
    r = post(client, "/v1/jobs?start=true", JOB)
    refused(r, 413, "body", "store_item_bytes")
    nothing_written(env, queue)


def test_a_start_message_that_fails_still_answers_with_the_ids(
    client: Client, env: Container, queue: MemoryQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the job and its run are written, a lost nudge is the sweep's to re-send: the
    answer carries both ids and the run waits, pending."""

    def down(messages: Any) -> None:
        raise RuntimeError("queue down")

    monkeypatch.setattr(queue, "send_starts", down)
    r = post(client, "/v1/jobs?start=true", JOB)
    assert r.status_code == 202 and set(r.json_body) == {"job_id", "ex_id"}
    ex = client.http.get(f"/v1/ex/{r.json_body['ex_id']}").json_body
    assert ex["_status"] == "pending"


# ---- 5xx say nothing internal ----------------------------------------------------------------


def test_an_unavailable_store_is_a_503_with_a_request_id_only(
    client: Client,
    env: Container,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    detail = f"DynamoDB: RequestLimitExceeded: table {env.settings.jobs_table} arn:aws:dynamodb:x"

    def unavailable(job_id: str) -> None:
        raise StoreUnavailable(detail)

    monkeypatch.setattr(env.store, "get_job", unavailable)
    with caplog.at_level(logging.ERROR):
        r = client.http.get("/v1/jobs/some-job")
    assert r.status_code == 503 and r.json_body["error"] == "store_unavailable"
    request_id = r.json_body["request_id"]
    assert request_id and not INTERNAL.search(r.body.decode())
    logged = [rec.getMessage() for rec in caplog.records]
    assert any(request_id in m and env.settings.jobs_table in m for m in logged), logged


def test_an_unexpected_error_is_a_500_with_a_request_id_only(
    client: Client,
    env: Container,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(job_id: str) -> None:
        raise RuntimeError("/var/task/chalicelib/adapters/x.py: cadenza-dev-jobs exploded")

    monkeypatch.setattr(env.store, "get_job", broken)
    with caplog.at_level(logging.ERROR):
        r = client.http.get("/v1/jobs/some-job")
    assert r.status_code == 500 and set(r.json_body) == {"error", "message", "request_id"}
    assert "cadenza-dev-jobs" not in r.body.decode() and not INTERNAL.search(r.body.decode())
    assert any(r.json_body["request_id"] in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize(
    "method, path, allowed",
    [("patch", "/v1/jobs", ["GET", "POST"]), ("delete", "/scheduled-jobs/x/runs", ["POST", "GET"])],
)
def test_a_method_a_path_does_not_serve_is_a_405_in_the_apis_error_shape(
    client: Client, env: Container, method: str, path: str, allowed: list[str]
) -> None:
    r = getattr(client.http, method)(path)
    assert r.status_code == 405, r.body
    assert set(r.json_body) == {"error", "message", "allowed"}
    assert r.json_body["error"] == "method_not_allowed"
    assert sorted(r.json_body["allowed"]) == sorted(allowed)
    assert method.upper() in r.json_body["message"]
    assert sorted(r.headers["Allow"].split(", ")) == sorted(allowed)


# ---- media types -----------------------------------------------------------------------------


def _json_routes() -> list[tuple[str, str]]:
    """(method, path) of every route that reads a JSON body, on both mounts."""
    out = []
    for routes in (*VERSIONED, *ROOT_ONLY):
        for route in routes.routes:
            if route.content_types is not None and list(route.content_types) == BODY_TYPES:
                for method in route.methods:
                    path = re.sub(r"\{[^}]+\}", "x", route.path)
                    out.append((method, path))
                    if routes in VERSIONED:
                        out.append((method, f"/v1{path}"))
    return out


JSON_ROUTES = _json_routes()
REFUSED_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]


def test_every_body_route_reads_json_only() -> None:
    assert len(JSON_ROUTES) > 30  # the route table, not a hand-kept list


@pytest.mark.parametrize("content_type", REFUSED_TYPES)
def test_json_routes_refuse_other_media_types(
    client: Client, env: Container, queue: MemoryQueue, content_type: str
) -> None:
    for method, path in JSON_ROUTES:
        r = getattr(client.http, method.lower())(
            path, body=json.dumps(JOB), headers={"Content-Type": content_type}
        )
        body = refused(r, 415, "Content-Type")
        assert body["error"] == "unsupported_media_type"
        assert content_type in body["message"] and "application/json" in body["message"]
    nothing_written(env, queue)


def test_a_body_without_a_content_type_is_refused_a_bare_post_is_not(
    client: Client, env: Container
) -> None:
    r = client.http.post("/v1/jobs", body=json.dumps(JOB))
    refused(r, 415, "Content-Type")
    job_id = post(client, "/v1/jobs", JOB).json_body["job_id"]
    assert client.http.post(f"/v1/jobs/{job_id}/_start").status_code == 202
    halt = client.http.post("/api/supervisor/halt", headers={"Content-Type": "text/plain"})
    refused(halt, 415, "Content-Type")


# ---- the stage's limits ----------------------------------------------------------------------


def test_workers_over_the_limit_are_refused_not_capped(
    client: Client, env: Container, queue: MemoryQueue
) -> None:
    limit = Limits().max_workers
    refused(post(client, "/v1/jobs", {**JOB, "workers": limit + 1}), 400, "workers", "max_workers")
    nothing_written(env, queue)
    job = {"name": "w", "operations": [{"_op": "range", "end": 4}, {"_op": "noop"}]}
    ids = post(client, "/v1/jobs?start=true", job).json_body
    for query in ("add=1000000", f"total={limit + 1}"):
        r = client.http.post(f"/v1/ex/{ids['ex_id']}/_workers?{query}")
        refused(r, 400, query.split("=")[0], "max_workers")
    assert client.http.get(f"/v1/ex/{ids['ex_id']}").json_body["workers"] == 1
    assert client.http.post(f"/v1/ex/{ids['ex_id']}/_workers?total={limit}").status_code == 200


MIN_MINUTE = Limits(min_schedule_seconds=60)
MIN_FIVE = Limits(min_schedule_seconds=300)


@pytest.mark.parametrize("limits", [MIN_MINUTE], indirect=True)
@pytest.mark.parametrize("schedule", [{"rate": "rate(1 second)"}, {"interval_seconds": 30}])
def test_a_schedule_shorter_than_the_limit_is_refused(
    client: Client, env: Container, queue: MemoryQueue, schedule: dict[str, Any]
) -> None:
    job = {**JOB, "schedule": schedule}
    body = refused(
        post(client, "/v1/jobs?start=true", job), 400, "schedule", "min_schedule_seconds"
    )
    assert body["max"] == 60
    nothing_written(env, queue)
    ok = post(client, "/v1/jobs", {**JOB, "schedule": {"rate": "rate(1 minute)"}})
    assert ok.status_code == 201
    r = client.http.put(
        f"/v1/jobs/{ok.json_body['job_id']}", body=json.dumps(job), headers=JSON_HEADERS
    )
    refused(r, 400, "schedule", "min_schedule_seconds")


@pytest.mark.parametrize("limits", [MIN_FIVE], indirect=True)
def test_a_cron_is_held_to_the_limit_by_its_slots(client: Client, env: Container) -> None:
    every_minute = {**JOB, "schedule": {"cron": "* * * * *"}}
    refused(post(client, "/v1/jobs", every_minute), 400, "schedule", "min_schedule_seconds")
    hourly = {**JOB, "schedule": {"cron": "0 * * * *"}}
    assert post(client, "/v1/jobs", hourly).status_code == 201


def test_an_op_longer_than_its_function_may_run_is_refused(
    client: Client, env: Container, queue: MemoryQueue
) -> None:
    limit = Limits().max_op_seconds
    job = {**JOB, "operations": [{"_op": "noop"}, {"_op": "sleep", "seconds": limit + 50}]}
    body = refused(post(client, "/v1/jobs?start=true", job), 400, "operations[1].seconds")
    assert body["limit"] == "max_op_seconds" and body["max"] == limit
    nothing_written(env, queue)
    fine = {**JOB, "operations": [{"_op": "noop"}, {"_op": "sleep", "seconds": limit}]}
    assert post(client, "/v1/jobs", fine).status_code == 201


def test_limits_are_read_from_the_environment() -> None:
    from chalicelib.config import Settings

    env = {
        "CADENZA_MAX_BODY_BYTES": "1000",
        "CADENZA_MAX_JSON_DEPTH": "5",
        "CADENZA_MAX_JOB_BYTES": "900",
        "CADENZA_MAX_WORKERS": "7",
        "CADENZA_MIN_SCHEDULE_SECONDS": "60",
        "CADENZA_MAX_OP_SECONDS": "100",
    }
    assert Settings.from_env(env).limits == Limits(1000, 5, 900, 7, 60, 100.0)
    assert replace(Limits(), max_workers=7).max_workers == 7


def test_each_stage_keeps_an_op_within_its_workers_timeouts() -> None:
    """The API refuses an op that would outlive the function running it: the limit the API
    reads in each stage is below both workers' timeouts there (.chalice/config.json)."""
    from cadenza_tools import infra
    from chalicelib.config import Settings

    config = infra.load_chalice_config()
    for stage in infra.stages(config):
        api = Settings.from_env(infra.function_environment(config, stage, "api_handler"))
        for worker in ("start_worker", "slice_worker"):
            assert api.limits.max_op_seconds < infra.function_timeout(config, stage, worker)
