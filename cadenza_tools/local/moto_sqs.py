"""Linear-cost replacements for moto's SQS hot paths, for the local stack only.

moto 5's ``Queue.attributes`` walks every queued message three times (the approximate
counts), and ``send_message`` and every received message's retention check read it;
``wait_for_messages`` rebuilds the visible-message list on every wake-up of every
waiting poller; ``delete_message`` builds receipt-handle lists for every message twice.
A burst of 1,000 delayed starts then costs tens of seconds of CPU in the emulator.

:func:`install` swaps those methods for versions with the same results (delay,
visibility, receive count, redrive to the DLQ and retention are untouched: receive
itself is moto's) computed from one clock reading per scan. A poller waiting on a queue
whose messages are all delayed or in flight also wakes when the earliest of them comes
due, not only at the next one-second poll.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from moto.core.utils import camelcase_to_underscores, unix_time, unix_time_millis
from moto.sqs import models as sqs_models
from moto.sqs.exceptions import ReceiptHandleIsInvalid

_APPROXIMATE = frozenset(
    {
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
    }
)
_CAMEL_TO_ATTR = {
    name: camelcase_to_underscores(name)
    for name in (
        *sqs_models.Queue.BASE_ATTRIBUTES,
        *sqs_models.Queue.FIFO_ATTRIBUTES,
        *sqs_models.Queue.KMS_ATTRIBUTES,
    )
}
_lock = threading.Lock()
_installed = False


def _counts(queue: sqs_models.Queue) -> tuple[int, int, int]:
    """Visible and undelayed, delayed, not visible: moto's three approximate counts."""
    now = unix_time_millis()
    ready = delayed = hidden = 0
    for message in list(queue._messages):
        visible = now > message.visible_at
        is_delayed = now < message.delayed_until
        if is_delayed:
            delayed += 1
        if not visible:
            hidden += 1
        elif not is_delayed:
            ready += 1
    return ready, delayed, hidden


def _named_attributes(queue: sqs_models.Queue) -> list[str]:
    """moto's attributes of this queue: the base ones, the FIFO and KMS ones when they apply."""
    names = [a for a in queue.BASE_ATTRIBUTES if a not in _APPROXIMATE]
    if queue.fifo_queue:
        names += queue.FIFO_ATTRIBUTES
    if getattr(queue, "kms_master_key_id", None):
        names += queue.KMS_ATTRIBUTES
    return names


def _attributes(self: sqs_models.Queue) -> dict[str, Any]:
    result: dict[str, Any] = {a: getattr(self, _CAMEL_TO_ATTR[a]) for a in _named_attributes(self)}
    ready, delayed, hidden = _counts(self)
    result["ApproximateNumberOfMessages"] = ready
    result["ApproximateNumberOfMessagesDelayed"] = delayed
    result["ApproximateNumberOfMessagesNotVisible"] = hidden
    if self.policy:
        result["Policy"] = self.policy
    redrive_policy = getattr(self, "redrive_policy", None)
    if redrive_policy:
        result["RedrivePolicy"] = json.dumps(redrive_policy)
    return {k: str(v).lower() if isinstance(v, bool) else v for k, v in result.items()}


def _ready_messages(self: sqs_models.Queue) -> list[sqs_models.Message]:
    now = unix_time_millis()
    return [m for m in list(self._messages) if now > m.visible_at and now >= m.delayed_until]


def _wait_for_messages(self: sqs_models.Queue, timeout: int) -> None:
    deadline = time.monotonic() + timeout
    with self._messages_lock:
        while True:
            now = unix_time_millis()
            next_due: float | None = None
            for message in self._messages:
                if now > message.visible_at and now >= message.delayed_until:
                    return
                due = max(message.visible_at, message.delayed_until)
                if next_due is None or due < next_due:
                    next_due = due
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if next_due is not None:
                # visible_at is exclusive: wake a millisecond after it.
                remaining = min(remaining, max(next_due - now, 0.0) / 1000 + 0.001)
            self._messages_lock.wait(remaining)


def _delete_message(self: sqs_models.Queue, receipt_handle: str) -> None:
    if receipt_handle in self.deleted_messages:
        return
    with self._messages_lock:
        for index, message in enumerate(self._messages):
            if (
                message.receipt_handle == receipt_handle
                or receipt_handle in message._old_receipt_handles
            ):
                del self._messages[index]
                break
        else:
            raise ReceiptHandleIsInvalid()
    self.pending_messages.discard(message)
    self.deleted_messages.update(h for h in message.all_receipt_handles if h is not None)


def _is_message_valid_based_on_retention_period(
    self: sqs_models.SQSBackend, queue_name: str, message: sqs_models.Message
) -> bool:
    retention_period = _CAMEL_TO_ATTR["MessageRetentionPeriod"]
    retention_period_s = getattr(self.get_queue(queue_name), retention_period)
    sent_timestamp: float = message.sent_timestamp or 0
    return bool(retention_period_s + sent_timestamp / 1000 > unix_time())


def _replacements() -> list[tuple[type, str, object]]:
    return [
        (sqs_models.Queue, "attributes", property(_attributes)),
        (sqs_models.Queue, "messages", property(_ready_messages)),
        (sqs_models.Queue, "wait_for_messages", _wait_for_messages),
        (sqs_models.Queue, "delete_message", _delete_message),
        (
            sqs_models.SQSBackend,
            "is_message_valid_based_on_retention_period",
            _is_message_valid_based_on_retention_period,
        ),
    ]


def install() -> None:
    """Patch moto's SQS classes in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        for owner, name, value in _replacements():
            setattr(owner, name, value)
        _installed = True


def installed() -> bool:
    """Tell whether :func:`install` has patched moto in this process."""
    return _installed
