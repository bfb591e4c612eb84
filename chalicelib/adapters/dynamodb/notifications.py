"""The NotificationStore port on DynamoDB, in the alerts table (NotificationModel): an
emit is one transaction (each notification put into the outbox if absent there and not
settled before); a delivery is claimed by a conditional update and settled by one
transaction that moves it out of the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.dynamodb._tx import Transactor, _conditional_update, _get
from chalicelib.adapters.dynamodb.models import (
    NotificationModel,
    Place,
    build_notification_model,
)
from chalicelib.config import Settings
from chalicelib.domain.notifications import CLAIM_S, MAX_ATTEMPTS, Notification
from chalicelib.ports import NotificationStore

OUTBOX, DONE = "notify#outbox", "notify#done"


def _listing(status: str) -> str:
    return f"notify#{status}"


def _note(m: NotificationModel) -> Notification:
    key = m.alert_id.split("#", 1)[-1]
    return Notification(
        key=key,
        event=m.event,
        job_id=m.job_id,
        destination=dict(m.destination),
        body=dict(m.body),
        created=float(m.created),
        next_at=float(m.next_at),
        status=m.status,  # type: ignore[arg-type]  # written only from Notification.status
        attempts=int(m.attempts or 0),
        claimed_until=None if m.claimed_until is None else float(m.claimed_until),
        last_error=m.last_error,
        settled_at=None if m.settled_at is None else float(m.settled_at),
    )


def _fields(n: Notification) -> dict[str, Any]:
    return {
        "event": n.event,
        "job_id": n.job_id,
        "destination": n.destination,
        "body": n.body,
        "created": n.created,
        "next_at": n.next_at,
        "status": n.status,
        "attempts": n.attempts,
        "claimed_until": n.claimed_until,
        "last_error": n.last_error,
        "settled_at": n.settled_at,
    }


class DynamoNotificationStore(Transactor, NotificationStore):
    """Notifications in the stage's alerts table."""

    def __init__(self, settings: Settings) -> None:
        self.model = build_notification_model(settings)
        super().__init__(Place(settings.region, settings.ddb_endpoint).connection())

    def emit(self, notes: Sequence[Notification]) -> int:
        if not notes:
            return 0
        N = self.model

        def build(tx: TransactWrite) -> None:
            for n in notes:
                tx.save(N(OUTBOX, n.key, **_fields(n)), condition=N.alert_id.does_not_exist())
                tx.condition_check(N, DONE, n.key, condition=N.alert_id.does_not_exist())

        return len(notes) if self._transact(build) else 0

    def due_notifications(self, now: float, limit: int = 100) -> list[Notification]:
        N = self.model
        due = (N.next_at <= now) & (N.claimed_until.does_not_exist() | (N.claimed_until < now))
        return _get(lambda: [_note(m) for m in N.query(OUTBOX, filter_condition=due, limit=limit)])

    def claim_notification(self, note: Notification, now: float) -> Notification | None:
        N = self.model
        free = N.claimed_until.does_not_exist() | (N.claimed_until < now)
        held = N.alert_id.exists() & (N.attempts == note.attempts) & free
        actions: list[Action] = [
            N.attempts.set(note.attempts + 1),
            N.claimed_until.set(now + CLAIM_S),
        ]
        if not _conditional_update(N(OUTBOX, note.key), actions, held):
            return None
        return replace(note, attempts=note.attempts + 1, claimed_until=now + CLAIM_S)

    def settle_notification(self, note: Notification, now: float, error: str | None) -> None:
        N = self.model
        mine = N.alert_id.exists() & (N.attempts == note.attempts)
        if error is not None and note.attempts < MAX_ATTEMPTS:
            actions: list[Action] = [
                N.next_at.set(note.next_at),
                N.claimed_until.remove(),
                N.last_error.set(error),
            ]
            _conditional_update(N(OUTBOX, note.key), actions, mine)
            return
        status: Literal["delivered", "failed"] = "delivered" if error is None else "failed"
        settled = replace(note, status=status, settled_at=now, last_error=error, claimed_until=None)

        def build(tx: TransactWrite) -> None:
            tx.delete(N(OUTBOX, note.key), condition=mine)
            tx.save(N(DONE, note.key, **_fields(settled)))
            tx.save(N(_listing(status), f"{now:017.6f}#{note.key}", **_fields(settled)))

        self._transact(build)

    def list_notifications(self, status: str, limit: int = 100) -> list[Notification]:
        N = self.model
        kind = OUTBOX if status == "pending" else _listing(status)
        return _get(
            lambda: [_note(m) for m in N.query(kind, scan_index_forward=False, limit=limit)]
        )
