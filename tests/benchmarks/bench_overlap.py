"""Issue #15's experiment on the local stack: which slots run. Prints; asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_overlap [--experiments steady,restart]
        [--lookahead 30,60] [--duration 75] [--jobs 100] [--kill-after 25] [--down 35]
        [--observe 30] [--data-root /dev/shm]

``steady``: for each look-ahead L in ``--lookahead``, a fresh ``cadenza dev --lookahead L``
(DynamoDB Local, its files under ``--data-root``) and one job ``{"interval_seconds": 10}``
with two ``noop`` operations and the default ``overlap: skip``, left alone for
``--duration`` seconds. Then every slot of the job (``GET /scheduled-jobs/{id}/runs``): its
UTC time, status, reason, start lateness and how far ahead its run was created; the counts
(succeeded / skipped for an overlap / missed) over the slots due in the window; and the
supervisor's figures (``GET /api/supervisor/state``). Runs take milliseconds, so every
slot should run: a slot skipped for an overlap here lost to a run that had not begun.

``restart``: ``--jobs`` jobs every 10 s on one stack (look-ahead ``--restart-lookahead``);
``--kill-after`` seconds after the last submission the stack is killed hard (SIGKILL of its
process group and of DynamoDB Local's, as ``tests/e2e/test_kill_restart.py`` does), left
down ``--down`` seconds, and started again on the same DynamoDB files (same prefix and
ports). The slots are split by their time: before the kill, while the stack was down (up to
when the restarted API answered: the missed ones, all within the 60 s misfire grace), and
after the restart; for each, what happened to them. Also: the first slot of each job at or
after the restart (ran on time?), the first run's start against the API coming back, and
the first ticks after the restart (stack log: their wall time and what they did) with the
supervisor record's last creating tick.

The stacks' logs and data go to a temporary directory under ``--data-root`` (``--keep``
keeps it).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.benchmarks import add_workdir_arguments, bench_credentials, workdir

bench_credentials()

import requests  # noqa: E402

from cadenza_tools.local.dynamodb_local import free_port  # noqa: E402
from tests.benchmarks.bench_lateness import pct, signed_session  # noqa: E402
from tests.e2e.test_kill_restart import KillableStack, StackSeries, port_free  # noqa: E402
from tests.e2e.test_local_stack import wait_for  # noqa: E402

OPS = [{"_op": "noop"}, {"_op": "noop"}]
INTERVAL_S = 10
ON_TIME_S = 1.5  # a start this close to its slot counts as on time
SHOWN_JOBS = 3  # jobs with a skipped slot after the restart whose runs are printed
LEDGER = ("SKIPPED", "MISSED")

Runs = list[dict[str, Any]]


_credentials: list[Path] = []  # the stacks' users, beside their logs (set in main)


def session() -> requests.Session:
    """This thread's session, its requests signed as the stacks' admin."""
    return signed_session(_credentials[0])


def ts(text: str | None) -> float | None:
    """An API timestamp ('2026-11-22T02:05:00.000Z') as epoch seconds."""
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def hms(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%H:%M:%S")


def slot_of(run: dict[str, Any]) -> float:
    value = ts(run["scheduledStart"])
    assert value is not None
    return value


def lateness(run: dict[str, Any]) -> float | None:
    started = ts(run.get("startedAt"))
    return None if started is None else started - slot_of(run)


def outcome(run: dict[str, Any]) -> str:
    """'SUCCEEDED', 'SKIPPED overlap', 'MISSED misfire', 'IN_PROGRESS' ..."""
    status = str(run["status"])
    if status in LEDGER and run.get("message"):
        return f"{status} {run['message']}"
    return status


def list_runs(url: str, job_id: str) -> Runs:
    """Every run of the job, oldest slot first (one page of up to 1000)."""
    r = session().get(
        f"{url}/scheduled-jobs/{job_id}/runs", params={"maxResults": 1000}, timeout=30
    )
    r.raise_for_status()
    runs: Runs = r.json()
    return sorted(runs, key=slot_of)


def supervisor_state(url: str) -> dict[str, Any]:
    r = session().get(f"{url}/api/supervisor/state", timeout=10)
    data: dict[str, Any] = r.json() if r.status_code == 200 else {"http": r.status_code}
    return data


def counts(items: Iterable[str]) -> str:
    c = Counter(items)
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "none"


def lateness_summary(values: list[float]) -> str:
    if not values:
        return "no start"
    return (
        f"start lateness p50 {pct(values, 50):.3f}s, p99 {pct(values, 99):.3f}s, "
        f"max {max(values):.3f}s (n={len(values)})"
    )


def stack_argv(
    data_dir: Path, prefix: str, lookahead: float, args: argparse.Namespace
) -> list[str]:
    return [
        "--data-dir", str(data_dir),
        "--prefix", prefix,
        "--lookahead", f"{lookahead:g}",
        "--tick-interval", f"{args.tick_interval:g}",
        "--workers", str(args.workers),
    ]  # fmt: skip


# ---- steady -------------------------------------------------------------------------


def print_supervisor(state: dict[str, Any]) -> None:
    print(f"  supervisor: state {state.get('state')}, ticks {state.get('ticks')}")
    for key in ("last_tick", "last_creating_tick"):
        if state.get(key) is not None:
            print(f"    {key}: {json.dumps(state[key], separators=(',', ':'))}")


def print_slots(runs: Runs, window_end: float) -> None:
    print(f"  {'slot (UTC)':<10} {'status':<12} {'reason':<16} {'late (s)':>8} {'created':>9}")
    for run in runs:
        slot = slot_of(run)
        late = lateness(run)
        created = ts(run.get("createdAt"))
        ahead = "" if created is None else f"{created - slot:+.1f}s"
        note = "  (after the window)" if slot > window_end else ""
        print(
            f"  {hms(slot):<10} {run['status']:<12} {run.get('message') or '':<16} "
            f"{'' if late is None else f'{late:.3f}':>8} {ahead:>9}{note}"
        )


def steady(args: argparse.Namespace, workdir: Path, lookahead: float) -> None:
    prefix = f"ovl-steady-{lookahead:g}-{uuid.uuid4().hex[:6]}"
    print(
        f"\n== steady: cadenza dev --lookahead {lookahead:g} --tick-interval "
        f"{args.tick_interval:g}; one job every {INTERVAL_S}s, noop + noop, overlap skip "
        f"(the default), {args.duration:g}s (prefix {prefix})"
    )
    argv = stack_argv(workdir / prefix, prefix, lookahead, args)
    stack = KillableStack(prefix, argv, free_port(), workdir / f"{prefix}.log").start()
    try:
        body = {"name": "overlap-steady", "operations": OPS}
        _, job = stack.submit({**body, "schedule": {"interval_seconds": INTERVAL_S}})
        t0 = time.time()
        print(
            f"  job {job['job_id']} submitted at {hms(t0)}, next_fire_at {job.get('next_fire_at')}"
        )
        time.sleep(args.duration)
        window_end = time.time()
        time.sleep(3.0)  # the last due slot's run ends
        runs = list_runs(stack.url, job["job_id"])
        due = [r for r in runs if slot_of(r) <= window_end]
        print_slots(runs, window_end)
        c = Counter(map(outcome, due))
        missed = sum(v for k, v in c.items() if k.startswith("MISSED"))
        print(
            f"  {len(due)} slots due in the window: succeeded {c['SUCCEEDED']}, "
            f"skipped overlap {c['SKIPPED overlap']}, missed {missed}; all: {counts(c.elements())}"
        )
        late = [x for x in map(lateness, due) if x is not None]
        print(f"  {lateness_summary(late)}")
        stats = session().get(f"{stack.url}/scheduled-jobs/{job['job_id']}/stats", timeout=10)
        by_status = stats.json().get("byStatus") if stats.status_code == 200 else stats.text
        print(f"  job stats (GET /scheduled-jobs/{{id}}/stats), by status: {by_status}")
        print_supervisor(supervisor_state(stack.url))
        problems = [line for line in stack.tail(10_000).splitlines() if "Traceback" in line]
        if problems:
            print(f"  stack log: {len(problems)} traceback(s); see {stack.log_path}")
    finally:
        stack.stop()


# ---- restart ------------------------------------------------------------------------


@dataclass
class Moments:
    """Epoch seconds of the restart experiment's events."""

    submitted: float
    killed: float
    launched: float
    up: float
    end: float


def submit_jobs(url: str, n: int, threads: int) -> list[str]:
    def one(i: int) -> str:
        body = {
            "name": f"restart-{i}",
            "operations": OPS,
            "schedule": {"interval_seconds": INTERVAL_S},
        }
        r = session().post(f"{url}/v1/jobs", params={"start": "true"}, json=body, timeout=30)
        if r.status_code not in (201, 202):
            raise RuntimeError(f"POST /v1/jobs: {r.status_code} {r.text[:200]}")
        return str(r.json()["job_id"])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def kill_and_wait(stack: KillableStack, ports: Iterable[int]) -> None:
    killed = stack.kill_hard()
    wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in killed[1:]) or None,
        20,
        f"the killed stack's processes {killed} to be gone",
    )
    wait_for(lambda: all(port_free(p) for p in ports) or None, 20, "the ports to be free")


def watch_ticks(url: str, until: float) -> list[dict[str, Any]]:
    """The supervisor record's distinct last creating ticks seen until `until`."""
    seen: dict[Any, dict[str, Any]] = {}
    while time.time() < until:
        tick = supervisor_state(url).get("last_creating_tick")
        if isinstance(tick, dict):
            seen.setdefault(tick.get("tick_at"), tick)
        time.sleep(0.5)
    return list(seen.values())


def tick_lines(log_path: Path) -> list[tuple[float, str]]:
    """(log time, figures) of each logged supervisor tick."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        if "supervisor tick:" not in line:
            continue
        stamp = line[:23]
        try:
            when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        out.append((when, line.split("supervisor tick: ", 1)[1]))
    return out


def bins(runs: Runs, m: Moments) -> dict[str, Runs]:
    out: dict[str, Runs] = {"before": [], "down": [], "after": [], "later": []}
    for run in runs:
        slot = slot_of(run)
        if slot < m.killed:
            out["before"].append(run)
        elif slot < m.up:
            out["down"].append(run)
        elif slot <= m.end - 2.0:
            out["after"].append(run)
        else:
            out["later"].append(run)
    return out


def which_ran(down: Runs) -> str:
    """Which of a job's missed slots ran: none, the latest, the oldest, several..."""
    ran = [r for r in down if r.get("startedAt") is not None]
    if not ran:
        return "none ran"
    if len(ran) > 1:
        return f"{len(ran)} of {len(down)} ran"
    if ran[0] is down[-1]:
        return "only the latest ran"
    if ran[0] is down[0]:
        return "only the oldest ran"
    return "only a middle one ran"


def report_bin(title: str, runs: Runs) -> None:
    late = [x for x in map(lateness, runs) if x is not None]
    print(f"  {title}: {len(runs)} slots: {counts(map(outcome, runs))}")
    if late:
        on_time = sum(1 for x in late if x <= ON_TIME_S)
        print(f"    {lateness_summary(late)}; started within {ON_TIME_S:g}s of the slot: {on_time}")


def report_restart(per_job: dict[str, Runs], m: Moments) -> None:
    binned = {j: bins(rs, m) for j, rs in per_job.items()}

    def gather(key: str) -> Runs:
        return [r for b in binned.values() for r in b[key]]

    print(
        f"  killed {m.killed - m.submitted:.1f}s after the last submission, restarted "
        f"{m.launched - m.killed:.1f}s after the kill, API back {m.up - m.launched:.1f}s later "
        f"({hms(m.killed)} .. {hms(m.up)} UTC down)"
    )
    report_bin("slots before the kill", gather("before"))
    down = gather("down")
    report_bin("slots while down (missed)", down)
    ahead = [r for r in down if (ts(r.get("createdAt")) or 0.0) < m.killed]
    report_bin("  of which created ahead before the kill (start message lost)", ahead)
    report_bin("  of which recorded after the restart", [r for r in down if r not in ahead])
    per_job_down = Counter(which_ran(b["down"]) for b in binned.values() if b["down"])
    print(f"    per job, of its missed slots: {counts(per_job_down.elements())}")
    report_bin("slots after the restart", gather("after"))
    first_after = [b["after"][0] for b in binned.values() if b["after"]]
    report_bin("each job's first slot after the restart", first_after)
    starts = [ts(r.get("startedAt")) for rs in per_job.values() for r in rs]
    after_launch = [s for s in starts if s is not None and s >= m.launched]
    if after_launch:
        print(
            f"  first run start after the restart: {min(after_launch) - m.up:+.3f}s from the API "
            f"answering ({min(after_launch) - m.launched:+.3f}s from the relaunch)"
        )
    print(f"  not yet due at the end: {len(gather('later'))} runs created ahead")
    skipped = [j for j, b in binned.items() if any(r["status"] == "SKIPPED" for r in b["after"])]
    for job_id in skipped[:SHOWN_JOBS]:
        print(f"  a job with a slot skipped after the restart ({job_id}), its runs:")
        print_timeline(per_job[job_id], m)


def print_timeline(runs: Runs, m: Moments) -> None:
    """Each run: its slot, outcome, and when it was created, started and finished, in
    seconds from the API answering after the restart."""

    def rel(key: str, run: dict[str, Any]) -> str:
        t = ts(run.get(key))
        return "-" if t is None else f"{t - m.up:+.2f}"

    for run in sorted(runs, key=slot_of)[-8:]:
        print(
            f"    slot {slot_of(run) - m.up:+7.2f}  {outcome(run):<22} created "
            f"{rel('createdAt', run):>7} started {rel('startedAt', run):>7} "
            f"ended {rel('finishedAt', run):>7}"
        )


def report_ticks(log_path: Path, ticks: list[dict[str, Any]], m: Moments) -> None:
    for when, figures in tick_lines(log_path)[:4]:
        print(f"  tick logged {when - m.up:+.3f}s from the API answering: {figures}")
    for tick in ticks[:3]:
        print(f"  supervisor record, last creating tick: {json.dumps(tick, separators=(',', ':'))}")


def restart(args: argparse.Namespace, workdir: Path) -> None:
    prefix = f"ovl-restart-{uuid.uuid4().hex[:6]}"
    print(
        f"\n== restart: {args.jobs} jobs every {INTERVAL_S}s (noop + noop, overlap skip, catchup "
        f"latest, misfire grace 60s: the defaults), --lookahead {args.restart_lookahead:g}; "
        f"SIGKILL after {args.kill_after:g}s, down {args.down:g}s (prefix {prefix})"
    )
    api_port, moto_port, ddb_port = free_port(), free_port(), free_port()
    argv = stack_argv(workdir / prefix, prefix, args.restart_lookahead, args)
    argv += ["--moto-port", str(moto_port), "--dynamodb-port", str(ddb_port)]
    with StackSeries(argv, api_port, workdir, prefix=f"{prefix}-") as series:
        before = series.start("before")
        ids = submit_jobs(before.url, args.jobs, args.submit_threads)
        submitted = time.time()
        time.sleep(max(0.0, submitted + args.kill_after - time.time()))
        killed = time.time()
        kill_and_wait(before, (api_port, moto_port, ddb_port))
        time.sleep(max(0.0, killed + args.down - time.time()))
        launched = time.time()
        after = series.start("after")
        up = time.time()
        ticks = watch_ticks(after.url, up + args.observe)
        m = Moments(submitted, killed, launched, up, time.time())
        with ThreadPoolExecutor(args.submit_threads) as pool:
            per_job = dict(zip(ids, pool.map(lambda j: list_runs(after.url, j), ids), strict=True))
        report_restart(per_job, m)
        report_ticks(after.log_path, ticks, m)


def steady_all(args: argparse.Namespace, workdir: Path) -> None:
    for x in args.lookahead.split(","):
        if x.strip():
            steady(args, workdir, float(x))


EXPERIMENTS: dict[str, Callable[[argparse.Namespace, Path], None]] = {
    "steady": steady_all,
    "restart": restart,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--experiments", default="steady,restart", help="steady, restart or both")
    ap.add_argument("--lookahead", default="30,60", help="steady: look-aheads, comma-separated")
    ap.add_argument("--duration", type=float, default=75.0, help="steady: seconds to watch")
    ap.add_argument("--tick-interval", type=float, default=2.0, help="cadenza dev's default: 2")
    ap.add_argument("--workers", type=int, default=10, help="SQS pollers per queue")
    ap.add_argument("--jobs", type=int, default=100, help="restart: jobs every 10 s")
    ap.add_argument("--restart-lookahead", type=float, default=5.0, help="restart: look-ahead")
    ap.add_argument("--kill-after", type=float, default=25.0, help="restart: s after submission")
    ap.add_argument("--down", type=float, default=35.0, help="restart: s from kill to relaunch")
    ap.add_argument("--observe", type=float, default=30.0, help="restart: s watched after it")
    ap.add_argument("--submit-threads", type=int, default=8)
    add_workdir_arguments(ap)
    args = ap.parse_args()
    chosen = [x.strip() for x in args.experiments.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in EXPERIMENTS]
    if unknown:
        ap.error(f"unknown experiment(s): {', '.join(unknown)}")
    with workdir("cadenza-overlap-", args.data_root, args.keep) as where:
        _credentials[:] = [where / "credentials.json"]
        for name in chosen:
            EXPERIMENTS[name](args, where)


if __name__ == "__main__":
    main()
