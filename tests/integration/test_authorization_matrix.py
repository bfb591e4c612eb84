"""The authorization matrix: every route of the API x {anonymous, another user, the owner,
an admin}, generated from the route table itself (`routing.Routes`, mounted at `/v1` and at
the root), so a route added later is in it without a line written here.

Each request goes through the local gateway, which checks its SigV4 signature as API
Gateway does, to the routes, which read the caller from the request context. Expected:

- anonymous (unsigned): 403 from the gateway, on every route;
- a route that needs the admin role: 403 for anyone else;
- a route on an object (a job, execution or run) of the owner: 404 for another user,
  exactly as for an object that does not exist; the owner and an admin reach it;
- any other route: every authenticated principal reaches it, and a listing shows another
  user nothing of the owner's.

"Reaches it" is: neither 401, 403 nor 404, and no 5xx (the state of the world may make a
route answer 400 or 409, e.g. pausing a completed execution).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from chalice.app import IAMAuthorizer

from app import app
from cadenza_tools.local.users import LocalUser
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.entrypoints.http import ROOT_ONLY, VERSIONED
from chalicelib.entrypoints.http.routing import Route
from tests.clients import ADMIN, AS_OWNER, OTHER, OWNER, USERS, SignedClient
from tests.conftest import drain
from tests.integration.test_assets import ops_bundle

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

OWNED = ("{job_id}", "{ex_id}", "{run_id}", "{name}")
AGENT_ROUTES = ("/agent/",)  # an agent's own: 403 for any caller that is not an agent
CALLERS: dict[str, LocalUser | None] = {
    "anonymous": None,
    "other": OTHER,
    "owner": OWNER,
    "admin": ADMIN,
}
AGENT = USERS.add("matrix-agent")  # the principal the owner's agent acts as
# it writes a result file: result-file answers its owner 200
JOB = {"name": "matrix", "operations": [{"_op": "range", "end": 2}, {"_op": "csv_result"}]}


@dataclass(frozen=True)
class Endpoint:
    path: str  # as mounted, with its {parameters}
    method: str
    route: Route

    @property
    def owned(self) -> bool:
        return any(p in self.path for p in OWNED)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def endpoints() -> list[Endpoint]:
    """Every (path, method) the API serves, from the route table."""
    mounts = [("/v1", VERSIONED), ("", VERSIONED + ROOT_ONLY)]
    out = []
    for prefix, resources in mounts:
        for routes in resources:
            for route in routes.routes:
                path = (prefix + route.path).rstrip("/") or "/"
                out += [Endpoint(path, m, route) for m in route.methods]
    return out


ENDPOINTS = endpoints()


def expected(ep: Endpoint, caller: str) -> int | None:
    """The status `caller` gets from `ep`; None: it reaches the route."""
    if caller == "anonymous" or (ep.route.admin and caller != "admin"):
        return 403
    if any(part in ep.path for part in AGENT_ROUTES):
        return 403
    if ep.owned and caller == "other":
        return 404
    return None


@dataclass
class World:
    """One owner's objects: a job that ran to completion, its execution; an asset; a
    supervisor that has ticked."""

    job_id: str
    ex_id: str
    asset_id: str
    agent: str = "matrix"  # the owner's agent

    def url(self, ep: Endpoint) -> str:
        values = {
            "job_id": self.job_id,
            "ex_id": self.ex_id,
            "run_id": self.ex_id,
            "asset": self.asset_id,
            "version": "1.0.0",
            "name": self.agent,
            "task_id": f"{self.ex_id}.000000",
        }
        return re.sub(r"\{(\w+)\}", lambda m: values[m[1]], ep.path)


@pytest.fixture
def world(container: Container, queue: MemoryQueue) -> World:
    asset, _ = container.assets.upload(ops_bundle())
    job, run = container.jobs.as_(AS_OWNER).submit(JOB, start=True)
    assert run is not None
    drain(container, queue)
    container.supervisor.tick(container.clock.now())  # the supervisor's routes need a tick
    world = World(job.job_id, run.ex_id, asset.asset_id)
    container.agents.as_(AS_OWNER).add(world.agent, AGENT.arn)
    return world


@pytest.fixture
def clients(container: Container) -> Iterator[dict[str, SignedClient]]:
    yield {name: SignedClient(app, user) for name, user in CALLERS.items()}


def call(client: SignedClient, ep: Endpoint, url: str) -> Any:
    headers = {"Content-Type": "application/json"}
    # a job's definition where one is expected; an empty body for the rest (actions)
    body = json.dumps(JOB) if ep.route.view.__name__ in ("submit_job", "update_job") else ""
    if ep.path.endswith("/assets") and ep.method == "POST":
        headers, body = {"Content-Type": "application/octet-stream"}, ""
    return client.http.request(ep.method, url, headers=headers, body=body.encode())


def test_the_matrix_covers_every_route_the_app_serves() -> None:
    """Every route Chalice registered is in the matrix, and behind the IAM authorizer."""
    served = {(path, m) for path, entries in app.routes.items() for m in entries}
    assert served == {(ep.path, ep.method) for ep in ENDPOINTS}
    for path, entries in app.routes.items():
        for method, entry in entries.items():
            assert isinstance(entry.authorizer, IAMAuthorizer), f"{method} {path}"


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("ep", ENDPOINTS, ids=str)
def test_authorization_matrix(
    ep: Endpoint, caller: str, world: World, clients: dict[str, SignedClient]
) -> None:
    r = call(clients[caller], ep, world.url(ep))
    want = expected(ep, caller)
    if want is not None:
        assert r.status_code == want, r.body
        if want == 404:  # as for an object that does not exist: nothing tells it apart
            assert r.json_body["error"] == "not_found"
        return
    assert r.status_code not in (401, 403, 404) and r.status_code < 500, r.body


@pytest.mark.parametrize(
    "ep", [ep for ep in ENDPOINTS if ep.method == "GET" and not ep.owned], ids=str
)
def test_another_user_sees_nothing_of_the_owners(
    ep: Endpoint, world: World, clients: dict[str, SignedClient]
) -> None:
    r = call(clients["other"], ep, world.url(ep))
    if r.status_code == 403:
        assert ep.route.admin
        return
    assert r.status_code == 200, r.body
    text = r.body.decode() if isinstance(r.body, bytes) else str(r.body)
    assert world.job_id not in text and world.ex_id not in text
    assert OWNER.arn not in text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs",
        "/v1/ex",
        "/scheduled-jobs",
        "/scheduled-jobs/stats",
        f"/scheduled-jobs?owner={OWNER.arn}",
    ],
)
@pytest.mark.parametrize("caller", ["owner", "admin"])
def test_the_owner_and_an_admin_see_the_owners_objects(
    path: str, caller: str, world: World, clients: dict[str, SignedClient]
) -> None:
    r = clients[caller].http.get(path)
    assert r.status_code == 200, r.body
    assert world.job_id in r.body.decode()


def test_another_owner_asked_for_by_name_is_an_empty_listing(
    world: World, clients: dict[str, SignedClient]
) -> None:
    other = clients["other"]
    assert other.http.get(f"/scheduled-jobs?owner={OWNER.arn}").json_body == []
    stats = other.http.get(f"/scheduled-jobs/stats?user={OWNER.arn}").json_body
    assert stats["jobs"] == []
