"""Shared fixtures: a fake clock, an in-memory queue, and a container on moto or, for
modules marked `fakes`, on the in-memory fakes of every port (no moto at all)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

for _k, _v in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}.items():
    os.environ[_k] = _v
os.environ.pop("AWS_ENDPOINT_URL", None)

import functools  # noqa: E402

import boto3  # noqa: E402
import botocore.loaders  # noqa: E402
import botocore.session  # noqa: E402
from moto import mock_aws  # noqa: E402

from cadenza_tools.local import moto_serial  # noqa: E402
from chalicelib.adapters.dynamodb.store import DynamoStore  # noqa: E402
from chalicelib.adapters.memory import MemoryNotifier, MemoryQueue  # noqa: E402
from chalicelib.bootstrap import Container, build_container, set_container  # noqa: E402
from chalicelib.config import Settings  # noqa: E402
from chalicelib.ports import FakeClock  # noqa: E402
from tests.clients import ADMINS  # noqa: E402
from tests.fakes import MemoryAssetStore, MemoryBlobStore, MemoryStore  # noqa: E402
from tests.fakes.agents import MemoryAgentStore  # noqa: E402
from tests.fakes.notifications import MemoryNotificationStore  # noqa: E402
from tests.fakes.runlogs import MemoryRunLogStore  # noqa: E402
from tests.helpers import deliver  # noqa: E402

moto_serial.install()  # moto's DynamoDB serialised as DynamoDB's condition checks are
# Every botocore session (PynamoDB opens one per model and per thread, boto3 one per client
# here) parsed the service models and endpoints JSON anew: most of a moto test's set-up. The
# session's loader is built by this module-level factory; one loader per data path serves
# every session of the test process (its caches return the same parsed documents a single
# session would share between its clients).
botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a whole minute


def test_settings(**overrides: object) -> Settings:
    s = Settings(region="us-east-1").with_prefix(f"t-{uuid.uuid4().hex[:8]}")
    from dataclasses import replace

    # one firing thread: moto's backends are not thread-safe (a table copied during a
    # transaction while another thread writes raised "dictionary changed size during
    # iteration", twice in a few hundred runs); DynamoDB Local fixtures fire in parallel
    defaults: dict[str, object] = {
        "lookahead_seconds": 5.0,
        "fire_concurrency": 1,
        "admins": ADMINS,
    }
    return replace(s, **{**defaults, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fakes: the `container` fixture runs on the in-memory fakes, not on moto"
    )
    config.addinivalue_line(
        "markers", "moto: keeps a test of a `fakes` module on moto (it measures DynamoDB)"
    )


def on_fakes(node: pytest.Item) -> bool:
    """Whether a test's container is the memory one: marked `fakes`, not `moto`."""
    return node.get_closest_marker("fakes") is not None and node.get_closest_marker("moto") is None


@pytest.fixture
def queue(clock: FakeClock) -> MemoryQueue:
    return MemoryQueue(clock=clock)


def _installed(c: Container, clock: FakeClock) -> Iterator[Container]:
    c.worker.sleep = clock.advance  # waiting for a slot's second moves fake time instead
    set_container(c)
    yield c
    set_container(None)


@pytest.fixture
def memory_container(clock: FakeClock, queue: MemoryQueue) -> Iterator[Container]:
    """A container on the fakes of every port: no moto, no DynamoDB."""
    settings = test_settings()
    c = build_container(
        settings,
        store=MemoryStore(settings),
        queue=queue,
        clock=clock,
        notifier=MemoryNotifier(),
        asset_store=MemoryAssetStore(),
        files=MemoryBlobStore(),
        run_logs=MemoryRunLogStore(),
        agent_store=MemoryAgentStore(),
        notification_store=MemoryNotificationStore(),
    )
    yield from _installed(c, clock)


@pytest.fixture
def container(
    request: pytest.FixtureRequest, clock: FakeClock, queue: MemoryQueue
) -> Iterator[Container]:
    """A container on moto; in a module (or test) marked `fakes`, the memory container."""
    if on_fakes(request.node):
        yield request.getfixturevalue("memory_container")
        return
    request.getfixturevalue("aws")
    yield from moto_container(test_settings(), clock, queue)


def moto_container(
    settings: Settings, clock: FakeClock, queue: MemoryQueue, *, bucket: bool = False
) -> Iterator[Container]:
    """A container on moto's tables (and, with `bucket`, its S3 bucket), installed for the app."""
    store = DynamoStore(settings)
    store.ensure_tables()
    if bucket:
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=settings.bucket)
    c = build_container(settings, store=store, queue=queue, clock=clock, notifier=MemoryNotifier())
    yield from _installed(c, clock)


def drain(c: Container, queue: MemoryQueue) -> int:
    return queue.drain(lambda m: deliver(c, m))


# the suites marked `ddblocal` run against this DynamoDB endpoint when it is set (LocalStack's,
# a DynamoDB Local already running) instead of a DynamoDB Local of their own; every test
# makes tables of its own prefix there
DYNAMODB_ENDPOINT_VARIABLE = "CADENZA_TEST_DYNAMODB_ENDPOINT"


@pytest.fixture(scope="session")
def ddb_local() -> Iterator[str]:
    """A DynamoDB Local (in memory) for the whole session, installed on first use; or the
    endpoint ``CADENZA_TEST_DYNAMODB_ENDPOINT`` names."""
    existing = os.environ.get(DYNAMODB_ENDPOINT_VARIABLE)
    if existing:
        yield existing
        return
    from cadenza_tools.local.dynamodb_local import DynamoDBLocal

    with DynamoDBLocal(port=0, data_dir=None) as server:
        yield server.endpoint


@pytest.fixture(params=["moto", pytest.param("ddblocal", marks=pytest.mark.ddblocal)])
def backend(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings for a fresh set of tables on moto or on DynamoDB Local."""
    if request.param == "moto":
        with mock_aws():
            yield test_settings()
    else:
        from dataclasses import replace

        endpoint = request.getfixturevalue("ddb_local")
        yield replace(test_settings(), dynamodb_endpoint=endpoint, fire_concurrency=8)


@pytest.fixture
def store(backend: Settings) -> DynamoStore:
    s = DynamoStore(backend)
    s.ensure_tables()
    return s
