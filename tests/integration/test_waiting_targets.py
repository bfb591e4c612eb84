"""The stepfunctions and ecs targets, on the fakes: the call made and its parameters, a
waiting run that stays `running` with no worker held, the check that ends it (both ways),
the same execution name / client token across a redelivery, stop, and timeout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import ExStatus, SliceState
from chalicelib.ops.clients import TargetClients, use
from chalicelib.ops.registry import SliceContext, validate_operations
from chalicelib.ops.targets import base as target_access
from chalicelib.ports import FakeClock
from tests.fakes.targets import FakeWaitTargets
from tests.helpers import deliver, deliver_next

pytestmark = pytest.mark.fakes

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:nightly"


@pytest.fixture
def fake(memory_container: Container) -> Iterator[FakeWaitTargets]:
    targets = FakeWaitTargets()
    use(TargetClients(waits=targets))
    allow = (("stepfunctions", MACHINE), ("ecs", "batch"))
    target_access.use(target_access.TargetAccess(allow, target_access.no_client))
    yield targets
    use(TargetClients())
    target_access.use(None)


def _run(c: Container, last: dict[str, Any], **kw: Any) -> Run:
    job, _ = c.jobs.submit({"name": "w", "operations": [{"_op": "noop"}, last], **kw}, start=False)
    return c.jobs.start_run(job.job_id)


def _now(c: Container, run: Run) -> Run:
    current = c.store.get_run(run.job_id, run.slot)
    assert current is not None
    return current


def _key(run: Run) -> str:
    return SliceContext(run.ex_id, run.job_id, 0, 1, None, slot=run.slot).idempotency_key


SFN_WAIT = {"_op": "stepfunctions", "state_machine": "nightly", "input": {"day": 1}, "wait": True}


def test_a_waiting_execution_keeps_the_run_running_and_its_end_completes_it(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    c = memory_container
    run = _run(c, {**SFN_WAIT, "check_seconds": 60})
    assert deliver_next(c, queue, clock) == "running"  # a one-slice waiting run is sliced
    assert deliver_next(c, queue, clock) == "waiting"
    [call] = fake.named("start_execution")
    assert call == {"arn": MACHINE, "name": _key(run), "input": '{"day":1}'}
    current = _now(c, run)
    assert current.status == ExStatus.running and not current.inline
    [sl] = c.store.list_slices(run.ex_id)
    assert sl.state == SliceState.pending and sl.lease_token is None  # nothing held
    assert sl.wait is not None and sl.wait["kind"] == "stepfunctions"
    [msg] = queue.messages
    assert msg.visible_at == clock.now() + 60  # the check, a delayed message
    assert deliver_next(c, queue, clock) == "waiting"  # still RUNNING
    assert len(fake.named("start_execution")) == 1
    fake.finish(sl.wait["executionArn"], status="SUCCEEDED", output='{"rows": 3}')
    assert deliver_next(c, queue, clock) == "completed"
    done = _now(c, run)
    assert done.status == ExStatus.completed and done.processed == 1
    [sl] = c.store.list_slices(run.ex_id)
    assert sl.result["status"] == "SUCCEEDED" and sl.result["output"] == '{"rows": 3}'
    assert sl.attempts == 1  # checks are not attempts
    assert len(fake.named("start_execution")) == 1 and not queue.messages


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_an_execution_that_ends_badly_fails_the_slice_with_its_cause_without_retry(
    memory_container: Container,
    queue: MemoryQueue,
    clock: FakeClock,
    fake: FakeWaitTargets,
    status: str,
) -> None:
    c = memory_container
    run = _run(c, SFN_WAIT, max_retries=3)
    deliver_next(c, queue, clock), deliver_next(c, queue, clock)
    [arn] = fake.executions
    fake.finish(arn, status=status, error="States.TaskFailed", cause="disk full")
    assert deliver_next(c, queue, clock) == "failed"
    assert _now(c, run).status == ExStatus.failed
    [sl] = c.store.list_slices(run.ex_id)
    assert sl.error is not None
    assert sl.error.endswith(f"TargetFailed: execution {status}: States.TaskFailed: disk full")
    assert len(fake.named("start_execution")) == 1 and not queue.messages


def test_a_duplicate_check_message_does_nothing_and_keeps_one_chain_of_checks(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    c = memory_container
    run = _run(c, {**SFN_WAIT, "check_seconds": 60})
    deliver_next(c, queue, clock), deliver_next(c, queue, clock)
    [check] = queue.messages
    clock.advance(60)
    assert deliver(c, check) == "waiting"  # the check, on time
    [after] = c.store.list_slices(run.ex_id)
    assert deliver(c, check) == "duplicate"  # delivered again (or re-sent by the sweep)
    [again] = c.store.list_slices(run.ex_id)
    assert (again.state, again.not_before, again.attempts, again.wait) == (
        after.state,
        after.not_before,
        after.attempts,
        after.wait,
    )
    assert len(fake.named("describe_execution")) == 1
    assert len(queue.messages) == 2  # the first check's own message (and `check`, kept here)


def test_a_redelivered_slice_starts_the_same_execution(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    """The worker that started the execution is lost before it recorded the wait: the
    slice is claimed again and starts again, under the same name: one execution."""
    c = memory_container
    run = _run(c, SFN_WAIT)
    deliver_next(c, queue, clock)
    [msg] = queue.messages
    real = c.store.wait_slice

    def lost(*a: Any, **kw: Any) -> bool:
        raise RuntimeError("worker lost")

    c.store.wait_slice = lost  # type: ignore[method-assign]  # the worker dies here
    with pytest.raises(RuntimeError):
        deliver(c, msg)
    c.store.wait_slice = real  # type: ignore[method-assign]
    clock.advance(_now(c, run).lease_seconds + 1)
    assert deliver(c, msg) == "waiting"  # the redelivery, after the lease expired
    first, second = fake.named("start_execution")
    assert first == second and first["name"] == _key(run)
    assert len(fake.executions) == 1


def test_stopping_a_waiting_run_stops_its_execution(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    c = memory_container
    run = _run(c, SFN_WAIT)
    deliver_next(c, queue, clock), deliver_next(c, queue, clock)
    assert c.executions.stop(_now(c, run), None, False) == {"status": "stopped"}
    [arn] = fake.executions
    [stop] = fake.named("stop_execution")
    assert stop["arn"] == arn and "stopped" in stop["cause"]
    assert fake.executions[arn]["status"] == "ABORTED"
    assert deliver_next(c, queue, clock) == "dropped"  # the pending check does nothing


def test_an_execution_that_cannot_be_stopped_is_an_alert_saying_why(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    c = memory_container
    run = _run(c, SFN_WAIT)
    deliver_next(c, queue, clock), deliver_next(c, queue, clock)
    fake.refuse_stops = True
    assert c.executions.stop(_now(c, run), None, False) == {"status": "stopped"}
    [alert] = c.store.list_alerts(10)
    assert alert.reason == "a waiting target was not stopped" and alert.ex_id == run.ex_id
    assert alert.detail == {
        "slice": "000000",
        "kind": "stepfunctions",
        "why": "could not stop the execution: PermissionError: stop_execution: access denied",
    }


def test_a_run_the_sweep_times_out_stops_what_it_waits_for(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    c = memory_container
    run = _run(c, {**SFN_WAIT, "check_seconds": 900}, timeout_seconds=600)
    deliver_next(c, queue, clock), deliver_next(c, queue, clock)
    clock.advance(700)
    c.supervisor.tick(clock.now())
    assert _now(c, run).status == ExStatus.failed
    [stop] = fake.named("stop_execution")
    assert stop["cause"] == "cadenza: the run ended (failed)"


def test_a_wait_longer_than_timeout_seconds_stops_the_execution_and_fails(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    c = memory_container
    run = _run(c, {**SFN_WAIT, "check_seconds": 900}, timeout_seconds=1200, max_retries=2)
    deliver_next(c, queue, clock), deliver_next(c, queue, clock)
    assert deliver_next(c, queue, clock) == "waiting"  # 900 s waited
    assert deliver_next(c, queue, clock) == "failed"  # 1800 s > 1200
    [sl] = c.store.list_slices(run.ex_id)
    assert sl.error is not None and sl.error.startswith("timed out: waited 1800 s")
    assert sl.error.endswith("stopped the execution")
    assert len(fake.named("stop_execution")) == 1
    assert _now(c, run).status == ExStatus.failed


def test_a_state_machine_outside_the_allow_list_fails_the_slice_before_any_call(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    c = memory_container
    run = _run(c, {"_op": "stepfunctions", "state_machine": "other"}, max_retries=3)
    assert deliver_next(c, queue, clock) == "failed"  # not retried: it cannot succeed
    assert not fake.calls
    assert "stepfunctions target 'other' is not allowed in this stage: add it to " + (
        "CADENZA_TARGETS_ALLOW"
    ) in str(_now(c, run).errors)
    run = _run(c, {**SFN_WAIT, "state_machine": "other"}, max_retries=3)
    deliver_next(c, queue, clock)
    assert deliver_next(c, queue, clock) == "failed"  # a sliced run's slice: not retried either
    assert not fake.calls and not queue.messages


def test_without_wait_a_one_slice_run_ends_once_the_execution_started(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    c = memory_container
    run = _run(c, {"_op": "stepfunctions", "state_machine": MACHINE})
    assert deliver_next(c, queue, clock) == "completed"
    current = _now(c, run)
    assert current.inline and current.status == ExStatus.completed
    [arn] = fake.executions
    assert current.result == {"executionArn": arn, "startDate": "2026-11-28T00:00:00+00:00"}
    [call] = fake.named("start_execution")
    assert json.loads(call["input"]) == {}  # the slice's data: noop's request


ECS = {
    "_op": "ecs",
    "cluster": "batch",
    "task_definition": "report:3",
    "launch_type": "FARGATE",
    "subnets": ["subnet-1"],
    "security_groups": ["sg-1"],
    "overrides": {"containerOverrides": [{"name": "app", "command": ["run"]}]},
    "wait": True,
}


@pytest.mark.parametrize(("code", "outcome"), [(0, "completed"), (3, "failed")])
def test_an_ecs_task_is_run_with_its_client_token_and_its_exit_decides(
    memory_container: Container,
    queue: MemoryQueue,
    clock: FakeClock,
    fake: FakeWaitTargets,
    code: int,
    outcome: str,
) -> None:
    c = memory_container
    run = _run(c, ECS)
    deliver_next(c, queue, clock)
    assert deliver_next(c, queue, clock) == "waiting"
    [call] = fake.named("run_task")
    assert call == {
        "cluster": "batch",
        "taskDefinition": "report:3",
        "count": 1,
        "clientToken": _key(run),
        "startedBy": "cadenza",
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-1"],
                "assignPublicIp": "DISABLED",
                "securityGroups": ["sg-1"],
            }
        },
        "overrides": {"containerOverrides": [{"name": "app", "command": ["run"]}]},
    }
    [arn] = fake.tasks
    fake.finish(
        arn,
        lastStatus="STOPPED",
        stoppedReason="Essential container exited",
        containers=[{"name": "app", "exitCode": code}],
    )
    assert deliver_next(c, queue, clock) == outcome
    [sl] = c.store.list_slices(run.ex_id)
    if code == 0:
        assert sl.result["exitCodes"] == {"app": 0}
    else:
        assert sl.error is not None and sl.error.endswith(
            "TargetFailed: task stopped: Essential container exited; exit codes {'app': 3}"
        )


def test_stopping_a_waiting_ecs_run_stops_its_task(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    c = memory_container
    run = _run(c, ECS)
    deliver_next(c, queue, clock), deliver_next(c, queue, clock)
    c.executions.stop(_now(c, run), None, False)
    [stop] = fake.named("stop_task")
    assert stop["cluster"] == "batch" and stop["arn"] in fake.tasks


def test_a_waiting_op_must_be_the_last() -> None:
    with pytest.raises(InvalidInput) as err:
        validate_operations([{"_op": "noop"}, SFN_WAIT, {"_op": "noop"}])
    assert err.value.to_dict()["errors"] == [
        {"field": "operations[1].wait", "reason": "a waiting op must be the job's last operation"}
    ]


@pytest.mark.parametrize(
    ("op", "field"),
    [
        ({**ECS, "launch_type": "LAMBDA"}, "operations[1].launch_type"),
        ({**SFN_WAIT, "wait": "yes"}, "operations[1].wait"),
        ({**SFN_WAIT, "check_seconds": 901}, "operations[1].check_seconds"),
        ({"_op": "stepfunctions"}, "operations[1].state_machine"),
        (
            {"_op": "ecs", "cluster": "batch", "task_definition": "t", "subnets": []},
            "operations[1].subnets",
        ),
    ],
)
def test_bad_target_params_are_refused_naming_the_field(op: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_operations([{"_op": "noop"}, op])
    errors = err.value.to_dict()["errors"]
    assert isinstance(errors, list) and [e["field"] for e in errors] == [field]


def test_templates_in_an_executions_input_and_a_tasks_overrides_are_the_slices_values(
    memory_container: Container, queue: MemoryQueue, clock: FakeClock, fake: FakeWaitTargets
) -> None:
    c = memory_container
    sfn = {**SFN_WAIT, "input": {"slot": "{{ slot }}", "run": "run {{ run_id }}"}}
    run = _run(c, sfn)
    deliver_next(c, queue, clock)
    deliver_next(c, queue, clock)
    [call] = fake.named("start_execution")
    assert json.loads(call["input"]) == {"slot": run.slot, "run": f"run {run.ex_id}"}
    command = {"containerOverrides": [{"name": "app", "command": ["run", "{{ job_id }}"]}]}
    run = _run(c, {**ECS, "overrides": command})
    deliver_next(c, queue, clock)
    deliver_next(c, queue, clock)
    [task] = fake.named("run_task")
    assert task["overrides"]["containerOverrides"][0]["command"] == ["run", run.job_id]


@pytest.mark.parametrize(
    ("op", "field"),
    [
        ({**SFN_WAIT, "input": {"x": "{{ nope }}"}}, "operations[1].input"),
        ({**ECS, "overrides": {"x": "{{ nope }}"}}, "operations[1].overrides"),
    ],
)
def test_an_unknown_template_name_is_refused_at_submit(op: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_operations([{"_op": "noop"}, op])
    errors = err.value.to_dict()["errors"]
    assert isinstance(errors, list) and [e["field"] for e in errors] == [field]
