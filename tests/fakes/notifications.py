"""A recording NotificationSender for tests (the in-memory NotificationStore is
`chalicelib.adapters.memory.MemoryNotificationStore`, which containers on other stores
than DynamoDB get)."""

from __future__ import annotations

from chalicelib.adapters.memory import MemoryNotificationStore
from chalicelib.domain.notifications import Notification
from chalicelib.ports import DeliveryFailed, NotificationSender

__all__ = ["MemoryNotificationStore", "MemorySender"]


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
