"""The supervisor admin API (seed 000): /api/supervisor/state, halt, restart."""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib.api.errors import api_errors, json_response
from chalicelib.bootstrap import get_container
from chalicelib.services.admin import AdminService

admin = Blueprint(__name__)
ANY_BODY = ["application/json", "application/x-www-form-urlencoded", "text/plain"]


def _service() -> AdminService:
    c = get_container()
    return AdminService(c.store, c.clock, c.settings)


@admin.route("/api/supervisor/state", methods=["GET"])
@api_errors
def supervisor_state() -> Response:
    return json_response(_service().state().to_dict())


@admin.route("/api/supervisor/halt", methods=["POST"], content_types=ANY_BODY)
@api_errors
def supervisor_halt() -> Response:
    params = admin.current_request.query_params
    reason = params.get("reason") if params else None
    return json_response(_service().halt(reason).to_dict())


@admin.route("/api/supervisor/restart", methods=["POST"], content_types=ANY_BODY)
@api_errors
def supervisor_restart() -> Response:
    return json_response(_service().restart().to_dict())
