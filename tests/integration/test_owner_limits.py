"""Limits per owner, through the routes on moto: jobs an owner may keep, and runs started
on demand that may be active at once. Each refusal is a 429 naming the limit; nothing is
written; another owner is not affected; a deleted job or an ended run frees its place."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app import app
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.config import Limits
from chalicelib.domain.limits import JOBS
from chalicelib.ports import FakeClock
from tests import conftest
from tests.clients import OTHER, OWNER, SignedClient
from tests.conftest import drain, moto_container

JSON = {"Content-Type": "application/json"}
JOB = {"name": "l", "operations": [{"_op": "noop"}, {"_op": "echo"}], "overlap": "allow"}


@pytest.fixture
def container(aws: None, clock: FakeClock, queue: MemoryQueue) -> Iterator[Container]:
    limits = Limits(max_jobs_per_owner=2, max_active_runs_per_owner=2)
    yield from moto_container(conftest.test_settings(limits=limits), clock, queue)


def _submit(client: SignedClient, start: bool = False) -> Any:
    path = "/v1/jobs?start=true" if start else "/v1/jobs"
    return client.http.post(path, body=json.dumps(JOB), headers=JSON)


def _run(client: SignedClient, job_id: str) -> Any:
    return client.http.post(f"/scheduled-jobs/{job_id}/runs", body="{}", headers=JSON)


def _assert_429(r: Any, limit: str, maximum: int) -> None:
    assert r.status_code == 429, r.body
    body = r.json_body
    assert (body["error"], body["limit"], body["max"]) == ("limit_exceeded", limit, maximum)
    assert body["errors"][0]["field"] == "owner" and body["message"].startswith("owner: ")


def test_jobs_per_owner(client: SignedClient, container: Container) -> None:
    first = _submit(client).json_body["job_id"]
    assert _submit(client).status_code == 201
    _assert_429(_submit(client), "max_jobs_per_owner", 2)
    assert len(client.http.get("/v1/jobs").json_body) == 2  # nothing written
    with SignedClient(app, OTHER) as other:
        assert _submit(other).status_code == 201  # another owner's own limit
    assert client.http.delete(f"/v1/jobs/{first}").status_code == 200
    assert _submit(client).status_code == 201  # the deleted job's place


def test_a_job_deleted_without_giving_back_frees_its_place_at_the_limit(
    client: SignedClient, container: Container
) -> None:
    first = _submit(client).json_body["job_id"]
    _submit(client)
    assert client.http.delete(f"/v1/jobs/{first}").status_code == 200
    held = container.store.quota_members(OWNER.arn, JOBS)
    container.store.take_quota(OWNER.arn, JOBS, f"{first}@0", 3)  # as if never given back
    assert len(container.store.quota_members(OWNER.arn, JOBS)) == len(held) + 1
    assert _submit(client).status_code == 201


def test_active_on_demand_runs_per_owner(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    job_id = _submit(client, start=True).json_body["job_id"]  # its first run counts
    assert _run(client, job_id).status_code == 202
    _assert_429(_run(client, job_id), "max_active_runs_per_owner", 2)
    runs = client.http.get(f"/scheduled-jobs/{job_id}/runs").json_body
    assert len(runs) == 2  # the refused one was not written
    _assert_429(_submit(client, start=True), "max_active_runs_per_owner", 2)
    assert len(client.http.get("/v1/jobs").json_body) == 1  # nor its job: all or nothing
    drain(container, queue)  # both runs end
    assert _run(client, job_id).status_code == 202  # ended runs free their places


def test_the_engine_itself_is_not_limited(container: Container) -> None:
    for _ in range(3):
        container.jobs.submit(JOB, start=True)
