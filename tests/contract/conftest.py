"""One contract per port, run over every implementation of it (as apscheduler's
tests/test_datastores.py runs one suite over every data store): the in-memory fakes,
moto, and DynamoDB Local (marked `ddblocal`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from moto import mock_aws

from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.config import Settings
from chalicelib.ports import Store
from tests.conftest import test_settings
from tests.fakes import MemoryStore

STORES = ["memory", "moto", pytest.param("ddblocal", marks=pytest.mark.ddblocal)]


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> Iterator[tuple[str, Settings]]:
    """Which implementation, and settings for a fresh set of its tables."""
    kind = str(request.param)
    if kind == "moto":
        with mock_aws():
            yield kind, test_settings()
    elif kind == "ddblocal":
        endpoint = request.getfixturevalue("ddb_local")
        yield kind, replace(test_settings(), dynamodb_endpoint=endpoint, fire_concurrency=8)
    else:
        yield kind, test_settings()


@pytest.fixture
def store(store_kind: tuple[str, Settings]) -> Store:
    kind, settings = store_kind
    if kind == "memory":
        return MemoryStore(settings)
    s = DynamoStore(settings)
    s.ensure_tables()
    return s


@pytest.fixture
def settings(store_kind: tuple[str, Settings]) -> Settings:
    return store_kind[1]


@pytest.fixture
def racing_store(store: Store) -> Store:
    """The store, for a test that races threads on it: on moto too, whose DynamoDB
    requests the test session serialises (``cadenza_tools.local.moto_serial``)."""
    return store
