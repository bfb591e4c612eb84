"""The Notifier port on SNS: each alert is published to the alerts topic as JSON."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from chalicelib.ports import Alert, DeliveryFailed, Notifier

log = logging.getLogger(__name__)


class SnsNotifier(Notifier):
    """Publishes alerts to the topic `topic_arn` (the stack creates the topic and gives its
    ARN; the functions may only publish). Without an ARN an alert is kept, not published."""

    def __init__(self, client: Any, topic_arn: str | None) -> None:
        self.client, self.topic_arn = client, topic_arn

    def publish(self, alert: Alert) -> None:
        try:
            self.deliver(alert)
        except DeliveryFailed:  # the alert is stored already; a lost page must not fail a tick
            log.exception("publishing alert %s failed", alert.alert_id)

    def deliver(self, alert: Alert) -> None:
        if not self.topic_arn:
            log.warning("alert %s kept, not published: no CADENZA_ALERTS_TOPIC_ARN", alert.alert_id)
            return
        try:
            self.client.publish(
                TopicArn=self.topic_arn,
                Subject=f"cadenza: {alert.reason}"[:100],
                Message=json.dumps(asdict(alert), default=str),
            )
        except Exception as err:  # botocore's: kept on the notification by its code only
            code = getattr(err, "response", {}).get("Error", {}).get("Code")
            raise DeliveryFailed(f"SNS refused the alert: {code or type(err).__name__}") from err
