"""The whole of Cadenza in one process: emulators, the HTTP API, the supervisor and workers.

A :class:`LocalStack` plays every AWS part the deployed app uses:

* storage: DynamoDB Local with its data under ``data_dir`` (backend ``ddblocal``, the
  default; jobs and executions survive a restart), or moto for everything (backend
  ``moto``; nothing persists), or emulators already running elsewhere
  (``endpoint_url`` / ``dynamodb_endpoint``, or ``localstack=True``), so that two stacks
  can share one store;
* SQS, S3 and SNS: moto in server mode (unless ``endpoint_url`` points elsewhere); with
  DynamoDB Local, the app's bucket is files beside its data (:class:`FileBlobStore`),
  so result files, asset zips and logs survive a restart as jobs and runs do;
* API Gateway: the Chalice app served over HTTP (:class:`ApiServer`);
* the EventBridge rule: a :class:`ScheduleFirer` calling ``app.supervisor``;
* the SQS event source mappings: :class:`SqsPoller` threads calling ``app.start_worker``
  and ``app.slice_worker``.

The process environment is set (endpoints, credentials, region, ``CADENZA_*``) before
``app`` is imported, so the app and its container see exactly what a Lambda function
would; :meth:`LocalStack.stop` restores it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Self

from cadenza_tools.local.api_server import ApiServer
from cadenza_tools.local.blobs import FileBlobStore
from cadenza_tools.local.dynamodb_local import DynamoDBLocal, default_home
from cadenza_tools.local.firer import FirerOptions, ScheduleFirer
from cadenza_tools.local.localstack import LocalStackServer, ensure_running
from cadenza_tools.local.migrate import rebuild_changed_tables
from cadenza_tools.local.moto_server import MotoServer
from cadenza_tools.local.secrets import (
    DUMMY_CREDENTIALS,
    LocalSecrets,
    publish_stack,
    unpublish_stack,
)
from cadenza_tools.local.service import LocalService
from cadenza_tools.local.sqs_poller import Handler, PollerOptions, SqsPoller
from cadenza_tools.local.users import LocalUser, LocalUsers
from cadenza_tools.local.warm_up import WarmUp, warm_up

log = logging.getLogger(__name__)

Backend = Literal["ddblocal", "moto"]
BACKENDS: tuple[Backend, ...] = ("ddblocal", "moto")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5678
DEFAULT_TICK_INTERVAL = 2.0
DEFAULT_LOOKAHEAD = 5.0
DEFAULT_WARM_UP_S = 10.0
DEFAULT_WORKERS = 10  # pollers per queue: a small Lambda concurrency
DEFAULT_REGION = "us-east-1"
STOP_GRACE_S = 2.0  # how long stop() lets the pollers finish the batches they hold
EMULATOR_HOST = "127.0.0.1"
BANNER_TAG = "CADENZA_STACK"
_ROUTINE_TICK_STATS = frozenset({"shards_queried", "jobs_read", "stalled_read"})


class StackError(RuntimeError):
    """The local stack could not be started."""


def default_data_dir() -> Path:
    """``<repo>/.cadenza/data/dynamodb`` (or ``$CADENZA_HOME/data/dynamodb``)."""
    return default_home() / "data" / "dynamodb"


def localstack_endpoints() -> tuple[str, str]:
    """The SQS and DynamoDB endpoints of a running LocalStack, as ``localstack_client``
    computes them (``$AWS_ENDPOINT_URL``, else ``$LOCALSTACK_HOST``, else
    ``http://localhost:4566``; ``$USE_SSL`` switches to https)."""
    from localstack_client.config import get_service_endpoint

    sqs = get_service_endpoint("sqs")
    ddb = get_service_endpoint("dynamodb")
    if not sqs or not ddb:
        raise StackError("localstack_client knows no endpoint for sqs or dynamodb")
    return str(sqs), str(ddb)


@contextmanager
def _repo_on_path() -> Iterator[None]:
    """Make ``app`` (at the repository root) importable from anywhere."""
    root = str(Path(__file__).resolve().parents[2])
    added = root not in sys.path and (Path(root) / "app.py").is_file()
    if added:
        sys.path.insert(0, root)
    try:
        yield
    finally:
        if added and root in sys.path:
            sys.path.remove(root)


def import_app() -> ModuleType:
    """Import (once) the module that defines the Chalice app and its handlers."""
    with _repo_on_path():
        return importlib.import_module("app")


def _logged_tick(handler: Handler) -> Handler:
    """The supervisor handler, logging each tick that did something."""

    def tick(event: dict[str, Any], context: Any) -> Any:
        stats = handler(event, context)
        if isinstance(stats, dict):
            done = {k: v for k, v in stats.items() if v and k not in _ROUTINE_TICK_STATS}
            if done:
                log.info("supervisor tick: %s", " ".join(f"{k}={v}" for k, v in done.items()))
        return stats

    return tick


def _logged_batch(handler: Handler, name: str) -> Handler:
    """An SQS handler, logging batches with failed records."""

    def batch(event: dict[str, Any], context: Any) -> Any:
        response = handler(event, context)
        failures = response.get("batchItemFailures") if isinstance(response, dict) else None
        if failures:
            log.warning(
                "%s: %d of %d message(s) failed; they return after the visibility timeout",
                name,
                len(failures),
                len(event.get("Records", [])),
            )
        return response

    return batch


@dataclass
class StackInfo:
    """Where a started stack can be reached; printed as the banner's JSON line."""

    api_url: str
    backend: str
    endpoint_url: str
    dynamodb_endpoint: str
    data_dir: str | None
    prefix: str
    region: str
    start_queue_url: str
    slice_queue_url: str
    tick_interval: float
    lookahead: float
    workers: int
    emulators: list[str] = field(default_factory=list)
    credentials: str = ""  # the users' keys (cadenza users ...)

    def as_dict(self) -> dict[str, Any]:
        return {
            "credentials": self.credentials,
            "api_url": self.api_url,
            "backend": self.backend,
            "endpoint_url": self.endpoint_url,
            "dynamodb_endpoint": self.dynamodb_endpoint,
            "data_dir": self.data_dir,
            "prefix": self.prefix,
            "region": self.region,
            "start_queue_url": self.start_queue_url,
            "slice_queue_url": self.slice_queue_url,
            "tick_interval": self.tick_interval,
            "lookahead": self.lookahead,
            "workers": self.workers,
            "emulators": list(self.emulators),
        }


@dataclass(frozen=True)
class StackOptions:
    """How a :class:`LocalStack` runs.

    ``endpoint_url`` set (or ``localstack=True``): no emulator is started, SQS/S3 and
    DynamoDB are reached there (DynamoDB at ``dynamodb_endpoint`` if given). Only
    ``dynamodb_endpoint`` set: moto serves SQS/S3 and DynamoDB is reached there.
    Otherwise ``backend`` decides: ``ddblocal`` runs DynamoDB Local on ``dynamodb_port``
    with its files in ``data_dir`` plus moto on ``moto_port``; ``moto`` runs moto alone.
    Port 0 means a free port.
    """

    backend: Backend = "ddblocal"
    endpoint_url: str | None = None
    dynamodb_endpoint: str | None = None
    localstack: bool = False
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tick_interval: float = DEFAULT_TICK_INTERVAL
    lookahead: float = DEFAULT_LOOKAHEAD
    data_dir: Path | None = None
    prefix: str | None = None
    start_halted: bool = False
    workers: int = DEFAULT_WORKERS
    moto_port: int = 0
    dynamodb_port: int = 0
    batch_size: int = 10
    poll_wait_seconds: int = 1
    quiet: bool = False
    credentials: Path | None = None  # the users' keys; default: LocalUsers.default()
    warm_up_s: float = DEFAULT_WARM_UP_S  # DynamoDB Local's JVM, before the supervisor

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.tick_interval <= 0:
            raise ValueError("tick_interval must be positive")
        if self.lookahead < 0:
            raise ValueError("lookahead must not be negative")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.warm_up_s < 0:
            raise ValueError("warm_up_s must not be negative")


# the local stack's allow-list when none is given: http servers on this machine, named
# exactly (an address that is not public is reached only when named so)
LOCAL_TARGETS_ALLOW = "http:127.0.0.1,http:localhost"


class LocalStack(LocalService):
    """Cadenza on this machine, in this process, as its options say; a context manager."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.data_dir = (self.options.data_dir or default_data_dir()).expanduser().resolve()

        self.moto: MotoServer | None = None
        self.dynamodb: DynamoDBLocal | None = None
        self.localstack: LocalStackServer | None = None
        self.warmed: WarmUp | None = None
        self.api: ApiServer | None = None
        self.firer: ScheduleFirer | None = None
        self.pollers: list[SqsPoller] = []
        self.abandoned: list[str] = []  # pollers still in a batch when stop() gave up on them
        self.info: StackInfo | None = None
        path = self.options.credentials
        self.users = LocalUsers(path) if path is not None else LocalUsers.default()
        self.secrets = LocalSecrets.beside(self.users)
        self.admin: LocalUser | None = None
        self._admin_created = False
        self._saved_env: dict[str, str | None] = {}
        self._configured_admins: tuple[str, ...] = ()  # CADENZA_ADMINS as given
        self._started = False

    # ---- endpoints --------------------------------------------------------------------
    @property
    def external(self) -> bool:
        """True when no emulator is started for SQS/S3 (endpoints given or LocalStack)."""
        return self.options.endpoint_url is not None or self.options.localstack

    @property
    def backend_label(self) -> str:
        """``CADENZA_BACKEND``: the backend, or ``localstack`` / ``external``."""
        if self.options.localstack:
            return "localstack"
        if self.options.endpoint_url is not None:
            return "external"
        return self.options.backend

    def _start_emulators(self) -> tuple[str, str]:
        """Start what must be started; return the SQS/S3 and DynamoDB endpoints."""
        if self.options.localstack:
            sqs, ddb = localstack_endpoints()
            self.localstack = ensure_running(sqs, say=log.info)  # started here if none runs
            return self.options.endpoint_url or sqs, self.options.dynamodb_endpoint or ddb
        if self.options.endpoint_url is not None:
            return (
                self.options.endpoint_url,
                self.options.dynamodb_endpoint or self.options.endpoint_url,
            )
        self.moto = MotoServer(EMULATOR_HOST, self.options.moto_port).start()
        if self.options.dynamodb_endpoint is not None:
            return self.moto.endpoint, self.options.dynamodb_endpoint
        if self.options.backend == "moto":
            return self.moto.endpoint, self.moto.endpoint
        self.dynamodb = DynamoDBLocal(self.options.dynamodb_port, self.data_dir).start()
        if self.options.warm_up_s > 0:
            self.warmed = warm_up(self.dynamodb.endpoint, self.options.warm_up_s)
        return self.moto.endpoint, self.dynamodb.endpoint

    # ---- environment ------------------------------------------------------------------
    def _setenv(self, key: str, value: str) -> None:
        if key not in self._saved_env:
            self._saved_env[key] = os.environ.get(key)
        os.environ[key] = value

    def _unsetenv(self, key: str) -> None:
        if key in os.environ:
            self._saved_env.setdefault(key, os.environ[key])
            del os.environ[key]

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _set_environment(self, endpoint: str, ddb_endpoint: str) -> None:
        if not os.environ.get("AWS_ACCESS_KEY_ID") or not os.environ.get("AWS_SECRET_ACCESS_KEY"):
            for key, value in DUMMY_CREDENTIALS.items():
                self._setenv(key, value)
            self._unsetenv("AWS_SESSION_TOKEN")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        region = region or DEFAULT_REGION
        self._setenv("AWS_REGION", region)
        self._setenv("AWS_DEFAULT_REGION", region)
        self._setenv("AWS_ENDPOINT_URL", endpoint)
        self._setenv("AWS_ENDPOINT_URL_DYNAMODB", ddb_endpoint)
        self._setenv("CADENZA_DYNAMODB_ENDPOINT", ddb_endpoint)
        self._setenv("CADENZA_BACKEND", self.backend_label)
        self._setenv("CADENZA_LOOKAHEAD_SECONDS", repr(float(self.options.lookahead)))
        # DynamoDB Local takes 100-500 calls a second on two cores (docs/benchmarks.md),
        # where DynamoDB takes thousands: a burst's start messages come earlier here
        self._setenv("CADENZA_CLAIM_RATE", os.environ.get("CADENZA_CLAIM_RATE") or "100")
        self._setenv("CADENZA_START_HALTED", "true" if self.options.start_halted else "false")
        if self.options.prefix:
            self._setenv("CADENZA_PREFIX", self.options.prefix)
        # the stage's admins, as a deployed stage lists them: here, the local admin users
        self._configured_admins = tuple(
            a.strip() for a in os.environ.get("CADENZA_ADMINS", "").split(",") if a.strip()
        )
        admins = [*self._configured_admins, *self.users.admin_arns()]
        self._setenv("CADENZA_ADMINS", ",".join(a for a in admins if a))
        # the local gateway checks SigV4 signatures: a stage's Cognito choice is AWS's alone
        self._setenv("CADENZA_AUTHORIZER", "iam")
        # what jobs' targets may call, unless set: this machine's own servers (docs/targets.md)
        allow = os.environ.get("CADENZA_TARGETS_ALLOW") or LOCAL_TARGETS_ALLOW
        self._setenv("CADENZA_TARGETS_ALLOW", allow)

    # ---- life cycle -------------------------------------------------------------------
    def start(self) -> Self:
        """Start everything; on any failure, stop what was started and re-raise."""
        if self._started:
            return self
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        if not self.options.quiet:
            print(self.banner(), flush=True)
        return self

    def _start(self) -> None:
        from chalicelib.bootstrap import (
            aws_client,
            build_clients,
            build_container,
            ensure_resources,
            set_container,
        )
        from chalicelib.config import get_settings

        self.admin, self._admin_created = self.users.ensure_admin()
        endpoint, ddb_endpoint = self._start_emulators()
        self._set_environment(endpoint, ddb_endpoint)
        get_settings.cache_clear()
        app_module = import_app()
        settings = get_settings()
        if self.dynamodb is not None:  # kept data: tables made by an older model are rebuilt
            rebuild_changed_tables(settings, self.data_dir.parent / "backups")
        try:
            settings = ensure_resources(settings)
        except Exception as exc:
            raise StackError(
                f"cannot create the tables, queues and bucket (SQS/S3 at {endpoint}, "
                f"DynamoDB at {ddb_endpoint}): {exc}"
            ) from exc
        publish_stack(self.secrets, endpoint, settings.region)  # the kept secrets, into moto
        # the topic's ARN, as the template gives it to the deployed functions
        self._setenv("CADENZA_ALERTS_TOPIC_ARN", settings.alerts_topic_arn or "")
        get_settings.cache_clear()

        def admins() -> tuple[str, ...]:  # the admin users now, read when the file changes
            return (*self._configured_admins, *self.users.admin_arns())

        if self.dynamodb is not None:  # kept data: the bucket is kept beside the tables
            files = FileBlobStore(self.data_dir.parent / "blobs")
            set_container(build_container(settings, admins=admins, files=files))
        else:
            set_container(build_container(settings, admins=admins))
        build_clients(settings)  # before the first tick and batch, as a function's container does

        sqs = aws_client("sqs", settings)
        start_url: str = sqs.get_queue_url(QueueName=settings.start_queue)["QueueUrl"]
        slice_url: str = sqs.get_queue_url(QueueName=settings.slice_queue)["QueueUrl"]

        sources = {e.name: e for e in app_module.app.event_sources}
        for handler_name, url in (("start_worker", start_url), ("slice_worker", slice_url)):
            handler = _logged_batch(getattr(app_module, handler_name), handler_name)
            source = sources.get(handler_name)  # the event source mapping app.py declares
            window = float(getattr(source, "maximum_batching_window_in_seconds", 0) or 0)
            for i in range(1, self.options.workers + 1):
                options = PollerOptions(
                    batch_size=self.options.batch_size,
                    wait_seconds=self.options.poll_wait_seconds,
                    batching_window_s=window,
                )
                poller = SqsPoller(sqs, url, handler, f"{handler_name}-{i}", options=options)
                self.pollers.append(poller)
                poller.start()
        self.firer = ScheduleFirer(
            _logged_tick(app_module.supervisor),
            self.options.tick_interval,
            name="supervisor",
            options=FirerOptions(region=settings.region, fire_immediately=True),
        )
        self.firer.start()
        self.api = ApiServer(
            app_module.app, self.options.host, self.options.port, users=self.users
        ).start()  # last: ready

        emulators = []
        if self.moto is not None:
            emulators.append(f"moto {self.moto.endpoint}")
        if self.dynamodb is not None:
            warmed = self.warmed
            emulators.append(
                f"DynamoDB Local {self.dynamodb.endpoint}"
                + (f" (warmed up: {warmed.rounds} rounds, {warmed.seconds:.1f}s)" if warmed else "")
            )
        self.info = StackInfo(
            api_url=self.api.url,
            backend=self.backend_label,
            endpoint_url=endpoint,
            dynamodb_endpoint=ddb_endpoint,
            data_dir=str(self.data_dir) if self.dynamodb is not None else None,
            prefix=settings.prefix,
            region=settings.region,
            start_queue_url=start_url,
            slice_queue_url=slice_url,
            tick_interval=self.options.tick_interval,
            lookahead=settings.lookahead_seconds,
            workers=self.options.workers,
            emulators=emulators,
            credentials=str(self.users.path),
        )
        log.debug("local stack up: %s", json.dumps(self.info.as_dict()))

    def problem(self) -> str | None:
        """What has died since start (None while everything runs)."""
        if self.dynamodb is not None and not self.dynamodb.running:
            return f"DynamoDB Local exited; see {self.dynamodb.log_path}"
        if self.localstack is not None and not self.localstack.running:
            return f"LocalStack exited; see {self.localstack.log_path}"
        if self.firer is not None and not self.firer.is_alive():
            return "the supervisor firer thread ended"
        dead = [p.name for p in self.pollers if not p.is_alive()]
        if dead:
            return f"SQS poller thread(s) ended: {', '.join(dead)}"
        return None

    def stop(self) -> None:
        """Stop pollers, firer, API server and emulators (in that order); idempotent.

        A batch still running after :data:`STOP_GRACE_S` is left behind, as a Lambda
        killed mid-batch would leave it: its messages return after their visibility
        timeout, its slices' leases expire and the sweep retries or recovers them. Its
        poller is named in :attr:`abandoned`; the process should then exit without
        waiting for it (``os._exit``), since the handler's threads are not daemons.
        """
        if not self._started:
            return
        self._started = False
        from chalicelib.bootstrap import set_container
        from chalicelib.config import get_settings

        pollers, self.pollers = self.pollers, []
        deadline = time.monotonic() + STOP_GRACE_S
        for poller in pollers:
            poller.stop(timeout=0)  # ask all at once, then wait for each, together
        firer, self.firer = self.firer, None
        if firer is not None:
            firer.stop()
        for poller in pollers:
            poller.stop(timeout=max(0.0, deadline - time.monotonic()))
        self.abandoned = [poller.name for poller in pollers if poller.is_alive()]
        if self.abandoned:
            log.warning(
                "left %d batch(es) in flight (%s): their messages return after the visibility"
                " timeout, their slices are retried or recovered once their leases expire",
                len(self.abandoned),
                ", ".join(self.abandoned),
            )
        api, self.api = self.api, None
        if api is not None:
            api.stop()
        set_container(None)
        unpublish_stack(self.secrets)
        moto, self.moto = self.moto, None
        if moto is not None:
            moto.stop()
        ddb, self.dynamodb = self.dynamodb, None
        if ddb is not None:
            ddb.stop()
        started, self.localstack = self.localstack, None
        if started is not None:
            started.stop()
        self._restore_env()
        get_settings.cache_clear()

    def banner(self) -> str:
        """Human lines, then one ``CADENZA_STACK {json}`` line for scripts and tests."""
        info = self.info
        if info is None:
            return "Cadenza local stack (not started)"
        storage = {
            "ddblocal": "DynamoDB Local",
            "moto": "moto (in memory, nothing persists)",
        }.get(info.backend, info.backend)
        lines = [
            "Cadenza local stack",
            f"  API         {info.api_url}/v1",
            f"  backend     {info.backend}: {storage}",
            f"  SQS/S3/SNS  {info.endpoint_url}",
            f"  DynamoDB    {info.dynamodb_endpoint}",
        ]
        if info.data_dir is not None:
            lines.append(f"  data dir    {info.data_dir}")
        lines += [
            f"  prefix      {info.prefix} (region {info.region})",
            f"  supervisor  every {info.tick_interval:g}s, look-ahead {info.lookahead:g}s"
            + (", starts halted" if self.options.start_halted else ""),
            f"  workers     {info.workers} poller(s) per queue",
            *self._auth_lines(info),
            "Press Ctrl-C to stop.",
            f"{BANNER_TAG} {json.dumps(info.as_dict(), separators=(',', ':'))}",
        ]
        return "\n".join(lines)

    def _auth_lines(self, info: StackInfo) -> list[str]:
        """Where the keys are, and how to sign with them (SigV4, as on AWS)."""
        if self.admin is None:
            return []
        made = " (created now)" if self._admin_created else ""
        return [
            f"  users       {info.credentials}{made}: every request is signed (AWS SigV4)",
            f"              admin's key {self.admin.access_key_id}; "
            "`cadenza users show admin` prints its secret, `cadenza users add NAME` adds a user",
            "  curl        curl --aws-sigv4 aws:amz:us-east-1:execute-api "
            '--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" ' + f"{info.api_url}/v1/jobs",
        ]


def parse_banner(text: str) -> dict[str, Any] | None:
    """The JSON of the first ``CADENZA_STACK`` line in ``text`` (None if there is none)."""
    for line in text.splitlines():
        if line.startswith(BANNER_TAG + " "):
            data: dict[str, Any] = json.loads(line[len(BANNER_TAG) + 1 :])
            return data
    return None
