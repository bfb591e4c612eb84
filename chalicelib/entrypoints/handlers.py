"""Lambda-facing handlers for the schedule and SQS events: parse, call a service, report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.bootstrap import get_container
from chalicelib.domain.outcomes import SliceOutcome, StartOutcome
from chalicelib.entrypoints.logs import log_context
from chalicelib.entrypoints.start_gates import SecondGate, SecondGates
from chalicelib.ports import SliceMessage, StartMessage, start_messages
from chalicelib.services.entry import PreparedStart

log = logging.getLogger(__name__)
START_GATES = SecondGates()  # this process's runs due on one second begin before any finishes


def on_tick(event: dict[str, Any] | None = None) -> dict[str, Any]:
    """One supervisor tick (EventBridge schedule)."""
    container = get_container()
    stats = container.supervisor.tick()
    try:  # remote agents silent past their deadline: alerted once each
        container.agents.sweep_lost()
    except Exception:
        log.exception("the agents' sweep failed this tick")
    return asdict(stats)


def _body(record: SQSRecord) -> dict[str, Any]:
    body = json.loads(record.body)
    if not isinstance(body, dict):
        raise ValueError("message body is not a JSON object")
    return body


def _slice_record(record: SQSRecord) -> SliceOutcome:
    msg = SliceMessage.from_body(_body(record))
    with log_context(job_id=msg.job_id, slot=msg.slot, ex_id=msg.ex_id, slice_id=msg.slice_id):
        return get_container().worker.handle_slice(msg.job_id, msg.slot, msg.ex_id, msg.slice_id)


def _batch(event: dict[str, Any], handler: Any, context: Any) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    result = process_partial_response(
        event=event, record_handler=handler, processor=processor, context=context
    )
    return dict(result)


def _settle(futures: list[tuple[str, Future[Any]]], when: str) -> tuple[list[Any], list[str]]:
    """The results of a batch's futures, and the message ids of those that raised."""
    results: list[Any] = []
    failed: list[str] = []
    for message_id, future in futures:
        try:
            results.append((message_id, future.result()))
        except Exception:
            log.exception("start %s failed %s; it will be redelivered", message_id, when)
            failed.append(message_id)
    return results, failed


def _starts(records: list[SQSRecord]) -> tuple[list[tuple[str, list[StartMessage]]], list[str]]:
    """Each record's start messages (a burst's group holds several), by message id, and
    the ids of records that are not start messages."""
    starts: list[tuple[str, list[StartMessage]]] = []
    failed: list[str] = []
    for record in records:
        try:
            starts.append((record.message_id, start_messages(_body(record))))
        except Exception:
            log.exception("start %s is not a start message", record.message_id)
            failed.append(record.message_id)
    return starts, failed


def on_start_batch(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """A batch of start messages (a burst's come in groups of runs, claimed together), in
    two phases: claim every run ahead of its second (the claims side by side: a burst's
    batches queue on them), then run each at its own second, side by side, so no run waits
    for another's wait. Failed messages (either phase, any of a group's runs) are reported,
    so only they return."""
    worker = get_container().worker
    starts, failed = _starts([SQSRecord(r) for r in event["Records"]])

    def prepare(message_id: str, msgs: list[StartMessage]) -> list[Any]:
        if msgs and msgs[0].claim_token is not None:  # handed over: claimed already
            return worker.resume_claimed(msgs)
        if len(msgs) > 1:
            return worker.prepare_group(msgs, message_id)
        (msg,) = msgs
        with log_context(job_id=msg.job_id, slot=msg.slot):
            return [worker.prepare_start(msg.job_id, msg.slot, message_id, msg.hint, msg.delivery)]

    def run(p: PreparedStart, gate: SecondGate | None) -> StartOutcome:
        with log_context(job_id=p.run.job_id, slot=p.run.slot, ex_id=p.run.ex_id):
            return worker.run_prepared(p, gate)

    prepared: list[tuple[str, PreparedStart, bool]] = []  # grouped: a burst's, gated
    if starts:
        began = time.time()
        with ThreadPoolExecutor(len(starts), thread_name_prefix="claim") as pool:
            claims = [(mid, pool.submit(prepare, mid, msgs)) for mid, msgs in starts]
        outcomes, claim_failed = _settle(claims, "before its run")
        failed += claim_failed
        for mid, outs in outcomes:
            failed += [mid for out in outs if isinstance(out, Exception)]
            grouped = len(outs) > 1
            prepared += [(mid, out, grouped) for out in outs if isinstance(out, PreparedStart)]
        grouped_runs = [p for _, p, g in prepared if g]
        kept = {id(p) for p in worker.hand_off(grouped_runs)}
        handed = len(grouped_runs) - len(kept)
        prepared = [(mid, p, g) for mid, p, g in prepared if not g or id(p) in kept]
        _log_burst(prepared, began, handed)
    if prepared:
        held = [
            (mid, p, START_GATES.hold(p.run.start_at) if grouped else None)
            for mid, p, grouped in prepared
        ]
        with ThreadPoolExecutor(len(prepared), thread_name_prefix="start") as pool:
            runs = [(mid, pool.submit(run, p, gate)) for mid, p, gate in held]
        failed += _settle(runs, "after its claim")[1]
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in dict.fromkeys(failed)]}


def _log_burst(prepared: list[tuple[str, PreparedStart, bool]], began: float, handed: int) -> None:
    """A batch holding a burst's groups: how long its claims took, against its runs'
    second, and how many it handed off (`StartPath.hand_off`)."""
    grouped = [p.run.start_at for _, p, g in prepared if g]
    if handed:
        log.info("start batch: %d runs claimed in %.2fs, handed off", handed, time.time() - began)
    if grouped:
        now = time.time()
        log.info(
            "start batch: %d runs claimed (%d of a burst) in %.2fs, %.2fs before their second",
            len(prepared),
            len(grouped),
            now - began,
            min(grouped) - now,
        )


def on_slice_batch(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """A batch of slice messages, one after another; failed ones are reported so only they
    return. A slice the function has no time left for is sent again at once, unclaimed,
    for another invocation (`released`), never started to run into the timeout."""
    return _batch(event, _slice_record_within(context), context)


# A slice is started only if the function's remaining time holds an op's longest run
# (max_op_seconds) plus this margin for the claim, the finish and the next hand-out.
SLICE_TIME_MARGIN_S = 5.0


def _remaining_seconds(context: Any) -> float | None:
    """The Lambda's remaining time (None without a Lambda context: no limit)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return None if remaining is None else float(remaining()) / 1000.0


def _slice_record_within(context: Any) -> Callable[[SQSRecord], SliceOutcome]:
    def handle(record: SQSRecord) -> SliceOutcome:
        left = _remaining_seconds(context)
        c = get_container()
        if left is not None and left < c.settings.limits.max_op_seconds + SLICE_TIME_MARGIN_S:
            c.queue.send_slices([SliceMessage.from_body(_body(record))])
            return SliceOutcome.released
        return _slice_record(record)

    return handle
