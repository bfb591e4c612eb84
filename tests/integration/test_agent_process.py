"""Real `cadenza agent` processes against the API served over HTTP in this process (on the
in-memory fakes, real time), each agent behind a TCP proxy the test controls, which cuts its
connection. The commands stamp their start and end (attempt, time) in a file, so the tests
compare the copies' own stamps: two copies of one task never overlap."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app import app
from cadenza_tools.agent.journal import Journal
from cadenza_tools.cli import main as cli_main
from cadenza_tools.local.api_server import ApiServer
from cadenza_tools.local.users import LocalUsers
from chalicelib.adapters.memory import MemoryNotifier, MemoryQueue
from chalicelib.bootstrap import build_container, set_container
from chalicelib.domain.agents import AgentTiming
from chalicelib.domain.logs import LogEntry
from chalicelib.ports import SystemClock
from tests import conftest
from tests.clients import SignedClient
from tests.fakes import MemoryAssetStore, MemoryBlobStore, MemoryStore
from tests.fakes.agents import MemoryAgentStore
from tests.fakes.runlogs import MemoryRunLogStore
from tests.helpers import deliver

TIMING = AgentTiming(heartbeat_s=0.3, deadline_s=3.0, margin_s=1.5, kill_grace_s=0.5)
DEADLINE = 3.0
JSON = {"Content-Type": "application/json"}


class CountingLogs(MemoryRunLogStore):
    """Counts every entry appended, so a line reported twice shows (the store keeps one)."""

    def __init__(self) -> None:
        super().__init__()
        self.appended = 0

    def append(self, entries: Sequence[LogEntry]) -> None:
        self.appended += len(entries)
        super().append(entries)


class Proxy:
    """A TCP proxy to the API; `down` refuses and drops every connection."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.down = False
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.down = True
        for s in list(self.open):
            _close(s)
        self.open.clear()

    def restore(self) -> None:
        self.down = False

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.down:
                _close(conn)
                continue
            up = socket.create_connection(("127.0.0.1", self.upstream))
            self.open += [conn, up]
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    _close(b)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings = conftest.test_settings()
    queue = MemoryQueue()
    c = build_container(
        settings,
        store=MemoryStore(settings),
        queue=queue,
        clock=SystemClock(),
        notifier=MemoryNotifier(),
        asset_store=MemoryAssetStore(),
        files=MemoryBlobStore(),
        agent_store=MemoryAgentStore(),
        run_logs=CountingLogs(),
    )
    c.agents.timing = TIMING
    set_container(c)
    users = LocalUsers(tmp_path / "credentials.json")
    agents = {name: users.add(name) for name in ("box1", "box2")}
    users.add("owner")  # the CLI's owner: the same principal as tests.clients.OWNER
    owner = SignedClient(app)
    for name, user in agents.items():
        body: dict[str, Any] = {"name": name, "principal": user.arn, "labels": {"site": "lab"}}
        body["deadline_seconds"] = DEADLINE
        r = owner.http.post("/v1/agents", body=json.dumps(body), headers=JSON)
        assert r.status_code == 201, r.json_body
    procs: list[subprocess.Popen[bytes]] = []
    with ApiServer(app, users=users) as server:
        proxies = {name: Proxy(server.port) for name in agents}
        yield {
            "container": c,
            "queue": queue,
            "owner": owner,
            "proxies": proxies,
            "procs": procs,
            "tmp": tmp_path,
            "users": users,
            "url": server.url,
            "server": server,
        }
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(10)
    set_container(None)


def _agent(stack: dict[str, Any], name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CADENZA_CREDENTIALS": str(stack["tmp"] / "credentials.json")}
    url = f"http://127.0.0.1:{stack['proxies'][name].port}"
    argv = [sys.executable, "-m", "cadenza_tools.cli.main", "--url", url, "--user", name]
    argv += ["--timeout", "2", "agent", "--dir", str(stack["tmp"] / name), "--max-tasks", "4"]
    log = (stack["tmp"] / f"{name}.log").open("ab")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    stack["procs"].append(proc)
    return proc


def _submit(stack: dict[str, Any], script: str, slices: int = 1, **more: Any) -> str:
    command = {"_op": "command", "argv": [script], "shell": True, "labels": {"site": "lab"}}
    job: dict[str, Any] = {"name": "cmd", "operations": [{"_op": "range", "end": slices}, command]}
    job.update({"workers": slices, "max_retries": 0, **more})
    r = stack["owner"].http.post("/v1/jobs?start=true", body=json.dumps(job), headers=JSON)
    assert r.status_code in (201, 202), r.json_body
    stack["queue"].drain(lambda m: deliver(stack["container"], m))
    return str(r.json_body["ex_id"])


def _status(stack: dict[str, Any], ex_id: str) -> str:
    return str(stack["owner"].http.get(f"/v1/ex/{ex_id}").json_body["_status"])


def _until(check: Callable[[], bool], seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _stamped(stamps: Path, seconds: float) -> str:
    """A script that stamps its start and end (slice, attempt, time) around a sleep."""
    stamp = f'echo "$1 $CADENZA_SLICE $CADENZA_ATTEMPT $(date +%s.%N)" >> {stamps}'
    return (
        f"s() {{ {stamp}; }}; s start; echo out $CADENZA_SLICE; echo err >&2; "
        f"sleep {seconds}; s end; echo done"
    )


def _stamps(path: Path) -> list[tuple[str, str, int, float]]:
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, rest = line.split(" ", 1)
        head, attempt, at = rest.rsplit(" ", 2)
        rows.append((kind, head, int(attempt), float(at)))
    return rows


def _logs(stack: dict[str, Any]) -> CountingLogs:
    logs = stack["container"].agents.logs
    assert isinstance(logs, CountingLogs)
    return logs


def test_a_command_job_runs_on_real_agents(stack: dict[str, Any]) -> None:
    stamps = stack["tmp"] / "stamps"
    _agent(stack, "box1")
    _agent(stack, "box2")
    ex_id = _submit(stack, _stamped(stamps, 0.2), slices=6)
    _until(lambda: _status(stack, ex_id) == "completed")
    rows = _stamps(stamps)
    assert len([r for r in rows if r[0] == "start"]) == 6  # each slice ran once
    logs = _logs(stack)
    messages = [e.message for e in logs.read(ex_id, limit=1000).entries]
    assert sorted(m for m in messages if m.startswith("out")) == sorted(
        f'out {{"start": {i}, "end": {i + 1}}}' for i in range(6)
    )
    assert messages.count("err") == 6 and messages.count("done") == 6


def test_a_cut_shorter_than_the_deadline_interrupts_nothing(stack: dict[str, Any]) -> None:
    stamps = stack["tmp"] / "stamps"
    _agent(stack, "box1")
    ex_id = _submit(stack, _stamped(stamps, 2.5))
    _until(lambda: any(r[0] == "start" for r in _stamps(stamps)))
    stack["proxies"]["box1"].cut()
    _agent(stack, "box2")  # ready to take the task, were it handed out
    time.sleep(DEADLINE - 1)
    stack["proxies"]["box1"].restore()
    _until(lambda: _status(stack, ex_id) == "completed")
    rows = _stamps(stamps)
    assert [(r[0], r[2]) for r in rows] == [("start", 1), ("end", 1)]  # one copy, whole
    logs = _logs(stack)
    entries = logs.read(ex_id).entries
    assert [e.message for e in entries if e.source == "stdout"][-1] == "done"
    assert logs.appended == len(entries)  # each line reported once


def test_a_cut_past_the_deadline_kills_the_task_and_another_agent_runs_it_after(
    stack: dict[str, Any],
) -> None:
    stamps = stack["tmp"] / "stamps"
    _agent(stack, "box1")
    ex_id = _submit(stack, _stamped(stamps, 4), max_retries=1)
    _until(lambda: any(r[0] == "start" for r in _stamps(stamps)))
    cut_at = time.time()
    stack["proxies"]["box1"].cut()
    _agent(stack, "box2")
    _until(lambda: len([r for r in _stamps(stamps) if r[0] == "start"]) == 2, 20)
    rows = _stamps(stamps)
    second = next(r for r in rows if r[0] == "start" and r[2] == 2)
    assert second[3] >= cut_at + DEADLINE  # not before the holder's deadline (+ the margin)
    assert not any(r[0] == "end" and r[2] == 1 for r in rows)  # the first copy was killed
    stack["proxies"]["box1"].restore()
    _until(lambda: _status(stack, ex_id) == "completed")
    (killed,) = Journal(stack["tmp"] / "box1").all_entries()  # the first copy's end: its kill
    assert killed.error is not None and killed.error.startswith("killed: no contact")
    assert killed.ended_at is not None and killed.ended_at <= second[3]  # no overlap
    assert killed.ended_at - cut_at < DEADLINE + TIMING.kill_grace_s + 1
    alerts = stack["container"].store.list_alerts()
    assert "agent_task_killed" in {a.reason for a in alerts}


def test_stop_kills_the_running_task(stack: dict[str, Any]) -> None:
    stamps = stack["tmp"] / "stamps"
    _agent(stack, "box1")
    ex_id = _submit(stack, _stamped(stamps, 30))
    _until(lambda: any(r[0] == "start" for r in _stamps(stamps)))
    r = stack["owner"].http.post(f"/v1/ex/{ex_id}/_stop", body="{}", headers=JSON)
    assert r.status_code == 200
    _until(lambda: not _running_tasks(stack))
    assert _status(stack, ex_id) == "stopped"
    assert not any(r[0] == "end" for r in _stamps(stamps))


def _running_tasks(stack: dict[str, Any]) -> list[str]:
    doc = stack["owner"].http.get("/v1/agents/box1").json_body
    return [t for t in doc["running_tasks"] if t]


def test_an_agent_killed_and_restarted_mid_task_reports_it_once(stack: dict[str, Any]) -> None:
    stamps = stack["tmp"] / "stamps"
    first = _agent(stack, "box1")
    ex_id = _submit(stack, _stamped(stamps, 2))
    _until(lambda: any(r[0] == "start" for r in _stamps(stamps)))
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    time.sleep(0.5)
    _agent(stack, "box1")
    _until(lambda: _status(stack, ex_id) == "completed")
    assert [(r[0], r[2]) for r in _stamps(stamps)] == [("start", 1), ("end", 1)]
    logs = _logs(stack)
    entries = logs.read(ex_id).entries
    assert sorted(e.seq for e in entries) == [0, 1, 2]  # stdout and stderr interleave
    assert sorted((e.source, e.message) for e in entries) == [
        ("stderr", "err"),
        ("stdout", "done"),
        ("stdout", 'out {"start": 0, "end": 1}'),
    ]
    # A line is marked reported only once the control plane answered: a kill between the
    # append and the answer makes the new agent send it again, and the store keeps one copy.
    # Only the two lines written before the kill can be sent twice.
    assert len(entries) <= logs.appended <= len(entries) + 2


def test_cadenza_agents_list_show_add_remove(stack: dict[str, Any]) -> None:
    env = {"CADENZA_CREDENTIALS": str(stack["tmp"] / "credentials.json")}
    root = ["--url", stack["url"], "--user", "owner"]

    def cli(*args: str) -> Any:
        result = CliRunner().invoke(cli_main.app, [*root, *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    listed = json.loads(cli("--json", "agents", "list"))
    assert [(a["name"], a["state"]) for a in listed] == [
        ("box1", "disconnected"),
        ("box2", "disconnected"),
    ]
    assert "box1" in cli("agents", "list")  # the table
    arn = stack["users"].get("box1").arn.replace("box1", "box3")
    added = json.loads(cli("agents", "add", "box3", "--principal", arn, "-l", "gpu=yes"))
    assert added["labels"] == {"gpu": "yes"}
    assert json.loads(cli("agents", "show", "box3"))["name"] == "box3"
    cli("agents", "remove", "box3")
    result = CliRunner().invoke(cli_main.app, [*root, "agents", "show", "box3"], env=env)
    assert result.exit_code == 3  # not found


def test_the_control_plane_restarted_mid_task(stack: dict[str, Any]) -> None:
    stamps = stack["tmp"] / "stamps"
    _agent(stack, "box1")
    ex_id = _submit(stack, _stamped(stamps, 3))
    _until(lambda: any(r[0] == "start" for r in _stamps(stamps)))
    server: ApiServer = stack["server"]
    port = server.port
    server.stop()  # the API is down: the same case as a cut, for the agent
    time.sleep(1.5)
    with ApiServer(app, port=port, users=stack["users"]):
        _until(lambda: _status(stack, ex_id) == "completed")
    assert [(r[0], r[2]) for r in _stamps(stamps)] == [("start", 1), ("end", 1)]
    logs = _logs(stack)
    assert logs.appended == len(logs.read(ex_id).entries)
