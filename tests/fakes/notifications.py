"""The NotificationStore port in memory, with DynamoStore's conditions: a key is written
once ever (pending or settled), a claim holds only if the record is still as read."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from chalicelib.domain.notifications import CLAIM_S, MAX_ATTEMPTS, Notification
from chalicelib.ports import DeliveryFailed, NotificationSender, NotificationStore


class MemoryNotificationStore(NotificationStore):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, Notification] = {}
        self.emits = 0  # conditional writes asked of the store (the finishing path's cost)

    def emit(self, notes: Sequence[Notification]) -> int:
        with self.lock:
            self.emits += 1
            if any(n.key in self.records for n in notes):
                return 0  # written together: one there means all are
            for n in notes:
                self.records[n.key] = n
            return len(notes)

    def due_notifications(self, now: float, limit: int = 100) -> list[Notification]:
        with self.lock:
            due = [
                n
                for n in self.records.values()
                if n.status == "pending"
                and n.next_at <= now
                and (n.claimed_until is None or n.claimed_until < now)
            ]
        return sorted(due, key=lambda n: n.next_at)[:limit]

    def claim_notification(self, note: Notification, now: float) -> Notification | None:
        with self.lock:
            stored = self.records.get(note.key)
            if stored is None or stored.status != "pending" or stored.attempts != note.attempts:
                return None
            if stored.claimed_until is not None and stored.claimed_until >= now:
                return None
            claimed = replace(stored, attempts=stored.attempts + 1, claimed_until=now + CLAIM_S)
            self.records[note.key] = claimed
            return claimed

    def settle_notification(self, note: Notification, now: float, error: str | None) -> None:
        with self.lock:
            stored = self.records.get(note.key)
            if stored is None or stored.attempts != note.attempts or stored.status != "pending":
                return
            if error is None:
                self.records[note.key] = replace(
                    stored, status="delivered", settled_at=now, last_error=None
                )
            elif note.attempts >= MAX_ATTEMPTS:
                self.records[note.key] = replace(
                    stored, status="failed", settled_at=now, last_error=error
                )
            else:
                self.records[note.key] = replace(
                    stored, next_at=note.next_at, claimed_until=None, last_error=error
                )

    def list_notifications(self, status: str, limit: int = 100) -> list[Notification]:
        with self.lock:
            found = [n for n in self.records.values() if n.status == status]
        return sorted(found, key=lambda n: n.settled_at or n.created, reverse=True)[:limit]


class MemorySender(NotificationSender):
    """Keeps what it is asked to send; fails the first `failures` attempts."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[Notification] = []
        self.attempts = 0

    def send(self, note: Notification) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise DeliveryFailed("refused by the test")
        self.sent.append(note)
