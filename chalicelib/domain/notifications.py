"""Notifications (docs/notifications.md): what a job asks to be told about and where, and
the notification records an event makes, all pure.

A job's `notify` names events and destinations. An event of a run or a slot makes one
`Notification` per destination, keyed by (job, slot or execution, event, destination), so
that writing it only if absent makes it once however often the event is seen (a
redelivered message, a retried finalize, two supervisors). Records wait in an outbox and
are delivered by the supervisor's tick, retried with backoff up to `MAX_ATTEMPTS`, then
kept as failed."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.secrets import check_references
from chalicelib.domain.transitions import ExStatus

Event = Literal["failed", "succeeded", "missed", "skipped", "late", "hanging", "timed_out"]
EVENTS: tuple[Event, ...] = (
    "failed",
    "succeeded",
    "missed",
    "skipped",
    "late",
    "hanging",
    "timed_out",
)
# events of a slot that never ran (a ledger record): one per slot, not per execution
SLOT_EVENTS = frozenset({"missed", "skipped"})
# the event a run's terminal status makes
EVENT_OF_STATUS: dict[ExStatus, Event] = {
    ExStatus.completed: "succeeded",
    ExStatus.failed: "failed",
    ExStatus.missed: "missed",
    ExStatus.skipped: "skipped",
}

MAX_ATTEMPTS = 5  # deliveries tried before a notification is kept as failed
FIRST_BACKOFF_S = 30.0
MAX_BACKOFF_S = 900.0
CLAIM_S = 60.0  # a delivery in flight: no other supervisor tries it meanwhile

SIGNATURE_HEADER = "X-Cadenza-Signature"
TIMESTAMP_HEADER = "X-Cadenza-Timestamp"
ID_HEADER = "X-Cadenza-Notification-Id"


class SnsDestination(BaseModel):
    """An SNS topic of the stage's allow-list (its ARN, or its name)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    type: Literal["sns"]
    topic: str = Field(min_length=1, max_length=256)


class EmailDestination(BaseModel):
    """Email: an SNS topic of the allow-list whose subscriptions are email addresses."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    type: Literal["email"]
    topic: str = Field(min_length=1, max_length=256)


class WebhookDestination(BaseModel):
    """An HTTP(S) endpoint that gets a JSON body, signed with a secret named by reference."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    type: Literal["webhook"]
    url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s/?#]+[^\s]*$")
    secret: str = Field(min_length=1, max_length=1100)


Destination = Annotated[
    SnsDestination | EmailDestination | WebhookDestination, Field(discriminator="type")
]


class NotifySpec(BaseModel):
    """A job's `notify`: which events, where, and for `late` the threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    events: list[Event] = Field(min_length=1, max_length=len(EVENTS))
    destinations: list[Destination] = Field(min_length=1, max_length=5)
    late_seconds: int | None = Field(default=None, ge=1, le=24 * 3600)

    @field_validator("events")
    @classmethod
    def _distinct(cls, v: list[Event]) -> list[Event]:
        if len(set(v)) != len(v):
            raise ValueError("names an event twice")
        return v

    @model_validator(mode="after")
    def _late_has_threshold(self) -> NotifySpec:
        if "late" in self.events and self.late_seconds is None:
            raise ValueError("late_seconds is required with the event 'late'")
        return self


def _refused(field_name: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field_name}: {reason}", [{"field": field_name, "reason": reason}])


def _internal_host(url: str) -> bool:
    """Whether a URL's host is a link-local address (where instance metadata answers)."""
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_link_local
    except ValueError:
        return False


def topic_arn(topic: str, allowed: Sequence[str]) -> str | None:
    """The allow-list's ARN that `topic` names (the ARN itself, or the topic's name)."""
    for arn in allowed:
        if topic == arn or topic == arn.rsplit(":", 1)[-1]:
            return arn
    return None


def check_notify(spec: NotifySpec, topics: Sequence[str], secrets_prefix: str) -> None:
    """The stage's checks of a valid `notify`: each topic in the allow-list, each webhook's
    secret one reference under the stage's prefix; else InvalidInput naming the field."""
    for i, dest in enumerate(spec.destinations):
        where = f"notify.destinations[{i}]"
        if isinstance(dest, SnsDestination | EmailDestination):
            if topic_arn(dest.topic, topics) is None:
                raise _refused(f"{where}.topic", "is not one of this stage's notification topics")
        elif _internal_host(dest.url):
            raise _refused(f"{where}.url", "names a link-local address (instance metadata)")
        elif len(check_references(f"{where}.secret", dest.secret, secrets_prefix)) != 1 or (
            not dest.secret.strip().startswith("{{")
        ):
            raise _refused(
                f"{where}.secret",
                "must be one secret reference, {{resolve:ssm:NAME}} or "
                "{{resolve:secretsmanager:NAME}}, never the secret itself",
            )


def destination_id(destination: dict[str, Any]) -> str:
    """A short stable id of a destination (its canonical JSON)."""
    text = json.dumps(destination, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def notification_key(job_id: str, ref: str, event: str, destination: dict[str, Any]) -> str:
    """The notification's id: one per job, slot or execution (`ref`), event, destination."""
    text = f"{job_id}\n{ref}\n{event}\n{destination_id(destination)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def backoff(attempts: int) -> float:
    """Seconds before the next delivery after `attempts` failed ones."""
    return float(min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** max(0, attempts - 1)))


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 of `<timestamp>.<body>` with the secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True)
class Notification:
    """One event for one destination: its message (`body`) and its delivery's state."""

    key: str
    event: str
    job_id: str
    destination: dict[str, Any]
    body: dict[str, Any]
    created: float
    next_at: float
    status: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    claimed_until: float | None = None
    last_error: str | None = None
    settled_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ex_id(self) -> str | None:
        value = self.body.get("ex_id")
        return None if value is None else str(value)

    def view(self) -> dict[str, Any]:
        """What the notifications listing shows (a webhook's URL and its secret's
        reference, never a value)."""
        return {
            "notification_id": self.key,
            "event": self.event,
            "job_id": self.job_id,
            "ex_id": self.ex_id,
            "slot": self.body.get("slot"),
            "destination": self.destination,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created": self.created,
            "settled_at": self.settled_at,
            "link": self.body.get("link"),
        }


@dataclass(frozen=True)
class EventFacts:
    """What happened: the event, the run or slot it is about, when, and its detail."""

    event: str
    job_id: str
    slot: str
    ex_id: str
    status: str
    at: float
    detail: dict[str, Any] = field(default_factory=dict)


def notifications_for(facts: EventFacts, notify: Any, job_name: str) -> list[Notification]:
    """The notifications `facts` makes under a run's copy of its job's `notify` (none if
    it does not name the event, or if what is stored is not a valid spec)."""
    if not isinstance(notify, dict) or facts.event not in notify.get("events", ()):
        return []
    ref = facts.slot if facts.event in SLOT_EVENTS else facts.ex_id
    body = {
        "event": facts.event,
        "job_id": facts.job_id,
        "job_name": job_name,
        "ex_id": facts.ex_id,
        "slot": facts.slot,
        "status": facts.status,
        "at": facts.at,
        "link": f"/v1/ex/{facts.ex_id}",
        "job_link": f"/v1/jobs/{facts.job_id}",
        "detail": facts.detail,
    }
    out = []
    for dest in notify.get("destinations", ()):
        if not isinstance(dest, dict):
            continue
        key = notification_key(facts.job_id, ref, facts.event, dest)
        out.append(
            Notification(
                key=key,
                event=facts.event,
                job_id=facts.job_id,
                destination=dict(dest),
                body={"notification_id": key, **body},
                created=facts.at,
                next_at=facts.at,
            )
        )
    return out


def is_late(notify: Any, scheduled_start: float, started_at: float) -> bool:
    """Whether a start at `started_at` is later than the job's `late_seconds` allows."""
    if not isinstance(notify, dict) or "late" not in notify.get("events", ()):
        return False
    threshold = notify.get("late_seconds")
    return isinstance(threshold, int | float) and started_at - scheduled_start > threshold


def events_due(notify: Any, events: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Of `events` (each with its detail), those the job's `notify` names: what a write that
    the supervisor makes (a timeout, a worker given up on, a missed slot) marks on the run
    record as still to record (`Run.notify_due`), so that a supervisor that dies between
    the write and the event leaves it to the next tick's sweep."""
    if not isinstance(notify, dict):
        return {}
    named = notify.get("events", ())
    return {e: dict(d) for e, d in events.items() if e in named}
