"""Teraslice's job routes (seed 001): GET /v1/jobs and its options, GET /v1/jobs/{id}?ex=,
PUT, DELETE, _active / _inactive; through chalice.test.Client on moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.adapters.dynamodb.counting import counting
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.ports import FakeClock
from tests.clients import OTHER, OWNER, SignedClient
from tests.conftest import T0, drain
from tests.helpers import field_error as _field_error
from tests.helpers import get_ok as _get

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

JOB = {"name": "j", "operations": [{"_op": "range", "end": 2}, {"_op": "noop"}]}
SEED_JOB_FIELDS = {
    "name",
    "lifecycle",
    "workers",
    "operations",
    "job_id",
    "_created",
    "_updated",
    "_context",
    "active",
}
HOURLY = {"rate": "rate(1 hour)"}


def _send(client: Client, method: str, path: str, body: object = None) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"headers": {"Content-Type": "application/json"}}
    if body is not None:
        kwargs["body"] = json.dumps(body)
    r = getattr(client.http, method)(path, **kwargs)
    return r.status_code, r.json_body


def _submit(client: Client, body: dict[str, Any] | None = None, start: bool = False) -> str:
    status, out = _send(client, "post", f"/v1/jobs?start={str(start).lower()}", body or JOB)
    assert status in (201, 202), out
    return str(out["job_id"])


def _ids(docs: list[dict[str, Any]]) -> list[str]:
    return [d["job_id"] for d in docs]


# ---- GET /v1/jobs ------------------------------------------------------------------------
@pytest.mark.moto  # measures DynamoDB
def test_list_jobs_has_seed_shape_newest_update_first_from_indexes(
    client: Client, clock: FakeClock
) -> None:
    ids = []
    for i in range(3):
        ids.append(_submit(client, {**JOB, "name": f"j{i}"}))
        clock.advance(1)
    # touching the oldest job makes it the most recently updated
    assert _send(client, "put", f"/v1/jobs/{ids[0]}", {**JOB, "name": "j0b"})[0] == 200
    with counting() as c:
        docs = _get(client, "/v1/jobs")
    assert c.calls["Scan"] == 0 and c.calls["Query"] >= 1
    assert _ids(docs) == [ids[0], ids[2], ids[1]]  # sort defaults to _updated:desc
    for doc in docs:
        assert set(doc) >= SEED_JOB_FIELDS and doc["_context"] == "job"
        assert "_deleted" not in doc and "ex" not in doc
    assert docs[0]["name"] == "j0b" and docs[0]["operations"] == JOB["operations"]
    assert _ids(_get(client, "/jobs")) == _ids(docs)  # also without /v1


def test_list_jobs_sort_options(client: Client, clock: FakeClock) -> None:
    ids = []
    for _ in range(3):
        ids.append(_submit(client))
        clock.advance(1)
    _send(client, "put", f"/v1/jobs/{ids[1]}", {**JOB, "workers": 2})  # ids[1] updated last
    assert _ids(_get(client, "/v1/jobs?sort=_created:asc")) == ids
    assert _ids(_get(client, "/v1/jobs?sort=_created:desc")) == ids[::-1]
    assert _ids(_get(client, "/v1/jobs?sort=_created")) == ids[::-1]
    assert _ids(_get(client, "/v1/jobs?sort=_updated:asc")) == [ids[0], ids[2], ids[1]]
    assert _ids(_get(client, "/v1/jobs?sort=_updated:desc")) == [ids[1], ids[2], ids[0]]
    for bad in ("name:asc", "_created:up", "_updated:desc:x", "job_id"):
        assert _field_error(client, f"/v1/jobs?sort={bad}") == ["sort"]


def test_list_jobs_from_and_size_page_in_a_stable_order_with_ties(
    client: Client, clock: FakeClock
) -> None:
    # seven jobs created (and updated) at the same instant: ties are ordered by job_id
    ids = [_submit(client) for _ in range(7)]
    everything = _get(client, "/v1/jobs?size=100")
    assert _ids(everything) == sorted(ids, reverse=True)
    assert _ids(_get(client, "/v1/jobs?sort=_created:asc")) == sorted(ids)
    pages = [_ids(_get(client, f"/v1/jobs?from={f}&size=3")) for f in (0, 3, 6, 9)]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    assert [i for page in pages for i in page] == _ids(everything)
    assert _ids(_get(client, "/v1/jobs?from=0&size=3")) == pages[0]  # the same again
    assert _get(client, "/v1/jobs?size=0") == []
    assert len(_get(client, "/v1/jobs")) == 7  # size defaults to 100


def test_list_jobs_window_is_bounded_like_elasticsearch(client: Client) -> None:
    _submit(client)
    assert _get(client, "/v1/jobs?from=9999&size=1") == []
    assert _field_error(client, "/v1/jobs?from=9999&size=2") == ["from", "size"]
    assert _field_error(client, "/v1/jobs?size=10001") == ["from", "size"]
    assert _field_error(client, "/v1/jobs?from=-1") == ["from"]
    assert _field_error(client, "/v1/jobs?size=ten") == ["size"]


def test_list_jobs_active_option(client: Client, clock: FakeClock) -> None:
    a = _submit(client)
    clock.advance(1)
    b = _submit(client)
    status, doc = _send(client, "post", f"/v1/jobs/{b}/_inactive")
    assert status == 200 and doc["active"] is False
    assert _ids(_get(client, "/v1/jobs?active=true")) == [a]
    assert _ids(_get(client, "/v1/jobs?active=false")) == [b]
    assert set(_ids(_get(client, "/v1/jobs"))) == {a, b}
    assert _field_error(client, "/v1/jobs?active=maybe") == ["active"]


def test_list_jobs_deleted_option(client: Client, clock: FakeClock) -> None:
    kept = _submit(client)
    clock.advance(1)
    gone = _submit(client)
    assert _send(client, "delete", f"/v1/jobs/{gone}")[0] == 200
    assert _ids(_get(client, "/v1/jobs")) == [kept]
    assert _ids(_get(client, "/v1/jobs?deleted=false")) == [kept]
    deleted = _get(client, "/v1/jobs?deleted=true")
    assert _ids(deleted) == [gone]
    assert deleted[0]["_deleted"] is True and deleted[0]["active"] is False
    assert deleted[0]["_deleted_on"] == "2027-01-15T08:00:01.000Z"
    assert _field_error(client, "/v1/jobs?deleted=yes please") == ["deleted"]


def test_list_jobs_ex_option_attaches_the_current_execution(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    never_ran = _submit(client)
    clock.advance(1)
    ran = _submit(client, start=True)
    drain(container, queue)
    docs = {d["job_id"]: d for d in _get(client, "/v1/jobs?ex=_status,ex_id")}
    assert docs[never_ran]["ex"] == {}
    current = _get(client, f"/v1/jobs/{ran}/ex")
    assert docs[ran]["ex"] == {"_status": "completed", "ex_id": current["ex_id"]}
    full = {d["job_id"]: d for d in _get(client, "/v1/jobs?ex=")}
    assert full[ran]["ex"] == current


# ---- GET /v1/jobs/{id}?ex= -----------------------------------------------------------------
def test_get_job_with_ex_fields(client: Client, container: Container, queue: MemoryQueue) -> None:
    job_id = _submit(client, {**JOB, "workers": 2})
    plain = _get(client, f"/v1/jobs/{job_id}")
    assert set(plain) >= SEED_JOB_FIELDS and "ex" not in plain
    assert _get(client, f"/v1/jobs/{job_id}?ex=_status,workers")["ex"] == {}  # no execution
    _send(client, "post", f"/v1/jobs/{job_id}/_start")
    doc = _get(client, f"/v1/jobs/{job_id}?ex=_status,workers")
    assert doc["ex"] == {
        "_status": "pending",
        "workers": 2,
    }
    assert {k: v for k, v in doc.items() if k != "ex"} == plain
    drain(container, queue)
    assert _get(client, f"/jobs/{job_id}?ex=_status")["ex"] == {"_status": "completed"}
    # no field named: every field of the execution document
    assert _get(client, f"/v1/jobs/{job_id}?ex=")["ex"] == _get(client, f"/v1/jobs/{job_id}/ex")
    # unknown names are ignored (Elasticsearch source filtering)
    assert _get(client, f"/v1/jobs/{job_id}?ex=_status,nope")["ex"] == {"_status": "completed"}


# ---- PUT /v1/jobs/{id} --------------------------------------------------------------------
def test_put_updates_the_job_and_returns_its_document(client: Client, clock: FakeClock) -> None:
    job_id = _submit(client)
    created = _get(client, f"/v1/jobs/{job_id}")
    clock.advance(5)
    # the document sent back with changes, its owner included
    changed = {**created, "name": "renamed", "workers": 3}
    changed = {k: v for k, v in changed.items() if k in JOB or k in ("workers", "owner")}
    status, doc = _send(client, "put", f"/v1/jobs/{job_id}", changed)
    assert status == 200
    assert set(doc) >= SEED_JOB_FIELDS
    assert (doc["name"], doc["workers"], doc["owner"]) == ("renamed", 3, OWNER.arn)
    assert doc["_created"] == created["_created"]
    assert doc["_updated"] == "2027-01-15T08:00:05.000Z"
    assert _get(client, f"/v1/jobs/{job_id}") == doc
    runs = client.http.get(f"/scheduled-jobs?owner={OWNER.arn}").json_body
    assert [j["id"] for j in runs] == [job_id]


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_a_job_cannot_be_given_to_another_owner(
    client: SignedClient, admin_client: SignedClient, who: str
) -> None:
    """The owner is the submitter, set at create: a body naming another owner is a 400
    naming `owner`, on create and on update (by the owner or an admin), and nothing
    changes."""
    caller = client if who == "owner" else admin_client
    status, body = _send(caller, "post", "/v1/jobs", {**JOB, "owner": OTHER.arn})
    assert (status, body["errors"][0]["field"]) == (400, "owner")
    assert _get(admin_client, "/v1/jobs") == []
    job_id = _submit(client)
    status, body = _send(caller, "put", f"/v1/jobs/{job_id}", {**JOB, "owner": "mallory"})
    assert (status, body["errors"][0]["field"]) == (400, "owner")
    assert _get(client, f"/v1/jobs/{job_id}")["owner"] == OWNER.arn
    assert _get(admin_client, f"/v1/jobs/{job_id}")["owner"] == OWNER.arn


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "x"},
        {**JOB, "workers": 0},
        {**JOB, "operations": [{"_op": "nope"}]},
        {**JOB, "schedule": {"cron": "not a cron"}},
        [1, 2],
    ],
)
@pytest.mark.moto  # measures DynamoDB
def test_put_validates_like_a_create_and_writes_nothing(client: Client, payload: object) -> None:
    job_id = _submit(client)
    before = _get(client, f"/v1/jobs/{job_id}")
    create_status, create_body = _send(client, "post", "/v1/jobs", payload)
    with counting() as c:
        status, body = _send(client, "put", f"/v1/jobs/{job_id}", payload)
    assert (status, body) == (create_status, create_body) and status == 400
    assert c.writes == 0
    assert _get(client, f"/v1/jobs/{job_id}") == before


def test_put_bad_json_is_a_400_and_unknown_job_a_404(client: Client) -> None:
    job_id = _submit(client)
    r = client.http.put(
        f"/v1/jobs/{job_id}", body="{", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "body"
    status, body = _send(client, "put", "/v1/jobs/no-such-job", JOB)
    assert status == 404 and body["error"] == "not_found"


def test_put_schedule_change_recomputes_next_fire_at(
    client: Client, container: Container, clock: FakeClock
) -> None:
    job_id = _submit(client, {**JOB, "schedule": HOURLY}, start=True)
    assert _get(client, f"/v1/jobs/{job_id}")["next_fire_at"] == "2027-01-15T09:00:00.000Z"
    clock.t = T0 + 30
    minutely = {**JOB, "schedule": {"rate": "rate(1 minute)"}}
    status, doc = _send(client, "put", f"/v1/jobs/{job_id}", minutely)
    assert status == 200 and doc["schedule_state"] == "SCHEDULED"
    # a rate counts from its anchor: the time of the change, as for a submission
    assert doc["next_fire_at"] == "2027-01-15T08:01:30.000Z"
    assert container.supervisor.tick(T0 + 90).runs_created == 1  # fires on the new schedule
    # the same schedule again leaves the next slot alone
    clock.t = T0 + 100
    doc = _send(client, "put", f"/v1/jobs/{job_id}", {**minutely, "name": "n"})[1]
    assert doc["next_fire_at"] == "2027-01-15T08:02:30.000Z"
    # a scheduled job must keep a schedule
    status, body = _send(client, "put", f"/v1/jobs/{job_id}", JOB)
    assert status == 400 and body["errors"][0]["field"] == "schedule"


def test_put_is_conditioned_on_the_jobs_version(container: Container) -> None:
    job, _ = container.jobs.submit(JOB, start=False)
    assert container.store.set_job_active(job, False, T0 + 1)
    stale = job  # still at the version read before the change above
    assert not container.store.update_job(stale, {**JOB, "name": "late"}, None, T0 + 2)
    assert not container.store.delete_job(stale, T0 + 2)
    assert not container.store.set_job_active(stale, True, T0 + 2)
    current = container.jobs.document(job.job_id)
    assert current.definition["name"] == "j" and not current.deleted and not current.active


def test_delete_is_refused_while_the_job_holds_an_active_run(container: Container) -> None:
    job, run = container.jobs.submit(JOB, start=True)
    assert run is not None
    held = container.jobs.document(job.job_id)
    assert held.active_slots == {run.slot}
    assert not container.store.delete_job(held, T0 + 1)  # the store's own condition
    assert not container.jobs.document(job.job_id).deleted


# ---- DELETE /v1/jobs/{id} ------------------------------------------------------------------
def test_delete_refused_while_the_current_execution_runs(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    job_id = _submit(client, start=True)
    status, body = _send(client, "delete", f"/v1/jobs/{job_id}")
    assert status == 409 and body["current_state"] == "pending" and body["ex_id"]
    assert "_deleted" not in _get(client, f"/v1/jobs/{job_id}")
    drain(container, queue)
    status, doc = _send(client, "delete", f"/v1/jobs/{job_id}")
    assert status == 200
    assert set(doc) >= SEED_JOB_FIELDS
    assert doc["_deleted"] is True and doc["active"] is False and doc["_deleted_on"]


def test_deleted_job_cannot_be_started_updated_recovered_or_toggled(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job_id = _submit(client, {**JOB, "max_retries": 0}, start=True)
    drain(container, queue)
    ex_id = _get(client, f"/v1/jobs/{job_id}/ex")["ex_id"]
    clock.advance(3)
    status, doc = _send(client, "delete", f"/v1/jobs/{job_id}")
    assert status == 200 and doc["_deleted_on"] == "2027-01-15T08:00:03.000Z"
    for method, path, body in (
        ("post", f"/v1/jobs/{job_id}/_start", None),
        ("put", f"/v1/jobs/{job_id}", JOB),
        ("post", f"/v1/jobs/{job_id}/_recover", None),
        ("post", f"/v1/ex/{ex_id}/_recover", None),
        ("post", f"/v1/jobs/{job_id}/_active", None),
        ("post", f"/v1/jobs/{job_id}/_schedule", None),
    ):
        status, body = _send(client, method, path, body)
        assert status == 409, (path, body)
    # still readable, as deleted
    assert _get(client, f"/v1/jobs/{job_id}")["_deleted"] is True
    # deleting again is harmless and returns the same document
    assert _send(client, "delete", f"/v1/jobs/{job_id}") == (200, doc)
    assert _send(client, "delete", "/v1/jobs/no-such-job")[0] == 404


def test_deleted_scheduled_job_leaves_the_due_index(
    client: Client, container: Container, clock: FakeClock
) -> None:
    job_id = _submit(client, {**JOB, "schedule": {"rate": "rate(1 minute)"}}, start=True)
    assert _send(client, "delete", f"/v1/jobs/{job_id}")[0] == 200
    assert container.supervisor.tick(T0 + 60).runs_created == 0
    assert container.supervisor.tick(T0 + 600).runs_created == 0
    assert container.store.list_runs(job_id) == []
    assert _get(client, f"/v1/jobs/{job_id}")["next_fire_at"] is None


# ---- _active / _inactive ---------------------------------------------------------------------
def test_active_and_inactive_return_the_job_document(client: Client, clock: FakeClock) -> None:
    job_id = _submit(client)
    clock.advance(2)
    status, doc = _send(client, "post", f"/v1/jobs/{job_id}/_inactive")
    assert status == 200 and set(doc) >= SEED_JOB_FIELDS
    assert doc["active"] is False and doc["_updated"] == "2027-01-15T08:00:02.000Z"
    assert _send(client, "post", f"/v1/jobs/{job_id}/_start")[0] == 409  # not on demand
    status, doc = _send(client, "post", f"/jobs/{job_id}/_active")
    assert status == 200 and doc["active"] is True
    assert _send(client, "post", f"/v1/jobs/{job_id}/_start")[0] == 202
    assert _send(client, "post", "/v1/jobs/no-such-job/_active")[0] == 404


def test_inactive_job_keeps_firing_on_its_schedule(client: Client, container: Container) -> None:
    job_id = _submit(client, {**JOB, "schedule": {"rate": "rate(1 minute)"}}, start=True)
    _send(client, "post", f"/v1/jobs/{job_id}/_inactive")
    assert container.supervisor.tick(T0 + 60).runs_created == 1
