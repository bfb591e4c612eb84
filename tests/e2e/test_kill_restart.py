"""`cadenza dev` killed hard (SIGKILL) mid-run, then restarted on the same data dir.

The runs and slices live in DynamoDB Local's files, the SQS messages (moto, in memory) die
with the stack: the restarted supervisor has to finish the work from the store alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cadenza_tools.local.dynamodb_local import free_port
from tests.e2e.test_local_stack import StackProcess, needs_java, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TERMINAL = ("completed", "failed", "terminated", "stopped", "killed")
KILL_JOB = {
    "name": "kill",
    "workers": 3,
    "lease_seconds": 4,
    "max_retries": 5,
    "operations": [{"_op": "range", "end": 12}, {"_op": "sleep", "seconds": 0.4}],
}
ONE_JOB = {
    "name": "kill-one",
    "lease_seconds": 4,
    "operations": [{"_op": "noop"}, {"_op": "sleep", "seconds": 3}],
}


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def port_free(port: int) -> bool:
    """Nothing listens on ``port`` and a server could bind it (TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


class KillableStack(StackProcess):
    """A stack in its own session, so that SIGKILL can take its whole group down."""

    new_session = True

    def kill_hard(self) -> list[int]:
        """SIGKILL the stack's process group and every process group below it.

        DynamoDB Local's JVM runs in a session of its own, so it is not in the stack's
        group: its group is killed too (as an orphan it would keep the port and the files).
        """
        proc, self.proc = self.proc, None
        assert proc is not None and proc.poll() is None, self.tail()
        pids = [proc.pid, *descendants(proc.pid)]
        groups = {os.getpgid(proc.pid)}
        for pid in pids[1:]:
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        proc.wait(10)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== SIGKILL process groups {sorted(groups)} ({pids})\n".encode())
        return pids

    def ex(self, job_id: str) -> dict[str, Any] | None:
        response = self.get(f"/v1/jobs/{job_id}/ex")
        if response.status_code != 200:
            return None
        data: dict[str, Any] = response.json()
        return data


class StackSeries:
    """Stacks run one after another on one command line and API port (a stack, killed,
    then its restart); on exit, one still running is killed, the others stopped."""

    def __init__(self, argv: list[str], api_port: int, logs: Path, prefix: str = "") -> None:
        self.argv, self.api_port, self.logs, self.prefix = argv, api_port, logs, prefix
        self.made: list[KillableStack] = []

    def start(self, name: str) -> KillableStack:
        log = self.logs / f"{self.prefix}{name}.log"
        stack = KillableStack(name, self.argv, self.api_port, log)
        self.made.append(stack)
        return stack.start()

    def __enter__(self) -> StackSeries:
        return self

    def __exit__(self, *exc: object) -> None:
        for stack in reversed(self.made):
            if stack.proc is not None and stack.proc.poll() is None:
                stack.kill_hard()
            else:
                stack.stop()


def restartable(tmp_path: Path) -> tuple[list[str], tuple[int, int, int]]:
    """A stack's command line on a kept data dir and fixed ports (the API's, moto's and
    DynamoDB Local's), so that a restart finds what the stack before it kept."""
    api_port, moto_port, ddb_port = free_port(), free_port(), free_port()
    args = ["--data-dir", str(tmp_path / "data"), "--tick-interval", "1"]
    args += ["--moto-port", str(moto_port), "--dynamodb-port", str(ddb_port)]
    return args, (api_port, moto_port, ddb_port)


@needs_java
def test_sigkilled_stack_finishes_its_runs_after_a_restart(tmp_path: Path) -> None:
    args, (api_port, moto_port, ddb_port) = restartable(tmp_path)
    with StackSeries(args, api_port, tmp_path) as series:
        stack = series.start("before-kill")
        assert stack.banner()["backend"] == "ddblocal"
        status, job = stack.submit(KILL_JOB)
        assert status == 202, job
        status, one = stack.submit(ONE_JOB)
        assert status == 202, one

        def mid_run() -> dict[str, Any] | None:
            ex = stack.ex(job["job_id"])
            if ex is None:
                return None
            assert ex["_status"] not in TERMINAL, f"ended before the kill: {ex}"
            return ex if ex["_slicer_stats"]["processed"] >= 2 else None

        seen = wait_for(mid_run, 30, "two slices processed", 0.05)
        one_before = stack.ex(one["job_id"])
        killed = stack.kill_hard()
        assert len(killed) >= 2, killed  # the stack and DynamoDB Local's JVM at least
        wait_for(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in killed[1:]) or None,
            10,
            f"the killed stack's processes {killed} to be gone",
        )
        processed_before = seen["_slicer_stats"]["processed"]
        wait_for(
            lambda: all(port_free(p) for p in (api_port, moto_port, ddb_port)) or None,
            10,
            "the killed stack's ports to be free",
        )

        again = series.start("after-kill")

        def terminal(job_id: str) -> Callable[[], dict[str, Any] | None]:
            def probe() -> dict[str, Any] | None:
                ex = again.ex(job_id)
                return ex if ex is not None and ex["_status"] in TERMINAL else None

            return probe

        t0 = time.monotonic()
        try:
            done = wait_for(terminal(job["job_id"]), 90, "the killed run to end")
            done_one = wait_for(terminal(one["job_id"]), 30, "the one-slice run to end")
        except AssertionError as err:
            last = [again.get(f"/v1/jobs/{j['job_id']}/ex").text for j in (job, one)]
            raise AssertionError(f"{err}\nlast: {last}\n{again.tail()}") from None
        elapsed = time.monotonic() - t0

        info = f"before kill: {seen} / {one_before}; after {elapsed:.1f}s\n{again.tail()}"
        assert done["ex_id"] == job["ex_id"], info
        assert done["_status"] == "completed", (done, info)
        stats = done["_slicer_stats"]
        assert (stats["processed"], stats["failed"]) == (12, 0), (done, info)

        response = again.get(f"/v1/ex/{job['ex_id']}/slices?size=1000")
        assert response.status_code == 200, response.text
        slices = response.json()
        assert len(slices) == 12, slices
        assert len({s["slice_id"] for s in slices}) == 12, slices
        assert {s["state"] for s in slices} == {"completed"}, slices
        retried = [s for s in slices if s["attempts"] >= 2]
        assert retried or processed_before < 12, (slices, info)

        assert done_one["ex_id"] == one["ex_id"], info
        assert done_one["_status"] == "completed", (done_one, info)
        one_stats = done_one["_slicer_stats"]
        assert (one_stats["processed"], one_stats["failed"]) == (1, 0), (done_one, info)

        assert again.stop() == 0, again.tail()
