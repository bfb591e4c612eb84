"""GET /v1/notifications: the notifications of every job (docs/notifications.md), by
status; an operator's view (the admin role), as the alerts are."""

from __future__ import annotations

from typing import Any

from chalice.app import Request, Response

from chalicelib.bootstrap import get_container
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.notifications import Notification
from chalicelib.domain.timefmt import iso
from chalicelib.entrypoints.http.errors import json_response, query_int
from chalicelib.entrypoints.http.routing import Routes, query

routes = Routes()

STATUSES = ("pending", "delivered", "failed")


def notification_view(n: Notification) -> dict[str, Any]:
    view = n.view()
    view["created"] = iso(n.created)
    view["settled_at"] = None if n.settled_at is None else iso(n.settled_at)
    return view


@routes("/notifications", admin=True)
def notifications(request: Request) -> Response:
    """Notifications in `status` (default `failed`: those given up on), newest first."""
    params = query(request)
    status = params.get("status") or "failed"
    if status not in STATUSES:
        reason = f"expected one of {', '.join(STATUSES)}"
        raise InvalidInput(f"status: {reason}", [{"field": "status", "reason": reason}])
    size = query_int(params, "size")
    size = 100 if size is None else max(1, min(size, 1000))
    service = get_container().notifications
    found = [] if service is None else service.listing(status, size)
    return json_response([notification_view(n) for n in found])
