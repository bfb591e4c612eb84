"""The HTTP clients the route tests share (a module may define its own `client`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import app
from chalicelib.bootstrap import Container
from tests.clients import ADMIN, SignedClient


@pytest.fixture
def client(container: Container) -> Iterator[SignedClient]:
    """A test client on the app, its services from the `container` fixture, calling as the
    user `owner` (no role); `client.as_(user)` calls as another."""
    with SignedClient(app) as c:
        yield c


@pytest.fixture
def admin_client(container: Container) -> Iterator[SignedClient]:
    """The same, calling as `admin` (the admin role)."""
    with SignedClient(app, ADMIN) as c:
        yield c
