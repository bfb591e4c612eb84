"""``python -m cadenza_tools.cost``: what a million runs cost on AWS, from a real run.

Starts the local stack in this process (DynamoDB Local and moto, as ``cadenza dev``; with
the ``prod`` stage's memory sizes for the GB-seconds), counts what each kind of run makes
AWS do, and prices it with the list prices below:

* every AWS call, through botocore's event system on every client, as
  ``tests/aws_calls.py`` records them; SQS requests are the sends, deletes and the receives
  that got messages (an event source mapping's empty polls are a fixed cost, whatever the
  runs);
* every DynamoDB call PynamoDB makes, and its read and write units computed as AWS bills
  them from the requests and the items (``cadenza_tools.dynamodb_units``, which states each
  rule and its source), kept per table and index (the breakdown printed under the table);
  DynamoDB Local's own answer to ``ReturnConsumedCapacity`` is printed beside, for
  comparison only (its transactions' accounting is not AWS's);
* every invocation of the supervisor and the workers (the handlers wrapped), and its
  duration times the function's memory (GB-seconds); each API request is one API Gateway
  request and one invocation of the API function, timed from the client;
* the supervisor's idle ticks are measured first and taken off: what remains is what the
  runs made it do (a tick happens every minute on AWS, every 2 s here).

Three kinds of run: a one-slice run fired by a schedule, a one-slice run started on
demand (``POST /v1/jobs/{id}/_start``), a run of 10 slices (on demand). The per-run
figures and the table are printed; docs/costs.md holds a copy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.session

from cadenza_tools import infra
from cadenza_tools.dynamodb_units import UnitMeter, metering

# AWS list prices, us-east-1, USD, as written on 2026-11-28 from AWS's public price pages
# (on-demand, no free tier, x86 Lambda). Check them before relying on the result.
PRICES_AS_OF = "2026-11-28"
PRICES = {
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second": 0.0000166667,
    "dynamodb_write_unit": 0.625 / 1e6,  # on-demand write request unit
    "dynamodb_read_unit": 0.125 / 1e6,  # on-demand read request unit
    "sqs_request": 0.40 / 1e6,  # standard queue, per 64 KB chunk
    "api_request": 3.50 / 1e6,  # REST API, first 333 million a month
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
    "scheduler_invocation": 1.00 / 1e6,  # EventBridge Scheduler, after 14 million free
}
STAGE = "prod"
HANDLERS = {"on_tick": infra.SUPERVISOR, "on_start_batch": "start_worker"}
HANDLERS["on_slice_batch"] = "slice_worker"
BREAKDOWN = "dynamodb_units_by_operation"  # per run, "Operation table" -> units


@dataclass
class Tally:
    """What one stretch of the stack's life made AWS do."""

    calls: Counter[str] = field(default_factory=Counter)  # "service:Operation" -> count
    # "Operation table" (its own units) and "Operation table index" -> DynamoDB units
    units: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    read_units: float = 0.0  # computed by AWS's rules
    write_units: float = 0.0
    local_read_units: float = 0.0  # DynamoDB Local's answer, for comparison
    local_write_units: float = 0.0
    invocations: Counter[str] = field(default_factory=Counter)  # function -> count
    gb_seconds: float = 0.0
    api_requests: int = 0

    def minus(self, other: Tally, times: float) -> Tally:
        """This tally less ``times`` x ``other`` (the idle ticks), never below zero."""
        out = Tally(api_requests=self.api_requests)
        for key in self.calls.keys() | other.calls.keys():
            out.calls[key] = max(0, round(self.calls[key] - times * other.calls[key]))
        for key in self.units.keys() | other.units.keys():
            out.units[key] = max(0.0, self.units[key] - times * other.units[key])
        out.read_units = max(0.0, self.read_units - times * other.read_units)
        out.write_units = max(0.0, self.write_units - times * other.write_units)
        out.local_read_units = max(0.0, self.local_read_units - times * other.local_read_units)
        out.local_write_units = max(0.0, self.local_write_units - times * other.local_write_units)
        for key in self.invocations:
            out.invocations[key] = self.invocations[key]
        out.invocations[infra.SUPERVISOR] = 0  # the tick happens anyway
        out.gb_seconds = max(0.0, self.gb_seconds - times * other.gb_seconds)
        return out

    def per(self, runs: int) -> dict[str, float]:
        sqs = sum(n for k, n in self.calls.items() if k.startswith("sqs:"))
        return {
            "lambda_invocations": (sum(self.invocations.values()) + self.api_requests) / runs,
            "lambda_gb_seconds": self.gb_seconds / runs,
            "dynamodb_read_units": self.read_units / runs,
            "dynamodb_write_units": self.write_units / runs,
            "dynamodb_local_read_units": self.local_read_units / runs,
            "dynamodb_local_write_units": self.local_write_units / runs,
            "sqs_requests": sqs / runs,
            "api_requests": self.api_requests / runs,
            "s3_puts": self.calls["s3:PutObject"] / runs,
            "s3_gets": self.calls["s3:GetObject"] / runs,
        }


def units_by_operation(tally: Tally, runs: int) -> dict[str, float]:
    """DynamoDB units per run by "Operation table", largest first (where the units go)."""
    per_run = {k: v / runs for k, v in tally.units.items() if v}
    return dict(sorted(per_run.items(), key=lambda kv: (-kv[1], kv[0])))


def dollars_per_million(per_run: Mapping[str, float]) -> dict[str, float]:
    """Each line's cost of a million runs, in USD."""
    return {
        "Lambda requests": per_run["lambda_invocations"] * PRICES["lambda_request"] * 1e6,
        "Lambda GB-seconds": per_run["lambda_gb_seconds"] * PRICES["lambda_gb_second"] * 1e6,
        "DynamoDB writes": per_run["dynamodb_write_units"] * PRICES["dynamodb_write_unit"] * 1e6,
        "DynamoDB reads": per_run["dynamodb_read_units"] * PRICES["dynamodb_read_unit"] * 1e6,
        "SQS": per_run["sqs_requests"] * PRICES["sqs_request"] * 1e6,
        "API Gateway": per_run["api_requests"] * PRICES["api_request"] * 1e6,
        "S3": (per_run["s3_puts"] * PRICES["s3_put"] + per_run["s3_gets"] * PRICES["s3_get"]) * 1e6,
    }


class Meter:
    """Counts AWS calls and handler invocations while installed; DynamoDB's units through
    ``UnitMeter`` (by AWS's rules)."""

    def __init__(self, memory_mb: Mapping[str, int]) -> None:
        self.memory_mb = memory_mb
        self.tally = Tally()
        self.units = UnitMeter()
        self._lock = threading.Lock()

    def take(self) -> Tally:
        bill = self.units.take()
        with self._lock:
            tally, self.tally = self.tally, Tally()
        for operation, n in bill.calls.items():
            tally.calls[f"dynamodb:{operation}"] += n
        for where, units in bill.by_operation.items():
            tally.units[where] += units
        tally.read_units, tally.write_units = bill.reads, bill.writes
        tally.local_read_units = bill.local_read_units
        tally.local_write_units = bill.local_write_units
        return tally

    def _after(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        if service == "dynamodb":
            return  # counted by the UnitMeter (which makes side reads of its own)
        if service == "sqs" and model.name == "ReceiveMessage" and not parsed.get("Messages"):
            return  # an empty poll
        with self._lock:
            self.tally.calls[f"{service}:{model.name}"] += 1

    def timed(self, function: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            side = self.units.side_seconds()
            try:
                return handler(*args, **kwargs)
            finally:
                # the UnitMeter's side reads are not the function's time
                seconds = time.monotonic() - started - (self.units.side_seconds() - side)
                with self._lock:
                    self.tally.invocations[function] += 1
                    self.tally.gb_seconds += seconds * self.memory_mb[function] / 1024

        return run

    def api_request(self, seconds: float) -> None:
        with self._lock:
            self.tally.api_requests += 1
            self.tally.gb_seconds += seconds * self.memory_mb[infra.API_HANDLER] / 1024

    @contextmanager
    def installed(self) -> Iterator[Meter]:
        from chalicelib.entrypoints import handlers

        original = botocore.session.Session.create_client
        meter = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            client.meta.events.register("after-call", meter._after)
            return client

        patches = [mock.patch.object(botocore.session.Session, "create_client", create_client)]
        for name, function in HANDLERS.items():
            patches.append(
                mock.patch.object(handlers, name, self.timed(function, getattr(handlers, name)))
            )
        for patch in patches:
            patch.start()
        try:
            with metering(self.units):
                yield self
        finally:
            for patch in reversed(patches):
                patch.stop()


# ---- the runs --------------------------------------------------------------------------------

ONE_SLICE: list[dict[str, Any]] = [{"_op": "noop"}]
TEN_SLICES: list[dict[str, Any]] = [
    {"_op": "range", "start": 0, "end": 100, "size": 10},
    {"_op": "noop"},
]
KINDS_ON_DEMAND: dict[str, list[dict[str, Any]]] = {
    "one-slice, on demand": ONE_SLICE,
    "10 slices, on demand": TEN_SLICES,
}
DONE = {"completed", "failed", "stopped"}


class Api:
    """Signed requests to the stack's API, each metered as an API request."""

    def __init__(self, url: str, meter: Meter) -> None:
        from cadenza_tools.cli.client import Client

        self.client = Client(url, 60.0, "admin")
        self.meter = meter

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return self.client.call(method, path, **kwargs)
        finally:
            self.meter.api_request(time.monotonic() - started)

    def wait_done(self, ex_id: str, timeout: float = 120.0) -> None:
        """Poll the execution until it ends (the polls are not metered: a user would not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.get(f"/v1/ex/{ex_id}").get("_status") in DONE:
                return
            time.sleep(0.5)
        raise RuntimeError(f"execution {ex_id} did not end in {timeout:g} s")


def on_demand(api: Api, meter: Meter, operations: list[Any], runs: int) -> Tally:
    """``runs`` executions of one job started by ``POST _start``, one after another."""
    body = {"name": "cost", "workers": 3, "operations": operations}
    job = api.client.post("/v1/jobs", json=body)
    meter.take()
    for _ in range(runs):
        started = api.call("POST", f"/v1/jobs/{job['job_id']}/_start")
        api.wait_done(started["ex_id"])
    time.sleep(2.5)  # the last run's trailing calls
    return meter.take()


def scheduled(api: Api, meter: Meter, runs: int, every: int) -> Tally:
    meter.take()
    body = {
        "name": "cost-scheduled",
        "operations": ONE_SLICE,
        "schedule": {"interval_seconds": every},
    }
    job = api.client.post("/v1/jobs", params={"start": "true"}, json=body)
    time.sleep(every * runs + 1)
    api.client.post(f"/v1/jobs/{job['job_id']}/_suspend")
    time.sleep(3)
    return meter.take()


def burst(api: Api, meter: Meter, runs: int, lookahead: float) -> Tally:
    """``runs`` one-time jobs due on the same second (a burst: their starts go in groups,
    claimed together), submitted before the tick sees them; the submissions not counted."""
    at = math.ceil(time.time() + lookahead + 8 + runs / 20)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    for i in range(runs):
        body = {"name": f"cost-burst-{i}", "operations": ONE_SLICE, "schedule": {"at": when}}
        api.client.post("/v1/jobs", params={"start": "true"}, json=body)
    meter.take()
    time.sleep(max(0.0, at - time.time()) + 10)
    return meter.take()


def measure(
    runs: int, every: int, burst_runs: int = 0, lookahead: float | None = None
) -> dict[str, Any]:
    """Runs each kind ``runs`` times on a fresh local stack (its supervisor's look-ahead
    ``lookahead`` if given); per-run figures of each (and of a burst of ``burst_runs``
    one-time jobs due on one second, if any)."""
    from cadenza_tools.local.stack import LocalStack, StackOptions

    config = infra.load_chalice_config()
    memory = {
        f: infra._chalice_config(config, STAGE, f).lambda_memory_size for f in infra.FUNCTIONS
    }
    meter = Meter(memory)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CADENZA_CREDENTIALS"] = str(Path(tmp) / "credentials.json")
        options = StackOptions(
            data_dir=Path(tmp) / "data", port=0, credentials=Path(tmp) / "credentials.json"
        )
        if lookahead is not None:
            options = replace(options, lookahead=lookahead)
        with meter.installed(), LocalStack(options) as stack:
            assert stack.info is not None
            api = Api(stack.info.api_url, meter)
            meter.take()
            idle_seconds = 20.0
            time.sleep(idle_seconds)
            idle = meter.take()
            ticks = max(1, idle.invocations[infra.SUPERVISOR])
            scale = 1 / ticks
            results: dict[str, Any] = {"idle_tick": _scaled(idle, scale)}
            tally = scheduled(api, meter, runs, every)
            fired = _runs_of(api, "cost-scheduled")
            results["one-slice, scheduled"] = _net(tally, idle, scale, fired)
            if burst_runs:
                tally = burst(api, meter, burst_runs, options.lookahead)
                done = _runs_of(api, "cost-burst-", size=burst_runs + 100)
                results["one-slice, scheduled burst"] = _net(tally, idle, scale, done)
            for name, operations in KINDS_ON_DEMAND.items():
                results[name] = _net(on_demand(api, meter, operations, runs), idle, scale, runs)
    return results


def _scaled(tally: Tally, scale: float) -> dict[str, float]:
    return {k: v * scale for k, v in tally.per(1).items()}


def _net(tally: Tally, idle: Tally, scale: float, runs: int) -> dict[str, Any]:
    ticks = tally.invocations[infra.SUPERVISOR]
    net = tally.minus(idle, ticks * scale)
    return {**net.per(max(1, runs)), BREAKDOWN: units_by_operation(net, max(1, runs))}


def _runs_of(api: Api, name: str, size: int = 100) -> int:
    """How many executions of the job named ``name`` (or ``name*``, ending in a dash) ended."""
    runs = api.client.get("/v1/ex", params={"size": size})
    return sum(
        1
        for r in runs
        if (r.get("name") == name or (name.endswith("-") and r.get("name", "").startswith(name)))
        and r.get("_status") in DONE
    )


def table(results: Mapping[str, Any]) -> str:
    """The Markdown table: per run, then USD per million runs."""
    kinds = [k for k in results if k != "idle_tick"]
    figures = [key for key in results[kinds[0]] if key != BREAKDOWN]
    lines = [
        "| per run | " + " | ".join(kinds) + " |",
        "|---|" + "---:|" * len(kinds),
    ]
    for key in figures:
        lines.append(f"| {key} | " + " | ".join(f"{results[k][key]:.2f}" for k in kinds) + " |")
    costs = {k: dollars_per_million(results[k]) for k in kinds}
    lines.append("| **USD per million runs** | " + " | ".join("" for _ in kinds) + " |")
    for line in costs[kinds[0]]:
        lines.append(f"| {line} | " + " | ".join(f"{costs[k][line]:.2f}" for k in kinds) + " |")
    totals = " | ".join(f"**{sum(costs[k].values()):.2f}**" for k in kinds)
    lines.append(f"| **total** | {totals} |")
    scheduler = PRICES["scheduler_invocation"] * 1e6
    lines.append(f"\nEventBridge Scheduler alone: {scheduler:.2f} USD per million invocations.")
    for kind in kinds:
        lines += [f"\nDynamoDB units per run, {kind}:", "", "| operation, table, index | units |"]
        lines.append("|---|---:|")
        for op, units in results[kind].get(BREAKDOWN, {}).items():
            lines.append(f"| `{op}` | {units:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cadenza_tools.cost", description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="runs of each kind")
    parser.add_argument("--every", type=int, default=3, help="the schedule's interval, seconds")
    parser.add_argument(
        "--burst", type=int, default=50, help="one-time jobs due on one second (0: none)"
    )
    parser.add_argument(
        "--lookahead", type=float, help="the supervisor's look-ahead, seconds (cadenza dev's)"
    )
    parser.add_argument("--json", action="store_true", help="print the per-run figures as JSON")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # the stack's banner: stdout is the result
        results = measure(args.runs, args.every, args.burst, args.lookahead)
    print(json.dumps(results, indent=2) if args.json else table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
