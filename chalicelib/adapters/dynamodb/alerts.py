"""Alerts: one item each, newest last under one key, read newest first by one query."""

from __future__ import annotations

from pynamodb.exceptions import PutError

from chalicelib.adapters.dynamodb._tx import _unavailable
from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.retention import expiry
from chalicelib.ports import Alert, AlertStore


class AlertRecords(StoreBase, AlertStore):
    def put_alert(self, alert: Alert) -> None:
        A = self.m.alert
        try:
            A(
                "alert",
                f"{alert.created:017.6f}#{alert.alert_id}",
                created=alert.created,
                reason=alert.reason,
                job_id=alert.job_id,
                ex_id=alert.ex_id,
                slot=alert.slot,
                detail=alert.detail,
                expires_at=expiry({}, self.settings.history_days, alert.created),
            ).save()
        except PutError as err:
            raise _unavailable(err) from err

    def list_alerts(self, limit: int = 100) -> list[Alert]:
        A = self.m.alert
        return self._get(
            lambda: [
                Alert(
                    alert_id=m.alert_id.split("#", 1)[1],
                    created=float(m.created),
                    reason=m.reason,
                    job_id=m.job_id,
                    ex_id=m.ex_id,
                    slot=m.slot,
                    detail=m.detail,
                )
                for m in A.query("alert", scan_index_forward=False, limit=limit)
            ]
        )
