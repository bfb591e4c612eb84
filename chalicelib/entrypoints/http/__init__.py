"""The HTTP API: one module per resource, mounted at `/v1` and at the root by `blueprints`."""

from __future__ import annotations

from chalice.app import Blueprint

from chalicelib.entrypoints.http import (
    admin,
    agents,
    assets,
    cluster,
    executions,
    jobs,
    notifications,
    openapi,
    scheduled_jobs,
)
from chalicelib.entrypoints.http.routing import Routes

# Teraslice's API (seed 001) and the supervisor admin, served under /v1 and again without it
VERSIONED: tuple[Routes, ...] = (
    cluster.routes,
    jobs.routes,
    executions.routes,
    assets.routes,
    openapi.routes,
    admin.routes,
    agents.routes,
    notifications.routes,
)
# OpenSpecimen's scheduled jobs (seed 004) and the supervisor admin at its seed's (000)
# /api/supervisor: root only
ROOT_ONLY: tuple[Routes, ...] = (scheduled_jobs.routes, admin.seed_routes)


def blueprints() -> list[tuple[Blueprint, str | None]]:
    """(blueprint, url prefix) pairs for `Chalice.register_blueprint`."""
    mounts = [("cadenza_v1", "/v1", VERSIONED), ("cadenza_root", None, VERSIONED + ROOT_ONLY)]
    out: list[tuple[Blueprint, str | None]] = []
    for name, prefix, resources in mounts:
        bp = Blueprint(name)
        for routes in resources:
            routes.mount(bp)
        out.append((bp, prefix))
    return out
