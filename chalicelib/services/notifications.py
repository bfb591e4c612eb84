"""Notifications (docs/notifications.md): events become outbox records on the finishing
path (one conditional write, no delivery there); the supervisor's tick delivers them."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from chalicelib.domain.errors import StoreUnavailable
from chalicelib.domain.notifications import (
    EVENT_OF_STATUS,
    MAX_ATTEMPTS,
    EventFacts,
    Notification,
    backoff,
    is_late,
    notification_key,
    notifications_for,
)
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import (
    Alert,
    Clock,
    DeliveryFailed,
    NotificationSender,
    NotificationStore,
    RunStore,
)

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 300


@dataclass
class DeliveryStats:
    """What one delivery round did."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0


def status_detail(run: Run) -> dict[str, Any]:
    """What the event of a run's terminal status tells: its reason, and a failed run's
    last error (redacted already by the worker), cut to MAX_ERROR_CHARS."""
    detail: dict[str, Any] = {"reason": run.reason} if run.reason else {}
    if run.status == ExStatus.failed and run.errors:
        detail["error"] = str(run.errors[-1].get("error", ""))[:MAX_ERROR_CHARS]
    return detail


def settle_due(notifications: NotificationService | None, store: RunStore, run: Run) -> bool:
    """After a supervisor's write that marked events due on `run`: record them, then take
    the mark off (and the ended run off the sweep). Whether the mark went; if not (the
    supervisor failed or died between), the next tick's sweep finds the run and does it,
    each event still once (the outbox's put-if-absent)."""
    if not run.notify_due:
        return True
    if notifications is not None and not notifications.record_due(run, notifications.clock.now()):
        return False
    try:
        return store.clear_notify_due(run)
    except StoreUnavailable:  # recorded: the next sweep finds them there, and clears
        log.warning("run %s: its events are recorded, the mark is left", run.ex_id)
        return False


class NotificationService:
    """Records the events of runs and slots as notifications (`event`, `run_ended`,
    `run_started`), and delivers what is due (`deliver_due`, called by the tick)."""

    def __init__(
        self, store: NotificationStore, sender: NotificationSender | None, clock: Clock
    ) -> None:
        self.store, self.sender, self.clock = store, sender, clock

    def event(self, run: Run, event: str, now: float, **detail: Any) -> int:
        """Record `event` of `run` for each destination of its job's `notify` that names it:
        one conditional write (put if absent), none if the job does not ask. Returns how
        many were new. A store failure is logged, not raised: the run's own write is done,
        and its caller must not fail (and be retried) for the notice."""
        facts = EventFacts(event, run.job_id, run.slot, run.ex_id, str(run.status), now, detail)
        notes = notifications_for(facts, run.config.get("notify"), str(run.config.get("name", "")))
        if not notes:
            return 0
        try:
            return self.store.emit(notes)
        except StoreUnavailable:
            log.exception("notification %s of run %s not recorded", event, run.ex_id)
            return 0

    def alert(self, alert: Alert, publish: bool) -> int:
        """An operator's alert (kept already) for the stage's alerts topic, through the
        outbox like every notification: once per alert, retried, kept if it fails."""
        if not publish:
            return 0
        dest = {"type": "alerts"}
        key = notification_key(alert.job_id or "", alert.alert_id, "alert", dest)
        link = f"/v1/ex/{alert.ex_id}" if alert.ex_id else None
        body = {"alert": asdict(alert), "ex_id": alert.ex_id, "slot": alert.slot, "link": link}
        note = Notification(
            key=key,
            event="alert",
            job_id=alert.job_id or "",
            destination=dest,
            body=body,
            created=alert.created,
            next_at=alert.created,
        )
        try:
            return self.store.emit([note])
        except StoreUnavailable:
            log.exception("alert %s not recorded for delivery", alert.alert_id)
            return 0

    def run_ended(self, before: Run, after: Run, now: float) -> None:
        """A transition of a run was written: its terminal status's event (a run is failed
        only once its retries are spent), and `late` for a start past the threshold."""
        if before.status != after.status and after.status in EVENT_OF_STATUS:
            self.ended(after, now)
        elif before.started_at is None and after.started_at is not None:
            notify = after.config.get("notify")
            if is_late(notify, after.scheduled_start, after.started_at):
                late_by = round(after.started_at - after.scheduled_start, 3)
                self.event(after, "late", now, late_by_seconds=late_by)

    def ended(self, run: Run, now: float) -> None:
        """The event of a run's terminal status (none for a stop). Also called when a
        message finds its run ended already: if the writer that ended it died before
        recording the event, this records it; else the put-if-absent finds it there. An
        event the write marked due on the run (`Run.notify_due`) is `record_due`'s."""
        event = EVENT_OF_STATUS.get(run.status)
        if event is None or event in (run.notify_due or {}):
            return
        self.event(run, event, now, **status_detail(run))

    def record_due(self, run: Run, now: float) -> bool:
        """Record the events a supervisor's write marked on `run` (`Run.notify_due`), each
        put if absent (one conditional write per event): True once every one is in the
        outbox (new or there before), and the mark may go; False if the store failed,
        and the mark stays for the next tick's sweep."""
        for event, marked in (run.notify_due or {}).items():
            detail = dict(marked)
            if EVENT_OF_STATUS.get(run.status) == event:
                detail = {**status_detail(run), **detail}
            facts = EventFacts(event, run.job_id, run.slot, run.ex_id, str(run.status), now, detail)
            notes = notifications_for(
                facts, run.config.get("notify"), str(run.config.get("name", ""))
            )
            try:
                self.store.emit(notes)
            except StoreUnavailable:
                log.warning("notification %s of run %s left to the next tick", event, run.ex_id)
                return False
        return True

    def deliver_due(self, now: float, limit: int = 100) -> DeliveryStats:
        """Deliver the due notifications of the outbox, each once: claimed first (one
        supervisor per attempt), then settled as delivered, to retry, or failed."""
        stats = DeliveryStats()
        if self.sender is None:
            return stats
        for due in self.store.due_notifications(now, limit):
            note = self.store.claim_notification(due, now)
            if note is None:
                continue
            error = self._send(note)
            if error is None:
                stats.delivered += 1
            elif note.attempts >= MAX_ATTEMPTS:
                stats.failed += 1
                log.error("notification %s failed for good: %s", note.key, error)
            else:
                stats.retried += 1
                note = replace(note, next_at=now + backoff(note.attempts))
            self.store.settle_notification(note, self.clock.now(), error)
        return stats

    def _send(self, note: Notification) -> str | None:
        assert self.sender is not None
        try:
            self.sender.send(note)
        except DeliveryFailed as err:
            return str(err)[:MAX_ERROR_CHARS] or "not delivered"
        except Exception as err:  # a bug or an SDK error: kept on the record, not raised
            log.exception("notification %s: delivery raised", note.key)
            return f"{type(err).__name__}"[:MAX_ERROR_CHARS]
        return None

    def listing(self, status: str, limit: int = 100) -> list[Notification]:
        """Notifications in `status`, newest first."""
        return self.store.list_notifications(status, limit)
