"""How the CLI authenticates: every request signed with AWS SigV4 (service `execute-api`).

Against a local stack (a URL on localhost) it signs with a local user's keys from the
stack's credentials file (`$CADENZA_CREDENTIALS`, else `credentials.json` in
`$CADENZA_HOME` or `.cadenza/`): `admin`,
unless `--user` / `CADENZA_USER` names another. Against AWS it signs with the credentials
botocore finds (environment, `AWS_PROFILE`, SSO, instance role...), in the region of the
API's URL. No flag is needed in either case.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

import botocore.session
import requests
from botocore.credentials import Credentials

from cadenza_tools.local.users import ADMIN_USER, LocalUsers
from cadenza_tools.sigv4 import sign

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
LOCAL_REGION = "us-east-1"
_EXECUTE_API = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")
SIGNED = ("content-type",)  # with host and x-amz-date: what a proxy leaves as it is


class NoCredentials(Exception):
    """The user asked for is not among the local stack's users."""


def local_users() -> LocalUsers:
    return LocalUsers.default()


def _region(url: str) -> str:
    host = urlsplit(url).hostname or ""
    found = _EXECUTE_API.search(host)
    if found:
        return found[1]
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or LOCAL_REGION


def credentials_for(url: str, user: str | None) -> Credentials | None:
    """The keys to sign requests to `url` with (None: none found, send unsigned)."""
    local = (urlsplit(url).hostname or "") in LOCAL_HOSTS
    if user or local:
        users = local_users()
        found = users.get(user or ADMIN_USER)
        if found is not None:
            return found.credentials
        if user:
            raise NoCredentials(
                f"no local user {user!r} in {users.path}: add one with `cadenza users add {user}`"
            )
        return None  # a stack not started yet: its answer (403) says what is missing
    found_aws: Credentials | None = botocore.session.get_session().get_credentials()
    return found_aws


class SigV4(requests.auth.AuthBase):
    """A requests auth that signs each request as it is sent."""

    def __init__(self, credentials: Credentials, region: str) -> None:
        self.credentials = credentials
        self.region = region

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        raw = body.encode() if isinstance(body, str) else bytes(body)
        wanted = {k: v for k, v in r.headers.items() if k.lower() in SIGNED}
        signed = sign(r.method or "GET", r.url or "", wanted, raw, self.credentials, self.region)
        r.headers.update({k: v for k, v in signed.items() if k.lower() not in SIGNED})
        return r


class AsLocalUser(requests.auth.AuthBase):
    """Signs as a local user, read from `users` at each request: unsigned while it is not
    there yet (a stack writes its admin's keys on its first start)."""

    def __init__(self, users: LocalUsers, name: str = ADMIN_USER) -> None:
        self.users, self.name = users, name

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        user = self.users.get(self.name)
        return r if user is None else SigV4(user.credentials, LOCAL_REGION)(r)


def auth_for(url: str, user: str | None) -> SigV4 | None:
    credentials = credentials_for(url, user)
    return None if credentials is None else SigV4(credentials, _region(url))
