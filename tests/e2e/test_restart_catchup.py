"""Issue #15 end to end: `cadenza dev` killed hard with slots due, restarted; the catch-up.

Three jobs every 10 s (catchup ``latest``, ``all``, ``none``; misfire grace 60 s; ``noop``
runs of a few milliseconds, overlap ``skip``) run one slot on a stack whose DynamoDB Local
runs outside it (as DynamoDB outlives a Lambda outage: the restart is quick and its moment
can be chosen). The stack is SIGKILLed just after that slot, before any later run is
created ahead (look-ahead 3 s; on a slow machine, after the next slot that ends in time),
and relaunched so that its API answers about 7.5 s after a slot: the slots of the outage
are then all more than LATE_AFTER_S (5 s) past at the first tick, and the next slot is a
few seconds ahead. The assertions follow the first tick's own time (from the stack log),
so a slower restart changes the expectations rather than failing them:

- each job's first slot after that tick runs on time (started within 3 s of its slot),
  and a slot less than 5 s past at the tick (none when the phase lands as intended) runs;
- ``latest``: only the latest missed slot runs, and not even it when a slot is due; the
  others are recorded missed;
- ``all``: every missed slot runs, in slot order, no two of the job's runs overlapping;
- ``none``: every missed slot is recorded missed;
- no slot is recorded skipped: no run ever overlapped another.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cadenza_tools.local.dynamodb_local import DynamoDBLocal, free_port
from tests.e2e.test_kill_restart import KillableStack, StackSeries, port_free
from tests.e2e.test_local_stack import needs_java, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

INTERVAL_S = 10
LATE_AFTER_S = 5.0  # the supervisor's: a slot further past than this at a tick is missed
ON_TIME_S = 3.0  # the first tick of a restarted stack on a busy 2-core machine
PHASE_AT_UP_S = 7.5  # when the restarted API should answer, after a slot
RESTART_FASTER_S = 1.5  # a restart finds its tables: it is up this much sooner than a start
LOOKAHEAD = 3
KILL_ATTEMPTS = 3  # slots: the kill follows the first that succeeds early enough
OPS = [{"_op": "noop"}, {"_op": "noop"}]
POLICIES = ("latest", "all", "none")
IN_PROGRESS = "IN_PROGRESS"

Runs = dict[float, dict[str, Any]]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def runs_by_slot(stack: KillableStack, job_id: str) -> Runs:
    response = stack.get(f"/scheduled-jobs/{job_id}/runs?maxResults=1000")
    assert response.status_code == 200, response.text
    out: Runs = {}
    for run in response.json():
        slot = epoch(run["scheduledStart"])
        assert slot is not None and slot not in out, run  # one record per slot
        out[slot] = run
    return out


def first_tick_at(log_path: Path) -> float | None:
    """When the first logged supervisor tick began (log time minus its duration_s)."""
    for line in log_path.read_text(errors="replace").splitlines():
        if "supervisor tick:" not in line:
            continue
        ended = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        figures = dict(f.split("=", 1) for f in line.split("supervisor tick: ", 1)[1].split())
        return ended - float(figures.get("duration_s", 0.0))
    return None


@dataclass(frozen=True)
class Outage:
    """A job's slots around the restart, as the first tick after it saw them."""

    missed: list[float]  # more than LATE_AFTER_S past at the tick
    due: list[float]  # past, but by less: on time, if late
    on_time: float  # the first slot after the tick

    @classmethod
    def of(cls, first: float, killed: float, tick: float) -> Outage:
        slots = [first + k * INTERVAL_S for k in range(1, 100)]
        down = [s for s in slots if killed < s <= tick]
        return cls(
            missed=[s for s in down if tick - s > LATE_AFTER_S],
            due=[s for s in down if tick - s <= LATE_AFTER_S],
            on_time=next(s for s in slots if s > tick),
        )


def brief(run: dict[str, Any] | None) -> str:
    if run is None:
        return "no record"
    return f"{run['status']} {run.get('message') or ''} (started {run.get('startedAt')})"


def started(run: dict[str, Any] | None) -> bool:
    return run is not None and run.get("startedAt") is not None


def settled(runs: Runs, outage: Outage) -> bool:
    wanted = [*outage.missed, *outage.due, outage.on_time]
    return all(s in runs and runs[s]["status"] != IN_PROGRESS for s in wanted)


def check_common(runs: Runs, outage: Outage) -> None:
    on_time = runs[outage.on_time]
    assert started(on_time), f"the on-time slot {iso(outage.on_time)} did not run: {brief(on_time)}"
    late = (epoch(on_time["startedAt"]) or 0.0) - outage.on_time
    assert late <= ON_TIME_S, f"the on-time slot {iso(outage.on_time)} started {late:.3f}s late"
    for slot in outage.due:
        assert started(runs[slot]), (
            f"{iso(slot)}, due at the restart, did not run: {brief(runs[slot])}"
        )
    skipped = [iso(s) for s, r in sorted(runs.items()) if r["status"] == "SKIPPED"]
    assert not skipped, f"slots skipped though no run overlapped: {', '.join(skipped)}"


def check_missed(runs: Runs, slots: list[float]) -> None:
    for slot in slots:
        run = runs.get(slot)
        assert run is not None and run["status"] == "MISSED", (
            f"{iso(slot)} is not recorded missed: {brief(run)}"
        )
        assert not started(run), f"{iso(slot)} ran"


def check_latest(runs: Runs, outage: Outage) -> None:
    if outage.due or not outage.missed:  # an on-time slot was due: no catch-up at all
        check_missed(runs, outage.missed)
        return
    *older, latest = outage.missed
    check_missed(runs, older)
    run = runs[latest]
    assert started(run) and run["status"] == "SUCCEEDED", (
        f"the latest missed slot {iso(latest)} did not run: {brief(run)}"
    )


def check_all(runs: Runs, outage: Outage) -> None:
    for slot in outage.missed:
        assert started(runs[slot]), f"missed slot {iso(slot)} did not run: {brief(runs[slot])}"
        assert runs[slot]["status"] == "SUCCEEDED", f"{iso(slot)}: {brief(runs[slot])}"
    starts = [epoch(runs[s]["startedAt"]) or 0.0 for s in outage.missed]
    assert starts == sorted(starts), "catch-up runs out of slot order"
    spans = sorted(
        (epoch(r["startedAt"]) or 0.0, epoch(r["finishedAt"]) or math.inf)
        for r in runs.values()
        if started(r)
    )
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert end <= begin, f"two runs of the job overlapped: {spans}"


def check_none(runs: Runs, outage: Outage) -> None:
    check_missed(runs, outage.missed)


CHECKS: dict[str, Callable[[Runs, Outage], None]] = {
    "latest": check_latest,
    "all": check_all,
    "none": check_none,
}


def describe(runs: Runs) -> str:
    return "\n".join(
        f"    {iso(s)} {r['status']:<11} {r.get('message') or '':<10} "
        f"started {r.get('startedAt')} finished {r.get('finishedAt')}"
        for s, r in sorted(runs.items())
    )


def succeeded(stack: KillableStack, job_id: str, slot: float) -> Callable[[], bool | None]:
    def probe() -> bool | None:
        run = runs_by_slot(stack, job_id).get(slot)
        return True if run is not None and run["status"] == "SUCCEEDED" else None

    return probe


def submit_jobs(stack: KillableStack, first: float) -> dict[str, str]:
    ids = {}
    for policy in POLICIES:
        _, job = stack.submit(
            {
                "name": f"catchup-{policy}",
                "operations": OPS,
                "schedule": {"interval_seconds": INTERVAL_S, "start_at": iso(first)},
                "catchup": policy,
                "misfire_grace_seconds": 60,
            }
        )
        ids[policy] = job["job_id"]
    return ids


@needs_java
def test_restart_runs_the_on_time_slot_and_catches_up_by_policy(tmp_path: Path) -> None:
    ddb = DynamoDBLocal(free_port()).start()  # in memory; it outlives the stack
    api_port, moto_port = free_port(), free_port()
    args = ["--dynamodb-endpoint", ddb.endpoint, "--prefix", "catchup", "--moto-port"]
    args += [str(moto_port), "--tick-interval", "1", "--lookahead", str(LOOKAHEAD)]
    try:
        with StackSeries(args, api_port, tmp_path) as series:
            launched = time.time()
            before = series.start("before")
            startup = time.time() - launched
            first = float(math.ceil(time.time()) + 3)
            ids = submit_jobs(before, first)
            for _ in range(KILL_ATTEMPTS):
                for job_id in ids.values():
                    left = first + INTERVAL_S + 5 - time.time()
                    wait_for(succeeded(before, job_id, first), left, "a slot to succeed", 0.1)
                killed = time.time()
                if killed < first + INTERVAL_S - LOOKAHEAD - 1:
                    break  # before the next slot's run is created ahead
                first += INTERVAL_S  # a slow machine: the phase starts a slot later
            else:
                pytest.fail(f"{KILL_ATTEMPTS} slots in a row ran too late to kill the stack")
            before.kill_hard()
            wait_for(lambda: all(port_free(p) for p in (api_port, moto_port)) or None, 10, "ports")

            up_at = first + 2 * INTERVAL_S + PHASE_AT_UP_S  # two slots missed, the third ahead
            time.sleep(max(0.0, up_at - max(1.0, startup - RESTART_FASTER_S) - time.time()))
            relaunched = time.time()
            after = series.start("after")
            up = time.time()
            tick = wait_for(lambda: first_tick_at(after.log_path), 10, "the first tick's log line")
            outages = {p: Outage.of(first, killed, tick) for p in POLICIES}
            info = (
                f"slots from {iso(first)} every {INTERVAL_S}s: killed {killed - first:+.2f}s, "
                f"relaunched {relaunched - first:+.2f}s, API back {up - first:+.2f}s "
                f"(first start took {startup:.2f}s), first tick {tick - first:+.2f}s "
                "(times from the first slot)"
            )

            def all_settled() -> dict[str, Runs] | None:
                got = {p: runs_by_slot(after, ids[p]) for p in POLICIES}
                return got if all(settled(got[p], outages[p]) for p in POLICIES) else None

            deadline = max(o.on_time for o in outages.values()) + 10 - time.time()
            try:
                final = wait_for(all_settled, deadline, "the restart's slots to settle", 0.5)
            except AssertionError as err:
                got = {p: describe(runs_by_slot(after, ids[p])) for p in POLICIES}
                raise AssertionError(f"{err}; {info}\n{got}\n{after.tail()}") from None
            failures = []
            for policy in POLICIES:
                for check in (check_common, CHECKS[policy]):
                    try:
                        check(final[policy], outages[policy])
                    except AssertionError as err:
                        failures.append(f"catchup {policy}: {str(err).splitlines()[0]}")
            tables = "\n".join(f"  catchup {p}:\n{describe(final[p])}" for p in POLICIES)
            assert not failures, "\n".join([*failures, info, tables])
            assert after.stop() == 0, after.tail()
    finally:
        ddb.stop()
