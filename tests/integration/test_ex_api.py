"""Teraslice's execution listings (seed 001): GET /v1/ex with status, from, size, sort,
deleted; GET /v1/ex/errors with from, size, sort; through chalice.test.Client on moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.adapters.dynamodb.counting import counting
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.ports import FakeClock
from tests.conftest import T0, drain
from tests.helpers import field_error as _field_error
from tests.helpers import get_ok as _get
from tests.helpers import start_due

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

JOB = {"name": "x", "overlap": "allow", "operations": [{"_op": "range", "end": 2}, {"_op": "noop"}]}
SLICED_FAILING = {
    "name": "sliced",
    "max_retries": 0,
    "operations": [{"_op": "range", "end": 5}, {"_op": "fail", "slices": [1, 3]}],
}
ONE_SLICE_FAILING = {
    "name": "one",
    "max_retries": 0,
    "operations": [{"_op": "noop"}, {"_op": "fail", "slices": [0]}],
}
SEED_EX_FIELDS = {
    "analytics",
    "lifecycle",
    "max_retries",
    "name",
    "operations",
    "probation_window",
    "slicers",
    "workers",
    "job_id",
    "ex_id",
    "_created",
    "_updated",
    "_context",
    "_status",
    "_has_errors",
    "_slicer_stats",
}
SEED_ERROR_FIELDS = {
    "slice_id",
    "slicer_id",
    "slicer_order",
    "request",
    "state",
    "ex_id",
    "_created",
    "_updated",
    "error",
}


def _post(client: Client, path: str, body: object = None) -> tuple[int, Any]:
    r = client.http.post(
        path,
        body=json.dumps(body) if body is not None else b"",
        headers={"Content-Type": "application/json"},
    )
    return r.status_code, r.json_body


def _start(client: Client, body: dict[str, Any] = JOB) -> tuple[str, str]:
    status, out = _post(client, "/v1/jobs?start=true", body)
    assert status == 202, out
    return out["job_id"], out["ex_id"]


def _exs(client: Client, query: str = "") -> list[str]:
    return [d["ex_id"] for d in _get(client, f"/v1/ex{query}")]


# ---- GET /v1/ex ----------------------------------------------------------------------------
@pytest.mark.moto  # measures DynamoDB
def test_list_ex_has_seed_shape_newest_update_first_without_a_scan(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _, first = _start(client)
    clock.advance(1)
    _, second = _start(client)
    clock.advance(1)
    drain(container, queue)  # both finish now; the first one's messages come first
    with counting() as c:
        docs = _get(client, "/v1/ex")
    assert c.calls["Scan"] == 0 and c.calls["Query"] >= 1
    assert {d["ex_id"] for d in docs} == {first, second}
    for doc in docs:
        assert set(doc) >= SEED_EX_FIELDS
        assert doc["_context"] == "ex" and doc["_status"] == "completed"
        assert doc["_slicer_stats"]["processed"] == 2
    assert [d["_updated"] for d in docs] == sorted((d["_updated"] for d in docs), reverse=True)
    assert _get(client, "/ex") == docs  # also without /v1


def test_list_ex_status_option(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _, done = _start(client)
    drain(container, queue)
    clock.advance(1)
    _, waiting = _start(client)
    clock.advance(1)
    _, stopped = _start(client)
    _post(client, f"/v1/ex/{stopped}/_stop")
    assert _exs(client, "?status=completed") == [done]
    assert _exs(client, "?status=pending") == [waiting]
    assert _exs(client, "?status=pending,stopped") == [stopped, waiting]
    assert _exs(client, "?status=*") == [stopped, waiting, done]
    assert _exs(client, "?status=running") == []
    assert _field_error(client, "/v1/ex?status=bogus") == ["status"]
    assert _field_error(client, "/v1/ex?status=running,nope") == ["status"]


def test_list_ex_sort_from_size_with_ties(client: Client, clock: FakeClock) -> None:
    # five executions of five jobs, all created (and updated) at the same instant
    tied = sorted(_start(client)[1] for _ in range(5))
    clock.advance(1)
    _, later = _start(client)
    assert _exs(client) == [later, *tied[::-1]]
    assert _exs(client, "?sort=_created:asc") == [*tied, later]
    assert _exs(client, "?sort=_updated:asc") == [*tied, later]
    assert _exs(client, "?sort=_created:desc") == [later, *tied[::-1]]
    pages = [_exs(client, f"?sort=_created:asc&from={f}&size=4") for f in (0, 4, 8)]
    assert pages == [tied[:4], [tied[4], later], []]
    assert _exs(client, "?size=1") == [later]
    for bad in ("status:asc", "_created:sideways"):
        assert _field_error(client, f"/v1/ex?sort={bad}") == ["sort"]
    assert _field_error(client, "/v1/ex?from=10000&size=1") == ["from", "size"]


def test_ledger_records_are_listed_only_when_asked_for(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    scheduled = {**JOB, "overlap": "skip", "workers": 1, "schedule": {"rate": "rate(1 minute)"}}
    job_id = _post(client, "/v1/jobs?start=true", scheduled)[1]["job_id"]
    clock.t = T0 + 56
    container.supervisor.tick()
    assert start_due(container, queue, clock, T0 + 60) == ["running"]  # its slices wait
    clock.t = T0 + 116
    container.supervisor.tick()
    assert start_due(container, queue, clock, T0 + 120) == ["skipped"]  # 08:01 still runs
    skipped = _get(client, "/v1/ex?status=skipped")
    assert len(skipped) == 1 and skipped[0]["job_id"] == job_id
    assert skipped[0]["_status"] == "skipped" and skipped[0]["reason"] == "overlap"
    assert skipped[0]["ex_id"] not in _exs(client)
    assert _exs(client, "?status=missed") == []


def test_list_ex_deleted_option(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    gone_job, gone = _start(client)
    clock.advance(1)
    _, kept = _start(client)
    drain(container, queue)
    assert client.http.delete(f"/v1/jobs/{gone_job}").status_code == 200
    assert _exs(client) == [kept]
    assert _exs(client, "?deleted=false") == [kept]
    deleted = _get(client, "/v1/ex?deleted=true")
    assert [d["ex_id"] for d in deleted] == [gone] and deleted[0]["_deleted"] is True
    assert _exs(client, "?deleted=true&status=completed") == [gone]
    assert _field_error(client, "/v1/ex?deleted=perhaps") == ["deleted"]


# ---- GET /v1/ex/errors ---------------------------------------------------------------------
@pytest.mark.moto  # measures DynamoDB
def test_all_errors_have_the_per_execution_shape(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _, sliced = _start(client, SLICED_FAILING)
    drain(container, queue)
    clock.advance(5)
    _, one = _start(client, ONE_SLICE_FAILING)
    drain(container, queue)
    clock.advance(5)
    _start(client)  # no errors
    drain(container, queue)
    per_ex = _get(client, f"/v1/ex/{sliced}/errors") + _get(client, f"/v1/ex/{one}/errors")
    assert len(per_ex) == 3
    with counting() as c:
        everything = _get(client, "/v1/ex/errors")
    assert c.calls["Scan"] == 0
    assert sorted(everything, key=json.dumps) == sorted(per_ex, key=json.dumps)
    for item in everything:
        assert set(item) >= SEED_ERROR_FIELDS and item["state"] == "error"
        assert "injected failure" in item["error"]
    assert everything[0]["ex_id"] == one  # newest update first
    assert _get(client, "/ex/errors") == everything  # not taken for an ex_id; no /v1 too


def test_all_errors_sort_from_size(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _, one = _start(client, ONE_SLICE_FAILING)
    drain(container, queue)
    clock.advance(5)
    _, sliced = _start(client, SLICED_FAILING)
    drain(container, queue)

    def keys(query: str) -> list[tuple[str, int]]:
        return [(e["ex_id"], e["slicer_order"]) for e in _get(client, f"/v1/ex/errors{query}")]

    oldest_first = keys("?sort=_updated:asc")
    assert oldest_first[0] == (one, 0)
    assert sorted(oldest_first[1:]) == [(sliced, 1), (sliced, 3)]
    assert keys("?sort=_updated:desc") == oldest_first[::-1]
    assert keys("") == oldest_first[::-1]
    assert keys("?sort=_created:asc")[0] == (one, 0)
    assert keys("?sort=_updated:asc&from=1&size=1") == oldest_first[1:2]
    assert keys("?sort=_updated:asc&from=3") == []
    assert _field_error(client, "/v1/ex/errors?sort=error") == ["sort"]
    assert _field_error(client, "/v1/ex/errors?from=5000&size=5001") == ["from", "size"]
