"""Teraslice's controller stats, an execution's slices, and error listings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from tests.conftest import drain
from tests.helpers import deliver

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

FAILING = {
    "name": "e",
    "workers": 2,
    "max_retries": 0,
    "operations": [{"_op": "range", "end": 5}, {"_op": "fail", "slices": [1, 3]}],
}
CONTROLLER_FIELDS = {
    "ex_id",
    "job_id",
    "name",
    "workers_available",
    "workers_active",
    "workers_joined",
    "workers_reconnected",
    "workers_disconnected",
    "failed",
    "subslices",
    "queued",
    "slice_range_expansion",
    "processed",
    "slicers",
    "subslice_by_key",
    "started",
}


def _start(client: Client, body: dict[str, Any]) -> tuple[str, str]:
    r = client.http.post(
        "/v1/jobs?start=true", body=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    return r.json_body["job_id"], r.json_body["ex_id"]


def test_controllers_show_live_executions(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    job_id, ex_id = _start(client, FAILING)
    deliver(container, queue.take()[0])
    for path in (
        "/v1/cluster/controllers",
        f"/v1/jobs/{job_id}/controller",
        f"/v1/ex/{ex_id}/controller",
    ):
        body = client.http.get(path).json_body
        assert [c["ex_id"] for c in body] == [ex_id], path
        assert set(body[0]) >= CONTROLLER_FIELDS
        assert body[0]["queued"] == 2 and body[0]["name"] == "e"
    drain(container, queue)
    assert client.http.get("/v1/cluster/controllers").json_body == []
    assert client.http.get(f"/v1/ex/{ex_id}/controller").json_body == []


def test_slices_by_state_and_errors(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    job_id, ex_id = _start(client, FAILING)
    drain(container, queue)
    slices = client.http.get(f"/v1/ex/{ex_id}/slices").json_body
    assert len(slices) == 5
    errors = client.http.get(f"/v1/ex/{ex_id}/slices?state=error").json_body
    assert sorted(s["slicer_order"] for s in errors) == [1, 3]
    for path in (f"/v1/ex/{ex_id}/errors", f"/v1/jobs/{job_id}/errors", f"/ex/{ex_id}/errors"):
        body = client.http.get(path).json_body
        assert sorted(e["slicer_order"] for e in body) == [1, 3], path
        for key in (
            "slice_id",
            "slicer_id",
            "slicer_order",
            "request",
            "state",
            "ex_id",
            "_created",
            "_updated",
            "error",
        ):
            assert key in body[0]
        assert "injected failure" in body[0]["error"]
    one = client.http.get(f"/v1/ex/{ex_id}/errors?size=1&from=1&sort=_updated:asc").json_body
    assert len(one) == 1
    bad = client.http.get(f"/v1/ex/{ex_id}/slices?state=done")
    assert bad.status_code == 400 and bad.json_body["errors"][0]["field"] == "state"
    assert client.http.get(f"/v1/ex/{ex_id}/errors?sort=name").status_code == 400
    assert client.http.get(f"/v1/ex/{ex_id}/errors?size=x").status_code == 400


def test_a_one_slice_runs_error_is_listed(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    body = {
        "name": "one",
        "max_retries": 0,
        "operations": [{"_op": "noop"}, {"_op": "fail", "slices": [0]}],
    }
    job_id, ex_id = _start(client, body)
    drain(container, queue)
    errors = client.http.get(f"/v1/jobs/{job_id}/errors").json_body
    assert len(errors) == 1 and errors[0]["ex_id"] == ex_id
