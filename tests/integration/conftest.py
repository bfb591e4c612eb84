"""The HTTP client the route tests share (a module may define its own `client`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chalice.test import Client

from app import app
from chalicelib.bootstrap import Container


@pytest.fixture
def client(container: Container) -> Iterator[Client]:
    """A chalice.test.Client on the app, its services from the `container` fixture."""
    with Client(app) as c:
        yield c
