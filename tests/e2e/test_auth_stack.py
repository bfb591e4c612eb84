"""Authentication against a running local stack (`cadenza dev --backend moto`): the admin's
keys it creates on first start, a second user made in one command (`cadenza users add`),
curl's `--aws-sigv4`, and the authorization matrix of every route (generated from the
route table, as in tests/integration/test_authorization_matrix.py) over real HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from cadenza_tools.cli.auth import LOCAL_REGION, SigV4
from cadenza_tools.cli.main import app
from cadenza_tools.local.users import ADMIN_USER, LocalUser, LocalUsers
from tests.e2e.test_local_stack import StackProcess, moto_stack
from tests.integration.test_assets import ops_bundle
from tests.integration.test_authorization_matrix import ENDPOINTS, JOB, Endpoint, World, expected

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    yield from moto_stack(tmp_path_factory, "auth")


AGENT_USER = "matrix-agent"  # the principal the owner's agent acts as


def add_user(stack: StackProcess, name: str, *options: str) -> LocalUser:
    """A second user, in one command."""
    env = {"CADENZA_CREDENTIALS": str(stack.credentials)}
    result = CliRunner().invoke(app, ["users", "add", name, *options], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["arn"] == f"arn:aws:iam::000000000000:user/{name}"
    user = LocalUsers(stack.credentials).get(name)
    assert user is not None and user.secret_access_key == doc["secret_access_key"]
    return user


def session(user: LocalUser | None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    if user is not None:
        s.auth = SigV4(user.credentials, LOCAL_REGION)
    return s


def test_first_start_creates_the_admin_and_says_where(stack: StackProcess) -> None:
    assert stack.banner()["credentials"] == str(stack.credentials)
    assert (stack.credentials.stat().st_mode & 0o777) == 0o600
    admin = LocalUsers(stack.credentials).get(ADMIN_USER)
    assert admin is not None and admin.admin
    assert admin.access_key_id in stack.log_path.read_text()
    assert admin.secret_access_key not in stack.log_path.read_text()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_signs_with_one_option(stack: StackProcess) -> None:
    bob = add_user(stack, "curl-bob")
    sigv4 = ["--aws-sigv4", "aws:amz:us-east-1:execute-api"]
    key = ["--user", f"{bob.access_key_id}:{bob.secret_access_key}"]
    url = f"{stack.url}/v1/jobs?start=true"
    body = json.dumps({"name": "curl", "operations": [{"_op": "noop"}]})
    posted = subprocess.run(
        ["curl", "-s", *sigv4, *key, "-H", "Content-Type: application/json", "-d", body, url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    job_id = json.loads(posted.stdout)["job_id"]
    mine = session(bob).get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json()
    assert mine["owner"] == bob.arn
    anonymous = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url.split("?")[0]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert anonymous.stdout == "403"


def _asset(stack: StackProcess, version: str = "1.0.0") -> str:
    admin_s = session(LocalUsers(stack.credentials).get(ADMIN_USER))
    up = admin_s.post(
        f"{stack.url}/v1/assets",
        data=ops_bundle(version),
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert up.status_code in (200, 201), up.text
    asset_id: str = up.json()["_id"]
    return asset_id


def _world(stack: StackProcess, owner: LocalUser) -> World:
    asset_id = _asset(stack)
    r = session(owner).post(f"{stack.url}/v1/jobs?start=true", json=JOB, timeout=10)
    assert r.status_code == 202, r.text
    started: dict[str, Any] = r.json()
    stack.wait_completed(started["job_id"])  # the stack's session signs as the admin
    world = World(started["job_id"], started["ex_id"], asset_id)
    add_user(stack, AGENT_USER)
    _agent(stack, owner, world)
    return world


def _agent(stack: StackProcess, owner: LocalUser, world: World) -> None:
    """The owner's agent (again, after a DELETE took it), acting as AGENT_USER."""
    body = {"name": world.agent, "principal": f"arn:aws:iam::000000000000:user/{AGENT_USER}"}
    r = session(owner).post(f"{stack.url}/v1/agents", json=body, timeout=10)
    assert r.status_code in (201, 409), r.text


def _call(s: requests.Session, ep: Endpoint, url: str) -> requests.Response:
    body = json.dumps(JOB) if ep.route.view.__name__ in ("submit_job", "update_job") else ""
    ctype = "application/json"
    if ep.path.endswith("/assets") and ep.method == "POST":
        ctype = "application/octet-stream"
    return s.request(ep.method, url, data=body, headers={"Content-Type": ctype}, timeout=30)


def test_the_authorization_matrix_over_http(stack: StackProcess) -> None:
    """Every route x {anonymous, another user, the owner, an admin}; routes that delete
    go last (they take the owner's objects away from the routes after them)."""
    owner, other = add_user(stack, "owner"), add_user(stack, "other")
    admin = LocalUsers(stack.credentials).get(ADMIN_USER)
    world = _world(stack, owner)
    callers = {"anonymous": None, "other": other, "owner": owner, "admin": admin}
    sessions = {name: session(user) for name, user in callers.items()}
    wrong = []
    ordered = sorted(ENDPOINTS, key=lambda e: (e.method == "DELETE", "halt" in e.path, e.path))
    for n, ep in enumerate(ordered):
        if ep.method == "DELETE" and "/assets/" in ep.path:  # one asset for each to delete
            world.asset_id = _asset(stack, f"2.{n}.0")
        for caller in ("anonymous", "other", "owner", "admin"):
            if ep.method == "DELETE" and "/agents/" in ep.path:  # each deletes its own
                _agent(stack, owner, world)
            r = _call(sessions[caller], ep, stack.url + world.url(ep))
            want = expected(ep, caller)
            ok = (
                r.status_code == want
                if want is not None
                else r.status_code not in (401, 403, 404) and r.status_code < 500
            )
            if not ok:
                wrong.append(f"{ep} as {caller}: {r.status_code} {r.text[:200]}")
        if "halt" in ep.path:
            sessions["admin"].post(f"{stack.url}/api/supervisor/restart", timeout=10)
    assert wrong == [], "\n".join(wrong)


def test_a_new_admin_is_an_admin_at_once(stack: StackProcess) -> None:
    carol = session(add_user(stack, "carol", "--admin"))
    r = carol.get(f"{stack.url}/api/supervisor/state", timeout=10)
    assert r.status_code == 200, r.text  # no restart


def test_the_gateway_refuses_in_the_api_error_shape(stack: StackProcess) -> None:
    r = session(None).get(f"{stack.url}/v1/jobs", timeout=10)
    assert r.status_code == 403
    body = r.json()
    assert body["error"] == "forbidden" and body["message"] == "Missing Authentication Token"
    assert body["request_id"]
