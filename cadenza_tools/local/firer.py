"""A local stand-in for an EventBridge schedule rule targeting a Lambda function."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cadenza_tools.local.sqs_poller import Handler, LambdaContext

log = logging.getLogger(__name__)


def scheduled_event(
    rule_arn: str,
    *,
    when: datetime | None = None,
    region: str | None = None,
    account: str | None = None,
) -> dict[str, Any]:
    """Build the EventBridge "Scheduled Event" a scheduled Lambda receives."""
    parts = rule_arn.split(":")
    instant = (when or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account or parts[4],
        "time": instant.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region or parts[3],
        "resources": [rule_arn],
        "detail": {},
    }


@dataclass(frozen=True)
class FirerOptions:
    """Where the rule and the function live; whether to fire at once; the function's timeout."""

    region: str = "us-east-1"
    account: str = "123456789012"
    fire_immediately: bool = False
    function_timeout_s: float = 60.0


class ScheduleFirer(threading.Thread):
    """Call ``handler(event, context)`` every ``interval`` seconds, like EventBridge.

    Firings are aligned to the start time (no drift); a firing that is still running when
    the next is due delays it rather than overlapping. Handler errors are logged.
    """

    def __init__(
        self,
        handler: Handler,
        interval: float,
        name: str = "schedule",
        *,
        options: FirerOptions | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        super().__init__(name=f"firer:{name}", daemon=True)
        self.options = o = options or FirerOptions()
        self.handler = handler
        self.interval = interval
        self.function_name = name
        self.rule_arn = f"arn:aws:events:{o.region}:{o.account}:rule/{name}"
        self.fired = 0
        self.errors = 0
        self._stop_event = threading.Event()

    def fire_once(self) -> Any:
        """Invoke the handler once, synchronously; return its result (None on error)."""
        event = scheduled_event(
            self.rule_arn, region=self.options.region, account=self.options.account
        )
        context = LambdaContext(
            self.function_name,
            timeout_s=self.options.function_timeout_s,
            region=self.options.region,
            account_id=self.options.account,
        )
        self.fired += 1
        try:
            return self.handler(event, context)
        except Exception:
            self.errors += 1
            log.exception("%s: scheduled handler failed", self.name)
            return None

    def run(self) -> None:
        """Fire until :meth:`stop` is called."""
        next_at = time.monotonic() + (0 if self.options.fire_immediately else self.interval)
        while not self._stop_event.wait(max(0.0, next_at - time.monotonic())):
            self.fire_once()
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:
                next_at = now

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop firing and wait for a running invocation to end."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
