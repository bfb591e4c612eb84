"""Teraslice-style routes (seed 001): /v1/jobs and /v1/ex, also served without /v1."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from chalice.app import Blueprint, Response

from chalicelib.api.cluster import state_view, stats_response
from chalicelib.api.errors import (
    JSON,
    api_errors,
    json_response,
    parse_json_body,
    query_bool,
    query_int,
    query_number,
)
from chalicelib.api.listing import parse_ex_fields, parse_statuses, parse_window, pick
from chalicelib.api.openapi import document_json
from chalicelib.api.views import controller_view, ex_view, job_view, slice_view
from chalicelib.bootstrap import get_container
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.timefmt import iso
from chalicelib.domain.transitions import TERMINAL_EX

# Teraslice's own examples post with `curl -d @job.json`, i.e. as a form: accept the body
# whatever its declared type and parse it as JSON.
BODY_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/octet-stream",
]


def _version() -> str:
    try:
        return version("cadenza")
    except PackageNotFoundError:
        return "0+unknown"


def _register_control(
    bp: Blueprint,
    kind: str,
    key: str,
    action: str,
    control: Callable[[str, str, str], Response],
) -> None:
    """One control route, e.g. POST /jobs/{job_id}/_stop, with its own view name."""

    def view(**params: str) -> Response:
        return control(kind, params[key], action)

    view.__name__ = f"{kind}{action}"
    bp.route(f"/{kind}/{{{key}}}/{action}", methods=["POST"], content_types=BODY_TYPES)(
        api_errors(view)
    )


def make_blueprint(import_name: str) -> Blueprint:
    """A blueprint with every v1 route; registered once under /v1 and once at the root."""
    bp = Blueprint(import_name)

    def request_body() -> Any:
        return parse_json_body(bp.current_request.raw_body)

    @bp.route("/", methods=["GET"])
    @api_errors
    def system_info() -> Response:
        settings = get_container().settings
        return json_response(
            {
                "name": "cadenza",
                "cadenza_version": _version(),
                "clustering_type": "serverless",
                "platform": sys.platform,
                "arch": platform.machine(),
                "python_version": platform.python_version(),
                "stage": settings.stage,
                "backend": os.environ.get("CADENZA_BACKEND", "aws"),
            }
        )

    @bp.route("/openapi.json", methods=["GET"])
    @api_errors
    def openapi() -> Response:
        return Response(body=document_json(), status_code=200, headers=JSON)

    @bp.route("/jobs", methods=["POST"], content_types=BODY_TYPES)
    @api_errors
    def submit_job() -> Response:
        start = query_bool(bp.current_request.query_params, "start", False)
        job, run = get_container().jobs.submit(request_body(), start)
        body: dict[str, Any] = {"job_id": job.job_id}
        if run is not None:
            body["ex_id"] = run.ex_id
        if job.next_fire_at is not None:
            body["schedule_state"] = str(job.state)
            body["next_fire_at"] = job_view(job)["next_fire_at"]
        return json_response(body, 201 if run is None else 202)

    def _with_ex(job: Job, fields: list[str] | None) -> dict[str, Any]:
        """The job document, with `ex` (its current execution's fields) when asked."""
        doc = job_view(job)
        if fields is not None:
            run = get_container().jobs.current_or_none(job)
            doc["ex"] = {} if run is None else pick(ex_view(run), fields)
        return doc

    @bp.route("/jobs", methods=["GET"])
    @api_errors
    def list_jobs() -> Response:
        q = _query()
        start, size, sort = parse_window(q)
        raw_active = q.get("active")
        active = None if raw_active in (None, "") else query_bool(q, "active", True)
        deleted = query_bool(q, "deleted", False)
        fields = parse_ex_fields(q)
        jobs = get_container().jobs.listing(deleted, active, sort, start, size)
        return json_response([_with_ex(job, fields) for job in jobs])

    @bp.route("/jobs/{job_id}", methods=["GET"])
    @api_errors
    def get_job(job_id: str) -> Response:
        job = get_container().jobs.document(job_id)
        return json_response(_with_ex(job, parse_ex_fields(_query())))

    @bp.route("/jobs/{job_id}", methods=["PUT"], content_types=BODY_TYPES)
    @api_errors
    def update_job(job_id: str) -> Response:
        return json_response(job_view(get_container().jobs.update(job_id, request_body())))

    @bp.route("/jobs/{job_id}", methods=["DELETE"])
    @api_errors
    def delete_job(job_id: str) -> Response:
        return json_response(job_view(get_container().jobs.delete(job_id)))

    @bp.route("/jobs/{job_id}/_active", methods=["POST"], content_types=BODY_TYPES)
    @api_errors
    def activate_job(job_id: str) -> Response:
        return json_response(job_view(get_container().jobs.set_active(job_id, True)))

    @bp.route("/jobs/{job_id}/_inactive", methods=["POST"], content_types=BODY_TYPES)
    @api_errors
    def deactivate_job(job_id: str) -> Response:
        return json_response(job_view(get_container().jobs.set_active(job_id, False)))

    @bp.route("/ex", methods=["GET"])
    @api_errors
    def list_ex() -> Response:
        q = _query()
        start, size, sort = parse_window(q)
        runs = get_container().executions.listing(
            parse_statuses(q), query_bool(q, "deleted", False), sort, start, size
        )
        return json_response([ex_view(r) for r in runs])

    @bp.route("/ex/errors", methods=["GET"])
    @api_errors
    def all_ex_errors() -> Response:
        start, size, sort = parse_window(_query())
        errors = get_container().executions.all_errors(sort, start, size)
        return json_response([slice_view(sl, job_id) for sl, job_id in errors])

    @bp.route("/jobs/{job_id}/ex", methods=["GET"])
    @api_errors
    def get_job_ex(job_id: str) -> Response:
        return json_response(ex_view(get_container().jobs.latest_run(job_id)))

    @bp.route("/jobs/{job_id}/_start", methods=["POST"], content_types=BODY_TYPES)
    @api_errors
    def start_job(job_id: str) -> Response:
        run = get_container().jobs.start_run(job_id)
        return json_response({"job_id": job_id, "ex_id": run.ex_id}, 202)

    # Lens schedule states: repeating a transition in effect is a no-op, an illegal one 409
    @bp.route("/jobs/{job_id}/_schedule", methods=["POST"], content_types=BODY_TYPES)
    @api_errors
    def schedule_job(job_id: str) -> Response:
        return json_response(job_view(get_container().jobs.schedule(job_id)))

    @bp.route("/jobs/{job_id}/_suspend", methods=["POST"], content_types=BODY_TYPES)
    @api_errors
    def suspend_job(job_id: str) -> Response:
        return json_response(job_view(get_container().jobs.suspend(job_id)))

    @bp.route("/jobs/{job_id}/_expire", methods=["POST"], content_types=BODY_TYPES)
    @api_errors
    def expire_job(job_id: str) -> Response:
        return json_response(job_view(get_container().jobs.expire(job_id)))

    # ---- execution control: on an execution, or on a job's current one ----
    def _target(kind: str, key: str) -> Run:
        ex = get_container().executions
        return ex.current_of(key) if kind == "jobs" else ex.by_ex(key)

    def _query() -> Mapping[str, str]:
        return bp.current_request.query_params or {}

    def _control(kind: str, key: str, action: str) -> Response:
        ex = get_container().executions
        run = _target(kind, key)
        q = _query()
        if action == "_stop":
            timeout = query_number(q, "timeout", None)
            return json_response(ex.stop(run, timeout, query_bool(q, "blocking", True)))
        if action == "_pause":
            return json_response(ex.pause(run))
        if action == "_resume":
            return json_response(ex.resume(run))
        counts = {k: query_int(q, k) for k in ("add", "remove", "total")}
        return json_response(ex.workers(run, **counts))

    for kind, key in (("jobs", "job_id"), ("ex", "ex_id")):
        for action in ("_stop", "_pause", "_resume", "_workers"):
            _register_control(bp, kind, key, action, _control)

    # ---- controllers, slices, errors (Teraslice) ----
    def _live(runs: list[Run]) -> list[dict[str, Any]]:
        return [controller_view(r) for r in runs if r.status not in TERMINAL_EX]

    @bp.route("/cluster/controllers", methods=["GET"])
    @api_errors
    def cluster_controllers() -> Response:
        return json_response(_live(get_container().store.live_runs()))

    @bp.route("/cluster/state", methods=["GET"])
    @api_errors
    def cluster_state() -> Response:
        c = get_container()
        return json_response(state_view(c.cluster.state(), c.settings))

    @bp.route("/cluster/stats", methods=["GET"])
    @api_errors
    def cluster_stats() -> Response:
        c = get_container()
        accept = bp.current_request.headers.get("accept")
        return stats_response(c.cluster.stats(), c.settings, accept)

    @bp.route("/jobs/{job_id}/controller", methods=["GET"])
    @api_errors
    def job_controller(job_id: str) -> Response:
        return json_response(_live([get_container().executions.current_of(job_id)]))

    @bp.route("/ex/{ex_id}/controller", methods=["GET"])
    @api_errors
    def ex_controller(ex_id: str) -> Response:
        return json_response(_live([get_container().executions.by_ex(ex_id)]))

    @bp.route("/ex/{ex_id}/slices", methods=["GET"])
    @api_errors
    def ex_slices(ex_id: str) -> Response:
        ex = get_container().executions
        run = ex.by_ex(ex_id)
        params = bp.current_request.query_params
        slices = ex.slices(run, params.get("state") if params else None)
        return json_response(_paged([slice_view(s, run.job_id) for s in slices]))

    @bp.route("/ex/{ex_id}/errors", methods=["GET"])
    @api_errors
    def ex_errors(ex_id: str) -> Response:
        ex = get_container().executions
        run = ex.by_ex(ex_id)
        return json_response(_paged([slice_view(s, run.job_id) for s in ex.errors([run])]))

    @bp.route("/jobs/{job_id}/errors", methods=["GET"])
    @api_errors
    def job_errors(job_id: str) -> Response:
        c = get_container()
        c.jobs.get(job_id)
        runs = c.store.list_runs(job_id, limit=1000)
        return json_response(_paged([slice_view(s, job_id) for s in c.executions.errors(runs)]))

    def _paged(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Teraslice's from / size / sort (`_updated:desc` by default; `_created` too)."""
        start, size, sort = parse_window(_query())
        key = "_created" if sort.field == "created" else "_updated"
        ordered = sorted(items, key=lambda i: i[key] or "", reverse=not sort.ascending)
        return ordered[start : start + size]

    @bp.route("/alerts", methods=["GET"])
    @api_errors
    def alerts() -> Response:
        """Hanging runs and slices the supervisor gave up on, newest first."""
        size = query_int(_query(), "size")
        size = 100 if size is None else max(1, min(size, 1000))
        return json_response(
            [
                {**asdict(a), "created": iso(a.created)}
                for a in get_container().store.list_alerts(limit=size)
            ]
        )

    @bp.route("/ex/{ex_id}/_recover", methods=["POST"], content_types=BODY_TYPES)
    @api_errors
    def recover_ex(ex_id: str) -> Response:
        ex = get_container().executions
        run = ex.by_ex(ex_id)
        fresh = ex.recover(run, _query().get("cleanup_type") or None, run.config)
        return json_response({"ex_id": fresh.ex_id, "job_id": fresh.job_id}, 202)

    @bp.route("/jobs/{job_id}/_recover", methods=["POST"], content_types=BODY_TYPES)
    @api_errors
    def recover_job(job_id: str) -> Response:
        c = get_container()
        run = c.executions.current_of(job_id)
        config = c.jobs.get(job_id).definition
        fresh = c.executions.recover(run, _query().get("cleanup_type") or None, config)
        return json_response({"ex_id": fresh.ex_id, "job_id": fresh.job_id}, 202)

    @bp.route("/ex/{ex_id}/_resolve", methods=["POST"], content_types=BODY_TYPES)
    @api_errors
    def resolve_ex(ex_id: str) -> Response:
        ex = get_container().executions
        params = bp.current_request.query_params
        action = params.get("action") if params else None
        return json_response(ex.resolve(ex.by_ex(ex_id), action))

    @bp.route("/ex/{ex_id}", methods=["GET"])
    @api_errors
    def get_ex(ex_id: str) -> Response:
        return json_response(ex_view(get_container().jobs.get_run_by_ex(ex_id)))

    return bp
