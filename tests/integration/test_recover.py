"""_recover with Teraslice's cleanup_type: a new, linked execution of only the chosen slices."""

from __future__ import annotations

import json

import pytest
from chalice.test import Client

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.ports import FakeClock
from tests.conftest import drain
from tests.helpers import deliver

# slices 1 and 3 fail once (then succeed when retried), no retries: the run fails with 2 errors
FLAKY = {
    "name": "r",
    "workers": 5,
    "max_retries": 0,
    "overlap": "allow",
    "operations": [{"_op": "range", "end": 5}, {"_op": "fail", "slices": [1, 3], "times": 1}],
}


def _failed_run(client: Client, container: Container, queue: MemoryQueue) -> tuple[str, str]:
    r = client.http.post(
        "/v1/jobs?start=true", body=json.dumps(FLAKY), headers={"Content-Type": "application/json"}
    )
    drain(container, queue)
    ex = client.http.get(f"/v1/ex/{r.json_body['ex_id']}").json_body
    assert ex["_status"] == "failed" and ex["_slicer_stats"]["failed"] == 2
    return r.json_body["job_id"], r.json_body["ex_id"]


def _fix_job(container: Container, job_id: str) -> None:
    """What a PUT of the job would do (the full API is another issue): drop the failure."""
    # container.store is typed as the Store port; its models are DynamoStore's own
    item = container.store.m.job.get(job_id)  # type: ignore[attr-defined]
    item.definition = {
        **item.definition,
        "operations": [{"_op": "range", "end": 5}, {"_op": "noop"}],
    }
    item.save()


@pytest.mark.parametrize("cleanup", ["errors", "all", ""])
def test_job_recover_reprocesses_the_failed_slices_with_the_jobs_config(
    client: Client, container: Container, queue: MemoryQueue, cleanup: str
) -> None:
    job_id, ex_id = _failed_run(client, container, queue)
    _fix_job(container, job_id)
    q = f"?cleanup_type={cleanup}" if cleanup else ""
    r = client.http.post(f"/v1/jobs/{job_id}/_recover{q}")
    assert r.status_code == 202 and r.json_body["job_id"] == job_id
    new = r.json_body["ex_id"]
    drain(container, queue)
    ex = client.http.get(f"/v1/ex/{new}").json_body
    assert ex["_status"] == "completed" and ex["recovered_from"] == ex_id
    assert ex["trigger"] == "recover"
    assert (ex["_slicer_stats"]["processed"], ex["_slicer_stats"]["slices_total"]) == (2, 2)
    requests = sorted(s["request"] for s in client.http.get(f"/v1/ex/{new}/slices").json_body)
    assert requests == ['{"start":1,"end":2}', '{"start":3,"end":4}']


def test_ex_recover_keeps_the_executions_own_config(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    job_id, ex_id = _failed_run(client, container, queue)
    _fix_job(container, job_id)  # not applied: seed 001 copies the execution's config
    r = client.http.post(f"/v1/ex/{ex_id}/_recover?cleanup_type=errors")
    drain(container, queue)
    ex = client.http.get(f"/v1/ex/{r.json_body['ex_id']}").json_body
    assert ex["operations"][1]["_op"] == "fail" and ex["_slicer_stats"]["slices_total"] == 2


def test_recover_pending_finds_nothing_when_every_slice_ended(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    _, ex_id = _failed_run(client, container, queue)
    r = client.http.post(f"/v1/ex/{ex_id}/_recover?cleanup_type=pending")
    assert r.status_code == 409


def test_recover_picks_up_slices_left_by_a_stop(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    body = {**FLAKY, "workers": 1, "operations": [{"_op": "range", "end": 4}, {"_op": "noop"}]}
    r = client.http.post(
        "/v1/jobs?start=true", body=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    ex_id = r.json_body["ex_id"]
    deliver(container, queue.take()[0])
    assert deliver(container, queue.take()[0]) == "completed"  # slice 0 done, 1 handed out
    assert client.http.post(f"/v1/ex/{ex_id}/_stop").json_body == {"status": "stopped"}
    queue.take()
    r = client.http.post(f"/v1/jobs/{r.json_body['job_id']}/_recover")  # resume: the rest
    drain(container, queue)
    ex = client.http.get(f"/v1/ex/{r.json_body['ex_id']}").json_body
    assert ex["_status"] == "completed" and ex["_slicer_stats"]["processed"] == 3


def test_recover_refuses_running_executions_and_bad_cleanup(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    r = client.http.post(
        "/v1/jobs?start=true", body=json.dumps(FLAKY), headers={"Content-Type": "application/json"}
    )
    ex_id = r.json_body["ex_id"]
    running = client.http.post(f"/v1/ex/{ex_id}/_recover")
    assert running.status_code == 409 and running.json_body["current_state"] == "pending"
    bad = client.http.post(f"/v1/ex/{ex_id}/_recover?cleanup_type=some")
    assert bad.status_code == 400 and bad.json_body["errors"][0]["field"] == "cleanup_type"


def test_a_recovered_slice_keeps_its_order_in_what_processors_see_and_in_its_records(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    _, ex_id = _failed_run(client, container, queue)
    r = client.http.post(f"/v1/ex/{ex_id}/_recover?cleanup_type=errors")  # fails them again
    drain(container, queue)
    new = r.json_body["ex_id"]
    slices = client.http.get(f"/v1/ex/{new}/slices").json_body
    seen = sorted((s["slicer_order"], s["request"], s["error"]) for s in slices)
    assert seen == [
        (
            1,
            '{"start":1,"end":2}',
            "OpFailed: injected failure (slice 1, attempt 1)",
        ),
        (
            3,
            '{"start":3,"end":4}',
            "OpFailed: injected failure (slice 3, attempt 1)",
        ),
    ]
    errors = client.http.get(f"/v1/ex/{new}/errors").json_body
    assert sorted(e["slicer_order"] for e in errors) == [1, 3]


def test_a_recovered_slice_is_retried_by_its_place_in_the_recovery(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job_id, _ = _failed_run(client, container, queue)
    item = container.store.m.job.get(job_id)  # type: ignore[attr-defined]  # DynamoStore's
    item.definition = {**item.definition, "workers": 1, "max_retries": 1}
    item.save()
    r = client.http.post(f"/v1/jobs/{job_id}/_recover?cleanup_type=errors")
    for _ in range(6):  # each slice fails once, is retried after its backoff, then passes
        drain(container, queue)
        clock.advance(5)
    ex = client.http.get(f"/v1/ex/{r.json_body['ex_id']}").json_body
    assert ex["_status"] == "completed" and ex["_slicer_stats"]["processed"] == 2
