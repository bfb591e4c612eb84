"""OpenSpecimen's /scheduled-jobs routes and Lens' stats, through chalice.test.Client on moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest
from chalice.test import Client

from chalicelib.adapters.dynamodb.counting import counting
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.transitions import ExStatus, JobState
from chalicelib.ports import FakeClock, Page
from chalicelib.services.entry import PreparedStart
from tests.clients import SignedClient
from tests.conftest import T0, drain
from tests.helpers import start_due

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

ECHO = [{"_op": "noop"}, {"_op": "echo"}]
FAIL = [{"_op": "noop"}, {"_op": "fail", "slices": [0]}]
RATE = {"rate": "rate(1 minute)"}


@pytest.fixture
def client(admin_client: SignedClient) -> SignedClient:
    """These tests read the jobs of several owners (alice, bob), submitted through the
    services: as an admin, who sees them all."""
    return admin_client


def _job(container: Container, start: bool = False, **kw: Any) -> str:
    body: dict[str, Any] = {"name": "j", "operations": ECHO}
    body.update(kw)
    job, _ = container.jobs.submit(body, start=start)
    return job.job_id


def _run_now(client: Client, job_id: str, body: object = None, raw: str | None = None) -> Any:
    if raw is None and body is not None:
        raw = json.dumps(body)
    return client.http.post(
        f"/scheduled-jobs/{job_id}/runs",
        body=raw or "",
        headers={"Content-Type": "application/json"},
    )


def _runs(client: Client, job_id: str, query: str = "") -> Any:
    r = client.http.get(f"/scheduled-jobs/{job_id}/runs{'?' + query if query else ''}")
    assert r.status_code == 200, r.body
    return r.json_body


def _ids(runs: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in runs]


def _at(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()


def _assert_400(r: Any, field: str) -> None:
    assert r.status_code == 400, r.body
    assert r.json_body["error"] == "invalid_input"
    assert field in [e["field"] for e in r.json_body["errors"]], r.json_body
    assert r.json_body["message"].startswith(field)


# ---- running on demand ------------------------------------------------------------------
def test_on_demand_run_passes_its_args_to_the_processor(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    job_id = _job(container, name="echoer")
    r = _run_now(client, job_id, {"args": "a 'b c' d"})
    assert r.status_code == 202, r.body
    run = r.json_body
    assert r.headers["Location"] == f"/scheduled-jobs/{job_id}/runs/{run['id']}"
    assert run["scheduledJob"] == {"id": job_id, "name": "echoer"}
    assert (run["status"], run["executionStatus"], run["runBy"]) == (
        "IN_PROGRESS",
        "pending",
        "manual",
    )
    assert run["rtArgs"] == "a 'b c' d"
    assert run["startedAt"] is None and run["finishedAt"] is None
    assert set(run) >= {"id", "scheduledJob", "startedAt", "finishedAt", "status", "rtArgs"}
    assert set(run) >= {"runBy", "message", "executionStatus", "slot", "scheduledStart"}

    drain(container, queue)
    [done] = _runs(client, job_id)
    assert done["id"] == run["id"]
    assert (done["status"], done["executionStatus"], done["message"]) == (
        "SUCCEEDED",
        "completed",
        None,
    )
    assert done["startedAt"] == done["finishedAt"] == "2027-01-15T08:00:00.000Z"
    assert client.http.get(f"/scheduled-jobs/{job_id}/runs/{run['id']}").json_body == done
    out = client.http.get(f"/v1/ex/{run['id']}").json_body["result"]
    assert out == {"request": {}, "args": ["a", "b c", "d"]}
    no_file = client.http.get(f"/scheduled-jobs/{job_id}/runs/{run['id']}/result-file")
    assert no_file.status_code == 404 and no_file.json_body["reason"] == "no_result_file"


def test_a_sliced_run_hands_its_args_to_every_slice(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    job_id = _job(container, operations=[{"_op": "range", "end": 2}, {"_op": "echo"}])
    run = _run_now(client, job_id, {"args": "x y"}).json_body
    drain(container, queue)
    assert [sl.result for sl in container.store.list_slices(run["id"])] == [
        {"request": {"start": 0, "end": 1}, "args": ["x", "y"]},
        {"request": {"start": 1, "end": 2}, "args": ["x", "y"]},
    ]


@pytest.mark.parametrize("raw", ["", "{}", '{"args": null}'])
def test_args_are_optional(
    client: Client, container: Container, queue: MemoryQueue, raw: str
) -> None:
    job_id = _job(container)
    r = _run_now(client, job_id, raw=raw)
    assert r.status_code == 202, r.body
    assert r.json_body["rtArgs"] is None
    drain(container, queue)
    run_id = r.json_body["id"]
    result = client.http.get(f"/v1/ex/{run_id}").json_body["result"]
    assert result == {"request": {}, "args": []}


def test_a_second_run_while_one_is_active_is_409_and_unknown_jobs_404(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    job_id = _job(container)
    assert _run_now(client, job_id, {"args": "1"}).status_code == 202
    r = _run_now(client, job_id, {"args": "2"})
    assert r.status_code == 409 and r.json_body["error"] == "conflict"
    assert [run["rtArgs"] for run in _runs(client, job_id)] == ["1"]
    drain(container, queue)
    assert _run_now(client, job_id, {"args": "3"}).status_code == 202  # the slot is free again
    assert _run_now(client, "no-such-job", {"args": "x"}).status_code == 404
    for path in ("", "/runs", "/stats", "/runs/nope", "/runs/nope/result-file"):
        assert client.http.get(f"/scheduled-jobs/no-such-job{path}").status_code == 404, path
    assert client.http.get(f"/scheduled-jobs/{job_id}/runs/nope").status_code == 404


@pytest.mark.parametrize(
    "raw, field",
    [
        ('{"args": 5}', "args"),
        ('{"args": ["a", "b"]}', "args"),
        ('{"args": true}', "args"),
        ('{"args": {"a": 1}}', "args"),
        ('{"args": "' + "x" * 8193 + '"}', "args"),
        ("{not json", "body"),
        ("[1, 2]", "body"),
        ('"a b c"', "body"),
        ('{"arg": "a b"}', "arg"),
    ],
)
def test_bad_run_requests_are_400_naming_the_field_and_start_nothing(
    client: Client, container: Container, queue: MemoryQueue, raw: str, field: str
) -> None:
    job_id = _job(container)
    _assert_400(_run_now(client, job_id, raw=raw), field)
    assert _runs(client, job_id) == [] and queue.messages == []


# ---- a job with every kind of record ----------------------------------------------------
@pytest.fixture
def mixed(container: Container, queue: MemoryQueue, clock: FakeClock) -> dict[str, str]:
    """A job scheduled every minute (overlap skip): the 08:01 run completes, the 08:02 slot
    is skipped (08:01 still running at its second), an on-demand run at 08:02:10 is in
    progress; and a job whose runs fail."""
    job_id = _job(container, start=True, name="mixed", owner="alice", schedule=RATE)
    clock.t = T0 + 56
    assert container.supervisor.tick().runs_created == 1
    [first] = queue.take()
    clock.t = T0 + 58  # its start message arrives two seconds early
    prepared = container.worker.prepare_start(job_id, first.body["slot"])
    assert isinstance(prepared, PreparedStart)
    assert prepared.enter is None  # claimed ahead with the job's slot: nothing else could run
    running = prepared  # 08:01, claimed, not finished
    clock.t = T0 + 116
    assert container.supervisor.tick().runs_created == 1
    assert start_due(container, queue, clock, T0 + 120) == ["skipped"]
    clock.t = T0 + 121
    assert container.worker.run_prepared(running) == "completed"
    clock.t = T0 + 130
    failing = _job(container, name="failing", owner="alice", operations=FAIL, max_retries=0)
    failed = container.jobs.start_run(failing, args="x")
    drain(container, queue)
    in_progress = container.jobs.start_run(job_id, args="now")  # left pending
    runs = container.store.list_runs(job_id)
    by_status = {r.status: r.ex_id for r in runs}
    return {
        "job": job_id,
        "completed": by_status[ExStatus.completed],
        "skipped": by_status[ExStatus.skipped],
        "in_progress": in_progress.ex_id,
        "failing": failing,
        "failed": failed.ex_id,
    }


def test_runs_are_listed_newest_first_with_ledger_records(
    client: Client, container: Container, queue: MemoryQueue, mixed: dict[str, str]
) -> None:
    runs = _runs(client, mixed["job"])
    assert _ids(runs) == [mixed["in_progress"], mixed["skipped"], mixed["completed"]]
    created = [r["createdAt"] for r in runs]
    assert created == sorted(created, reverse=True)
    skipped = runs[1]
    assert (skipped["status"], skipped["executionStatus"], skipped["message"]) == (
        "SKIPPED",
        "skipped",
        "overlap",
    )
    assert skipped["runBy"] == "schedule" and skipped["startedAt"] is None
    assert skipped["scheduledStart"] == "2027-01-15T08:02:00.000Z"
    scheduled = runs[2]
    assert (scheduled["status"], scheduled["runBy"], scheduled["slot"]) == (
        "SUCCEEDED",
        "schedule",
        "2027-01-15T08:01:00Z",
    )
    ledger = client.http.get(f"/scheduled-jobs/{mixed['job']}/runs/{mixed['skipped']}")
    assert ledger.status_code == 200 and ledger.json_body == skipped
    r = client.http.get(f"/scheduled-jobs/{mixed['job']}/runs/{mixed['skipped']}/result-file")
    assert r.status_code == 404  # a skipped slot produced nothing


def test_a_failed_run_is_failed_with_its_error(client: Client, mixed: dict[str, str]) -> None:
    [run] = _runs(client, mixed["failing"])
    assert run["id"] == mixed["failed"]
    assert (run["status"], run["executionStatus"], run["rtArgs"]) == ("FAILED", "failed", "x")
    assert "injected failure" in run["message"]
    assert run["finishedAt"] is not None


STATUS_FILTERS = {
    "IN_PROGRESS": ["in_progress"],
    "SUCCEEDED": ["completed"],
    "FAILED": [],
    "SKIPPED": ["skipped"],
    "MISSED": [],
    "in_progress": ["in_progress"],  # case does not matter
    "": ["in_progress", "skipped", "completed"],  # empty: as if not given
}


def test_each_status_filter(client: Client, mixed: dict[str, str]) -> None:
    for status, expected in STATUS_FILTERS.items():
        got = _runs(client, mixed["job"], f"status={status}")
        assert _ids(got) == [mixed[k] for k in expected], status
        assert {r["status"] for r in got} <= {status.upper()} or not status


def test_failed_filter_selects_failed_runs_only(client: Client, mixed: dict[str, str]) -> None:
    assert _ids(_runs(client, mixed["failing"], "status=FAILED")) == [mixed["failed"]]
    for status in ("IN_PROGRESS", "SUCCEEDED", "SKIPPED", "MISSED"):
        assert _runs(client, mixed["failing"], f"status={status}") == []


def test_stopped_runs_are_failed_and_missed_slots_are_listed(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    """A suspended job's slots are MISSED on resumption; a stopped run is FAILED."""
    job_id = _job(container, start=True, schedule=RATE, catchup="none")
    container.jobs.suspend(job_id)
    clock.t = T0 + 300
    container.jobs.schedule(job_id)  # resumes with next_fire_at 08:01: four slots went by
    container.supervisor.tick()
    missed = _runs(client, job_id, "status=MISSED")
    # catchup none: 08:04, within the grace, is missed too
    slots = [r["scheduledStart"][11:19] for r in missed]
    assert slots == ["08:04:00", "08:03:00", "08:02:00", "08:01:00"]
    assert {(r["executionStatus"], r["message"]) for r in missed} == {("missed", "suspended")}
    other = _job(container, overlap="allow")
    run = container.jobs.start_run(other)
    assert container.worker.stop_runs(other, [run.slot], clock.now(), "by hand") == 1
    [stopped] = _runs(client, other, "status=FAILED")
    assert (stopped["executionStatus"], stopped["message"]) == ("stopped", "stopped: by hand")
    assert _runs(client, other, "status=IN_PROGRESS") == []


# ---- dates ------------------------------------------------------------------------------
@pytest.fixture
def dated(container: Container, queue: MemoryQueue, clock: FakeClock) -> dict[str, str]:
    """Runs created at 2027-01-15T08:00:00, 2027-01-16T06:15:00 and 2027-01-17T00:00:00."""
    job_id = _job(container, overlap="allow")
    out = {"job": job_id}
    for name, at in (
        ("r1", "2027-01-15T08:00:00"),
        ("r2", "2027-01-16T06:15:00"),
        ("r3", "2027-01-17T00:00:00"),
    ):
        clock.t = _at(at)
        out[name] = container.jobs.start_run(job_id).ex_id
    drain(container, queue)
    return out


DATE_QUERIES = {
    "": ["r3", "r2", "r1"],
    "fromDate=20270116": ["r3", "r2"],
    "fromDate=20270116T061500": ["r3", "r2"],  # inclusive
    "fromDate=20270116T061501": ["r3"],
    "toDate=20270116": ["r1"],  # a date is that day's 00:00 UTC
    "toDate=20270116T061500": ["r2", "r1"],  # inclusive
    "toDate=20270117": ["r3", "r2", "r1"],
    "fromDate=20270115T080001&toDate=20270116T235959": ["r2"],
    "fromDate=20270116&toDate=20270116": [],
    "fromDate=20270117&toDate=20270117": ["r3"],
    "fromDate=&toDate=": ["r3", "r2", "r1"],  # empty: as if not given
}


def test_both_date_forms(client: Client, dated: dict[str, str]) -> None:
    for query, expected in DATE_QUERIES.items():
        assert _ids(_runs(client, dated["job"], query)) == [dated[k] for k in expected], query


def test_dates_default_to_all_time_until_now(
    client: Client, clock: FakeClock, dated: dict[str, str]
) -> None:
    clock.t = _at("2027-01-16T06:15:00")  # toDate defaults to now: r3 is "in the future"
    assert _ids(_runs(client, dated["job"])) == [dated["r2"], dated["r1"]]
    clock.t = _at("2027-01-16T06:14:59")
    assert _ids(_runs(client, dated["job"])) == [dated["r1"]]
    # fromDate defaults to the earliest instant: a toDate alone reaches back to r1
    assert _ids(_runs(client, dated["job"], "toDate=20270115T080000")) == [dated["r1"]]


def test_a_from_date_after_now_without_to_date_is_an_empty_window(
    client: Client, clock: FakeClock, dated: dict[str, str]
) -> None:
    clock.t = _at("2027-01-16T06:15:00")
    job_id = dated["job"]
    for query in ("fromDate=20990101", "fromDate=20270116T061501"):
        assert _runs(client, job_id, query) == [], query
        stats = client.http.get(f"/scheduled-jobs/{job_id}/stats?{query}")
        assert stats.status_code == 200 and stats.json_body["total"] == 0, stats.body
        everyone = client.http.get(f"/scheduled-jobs/stats?{query}")
        assert everyone.status_code == 200, everyone.body


@pytest.mark.parametrize(
    "query, field",
    [
        ("fromDate=2027-01-16", "fromDate"),
        ("fromDate=20271316", "fromDate"),
        ("fromDate=20270116T250000", "fromDate"),
        ("fromDate=20270116T0615", "fromDate"),
        ("fromDate=1800000000", "fromDate"),
        ("toDate=yesterday", "toDate"),
        ("toDate=20270116Z", "toDate"),
        ("fromDate=20270117&toDate=20270116", "fromDate"),
        ("fromDate=20270117T000001&toDate=20270117", "toDate"),
        ("status=DONE", "status"),
        ("status=completed", "status"),
        ("maxResults=0", "maxResults"),
        ("maxResults=1001", "maxResults"),
        ("maxResults=ten", "maxResults"),
        ("next=%21%21not-a-token", "next"),
    ],
)
def test_bad_queries_are_400_naming_the_field(
    client: Client, container: Container, query: str, field: str
) -> None:
    job_id = _job(container)
    r = client.http.get(f"/scheduled-jobs/{job_id}/runs?{query}")
    assert r.status_code == 400, r.body
    assert field in [e["field"] for e in r.json_body["errors"]], r.json_body


def test_400s_say_what_is_accepted(client: Client, container: Container) -> None:
    job_id = _job(container)
    date = client.http.get(f"/scheduled-jobs/{job_id}/runs?toDate=2027").json_body
    assert "YYYYMMDD" in date["message"] and "YYYYMMDDTHHMMSS" in date["message"]
    status = client.http.get(f"/scheduled-jobs/{job_id}/runs?status=DONE").json_body
    for allowed in ("IN_PROGRESS", "SUCCEEDED", "FAILED", "SKIPPED", "MISSED"):
        assert allowed in status["message"]


# ---- paging -----------------------------------------------------------------------------
def _pages(client: Client, path: str, query: str = "") -> list[list[dict[str, Any]]]:
    """Follow the Link header from page to page."""
    pages: list[list[dict[str, Any]]] = []
    url = f"{path}?{query}"
    for _ in range(50):
        r = client.http.get(url)
        assert r.status_code == 200, r.body
        pages.append(r.json_body)
        link = r.headers.get("Link")
        if link is None:
            assert "X-Next" not in r.headers
            return pages
        target = link.split(";")[0].strip("<>")
        assert target.startswith("?") and link.endswith('rel="next"')
        assert dict(parse_qsl(target[1:]))["next"] == r.headers["X-Next"]
        url = f"{path}{target}"
    raise AssertionError("paging did not end")


def test_paging_runs_is_stable_with_no_duplicates(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job_id = _job(container, overlap="allow")
    made = []
    for i in range(7):
        if i % 2 == 0:
            clock.advance(1)  # pairs share a creation instant: ties must page cleanly too
        made.append(container.jobs.start_run(job_id, args=str(i)).ex_id)
    drain(container, queue)
    whole = _ids(_runs(client, job_id))
    assert sorted(whole) == sorted(made)
    pages = _pages(client, f"/scheduled-jobs/{job_id}/runs", "maxResults=2")
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    flat = [r["id"] for p in pages for r in p]
    assert flat == whole and len(set(flat)) == 7
    created = [r["createdAt"] for p in pages for r in p]
    assert created == sorted(created, reverse=True)
    # an exact multiple: the last page has no token (no empty page after it)
    assert [len(p) for p in _pages(client, f"/scheduled-jobs/{job_id}/runs", "maxResults=7")] == [7]


def test_paging_a_filtered_window(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job_id = _job(container, overlap="allow")
    for _ in range(5):
        clock.advance(10)
        container.jobs.start_run(job_id)
    drain(container, queue)
    clock.advance(10)
    pending = [container.jobs.start_run(job_id).ex_id for _ in range(3)]
    q = "status=SUCCEEDED&fromDate=20270115T080020&maxResults=2"
    pages = _pages(client, f"/scheduled-jobs/{job_id}/runs", q)
    flat = [r for p in pages for r in p]
    assert len(flat) == 4 and all(r["status"] == "SUCCEEDED" for r in flat)
    assert not set(_ids(flat)) & set(pending)
    pages = _pages(client, f"/scheduled-jobs/{job_id}/runs", "status=IN_PROGRESS&maxResults=2")
    assert sorted(r["id"] for p in pages for r in p) == sorted(pending)


def test_a_token_only_continues_its_own_listing(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job_id = _job(container, overlap="allow")
    other = _job(container)
    for _ in range(3):
        clock.advance(60)
        container.jobs.start_run(job_id)
    r = client.http.get(f"/scheduled-jobs/{job_id}/runs?maxResults=1")
    token = r.headers["X-Next"]
    assert client.http.get(f"/scheduled-jobs/{job_id}/runs?next={token}").status_code == 200
    # another job's runs, another window, or the jobs listing: 400 naming next
    for url in (
        f"/scheduled-jobs/{other}/runs?next={token}",
        f"/scheduled-jobs/{job_id}/runs?toDate=20270115T080100&next={token}",
        f"/scheduled-jobs?next={token}",
        f"/scheduled-jobs/{job_id}/runs?next={token[:-4]}",
    ):
        _assert_400(client.http.get(url), "next")


# ---- stats ------------------------------------------------------------------------------
def test_stats_of_one_job(client: Client, mixed: dict[str, str]) -> None:
    r = client.http.get(f"/scheduled-jobs/{mixed['job']}/stats")
    assert r.status_code == 200, r.body
    stats = r.json_body
    assert stats["scheduledJob"]["id"] == mixed["job"]
    assert stats["scheduledJob"]["scheduleState"] == "SCHEDULED"
    assert stats["total"] == 3
    assert stats["byStatus"] == {
        "IN_PROGRESS": 1,
        "SUCCEEDED": 1,
        "FAILED": 0,
        "SKIPPED": 1,
        "MISSED": 0,
    }
    assert stats["byExecutionStatus"] == {"completed": 1, "pending": 1, "skipped": 1}
    assert (stats["fromDate"], stats["toDate"]) == (None, "2027-01-15T08:02:10.000Z")
    # a window: only the 08:02 slot (created at 08:01:56) and the 08:02:10 run
    windowed = client.http.get(
        f"/scheduled-jobs/{mixed['job']}/stats?fromDate=20270115T080150&toDate=20270115T080210"
    ).json_body
    assert windowed["total"] == 2 and windowed["byStatus"]["SKIPPED"] == 1
    assert windowed["fromDate"] == "2027-01-15T08:01:50.000Z"
    failing = client.http.get(f"/scheduled-jobs/{mixed['failing']}/stats").json_body
    assert failing["byStatus"]["FAILED"] == 1 and failing["byExecutionStatus"] == {"failed": 1}
    # a state the job is not in: nothing counted
    other_state = client.http.get(f"/scheduled-jobs/{mixed['job']}/stats?state=SUSPENDED")
    assert other_state.json_body["total"] == 0 and other_state.json_body["state"] == "SUSPENDED"


def test_stats_of_a_users_jobs(client: Client, container: Container, mixed: dict[str, str]) -> None:
    bobs = _job(container, owner="bob", overlap="allow")
    container.jobs.start_run(bobs)
    r = client.http.get("/scheduled-jobs/stats?user=alice")
    assert r.status_code == 200, r.body
    body = r.json_body
    assert body["user"] == "alice" and body["next"] is None
    assert [j["scheduledJob"]["id"] for j in body["jobs"]] == [mixed["failing"], mixed["job"]]
    assert body["totals"]["total"] == 4
    assert body["totals"]["byStatus"] == {
        "IN_PROGRESS": 1,
        "SUCCEEDED": 1,
        "FAILED": 1,
        "SKIPPED": 1,
        "MISSED": 0,
    }
    scheduled = client.http.get("/scheduled-jobs/stats?user=alice&state=scheduled").json_body
    assert scheduled["state"] == "SCHEDULED"
    assert [j["scheduledJob"]["id"] for j in scheduled["jobs"]] == [mixed["job"]]
    assert scheduled["totals"]["total"] == 3
    everyone = client.http.get("/scheduled-jobs/stats").json_body
    assert {j["scheduledJob"]["id"] for j in everyone["jobs"]} == {
        mixed["job"],
        mixed["failing"],
        bobs,
    }
    assert everyone["totals"]["byStatus"]["IN_PROGRESS"] == 2
    window = client.http.get("/scheduled-jobs/stats?user=alice&toDate=20270115T080100")
    assert window.json_body["totals"]["total"] == 1  # the 08:01 scheduled run
    paged = client.http.get("/scheduled-jobs/stats?user=alice&maxResults=1")
    assert len(paged.json_body["jobs"]) == 1 and paged.headers["X-Next"]
    token = paged.json_body["next"]
    rest = client.http.get(f"/scheduled-jobs/stats?user=alice&maxResults=1&next={token}")
    assert [j["scheduledJob"]["id"] for j in rest.json_body["jobs"]] == [mixed["job"]]
    assert rest.json_body["next"] is None
    assert client.http.get("/scheduled-jobs/stats?user=nobody").json_body["jobs"] == []


@pytest.mark.parametrize(
    "query, field",
    [
        ("state=RUNNING", "state"),
        ("fromDate=today", "fromDate"),
        ("fromDate=20270116&toDate=20270115", "fromDate"),
        ("maxResults=-1", "maxResults"),
        ("next=abc", "next"),
    ],
)
def test_bad_stats_queries_are_400_naming_the_field(
    client: Client, container: Container, query: str, field: str
) -> None:
    job_id = _job(container)
    _assert_400(client.http.get(f"/scheduled-jobs/stats?user=x&{query}"), field)
    if field not in ("next", "maxResults"):  # one job's stats are not paged
        _assert_400(client.http.get(f"/scheduled-jobs/{job_id}/stats?{query}"), field)


# ---- jobs -------------------------------------------------------------------------------
def test_jobs_are_listed_newest_first_paged_and_by_owner(
    client: Client, container: Container, clock: FakeClock
) -> None:
    made = []
    for i in range(5):
        clock.advance(1)
        owner = "bob" if i % 2 else "alice"
        made.append(_job(container, start=i == 4, name=f"j{i}", owner=owner, schedule=RATE))
    pages = _pages(client, "/scheduled-jobs", "maxResults=2")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [j["id"] for p in pages for j in p] == made[::-1]
    job = pages[0][0]
    assert (job["id"], job["name"], job["owner"], job["createdBy"]) == (
        made[4],
        "j4",
        "alice",
        "alice",
    )
    assert job["scheduleState"] == "SCHEDULED" and job["nextFireAt"] == "2027-01-15T08:01:05.000Z"
    assert job["schedule"] == {"rate": "rate(1 minute)", "timezone": "UTC"}
    assert job["overlap"] == "skip"
    assert job["job_id"] == made[4] and job["_context"] == "job"  # Teraslice's fields too
    assert client.http.get(f"/scheduled-jobs/{made[4]}").json_body == job
    bobs = _pages(client, "/scheduled-jobs", "owner=bob&maxResults=1")
    assert [j["id"] for p in bobs for j in p] == [made[3], made[1]]
    new = _pages(client, "/scheduled-jobs", "owner=alice&state=NEW")
    assert [j["id"] for p in new for j in p] == [made[2], made[0]]
    assert _pages(client, "/scheduled-jobs", "owner=carol") == [[]]
    _assert_400(client.http.get("/scheduled-jobs?state=ACTIVE"), "state")
    _assert_400(client.http.get("/scheduled-jobs?maxResults=x"), "maxResults")
    bob_token = client.http.get("/scheduled-jobs?owner=bob&maxResults=1").headers["X-Next"]
    _assert_400(client.http.get(f"/scheduled-jobs?owner=alice&next={bob_token}"), "next")


# ---- the store: indexes, never a scan ---------------------------------------------------
@pytest.mark.moto  # measures DynamoDB
def test_listings_query_indexes_and_never_scan(container: Container, clock: FakeClock) -> None:
    store = container.store
    ids = []
    for i in range(4):
        clock.advance(1)
        ids.append(_job(container, owner="ann" if i % 2 else "ben", overlap="allow"))
    for _ in range(3):
        clock.advance(1)
        container.jobs.start_run(ids[0])
    with counting() as c:
        jobs, nxt = store.list_jobs(Page(3))
        rest, end = store.list_jobs(Page(3, nxt))
        anns, _ = store.jobs_by_owner("ann")
        scheduled, _ = store.list_jobs(state=JobState.SCHEDULED)
        runs, _ = store.runs_created_between(ids[0], None, clock.now(), None, Page(2))
        pending, _ = store.runs_created_between(ids[0], T0, None, {ExStatus.pending}, Page(10))
        counts = store.count_runs_by_status(ids[0], None, None)
    assert c.calls["Scan"] == 0
    # 7 index queries, and the table's newest runs for the page ending at now (the global
    # job-created index is eventually consistent; the other two windows have no end); each
    # page of runs is read from the table with one BatchGetItem (the index projects status)
    assert c.calls["Query"] == 8 and c.calls["BatchGetItem"] == 2 and c.reads == 10
    assert [j.job_id for j in jobs + rest] == ids[::-1] and end is None
    assert [j.job_id for j in anns] == [ids[3], ids[1]]
    assert scheduled == []
    assert len(runs) == 2 and len(pending) == 3
    assert counts == {ExStatus.pending: 3}
    assert store.runs_created_between(ids[0], None, None, set(), Page(5)) == ([], None)
    assert store.runs_created_between(ids[0], 2.0, 1.0, None) == ([], None)
    with pytest.raises(InvalidInput):
        store.runs_created_between(ids[1], None, None, None, Page(cursor="e30"))  # "{}"
