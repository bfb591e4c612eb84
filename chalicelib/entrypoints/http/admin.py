"""The supervisor admin API (seed 000): /api/supervisor/state, halt, restart; admins only."""

from __future__ import annotations

from chalice.app import Request, Response

from chalicelib.bootstrap import get_container
from chalicelib.entrypoints.http.errors import json_response
from chalicelib.entrypoints.http.routing import Routes, query
from chalicelib.services.admin import AdminService

routes = Routes()
ANY_BODY = ["application/json", "application/x-www-form-urlencoded", "text/plain"]


def _service() -> AdminService:
    return get_container().admin


@routes("/api/supervisor/state", admin=True)
def supervisor_state(request: Request) -> Response:
    return json_response(_service().state().to_dict())


@routes("/api/supervisor/halt", ("POST",), ANY_BODY, admin=True)
def supervisor_halt(request: Request) -> Response:
    return json_response(_service().halt(query(request).get("reason")).to_dict())


@routes("/api/supervisor/restart", ("POST",), ANY_BODY, admin=True)
def supervisor_restart(request: Request) -> Response:
    return json_response(_service().restart().to_dict())
