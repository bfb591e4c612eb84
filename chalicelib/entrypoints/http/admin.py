"""The supervisor admin API (seed 000): /supervisor/state, halt, restart; admins only.
Served at /v1/supervisor/... and /supervisor/... as every other route, and at the seed's
own /api/supervisor/... (`seed_routes`)."""

from __future__ import annotations

from chalice.app import Request, Response

from chalicelib.bootstrap import get_container
from chalicelib.entrypoints.http.errors import json_response
from chalicelib.entrypoints.http.routing import BODY_TYPES, Routes, query
from chalicelib.services.admin import AdminService

routes = Routes()


def _service() -> AdminService:
    return get_container().admin


@routes("/supervisor/state", admin=True)
def supervisor_state(request: Request) -> Response:
    return json_response(_service().state().to_dict())


@routes("/supervisor/halt", ("POST",), BODY_TYPES, admin=True)
def supervisor_halt(request: Request) -> Response:
    return json_response(_service().halt(query(request).get("reason")).to_dict())


@routes("/supervisor/restart", ("POST",), BODY_TYPES, admin=True)
def supervisor_restart(request: Request) -> Response:
    return json_response(_service().restart().to_dict())


seed_routes = routes.moved("/supervisor/", "/api/supervisor/")
