"""The README's first session with an `http` job, on a running local stack (`cadenza dev
--backend moto`, a subprocess): a scheduled job POSTs to a server the test starts on
127.0.0.1, which the stack's default allow-list lets it call; its runs succeed with the
server's answer as their result, and each run's log, served by `GET /v1/ex/{exId}/logs`,
says what the call got. The README's job fires every minute; this one every 2 seconds, the
same op otherwise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_local_stack import RUN_TIMEOUT_S, StackProcess, moto_stack, wait_for
from tests.target_server import TargetServer, target_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    yield from moto_stack(tmp_path_factory, "http-target")


@pytest.fixture
def server() -> Iterator[TargetServer]:
    with target_server() as s:
        yield s


def _completed(stack: StackProcess, job_id: str) -> dict[str, Any] | None:
    response = stack.get(f"/scheduled-jobs/{job_id}/runs")
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()
    for run in runs:
        assert run["executionStatus"] not in ("failed", "terminated"), (run, stack.tail())
    return next((r for r in runs if r["executionStatus"] == "completed"), None)


def test_a_scheduled_http_job_calls_a_local_server_and_its_log_is_served(
    stack: StackProcess, server: TargetServer
) -> None:
    url = f"{server.url}/ping"
    op = {"_op": "http", "method": "POST", "url": url, "json": {"slot": "{{ slot }}"}}
    body = {"name": "ping", "operations": [op], "schedule": {"interval_seconds": 2}}
    status, job = stack.submit(body)
    assert status == 201 and job["schedule_state"] == "SCHEDULED", job
    run = wait_for(lambda: _completed(stack, job["job_id"]), RUN_TIMEOUT_S, "a completed run")
    suspended = stack.http.post(f"{stack.url}/v1/jobs/{job['job_id']}/_suspend", timeout=10)
    assert suspended.status_code == 200, suspended.text

    ex = stack.get(f"/v1/ex/{run['id']}").json()
    assert ex["result"]["status"] == 200 and ex["result"]["attempts"] == 1, ex
    seen = next(s for s in server.seen if json.loads(s.body) == {"slot": run["slot"]})
    assert seen.method == "POST" and seen.path == "/ping"
    assert len(seen.headers["Idempotency-Key"]) == 32

    logs = stack.get(f"/v1/ex/{run['id']}/logs")
    assert logs.status_code == 200, logs.text
    page = logs.json()
    assert page["ex_id"] == run["id"] and page["status"] == "completed"
    assert [(e["slice_id"], e["source"], e["message"]) for e in page["entries"]] == [
        ("000000", "http", f"POST {url}: attempt 1: status 200")
    ]
