"""What the local gateway refuses (no signature, a wrong one, an unknown key or path) it
answers in the API's error shape, as API Gateway's responses do on AWS (infra/)."""

from __future__ import annotations

import pytest

from app import app
from cadenza_tools.local.users import LocalUser, LocalUsers
from chalicelib.bootstrap import Container
from tests.clients import SignedClient

pytestmark = pytest.mark.fakes  # the gateway's refusals reach no store
STRANGER = LocalUsers(None).add("stranger")  # keys the gateway does not know


@pytest.mark.parametrize(
    ("user", "path", "message"),
    [
        (None, "/v1/jobs", "Missing Authentication Token"),
        (None, "/v1/no-such-route", "Missing Authentication Token"),
        (STRANGER, "/v1/jobs", "The security token included in the request is invalid."),
    ],
)
def test_a_refusal_has_the_api_error_shape(
    container: Container, user: LocalUser | None, path: str, message: str
) -> None:
    with SignedClient(app, user) as client:
        r = client.http.get(path)
    assert r.status_code == 403
    assert r.headers["Content-Type"] == "application/json"
    assert set(r.json_body) == {"error", "message", "request_id"}
    assert r.json_body["error"] == "forbidden"
    assert r.json_body["message"] == message
