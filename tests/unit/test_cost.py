"""The arithmetic of `python -m cadenza_tools.cost` (the measuring run itself starts the
local stack and takes minutes: docs/costs.md holds its result)."""

from __future__ import annotations

from collections import Counter

import pytest

from cadenza_tools import cost, infra


def test_idle_ticks_are_taken_off_and_the_supervisor_is_not_billed_per_run() -> None:
    idle = cost.Tally(calls=Counter({"dynamodb:Query": 12}), read_units=6.0, write_units=1.0)
    idle.gb_seconds = 0.1
    busy = cost.Tally(
        calls=Counter({"dynamodb:Query": 40, "sqs:SendMessageBatch": 4, "s3:PutObject": 2}),
        read_units=30.0,
        write_units=50.0,
        invocations=Counter({infra.SUPERVISOR: 3, "start_worker": 2}),
        gb_seconds=2.0,
        api_requests=2,
    )
    net = busy.minus(idle, 3)
    assert net.calls["dynamodb:Query"] == 4
    assert (net.read_units, net.write_units) == (12.0, 47.0)
    assert net.gb_seconds == pytest.approx(1.7)
    per = net.per(2)
    assert per["lambda_invocations"] == 2.0  # 2 start worker + 2 API, per 2 runs
    assert per["sqs_requests"] == 2.0 and per["s3_puts"] == 1.0
    assert per["dynamodb_write_units"] == 23.5


def test_a_million_runs_priced_line_by_line() -> None:
    per_run = {
        "lambda_invocations": 2.0,
        "lambda_gb_seconds": 1.0,
        "dynamodb_read_units": 4.0,
        "dynamodb_write_units": 10.0,
        "sqs_requests": 3.0,
        "api_requests": 1.0,
        "s3_puts": 0.0,
        "s3_gets": 0.0,
    }
    lines = cost.dollars_per_million(per_run)
    assert lines["Lambda requests"] == pytest.approx(0.40)
    assert lines["DynamoDB writes"] == pytest.approx(6.25)
    assert lines["API Gateway"] == pytest.approx(3.50)
    text = cost.table({"idle_tick": per_run, "one": per_run})
    assert "| **total** |" in text and "EventBridge Scheduler alone: 1.00 USD" in text


def test_the_dynamodb_units_are_the_unit_meters_with_dynamodb_locals_beside() -> None:
    meter = cost.Meter({})
    bill = meter.units.bill
    bill.calls["TransactWriteItems"] = 2
    bill.write_units["runs"] = 4.0
    bill.read_units["jobs due"] = 0.5
    bill.by_operation["TransactWriteItems runs"] = 4.0
    bill.local_write_units = 8.0
    tally = meter.take()
    assert (tally.write_units, tally.read_units, tally.local_write_units) == (4.0, 0.5, 8.0)
    assert tally.calls["dynamodb:TransactWriteItems"] == 2
    assert tally.units == {"TransactWriteItems runs": 4.0}
    per = tally.minus(cost.Tally(local_write_units=2.0), 1).per(2)
    assert (per["dynamodb_write_units"], per["dynamodb_local_write_units"]) == (2.0, 3.0)
    assert meter.take().write_units == 0.0  # taken
