"""A run and its record: the item a Run is written as, the Run an item is read as, and the
Run a terminal transaction leaves (which returns no item)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.models import RunModel
from chalicelib.adapters.dynamodb.retention import expiry
from chalicelib.domain.runs import Run, Trigger
from chalicelib.domain.transitions import LEDGER_EX, TERMINAL_EX, ExStatus


def _one_slice_error(run: Run, sets: dict[str, Any] | None = None) -> bool:
    """A run whose error is kept on the run itself (a one-slice run), not on a slice."""
    changed = sets or {}
    if not changed.get("has_errors", run.has_errors):
        return False
    return bool(changed.get("inline", run.inline)) or not changed.get(
        "slices_total", run.slices_total
    )


def run_item(base: StoreBase, run: Run) -> RunModel:
    # on the sweep: a live run, or an ended one (a ledger record) with events to record
    active = run.status not in TERMINAL_EX or bool(run.notify_due)
    return base.m.run(
        run.job_id,
        run.slot,
        ex_id=run.ex_id,
        status=str(run.status),
        trigger=str(run.trigger),
        args=run.args,
        config=run.config,
        scheduled_start=run.scheduled_start,
        created=run.created,
        updated=run.updated,
        started_at=run.started_at,
        finished_at=run.finished_at,
        workers=run.workers,
        slices_total=run.slices_total,
        processed=run.processed,
        failed=run.failed,
        remaining=run.remaining,
        queued_cursor=run.queued_cursor,
        inline=run.inline or None,
        attempts=run.attempts,
        lease_token=run.lease_token,
        lease_expires_at=run.lease_expires_at,
        check_at=run.check_at if active else None,
        sweep_shard=base._sweep_shard(run.ex_id) if active and run.check_at else None,
        result=run.result,
        has_errors=run.has_errors or None,
        errors=run.errors or None,
        reason=run.reason,
        holds_slot=run.holds_slot or None,
        buffered=run.buffered or None,
        catchup=run.catchup or None,
        ahead_of_catchup=run.ahead_of_catchup or None,
        start_after=run.start_after,
        presliced=run.presliced or None,
        recovered_from=run.recovered_from,
        deleted=run.deleted or None,
        ex_part=base._ex_part(run.ex_id, str(run.status), run.deleted),
        err_shard=base._err_shard(run.ex_id) if _one_slice_error(run) else None,
        workers_lost=run.workers_lost,
        notify_due=run.notify_due or None,
        expires_at=base_expiry(base, run) if run.status in LEDGER_EX else None,
    )


def base_expiry(base: StoreBase, run: Run) -> datetime:
    """When a ledger record, written as it ends, expires."""
    return expiry(run.config, base.settings.history_days, run.created)


def to_run(m: RunModel) -> Run:
    return Run(
        job_id=m.job_id,
        slot=m.slot,
        ex_id=m.ex_id,
        scheduled_start=float(m.scheduled_start),
        config=dict(m.config),
        trigger=Trigger(m.trigger),
        status=ExStatus(m.status),
        args=m.args,
        created=float(m.created),
        updated=float(m.updated),
        started_at=m.started_at,
        finished_at=m.finished_at,
        workers=int(m.workers or 1),
        slices_total=int(m.slices_total or 0),
        processed=int(m.processed or 0),
        failed=int(m.failed or 0),
        remaining=int(m.remaining or 0),
        queued_cursor=int(m.queued_cursor or 0),
        inline=bool(m.inline),
        attempts=int(m.attempts or 0),
        lease_token=m.lease_token,
        lease_expires_at=m.lease_expires_at,
        check_at=m.check_at,
        result=m.result,
        has_errors=bool(m.has_errors),
        errors=list(m.errors or []),
        reason=m.reason,
        holds_slot=bool(m.holds_slot),
        buffered=bool(m.buffered),
        catchup=bool(m.catchup),
        ahead_of_catchup=bool(m.ahead_of_catchup),
        start_after=m.start_after,
        presliced=bool(m.presliced),
        recovered_from=m.recovered_from,
        deleted=bool(m.deleted),
        workers_lost=int(m.workers_lost or 0),
        tally_pending=m.tally_shard is not None,
        notify_due=dict(m.notify_due) if m.notify_due else None,
    )
