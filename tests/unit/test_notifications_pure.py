"""Notifications, pure: a job's `notify` checked, keys, bodies, backoff and signatures."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from unittest.mock import ANY

import pytest
from pydantic import ValidationError

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.notifications import (
    MAX_BACKOFF_S,
    EventFacts,
    NotifySpec,
    backoff,
    check_notify,
    is_late,
    notifications_for,
    sign,
    topic_arn,
)

P = "/cadenza/dev/"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ops"
HOOK = {
    "type": "webhook",
    "url": "https://example.com/h",
    "secret": "{{resolve:ssm:/cadenza/dev/k}}",
}


def spec(**kw: Any) -> NotifySpec:
    return NotifySpec.model_validate({"events": ["failed"], "destinations": [HOOK], **kw})


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"events": ["late"]}, "late_seconds is required"),
        ({"events": ["failed", "failed"]}, "names an event twice"),
        ({"events": ["exploded"]}, "Input should be"),
        ({"events": []}, "at least 1"),
        ({"destinations": [{"type": "pager", "to": "x"}]}, "does not match any of the expected"),
        ({"destinations": [{**HOOK, "url": "ftp://x"}]}, "should match pattern"),
        ({"late_seconds": "5"}, "valid integer"),
    ],
)
def test_a_bad_notify_is_refused(given: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        spec(**given)


def test_the_stage_checks_topics_and_secrets() -> None:
    check_notify(spec(destinations=[{"type": "sns", "topic": "ops"}, HOOK]), [TOPIC], P)
    check_notify(spec(destinations=[{"type": "email", "topic": TOPIC}]), [TOPIC], P)
    cases = [
        ({"type": "sns", "topic": "other"}, "notify.destinations[0].topic"),
        ({**HOOK, "secret": "hunter2"}, "notify.destinations[0].secret"),
        ({**HOOK, "secret": "{{resolve:ssm:/other/k}}"}, "notify.destinations[0].secret"),
        ({**HOOK, "secret": "x{{resolve:ssm:/cadenza/dev/k}}"}, "notify.destinations[0].secret"),
        ({**HOOK, "url": "http://169.254.169.254/latest"}, "notify.destinations[0].url"),
    ]
    for dest, field in cases:
        with pytest.raises(InvalidInput) as err:
            check_notify(spec(destinations=[dest]), [TOPIC], P)
        assert err.value.to_dict()["errors"] == [{"field": field, "reason": ANY}]
        assert "hunter2" not in str(err.value)


def test_a_topic_is_named_by_its_arn_or_its_name() -> None:
    assert topic_arn("ops", [TOPIC]) == topic_arn(TOPIC, [TOPIC]) == TOPIC
    assert topic_arn("op", [TOPIC]) is None


def facts(event: str, ex_id: str = "ex1", slot: str = "s1") -> EventFacts:
    return EventFacts(event, "j1", slot, ex_id, "failed", 100.0, {"reason": "boom"})


def test_one_notification_per_destination_keyed_by_execution_or_slot() -> None:
    notify = {
        "events": ["failed", "missed"],
        "destinations": [HOOK, {"type": "sns", "topic": "ops"}],
    }
    notes = notifications_for(facts("failed"), notify, "nightly")
    assert len({n.key for n in notes}) == 2
    assert notes == notifications_for(facts("failed"), notify, "nightly")  # stable keys
    again = notifications_for(facts("failed", ex_id="ex2"), notify, "nightly")
    assert {n.key for n in again}.isdisjoint(n.key for n in notes)  # a new execution
    missed = notifications_for(facts("missed", ex_id="other"), notify, "nightly")
    assert [n.key for n in missed] == [
        n.key for n in notifications_for(facts("missed", ex_id="x"), notify, "nightly")
    ]  # a ledger record: by slot, whatever its ex_id
    body = notes[0].body
    assert (
        body["link"] == "/v1/ex/ex1"
        and body["job_id"] == "j1"
        and body["job_link"] == "/v1/jobs/j1"
    )
    assert body["notification_id"] == notes[0].key and body["detail"] == {"reason": "boom"}
    assert notifications_for(facts("succeeded"), notify, "n") == []
    assert notifications_for(facts("failed"), None, "n") == []


def test_late_backoff_and_signature() -> None:
    notify = {"events": ["late"], "late_seconds": 30}
    assert is_late(notify, 100.0, 131.0) and not is_late(notify, 100.0, 130.0)
    assert not is_late({"events": ["failed"]}, 100.0, 1000.0)
    assert [backoff(n) for n in (1, 2, 3)] == [30.0, 60.0, 120.0]
    assert backoff(50) == MAX_BACKOFF_S
    expected = hmac.new(b"k", b"17.{}", hashlib.sha256).hexdigest()
    assert sign("k", "17", b"{}") == "sha256=" + expected
