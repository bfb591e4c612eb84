"""OpenSpecimen's scheduled-job routes (seed 004), with Apache Lens' job stats (seed 002).

    GET  /scheduled-jobs                              jobs, newest first (?owner= &state=)
    GET  /scheduled-jobs/stats                        Lens getAllJobStats (?user= &state=)
    GET  /scheduled-jobs/{jobId}                      one job
    GET  /scheduled-jobs/{jobId}/stats                Lens getJobStats (?state=)
    POST /scheduled-jobs/{jobId}/runs                 run it now: {"args": "a b c"} -> 202
    GET  /scheduled-jobs/{jobId}/runs                 its runs (?fromDate= &toDate= &status=)
    GET  /scheduled-jobs/{jobId}/runs/{runId}         one run
    GET  /scheduled-jobs/{jobId}/runs/{runId}/result-file   the CSV its csv_result op
                                                      wrote (404 no_result_file without one)

Lists are what OpenSpecimen returns, a JSON array, newest first, `maxResults` (1..1000,
default 100) at a time. When more follow, the token of the next page is in the `X-Next`
header, and a `Link: <?...&next=TOKEN>; rel="next"` header (relative to the request's
URL, so it holds behind any stage prefix) repeats the request for the next page; pass
the token back as `next=` with the same filters. The stats of a user's jobs are an object,
with the token also in its `next` field. Stats and runs filter on `fromDate` / `toDate`
(`20220221` or `20220221T061500`, UTC, both inclusive, compared with a run's creation).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from chalice.app import Request, Response

from chalicelib.bootstrap import get_container
from chalicelib.config import Limits
from chalicelib.domain.history import invalid, parse_max_results
from chalicelib.entrypoints.http.errors import parse_json_body
from chalicelib.entrypoints.http.identity import scoped
from chalicelib.entrypoints.http.routing import BODY_TYPES, Routes, query
from chalicelib.entrypoints.http.scheduled_views import (
    job_stats_view,
    run_detail,
    scheduled_job,
    user_stats_view,
)
from chalicelib.ops.csv_result import CSV_TYPE
from chalicelib.services.history import HistoryService
from chalicelib.services.results import ResultFileService

BASE = "/scheduled-jobs"
NEXT = "next"
MAX_ARGS_CHARS = 8192
RUN_FIELDS = frozenset({"args"})


def _response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        body=json.dumps(body),
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def parse_run_request(raw: str | bytes | None, limits: Limits) -> str | None:
    """The `args` of an on-demand run request. No body (or `{}`) means no arguments;
    otherwise a JSON object whose optional `args` is a string (null: none)."""
    if raw is None or not raw.strip():
        return None
    body = parse_json_body(raw, limits)
    if not isinstance(body, dict):
        raise invalid("body", 'expected a JSON object such as {"args": "a b c"}')
    unknown = sorted(set(body) - RUN_FIELDS)
    if unknown:
        raise invalid(unknown[0], "unknown field; a run request has only args")
    args = body.get("args")
    if args is None:
        return None
    if not isinstance(args, str):
        raise invalid(
            "args", f"expected a string of space separated arguments, got {type(args).__name__}"
        )
    if len(args) > MAX_ARGS_CHARS:
        raise invalid("args", f"longer than {MAX_ARGS_CHARS} characters")
    return args


routes = Routes()


def _history(request: Request) -> HistoryService:
    """The history on behalf of the request's caller."""
    return scoped(request).history


def _paged(request: Request, items: list[dict[str, Any]], nxt: str | None) -> Response:
    if nxt is None:
        return _response(items)
    params = {k: v for k, v in query(request).items() if k != NEXT}
    params[NEXT] = nxt
    return _response(items, headers={"X-Next": nxt, "Link": f'<?{urlencode(params)}>; rel="next"'})


@routes(BASE)
def list_jobs(request: Request) -> Response:
    q = query(request)
    limit = parse_max_results(q.get("maxResults"))
    jobs, nxt = _history(request).jobs(q.get("owner"), q.get("state"), limit, q.get(NEXT))
    return _paged(request, [scheduled_job(j) for j in jobs], nxt)


@routes(f"{BASE}/stats")
def all_job_stats(request: Request) -> Response:
    q = query(request)
    limit = parse_max_results(q.get("maxResults"))
    stats = _history(request).user_stats(
        q.get("user"),
        state=q.get("state"),
        from_date=q.get("fromDate"),
        to_date=q.get("toDate"),
        limit=limit,
        cursor=q.get(NEXT),
    )
    headers = {"X-Next": stats.next} if stats.next else None
    return _response(user_stats_view(stats), headers=headers)


@routes(BASE + "/{job_id}")
def get_job(request: Request, job_id: str) -> Response:
    return _response(scheduled_job(_history(request).job(job_id)))


@routes(BASE + "/{job_id}/stats")
def job_stats(request: Request, job_id: str) -> Response:
    q = query(request)
    stats = _history(request).job_stats(
        job_id, from_date=q.get("fromDate"), to_date=q.get("toDate"), state=q.get("state")
    )
    return _response(job_stats_view(stats))


@routes(BASE + "/{job_id}/runs", ("POST",), BODY_TYPES)
def run_now(request: Request, job_id: str) -> Response:
    args = parse_run_request(request.raw_body, get_container().settings.limits)
    run = scoped(request).jobs.start_run(job_id, args=args)
    location = f"{BASE}/{job_id}/runs/{run.ex_id}"
    return _response(run_detail(run), 202, {"Location": location})


@routes(BASE + "/{job_id}/runs")
def list_runs(request: Request, job_id: str) -> Response:
    q = query(request)
    limit = parse_max_results(q.get("maxResults"))
    runs, nxt = _history(request).runs(
        job_id,
        from_date=q.get("fromDate"),
        to_date=q.get("toDate"),
        status=q.get("status"),
        limit=limit,
        cursor=q.get(NEXT),
    )
    return _paged(request, [run_detail(r) for r in runs], nxt)


@routes(BASE + "/{job_id}/runs/{run_id}")
def get_run(request: Request, job_id: str, run_id: str) -> Response:
    return _response(run_detail(_history(request).run(job_id, run_id)))


@routes(BASE + "/{job_id}/runs/{run_id}/result-file")
def result_file(request: Request, job_id: str, run_id: str) -> Response:
    c = scoped(request)
    found = ResultFileService(c.history, c.files).result_file(job_id, run_id)
    return Response(
        body=found.content,
        status_code=200,
        headers={
            "Content-Type": CSV_TYPE,
            "Content-Disposition": f'attachment; filename="{run_id}.csv"',
        },
    )
