"""The agent's loop: register, then journal its tasks' output and ends, renew their leases
with a heartbeat every period, and report what the control plane has not acknowledged. It
takes work as soon as it has room: again at once after a take that returned work or a
task that ended, and while idle every `idle_s` (0.5 s doubling to `max_idle_s`, 5 s). An
ended task is reported at once. When the control plane cannot be reached it retries with
backoff and keeps its tasks running until their deadline (counted from the last request
that renewed them), then kills them and journals that; all is reported once it is back."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cadenza_tools.agent import runner
from cadenza_tools.agent.journal import Entry, Journal

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0


class Api(Protocol):
    """The control plane's HTTP API, signed as the agent's principal (the CLI's client)."""

    def post(self, path: str, params: Any = None, json: Any = None) -> Any: ...


@dataclass(frozen=True)
class Failures:
    """How the client fails: `no_contact` (unreachable, or a 5xx: the same to the agent),
    `refused` (the task is not this agent's any more: 404, 409), any other refusal."""

    no_contact: tuple[type[Exception], ...]
    refused: tuple[type[Exception], ...]
    other: type[Exception]


@dataclass
class Settings:
    """What the agent says of itself and how much it runs at once."""

    labels: Mapping[str, str] | None = None
    version: str = "0"
    max_tasks: int = 4
    # set by the control plane's answer to register
    heartbeat_s: float = 10.0
    kill_grace_s: float = 10.0
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    # how often it looks at its running tasks (locally, no request)
    watch_s: float = 0.2
    # the pause after a take that found nothing: `min_idle_s`, doubling to `max_idle_s`
    min_idle_s: float = 0.5
    max_idle_s: float = 5.0


class Agent:
    def __init__(
        self, client: Api, journal: Journal, settings: Settings, failures: Failures
    ) -> None:
        self.client, self.journal, self.settings = client, journal, settings
        self.failures_are = failures
        self.procs: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
        self.killed: dict[tuple[str, int], str] = {}  # why the agent killed an attempt
        self.connected = False
        self.failures = 0
        self.stopping = threading.Event()
        self.now: Callable[[], float] = time.time
        self.next_beat = 0.0  # when the next heartbeat is due
        self.next_take = 0.0  # when to ask for work next (while it has room)
        self.idle_s = 0.0  # the pause after the last take, while takes find nothing

    # ---- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        """Until `stopping` is set: register (with backoff), then step, each step saying
        how long to wait before the next."""
        self.resume()
        while not self.stopping.is_set():
            if self.register():
                break
            self.stopping.wait(self.backoff())
        while not self.stopping.is_set():
            self.stopping.wait(self.step())

    def backoff(self) -> float:
        """Seconds to wait after `failures` failed calls in a row: doubling, capped, jittered."""
        base = min(MAX_BACKOFF_S, 0.5 * 2 ** max(0, self.failures - 1))
        return float(min(base * random.uniform(0.8, 1.2), self.settings.heartbeat_s))

    def register(self) -> bool:
        body = {"labels": self.settings.labels, "version": self.settings.version}
        if self.settings.labels is None:
            del body["labels"]
        try:
            answer = self.client.post("/v1/agent/register", json=body)
        except self.failures_are.no_contact as err:
            self._lost_contact(err)
            return False
        self._contact()
        self.settings.heartbeat_s = float(answer["heartbeat_seconds"])
        self.settings.kill_grace_s = float(answer["kill_grace_seconds"])
        return True

    def step(self) -> float:
        """One turn: output and ends into the journal; the heartbeat and all reports when
        the period is up (or while out of contact), else the reports of ended tasks; new
        work when due; the deadlines. Returns the seconds to wait before the next turn."""
        self.watch()
        if not self.connected or self.now() >= self.next_beat:
            self.next_beat = self.now() + self.settings.heartbeat_s
            if self.heartbeat():
                self.report()
        elif self.journal.entries(running=False):
            self.report(self.journal.entries(running=False))
        if self.connected and self.room() > 0 and self.now() >= self.next_take:
            self.pace(self.take())
        self.enforce_deadlines()
        self.watch()
        return self.pause()

    def room(self) -> int:
        return self.settings.max_tasks - len(self.journal.entries(running=True))

    def pace(self, taken: int) -> None:
        """After a take: ask again at once if it found work, else after a pause that
        doubles while takes find nothing."""
        if taken:
            self.idle_s = 0.0
        else:
            grown = max(self.settings.min_idle_s, 2 * self.idle_s)
            self.idle_s = min(grown, self.settings.max_idle_s)
        self.next_take = self.now() + self.idle_s

    def pause(self) -> float:
        """How long to wait before the next turn: none if an end waits to be reported;
        else until the next heartbeat, the next take (with room), or the next look at the
        running tasks, whichever comes first."""
        if not self.connected:
            return self.backoff()
        if self.journal.entries(running=False):
            return 0.0
        now, waits = self.now(), [self.next_beat]
        if self.journal.entries(running=True):
            waits.append(now + self.settings.watch_s)
        if self.room() > 0:
            waits.append(self.next_take)
        return max(0.0, min(waits) - now)

    # ---- processes ------------------------------------------------------------------------

    def resume(self) -> None:
        """After a restart: the journal's attempts that have not ended are watched again
        (their processes kept running in their own sessions); any that never started is
        started now."""
        for entry in self.journal.entries(running=True):
            if entry.pgid is None:
                self.procs[entry.key] = runner.start(self.journal, entry, self.settings.env)

    def watch(self) -> None:
        """Journal new output of running attempts, and the end of those that ended."""
        for entry in self.journal.entries(running=True):
            if entry.pgid is None:
                continue
            proc = self.procs.get(entry.key)
            if proc is not None:
                proc.poll()
            runner.collect(self.journal, entry)
            code = runner.exit_code(self.journal, entry)
            timeout = float(entry.command.get("timeout_seconds") or 0)
            if code is None and timeout and self.now() - (entry.started_at or 0) > timeout:
                self.kill(entry, f"timeout: ran longer than {timeout:g} seconds")
                continue
            if code is None and runner.alive(entry.pgid):
                continue
            self._ended(entry, code)

    def _ended(self, entry: Entry, code: int | None) -> None:
        fresh = next(e for e in self.journal.all_entries() if e.key == entry.key)
        runner.collect(self.journal, fresh, final=True)
        error = self.killed.pop(entry.key, None)
        if code is None and error is None:
            error = "lost: the process group ended without an exit code (killed outside the agent?)"
        tail = runner.tail(self.journal, fresh)
        self.journal.ended(entry.key, self.now(), code, error, tail)
        self.procs.pop(entry.key, None)
        self.next_take, self.idle_s = 0.0, 0.0  # room again: ask for work at once

    def kill(self, entry: Entry, why: str) -> None:
        """Kill the attempt's whole process group (SIGTERM, grace, SIGKILL); journal why."""
        if entry.pgid is None:
            self.journal.ended(entry.key, self.now(), None, why, "")
            return
        log.warning("killing task %s attempt %s: %s", entry.task_id, entry.attempt, why)
        self.killed[entry.key] = why
        runner.kill_group(entry.pgid, self.settings.kill_grace_s, self.procs.get(entry.key))
        self._ended(entry, runner.exit_code(self.journal, entry))

    def enforce_deadlines(self) -> None:
        """Kill what has had no renewal for its deadline (the control plane hands it to
        another agent only after that deadline plus a margin)."""
        now = self.now()
        for entry in self.journal.entries(running=True):
            since = entry.contact_at if entry.contact_at is not None else now
            if now - since >= entry.deadline_s:
                silent = now - since
                self.kill(entry, f"killed: no contact with the control plane for {silent:.0f} s")

    # ---- the control plane ----------------------------------------------------------------

    def _contact(self) -> None:
        if not self.connected:
            log.info("connected to the control plane")
        self.connected, self.failures = True, 0

    def _lost_contact(self, err: Exception) -> None:
        if self.connected:
            log.warning("lost contact with the control plane: %s", err)
        self.connected = False
        self.failures += 1

    def heartbeat(self) -> bool:
        running = self.journal.entries(running=True)
        held = [{"task_id": e.task_id, "token": e.token} for e in running]
        sent = self.now()
        try:
            answer = self.client.post("/v1/agent/heartbeat", json={"tasks": held})
        except self.failures_are.no_contact as err:
            self._lost_contact(err)
            return False
        self._contact()
        by_id = {e.task_id: e for e in running}
        self.journal.contact([by_id[t].key for t in answer["renewed"] if t in by_id], sent)
        for task_id in answer["lost"]:
            if task_id in by_id:
                self.kill(by_id[task_id], "lost: the control plane gave the task to another agent")
        for task_id in answer["stop"]:
            if task_id in by_id:
                self.kill(by_id[task_id], "stopped: its run was stopped")
        return True

    def report(self, entries: list[Entry] | None = None) -> None:
        """Send what the control plane has not acknowledged (of `entries`, default all):
        lines, then ends; each once."""
        for entry in self.journal.entries() if entries is None else entries:
            try:
                self._report(entry)
            except self.failures_are.no_contact as err:
                self._lost_contact(err)
                return

    def _report(self, entry: Entry) -> None:
        while True:
            lines = self.journal.unreported_lines(entry.key)
            ended = entry.ended_at is not None
            if not lines and not ended:
                return
            body: dict[str, Any] = {"token": entry.token, "lines": lines}
            last = len(lines) < 500
            if ended and last:
                body["end"] = {
                    "exit_code": entry.exit_code,
                    "tail": entry.tail,
                    "error": entry.error,
                }
            path = f"/v1/agent/tasks/{entry.task_id}/report"
            try:
                self.client.post(path, json=body)
            except self.failures_are.refused as err:
                log.warning("report on task %s refused: %s", entry.task_id, err)
                self.journal.reported(entry.key, [ln["seq"] for ln in lines], True)
                if not ended:
                    self.kill(entry, "lost: the control plane refused a report on it")
                return
            self.journal.reported(entry.key, [ln["seq"] for ln in lines], "end" in body)
            if last:
                return

    def take(self) -> int:
        """Ask for as many tasks as it has room for and start them; how many it started
        (one it knows already is not counted, so it is not asked for again at once)."""
        room = self.room()
        if room <= 0:
            return 0
        sent = self.now()
        try:
            answer = self.client.post("/v1/agent/tasks", json={"max": min(room, 16)})
        except self.failures_are.no_contact as err:
            self._lost_contact(err)
            return 0
        except self.failures_are.other as err:
            log.error("taking work refused: %s", err)
            return 0
        started = 0
        for task in answer["tasks"]:
            if not self.journal.add(task):
                continue
            started += 1
            entry = next(
                e
                for e in self.journal.entries(running=True)
                if e.task_id == task["task_id"] and e.attempt == task["attempt"]
            )
            self.journal.contact([entry.key], sent)
            self.procs[entry.key] = runner.start(self.journal, entry, self.settings.env)
        return started
