"""Engine benchmark on DynamoDB Local: counts first, then rates. Prints; asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_engine [--runs 200] [--threads 4]

1. DynamoDB calls per single-slice run (scheduled and on demand), reads and writes apart.
2. Items read by one tick with 10 jobs due among 100, 1,000 and 10,000 stored.
3. Runs completed per second (tick + start workers on a thread pool; the queue is in
   memory, so this is the store's share) beside the emulator's raw conditional-put rate,
   measured in the same run with the same number of threads.
"""

from __future__ import annotations

import argparse
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from tests.benchmarks import bench_credentials

bench_credentials()

from cadenza_tools.local.dynamodb_local import DynamoDBLocal  # noqa: E402
from chalicelib.adapters.dynamodb.counting import counting  # noqa: E402
from chalicelib.adapters.dynamodb.store import DynamoStore  # noqa: E402
from chalicelib.adapters.memory import MemoryQueue  # noqa: E402
from chalicelib.bootstrap import Container, build_container  # noqa: E402
from chalicelib.config import Settings  # noqa: E402
from chalicelib.domain.jobs import Job, JobDefinition  # noqa: E402
from chalicelib.domain.transitions import JobState  # noqa: E402
from chalicelib.ports import FakeClock  # noqa: E402
from tests.helpers import deliver  # noqa: E402

T0 = 1_800_000_000.0
NOOP = {"name": "bench", "operations": [{"_op": "noop"}, {"_op": "noop"}]}


def fresh(endpoint: str) -> tuple[Container, MemoryQueue, FakeClock]:
    settings = replace(
        Settings().with_prefix(f"b-{uuid.uuid4().hex[:6]}"),
        dynamodb_endpoint=endpoint,
        lookahead_seconds=5.0,
    )
    store = DynamoStore(settings)
    store.ensure_tables()
    clock, queue = FakeClock(T0), MemoryQueue()
    c = build_container(settings, store=store, queue=queue, clock=clock)
    c.worker.sleep = lambda s: None
    c.supervisor.tick(T0 - 3600)  # the supervisor record exists before measuring
    return c, queue, clock


def store_jobs(c: Container, due: int, total: int) -> None:
    """`due` jobs due at T0+60, the rest SCHEDULED for tomorrow (all in the due index)."""
    spec = JobDefinition.model_validate({**NOOP, "schedule": {"rate": "rate(1 minute)"}})
    definition = spec.to_dict()
    store = c.store
    assert isinstance(store, DynamoStore)
    with store.m.job.batch_write() as batch:
        for i in range(total):
            nxt = T0 + 60 if i < due else T0 + 86_400
            job = Job(
                job_id=str(uuid.uuid4()),
                definition=definition,
                state=JobState.SCHEDULED,
                next_fire_at=nxt,
                anchor=T0,
                created=T0,
                updated=T0,
            )
            batch.save(store._job_model(job))


def calls_per_run(endpoint: str, n: int = 20) -> None:
    print("== DynamoDB calls per single-slice run (noop reader + noop processor)")
    c, queue, clock = fresh(endpoint)
    store_jobs(c, n, n)
    with counting() as idle:
        c.supervisor.tick(T0 + 1)
    with counting() as k:
        c.supervisor.tick(T0 + 60)
        clock.t = T0 + 60
        for m in queue.take():
            assert deliver(c, m) == "completed"
    w = (k.writes - idle.writes) / n
    r_calls = (k.reads - idle.reads) / n
    items = (k.items_written - idle.items_written) / n
    print(
        f"scheduled run: {w:.2f} write calls, {r_calls:.2f} read calls per run, "
        f"{items:.2f} items written "
        f"(tick overhead apart: {idle.writes} write, {idle.reads} read calls per tick)"
    )
    print(f"  by operation over {n} runs + 1 tick: {dict(sorted(k.calls.items()))}")
    job, _ = c.jobs.submit(NOOP, start=False)
    with counting() as k:
        c.jobs.start_run(job.job_id)
        for m in queue.take():
            assert deliver(c, m) == "completed"
    print(
        f"on-demand run: {k.writes} write calls, {k.reads} read calls, "
        f"{k.items_written} items written ({dict(sorted(k.calls.items()))})"
    )


def items_per_tick(endpoint: str, sizes: list[int]) -> None:
    print("== Items read by one tick with 10 jobs due")
    for total in sizes:
        c, _, _ = fresh(endpoint)
        t = time.perf_counter()
        store_jobs(c, 10, total)
        load = time.perf_counter() - t
        with counting() as k:
            stats = c.supervisor.tick(T0 + 60)
        print(
            f"{total:>6} stored: items read {k.items_read:>3}, read calls {k.reads:>3}, "
            f"runs created {stats.runs_created} (loaded in {load:.1f}s)"
        )


def raw_put_rate(endpoint: str, threads: int, seconds: float) -> float:
    c, _, _ = fresh(endpoint)
    store = c.store
    assert isinstance(store, DynamoStore)
    S = store.m.slice
    deadline = time.perf_counter() + seconds

    def loop(worker: int) -> int:
        n = 0
        while time.perf_counter() < deadline:
            S(
                f"raw-{worker}",
                f"{n:08d}",
                order=n,
                request={},
                state="pending",
                created=T0,
                updated=T0,
            ).save(condition=S.slice_id.does_not_exist())
            n += 1
        return n

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(loop, range(threads)))
    return total / (time.perf_counter() - t)


def throughput(endpoint: str, runs: int, threads: int) -> None:
    print(f"== Throughput: {runs} single-slice runs due at one instant, {threads} threads")
    raw = raw_put_rate(endpoint, threads, 3.0)
    c, queue, clock = fresh(endpoint)
    store_jobs(c, runs, runs)
    t = time.perf_counter()
    with counting() as k:
        stats = c.supervisor.tick(T0 + 60)
        tick_s = time.perf_counter() - t
        clock.t = T0 + 60
        with ThreadPoolExecutor(threads) as pool:
            outcomes = list(pool.map(lambda m: deliver(c, m), queue.take()))
    elapsed = time.perf_counter() - t
    done = outcomes.count("completed")
    print(f"raw conditional puts: {raw:,.0f}/s")
    print(
        f"tick (creates {stats.runs_created} runs): {tick_s:.2f}s; workers: {elapsed - tick_s:.2f}s"
    )
    print(
        f"runs completed: {done}/{stats.runs_created} in {elapsed:.2f}s = "
        f"{done / elapsed:,.0f} runs/s; {k.writes / max(1, done):.2f} writes per run; "
        f"ceiling at 3 writes per run = {raw / 3:,.0f} runs/s "
        f"({done / elapsed / (raw / 3):.0%} of it)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--endpoint", help="an already running DynamoDB Local")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.endpoint:
        endpoint = args.endpoint
        calls_per_run(endpoint)
        items_per_tick(endpoint, sizes)
        throughput(endpoint, args.runs, args.threads)
        return
    with DynamoDBLocal(port=0, data_dir=None) as ddb:
        print(f"DynamoDB Local at {ddb.endpoint} (in memory)")
        calls_per_run(ddb.endpoint)
        items_per_tick(ddb.endpoint, sizes)
        throughput(ddb.endpoint, args.runs, args.threads)


if __name__ == "__main__":
    main()
