"""`chalice.test.Client`s that call the API as a principal would: each request signed with
SigV4 by a local user's keys and checked by the local stack's gateway (`SigV4Gateway`), so
the routes read their caller from the request context exactly as behind API Gateway."""

from __future__ import annotations

from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.test import Client, HTTPResponse, TestHTTPClient

from cadenza_tools.local.gateway import SigV4Gateway
from cadenza_tools.local.users import LocalUser, LocalUsers
from cadenza_tools.sigv4 import sign
from chalicelib.domain.identity import principal

HOST = "cadenza.test"
REGION = "us-east-1"

USERS = LocalUsers(None)
OWNER = USERS.add("owner")
OTHER = USERS.add("other")
ADMIN = USERS.add("admin", admin=True)
ADMINS = (ADMIN.arn,)  # the test stage's admins (Settings.admins)
AS_OWNER = principal(OWNER.arn, ADMINS)  # services acting for OWNER (`JobService.as_`)


class SignedHTTPClient(TestHTTPClient):
    """Signs each request as `user` (None: sends it unsigned, as anonymous)."""

    def __init__(self, app: Chalice, config: Config, user: LocalUser | None) -> None:
        super().__init__(app, config)
        self._local_gateway = SigV4Gateway(app, config, USERS)
        self.user = user

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: Any = b"",
    ) -> HTTPResponse:
        raw = body.encode() if isinstance(body, str) else bytes(body or b"")
        sent = {"host": HOST, **(headers or {})}
        if self.user is not None:
            sent = sign(method, f"http://{HOST}{path}", sent, raw, self.user.credentials, REGION)
        return super().request(method, path, sent, body)


class SignedClient(Client):
    """A test client whose `http` calls the API as `user`; `as_` gives one for another."""

    def __init__(self, app: Chalice, user: LocalUser | None = OWNER) -> None:
        super().__init__(app)
        self.user = user
        self._http_client = SignedHTTPClient(app, self._chalice_config, user)

    def __enter__(self) -> SignedClient:
        return self

    def as_(self, user: LocalUser | None) -> SignedClient:
        return SignedClient(self._app, user)
