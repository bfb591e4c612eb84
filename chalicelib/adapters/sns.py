"""The Notifier port on SNS: each alert is published to the alerts topic as JSON."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from chalicelib.ports import Alert, Notifier

log = logging.getLogger(__name__)


class SnsNotifier(Notifier):
    """Publishes alerts; the topic's ARN is looked up (or the topic created) once."""

    def __init__(self, client: Any, topic_name: str) -> None:
        self.client, self.topic_name = client, topic_name
        self._arn: str | None = None

    def publish(self, alert: Alert) -> None:
        try:
            if self._arn is None:
                self._arn = str(self.client.create_topic(Name=self.topic_name)["TopicArn"])
            self.client.publish(
                TopicArn=self._arn,
                Subject=f"cadenza: {alert.reason}"[:100],
                Message=json.dumps(asdict(alert), default=str),
            )
        except Exception:  # the alert is stored already; a lost page must not fail a tick
            log.exception("publishing alert %s failed", alert.alert_id)
