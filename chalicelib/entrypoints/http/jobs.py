"""Teraslice's job routes (seed 001) with Lens' schedule states (seed 002): /jobs."""

from __future__ import annotations

from typing import Any

from chalice.app import Request, Response

from chalicelib.bootstrap import get_container
from chalicelib.config import Limits
from chalicelib.domain.jobs import Job
from chalicelib.entrypoints.http.errors import json_response, parse_json_body, query_bool
from chalicelib.entrypoints.http.identity import scoped
from chalicelib.entrypoints.http.listing import parse_ex_fields, parse_window, pick
from chalicelib.entrypoints.http.routing import BODY_TYPES, Routes, query
from chalicelib.entrypoints.http.views import ex_view, job_view
from chalicelib.services.jobs import JobService

routes = Routes()


def _limits() -> Limits:
    return get_container().settings.limits


def _jobs(request: Request) -> JobService:
    """The job use cases on behalf of the request's caller."""
    return scoped(request).jobs


def _with_ex(jobs: JobService, job: Job, fields: list[str] | None) -> dict[str, Any]:
    """The job document, with `ex` (its current execution's fields) when asked."""
    doc = job_view(job)
    if fields is not None:
        run = jobs.current_or_none(job)
        doc["ex"] = {} if run is None else pick(ex_view(run), fields)
    return doc


@routes("/jobs", ("POST",), BODY_TYPES)
def submit_job(request: Request) -> Response:
    start = query_bool(request.query_params, "start", False)
    job, run = _jobs(request).submit(parse_json_body(request.raw_body, _limits()), start)
    body: dict[str, Any] = {"job_id": job.job_id}
    if run is not None:
        body["ex_id"] = run.ex_id
    if job.next_fire_at is not None:
        body["schedule_state"] = str(job.state)
        body["next_fire_at"] = job_view(job)["next_fire_at"]
    return json_response(body, 201 if run is None else 202)


@routes("/jobs")
def list_jobs(request: Request) -> Response:
    q = query(request)
    start, size, sort = parse_window(q)
    raw_active = q.get("active")
    active = None if raw_active in (None, "") else query_bool(q, "active", True)
    deleted = query_bool(q, "deleted", False)
    fields = parse_ex_fields(q)
    service = _jobs(request)
    jobs = service.listing(deleted, active, sort, start, size)
    return json_response([_with_ex(service, job, fields) for job in jobs])


@routes("/jobs/{job_id}")
def get_job(request: Request, job_id: str) -> Response:
    service = _jobs(request)
    job = service.document(job_id)
    return json_response(_with_ex(service, job, parse_ex_fields(query(request))))


@routes("/jobs/{job_id}", ("PUT",), BODY_TYPES)
def update_job(request: Request, job_id: str) -> Response:
    job = _jobs(request).update(job_id, parse_json_body(request.raw_body, _limits()))
    return json_response(job_view(job))


@routes("/jobs/{job_id}", ("DELETE",))
def delete_job(request: Request, job_id: str) -> Response:
    return json_response(job_view(_jobs(request).delete(job_id)))


@routes("/jobs/{job_id}/_active", ("POST",), BODY_TYPES)
def activate_job(request: Request, job_id: str) -> Response:
    return json_response(job_view(_jobs(request).set_active(job_id, True)))


@routes("/jobs/{job_id}/_inactive", ("POST",), BODY_TYPES)
def deactivate_job(request: Request, job_id: str) -> Response:
    return json_response(job_view(_jobs(request).set_active(job_id, False)))


@routes("/jobs/{job_id}/ex")
def get_job_ex(request: Request, job_id: str) -> Response:
    return json_response(ex_view(_jobs(request).latest_run(job_id)))


@routes("/jobs/{job_id}/_start", ("POST",), BODY_TYPES)
def start_job(request: Request, job_id: str) -> Response:
    run = _jobs(request).start_run(job_id)
    return json_response({"job_id": job_id, "ex_id": run.ex_id}, 202)


# Lens schedule states: repeating a transition in effect is a no-op, an illegal one 409
@routes("/jobs/{job_id}/_schedule", ("POST",), BODY_TYPES)
def schedule_job(request: Request, job_id: str) -> Response:
    return json_response(job_view(_jobs(request).schedule(job_id)))


@routes("/jobs/{job_id}/_suspend", ("POST",), BODY_TYPES)
def suspend_job(request: Request, job_id: str) -> Response:
    return json_response(job_view(_jobs(request).suspend(job_id)))


@routes("/jobs/{job_id}/_expire", ("POST",), BODY_TYPES)
def expire_job(request: Request, job_id: str) -> Response:
    return json_response(job_view(_jobs(request).expire(job_id)))
