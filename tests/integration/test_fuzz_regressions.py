"""Server errors the schemathesis run (tests/e2e/test_schemathesis.py) found, one test each."""

from __future__ import annotations

import pytest
import requests

from app import app
from cadenza_tools.local.api_server import ApiServer
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory import MemoryNotifier, MemoryQueue
from chalicelib.bootstrap import build_container
from chalicelib.config import Settings
from chalicelib.domain.transitions import SupervisorState
from chalicelib.ports import FakeClock
from chalicelib.services.admin import AdminService
from tests.conftest import T0

NOOP = [{"_op": "noop"}, {"_op": "noop"}]


def test_supervisor_state_with_a_scheduled_job(backend: Settings, store: DynamoStore) -> None:
    """GET /api/supervisor/state queried the due index up to an infinite horizon, a number
    DynamoDB refuses (DynamoDB Local: ValidationException, so a 503 on every call)."""
    clock = FakeClock(T0)
    c = build_container(
        backend, store=store, queue=MemoryQueue(), clock=clock, notifier=MemoryNotifier()
    )
    admin = AdminService(store, clock, backend)
    c.supervisor.tick(T0)
    assert admin.state().state == SupervisorState.FINISHED
    body = {"name": "s", "operations": NOOP, "schedule": {"rate": "rate(1 minute)"}}
    c.jobs.submit(body, True)
    assert admin.state().state == SupervisorState.RUNNING


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "CONNECT"])
def test_a_method_no_route_has_is_a_405_not_a_501(method: str) -> None:
    """http.server answered methods it has no do_<METHOD> for with a 501 HTML page."""
    with ApiServer(app) as server:
        response = requests.request(method, f"{server.url}/v1/openapi.json", timeout=10)
    assert response.status_code == 405
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "method_not_allowed" and method in body["message"]
