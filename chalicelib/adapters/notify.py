"""The NotificationSender port: SNS topics (and email, an SNS topic with email
subscriptions) through the SNS client, webhooks through urllib3 (which botocore ships)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import urllib3

from chalicelib.domain.notifications import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Notification,
    sign,
    topic_arn,
)
from chalicelib.domain.secrets import SecretUnavailable, Substitution
from chalicelib.ports import Alert, DeliveryFailed, NotificationSender, Notifier, SecretSource

WEBHOOK_TIMEOUT_S = 10.0


def _runtime_api(url: str) -> bool:
    """Whether `url` points at Lambda's runtime API of this very function (a webhook there
    could answer the supervisor's own invocation)."""
    api = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    return bool(api) and urllib3.util.parse_url(url).netloc == api


def body_bytes(note: Notification) -> bytes:
    """The JSON a destination receives: the notification's body, keys sorted."""
    return json.dumps(note.body, sort_keys=True, separators=(",", ":"), default=str).encode()


class Sender(NotificationSender):
    """Sends to the stage's allowed topics and to webhooks, signing each webhook body with
    its secret (read through `secrets` when it is sent, never stored); the operators'
    alerts (destination type `alerts`) through the stage's `alerts` Notifier."""

    def __init__(
        self,
        sns_client: Any,
        secrets: SecretSource,
        settings_topics: Sequence[str],
        secrets_prefix: str,
        alerts: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sns, self.secrets, self.topics = sns_client, secrets, tuple(settings_topics)
        self.prefix, self.alerts, self.clock = secrets_prefix, alerts, clock
        self.http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=WEBHOOK_TIMEOUT_S), retries=False
        )

    def send(self, note: Notification) -> None:
        kind = note.destination.get("type")
        if kind in ("sns", "email"):
            self._publish(note)
        elif kind == "webhook":
            self._post(note)
        elif kind == "alerts" and self.alerts is not None:
            self.alerts.deliver(Alert(**note.body["alert"]))
        else:
            raise DeliveryFailed(f"unknown destination type {kind!r}")

    def _publish(self, note: Notification) -> None:
        arn = topic_arn(str(note.destination.get("topic", "")), self.topics)
        if arn is None:  # taken off the allow-list since the job was submitted
            raise DeliveryFailed("the topic is no longer one of this stage's notification topics")
        subject = f"cadenza: {note.event}: {note.body.get('job_name') or note.job_id}"
        try:
            self.sns.publish(
                TopicArn=arn,
                Subject=subject[:100],
                Message=body_bytes(note).decode(),
                MessageAttributes={"event": {"DataType": "String", "StringValue": note.event}},
            )
        except Exception as err:  # botocore's: the reason's code only (no ARN, no account)
            code = getattr(err, "response", {}).get("Error", {}).get("Code")
            raise DeliveryFailed(f"SNS refused the message: {code or type(err).__name__}") from None

    def _secret(self, note: Notification) -> str:
        sub = Substitution(self.secrets.secret_value, self.prefix)
        try:
            return str(sub.text(str(note.destination.get("secret", ""))))
        except SecretUnavailable as err:
            raise DeliveryFailed(f"the webhook's secret: {err}") from None

    def _post(self, note: Notification) -> None:
        body = body_bytes(note)
        stamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "cadenza-notifications",
            ID_HEADER: note.key,
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(self._secret(note), stamp, body),
        }
        url = str(note.destination.get("url", ""))
        if _runtime_api(url):
            raise DeliveryFailed("the webhook's address is the function's own runtime API")
        try:
            resp = self.http.request("POST", url, body=body, headers=headers, redirect=False)
        except urllib3.exceptions.HTTPError as err:
            raise DeliveryFailed(f"webhook not reached: {type(err).__name__}") from None
        if not 200 <= resp.status < 300:
            raise DeliveryFailed(f"webhook answered {resp.status}")
