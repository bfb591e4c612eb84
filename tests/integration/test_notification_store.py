"""The notifications' outbox on DynamoDB (moto and DynamoDB Local): a key is written once
ever, even by racing writers and after it was delivered; one claim per attempt; settling
moves it out of the outbox and into its listing."""

from __future__ import annotations

from dataclasses import replace

from chalicelib.adapters.dynamodb.notifications import DynamoNotificationStore
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.domain.notifications import (
    MAX_ATTEMPTS,
    EventFacts,
    Notification,
    notifications_for,
)
from tests.helpers import race

HOOK = {
    "type": "webhook",
    "url": "https://example.com/h",
    "secret": "{{resolve:ssm:/cadenza/dev/k}}",
}
NOTIFY = {"events": ["failed"], "destinations": [HOOK, {"type": "sns", "topic": "ops"}]}


def _notes(ex_id: str = "ex1") -> list[Notification]:
    facts = EventFacts("failed", "j1", "s1", ex_id, "failed", 100.0, {})
    return notifications_for(facts, NOTIFY, "job")


def test_an_event_is_written_once_by_racing_writers_and_after_delivery(store: DynamoStore) -> None:
    notes = DynamoNotificationStore(store.settings)
    made = race(*[lambda: notes.emit(_notes()) for _ in range(4)])
    assert sorted(made) == [0, 0, 0, 2]
    due = notes.due_notifications(100.0)
    assert len(due) == 2 and notes.due_notifications(99.0) == []
    claims = race(*[lambda n=due[0]: notes.claim_notification(n, 100.0) for _ in range(3)])
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].attempts == 1
    assert [n.key for n in notes.due_notifications(100.0)] == [due[1].key]  # held meanwhile
    notes.settle_notification(won[0], 101.0, None)
    assert notes.emit(_notes()) == 0  # one delivered, one pending: still written once
    assert [n.key for n in notes.list_notifications("delivered")] == [due[0].key]
    assert notes.emit(_notes("ex2")) == 2  # another execution


def test_retries_then_failed(store: DynamoStore) -> None:
    notes = DynamoNotificationStore(store.settings)
    assert notes.emit(_notes()[:1]) == 1
    t = 100.0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        (due,) = notes.due_notifications(t)
        claimed = notes.claim_notification(due, t)
        assert claimed is not None and claimed.attempts == attempt
        assert notes.claim_notification(due, t) is None  # the same read: taken already
        notes.settle_notification(replace(claimed, next_at=t + 10), t, "webhook answered 500")
        assert notes.due_notifications(t + 9) == []
        t += 10
    assert notes.due_notifications(t + 1000) == []
    (failed,) = notes.list_notifications("failed")
    assert (failed.status, failed.attempts, failed.last_error) == (
        "failed",
        MAX_ATTEMPTS,
        "webhook answered 500",
    )
    assert notes.list_notifications("pending") == []
    assert notes.emit(_notes()[:1]) == 0
