"""Teraslice's execution routes (seed 001): /ex, and the control of a job's current
execution under /jobs/{job_id}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalice.app import Request, Response

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.logs import LogLevel
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import slice_id_for
from chalicelib.entrypoints.http.errors import json_response, query_bool, query_int, query_number
from chalicelib.entrypoints.http.identity import scoped
from chalicelib.entrypoints.http.listing import parse_statuses, parse_window
from chalicelib.entrypoints.http.routing import BODY_TYPES, Routes, View, query
from chalicelib.entrypoints.http.views import ex_view, log_entry_view, slice_view
from chalicelib.services.executions import ExecutionService
from chalicelib.services.runlogs import MAX_PAGE

routes = Routes()
# what a control route acts on: an execution by its id, or a job's current one
TARGETS = (("jobs", "job_id"), ("ex", "ex_id"))


def _executions(request: Request) -> ExecutionService:
    """Execution control on behalf of the request's caller."""
    return scoped(request).executions


@routes("/ex")
def list_ex(request: Request) -> Response:
    q = query(request)
    start, size, sort = parse_window(q)
    runs = _executions(request).listing(
        parse_statuses(q), query_bool(q, "deleted", False), sort, start, size
    )
    return json_response([ex_view(r) for r in runs])


@routes("/ex/errors")
def all_ex_errors(request: Request) -> Response:
    start, size, sort = parse_window(query(request))
    errors = _executions(request).all_errors(sort, start, size)
    return json_response([slice_view(sl, job_id) for sl, job_id in errors])


@routes("/ex/{ex_id}")
def get_ex(request: Request, ex_id: str) -> Response:
    return json_response(ex_view(scoped(request).jobs.get_run_by_ex(ex_id)))


def _paged(request: Request, items: list[dict[str, Any]]) -> Response:
    """Teraslice's from / size / sort (`_updated:desc` by default; `_created` too)."""
    start, size, sort = parse_window(query(request))
    key = "_created" if sort.field == "created" else "_updated"
    ordered = sorted(items, key=lambda i: i[key] or "", reverse=not sort.ascending)
    return json_response(ordered[start : start + size])


@routes("/ex/{ex_id}/slices")
def ex_slices(request: Request, ex_id: str) -> Response:
    ex = _executions(request)
    run = ex.by_ex(ex_id)
    slices = ex.slices(run, query(request).get("state"))
    return _paged(request, [slice_view(s, run.job_id) for s in slices])


@routes("/ex/{ex_id}/errors")
def ex_errors(request: Request, ex_id: str) -> Response:
    ex = _executions(request)
    run = ex.by_ex(ex_id)
    return _paged(request, [slice_view(s, run.job_id) for s in ex.errors([run])])


@routes("/jobs/{job_id}/errors")
def job_errors(request: Request, job_id: str) -> Response:
    errors = scoped(request).job_errors.of_job(job_id)
    return _paged(request, [slice_view(s, job_id) for s in errors])


# ---- control: on an execution, or on a job's current one ----
def _control(request: Request, ex: ExecutionService, run: Run, action: str) -> Response:
    q = query(request)
    if action == "_stop":
        timeout = query_number(q, "timeout", None)
        return json_response(ex.stop(run, timeout, query_bool(q, "blocking", True)))
    if action == "_pause":
        return json_response(ex.pause(run))
    if action == "_resume":
        return json_response(ex.resume(run))
    counts = {k: query_int(q, k) for k in ("add", "remove", "total")}
    return json_response(ex.workers(run, **counts))


def _target(ex: ExecutionService, kind: str, key: str) -> Run:
    return ex.current_of(key) if kind == "jobs" else ex.by_ex(key)


def _control_view(kind: str, key: str, action: str) -> View:
    """POST /{kind}/{key}/{action}, e.g. /jobs/{job_id}/_stop, with its own view name."""

    def view(request: Request, **params: str) -> Response:
        ex = _executions(request)
        return _control(request, ex, _target(ex, kind, params[key]), action)

    view.__name__ = f"{kind}{action}"
    return view


for _kind, _key in TARGETS:
    for _action in ("_stop", "_pause", "_resume", "_workers"):
        routes(f"/{_kind}/{{{_key}}}/{_action}", ("POST",), BODY_TYPES)(
            _control_view(_kind, _key, _action)
        )


@routes("/ex/{ex_id}/_recover", ("POST",), BODY_TYPES)
def recover_ex(request: Request, ex_id: str) -> Response:
    ex = _executions(request)
    run = ex.by_ex(ex_id)
    fresh = ex.recover(run, query(request).get("cleanup_type") or None, run.config)
    return json_response({"ex_id": fresh.ex_id, "job_id": fresh.job_id}, 202)


@routes("/jobs/{job_id}/_recover", ("POST",), BODY_TYPES)
def recover_job(request: Request, job_id: str) -> Response:
    c = scoped(request)
    run = c.executions.current_of(job_id)
    config = c.jobs.get(job_id).definition
    fresh = c.executions.recover(run, query(request).get("cleanup_type") or None, config)
    return json_response({"ex_id": fresh.ex_id, "job_id": fresh.job_id}, 202)


@routes("/ex/{ex_id}/_resolve", ("POST",), BODY_TYPES)
def resolve_ex(request: Request, ex_id: str) -> Response:
    ex = _executions(request)
    return json_response(ex.resolve(ex.by_ex(ex_id), query(request).get("action")))


def _log_level(raw: str | None) -> LogLevel | None:
    if not raw:
        return None
    try:
        return LogLevel(raw.lower())
    except ValueError:
        known = ", ".join(level.value for level in LogLevel)
        reason = f"expected one of {known}, got {raw!r}"
        raise InvalidInput(f"level: {reason}", [{"field": "level", "reason": reason}]) from None


def _log_size(q: Mapping[str, str]) -> int:
    size = query_int(q, "size")
    if size is None:
        return 100
    if not 1 <= size <= MAX_PAGE:
        reason = f"expected 1 to {MAX_PAGE}, got {size}"
        raise InvalidInput(f"size: {reason}", [{"field": "size", "reason": reason}])
    return size


@routes("/ex/{ex_id}/logs")
def ex_logs(request: Request, ex_id: str) -> Response:
    """The execution's run log, oldest first, a page at a time: `next_token` goes on from
    the page's end (and, at the log's end, is the token to poll with for new lines)."""
    q = query(request)
    run = _executions(request).by_ex(ex_id)
    slice_id = q.get("slice") or None
    if slice_id is not None and slice_id.isdigit():
        slice_id = slice_id_for(int(slice_id))
    page = scoped(request).run_logs.read(
        run, slice_id, _log_level(q.get("level")), q.get("token") or None, _log_size(q)
    )
    return json_response(
        {
            "ex_id": run.ex_id,
            "status": run.status.value,
            "entries": [log_entry_view(e) for e in page.entries],
            "next_token": page.next_token,
        }
    )
