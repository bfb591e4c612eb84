"""Result files on moto: the csv_result op writes a run's output to S3, and
GET /scheduled-jobs/{jobId}/runs/{runId}/result-file downloads it as CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.ops.csv_result import combine, rows_of, to_csv
from chalicelib.ports import FakeClock
from tests.clients import ADMIN, SignedClient
from tests.conftest import drain, moto_container
from tests.conftest import test_settings as make_settings


@pytest.fixture
def env(aws: None, clock: FakeClock, queue: MemoryQueue) -> Iterator[Container]:
    settings = make_settings()
    yield from moto_container(settings, clock, queue, bucket=True)


@pytest.fixture
def client(env: Container) -> Iterator[Client]:
    with SignedClient(app, ADMIN) as c:
        yield c


def _job(env: Container, operations: list[dict[str, Any]], **kw: Any) -> str:
    job, _ = env.jobs.submit({"name": "csv", "operations": operations, **kw}, start=False)
    return job.job_id


def _run(client: Client, job_id: str, args: str | None = None) -> str:
    body = json.dumps({"args": args}) if args else ""
    r = client.http.post(
        f"/scheduled-jobs/{job_id}/runs", body=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 202, r.body
    run_id: str = r.json_body["id"]
    return run_id


def _file(client: Client, job_id: str, run_id: str) -> Any:
    return client.http.get(f"/scheduled-jobs/{job_id}/runs/{run_id}/result-file")


def test_a_sliced_run_downloads_as_one_csv(
    client: Client, env: Container, queue: MemoryQueue
) -> None:
    job_id = _job(env, [{"_op": "range", "end": 5, "size": 2}, {"_op": "csv_result"}], workers=2)
    run_id = _run(client, job_id)
    assert _file(client, job_id, run_id).status_code == 409  # still in progress
    drain(env, queue)
    r = _file(client, job_id, run_id)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"] == f'attachment; filename="{run_id}.csv"'
    assert r.body.decode() == "start,end\r\n0,2\r\n2,4\r\n4,5\r\n"
    run = env.store.get_run_by_ex(run_id)
    assert run is not None
    keys = env.files.keys(f"results/{job_id}/{run_id}/")
    assert keys == [f"results/{job_id}/{run_id}/part-{i:06d}.csv" for i in range(3)]


def test_an_inline_run_writes_nested_values_as_json(
    client: Client, env: Container, queue: MemoryQueue
) -> None:
    job_id = _job(env, [{"_op": "noop"}, {"_op": "echo"}, {"_op": "csv_result"}])
    run_id = _run(client, job_id, args="a 'b c'")
    drain(env, queue)
    r = _file(client, job_id, run_id)
    assert r.status_code == 200, r.body
    rows = list(csv.reader(io.StringIO(r.body.decode())))
    assert rows == [["request", "args"], ["{}", '["a","b c"]']]


def test_columns_choose_and_order_the_header(
    client: Client, env: Container, queue: MemoryQueue
) -> None:
    job_id = _job(
        env, [{"_op": "range", "end": 2}, {"_op": "csv_result", "columns": ["end", "missing"]}]
    )
    run_id = _run(client, job_id)
    drain(env, queue)
    assert _file(client, job_id, run_id).body.decode() == "end,missing\r\n1,\r\n2,\r\n"


def test_a_run_that_wrote_nothing_is_404_with_the_reason(
    client: Client, env: Container, queue: MemoryQueue
) -> None:
    job_id = _job(
        env,
        [{"_op": "noop"}, {"_op": "fail", "slices": [0]}, {"_op": "csv_result"}],
        max_retries=0,
    )
    run_id = _run(client, job_id)
    drain(env, queue)
    r = _file(client, job_id, run_id)
    assert r.status_code == 404
    assert r.json_body["reason"] == "no_result_file"
    assert "wrote no result file (failed)" in r.json_body["message"]


def test_unknown_jobs_and_runs_are_404(client: Client, env: Container, queue: MemoryQueue) -> None:
    job_id = _job(env, [{"_op": "noop"}, {"_op": "csv_result"}])
    run_id = _run(client, job_id)
    drain(env, queue)
    assert _file(client, job_id, run_id).status_code == 200
    unknown_job = _file(client, "no-such-job", run_id)
    assert unknown_job.status_code == 404 and "not found" in unknown_job.json_body["message"]
    unknown_run = _file(client, job_id, "no-such-run")
    assert unknown_run.status_code == 404 and "no-such-run" in unknown_run.json_body["message"]


@pytest.mark.parametrize("reader", [{"_op": "noop"}, {"_op": "range", "end": 2}])
def test_a_run_whose_job_writes_no_file_is_404_and_keeps_its_result(
    client: Client, env: Container, queue: MemoryQueue, reader: dict[str, Any]
) -> None:
    job_id = _job(env, [reader, {"_op": "echo"}])
    run_id = _run(client, job_id, args="a")
    assert _file(client, job_id, run_id).json_body["reason"] == "no_result_file"  # never will
    drain(env, queue)
    r = _file(client, job_id, run_id)
    assert r.status_code == 404 and r.json_body["reason"] == "no_result_file", r.body
    assert f"GET /v1/ex/{run_id}" in r.json_body["message"]
    assert env.files.keys("results/") == []
    ex = client.http.get(f"/v1/ex/{run_id}").json_body
    if reader["_op"] == "noop":
        assert ex["result"] == {"request": {}, "args": ["a"]}


@pytest.mark.parametrize(
    ("data", "columns", "header", "rows"),
    [
        ([{"a": 1}, {"b": [1]}], None, ["a", "b"], [["1", ""], ["", "[1]"]]),
        ([[1, 2], [3]], None, ["c1", "c2"], [["1", "2"], ["3"]]),
        (["x", None], None, ["value"], [["x"], [""]]),
        (7, ["n"], ["n"], [["7"]]),
        (None, None, None, []),
    ],
)
def test_rows_of_data(data: Any, columns: Any, header: Any, rows: Any) -> None:
    assert rows_of(data, columns) == (header, rows)


def test_combine_keeps_one_header_and_skips_empty_parts() -> None:
    parts = [to_csv(["a"], [["1"]]), b"", to_csv(["a"], [["2"], ["x\ny"]])]
    assert combine(parts) == b'a\r\n1\r\n2\r\n"x\ny"\r\n'
