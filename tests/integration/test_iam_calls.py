"""Each function's IAM policy against the AWS calls it makes.

The four functions run on moto with their real adapters (DynamoDB through PynamoDB, SQS,
S3, SNS) and the `dev` stage's names, driven as on AWS: the API through its routes, every
route of the route table called on a finished run and on a failed one; the supervisor's
handler ticking (a scheduled slot, then a sweep that finds a lost slice and publishes an
alert); the workers' handlers fed by a stand-in for Lambda's SQS event source mapping
(which receives and deletes with the function's role). Along the way: a sliced run that
writes a result file, a run of an uploaded asset's ops, a recovered execution, a deleted
asset and job.

`tests/aws_calls.py` records each call's IAM requests through botocore's event system,
under the function whose handler made it; each must be allowed by that function's
generated policy (`.chalice/policy-<stage>-<function>.json`), and each grant of the policy
must have been needed, but for the short list `UNEXERCISED` says why.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

import app as app_module
from cadenza_tools import infra
from cadenza_tools.local.sqs_poller import PollerOptions, SqsPoller
from chalicelib.bootstrap import (
    Container,
    aws_client,
    build_container,
    ensure_resources,
    set_container,
)
from chalicelib.config import Settings
from chalicelib.entrypoints import handlers
from chalicelib.ports import FakeClock
from tests.aws_calls import (
    Recorder,
    Request,
    allowed,
    grants,
    resolved,
    stack_arns,
    unused,
)
from tests.clients import ADMIN, ADMINS, USERS, SignedClient
from tests.conftest import T0
from tests.integration.test_assets import ops_bundle
from tests.integration.test_authorization_matrix import ENDPOINTS, World, call
from tests.webhook import Hook

ROOT = Path(__file__).resolve().parents[2]
IAM_AGENT = USERS.add("iam-agent")
CONFIG = infra.load_chalice_config(ROOT)
STAGE = "dev"
JSON = {"Content-Type": "application/json"}

SLICES_TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/cadenza-dev-slices"
LOGS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
# Grants the flows here do not need, and why (action, resource pattern; "*": any). Anything
# else granted and not needed fails.
UNEXERCISED: dict[str, dict[tuple[str, str], str]] = {
    function: {(action, "*"): "Lambda's runtime writes the logs, not botocore" for action in LOGS}
    for function in infra.FUNCTIONS
}


UNEXERCISED[infra.SUPERVISOR][("dynamodb:GetItem", SLICES_TABLE)] = (
    "the sweep's refill of a stalled command run offers its slices to agents again (reads "
    "them); the command run here ends before a sweep looks at it"
)


def _unexercised(function: str, action: str, resource: str) -> bool:
    known = UNEXERCISED.get(function, {})
    return (action, "*") in known or (action, resource) in known


TEMPLATE = json.loads((ROOT / infra.TEMPLATE_PATH).read_text())
REGION = "us-east-1"


@functools.cache
def _policy(function: str) -> dict[str, Any]:
    """The function's generated policy, its references resolved as CloudFormation would for
    the stack of the `dev` stage in moto's account (`tests/aws_calls.resolved`)."""
    document = json.loads((ROOT / infra.policy_path(STAGE, function)).read_text())
    names = TEMPLATE["Mappings"][infra.NAMES_MAPPING][STAGE]
    policy: dict[str, Any] = resolved(document, stack_arns(TEMPLATE, names, REGION), REGION)
    return policy


class Stack:
    """The functions' handlers on moto, each with its own container (as each Lambda function
    has its own process: nothing one function looked up serves another) and each call
    recorded under its function."""

    def __init__(self, recorder: Recorder, clock: FakeClock, settings: Settings) -> None:
        self.recorder, self.clock, self.settings = recorder, clock, settings
        self.containers: dict[str, Container] = {}
        for function in infra.FUNCTIONS:
            own = replace(settings, asset_cache_dir=f"{settings.asset_cache_dir}/{function}")
            with recorder.as_(function):
                c = build_container(own, clock=clock)
            c.worker.sleep = clock.advance
            self.containers[function] = c
        sqs = aws_client("sqs", settings)
        self.pollers = {
            function: SqsPoller(
                sqs,
                sqs.get_queue_url(QueueName=name)["QueueUrl"],
                getattr(app_module, function),
                options=PollerOptions(wait_seconds=0, batching_window_s=0),
            )
            for function, name in (
                (infra.START_WORKER, settings.start_queue),
                (infra.SLICE_WORKER, settings.slice_queue),
            )
        }
        self.owner = SignedClient(app_module.app)
        self.admin = SignedClient(app_module.app, ADMIN)

    @contextmanager
    def running(self, function: str) -> Iterator[Container]:
        """`function` serving: its container installed, its calls recorded as its own."""
        set_container(self.containers[function])
        try:
            with self.recorder.as_(function):
                yield self.containers[function]
        finally:
            set_container(None)

    def pump(self, only: str | None = None) -> None:
        """Deliver what the queues hold, as the event source mappings would (with the
        function's role), until they are empty."""
        while True:
            moved = 0
            for function, poller in self.pollers.items():
                if only in (None, function):
                    with self.running(function):
                        moved += poller.poll_once()
            if not moved:
                return

    def tick(self) -> dict[str, Any]:
        with self.running(infra.SUPERVISOR):
            return handlers.on_tick({})

    def api(self, method: str, path: str, body: Any = None, client: Any = None) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body else b""
        headers = {"Content-Type": "application/octet-stream"} if isinstance(body, bytes) else JSON
        with self.running(infra.API_HANDLER):
            r = (client or self.owner).http.request(method, path, headers=headers, body=data)
        assert r.status_code < 500, (method, path, r.body)
        return r

    def submit(self, body: dict[str, Any]) -> tuple[str, str]:
        r = self.api("POST", "/v1/jobs?start=true", body)
        assert r.status_code in (201, 202), r.body
        return r.json_body["job_id"], r.json_body.get("ex_id", "")

    def every_route(self, world: World) -> None:
        """Every route as an admin on `world`, deletions last; the listings also as the owner
        (their own index) and sorted by creation (the `*-created` indexes)."""
        for ep in sorted(ENDPOINTS, key=lambda e: e.method == "DELETE"):
            url = world.url(ep)
            calls = [(self.admin, url)]
            if ep.method == "GET":
                calls += [(self.owner, url), (self.admin, f"{url}?sort=_created:asc")]
            for client, target in calls:
                with self.running(infra.API_HANDLER):
                    r = call(client, ep, target)
                assert r.status_code < 500, (str(ep), r.body)
            if ep.method != "GET":  # a read sends nothing; a write's messages go now
                self.pump()
        self.pump()


def _lose_a_slice(stack: Stack) -> tuple[str, str]:
    """A sliced run one of whose slices loses its worker: the sweep fails it and alerts."""
    job_id, ex_id = stack.submit(
        {
            "name": "hanging",
            "operations": [{"_op": "range", "end": 2}, {"_op": "noop"}],
            "workers": 2,
            "max_retries": 0,
            "lease_seconds": 30,
        }
    )
    stack.pump(only=infra.START_WORKER)
    with stack.running(infra.SLICE_WORKER) as worker:  # its event source, then its death
        sqs = aws_client("sqs", stack.settings)
        url = stack.pollers[infra.SLICE_WORKER].queue_url
        lost = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=lost["ReceiptHandle"])
        slice_id = json.loads(lost["Body"])["slice_id"]
        now = stack.clock.now()
        assert worker.store.claim_slice(ex_id, slice_id, "dead", now, now + 30)
    stack.pump()
    stack.clock.advance(31)
    assert stack.tick()["alerts"] == 1
    return job_id, ex_id


def _control_a_running_run(stack: Stack) -> None:
    """Pause, resume and add workers to a sliced run while it runs: the API hands slices
    out again."""
    _, ex_id = stack.submit(
        {"name": "long", "operations": [{"_op": "range", "end": 6}, {"_op": "noop"}], "workers": 1}
    )
    stack.pump(only=infra.START_WORKER)
    for action in ("_pause", "_resume", "_workers?add=2"):
        assert stack.api("POST", f"/v1/ex/{ex_id}/{action}").status_code == 200, action
    stack.pump()


def _schedule(stack: Stack, operations: list[dict[str, Any]], **kw: Any) -> None:
    body = {"name": "queued", "operations": operations, "schedule": {"rate": "rate(1 minute)"}}
    r = stack.api("POST", "/v1/jobs?start=true", {**body, **kw})
    assert r.status_code == 201, r.body


def _tick_at_the_next_minute(stack: Stack) -> None:
    stack.clock.t = (stack.clock.now() // 60 + 1) * 60
    stack.tick()


def _queue_runs_behind_others(stack: Stack) -> None:
    """A `buffer_one` job's slot due while its sliced run runs: the slice worker that ends
    that run reads the job and sends the buffered run's start."""
    _schedule(stack, [{"_op": "range", "end": 2}, {"_op": "noop"}], overlap="buffer_one")
    _tick_at_the_next_minute(stack)
    stack.pump(only=infra.START_WORKER)  # the run is sliced, its slices wait
    _tick_at_the_next_minute(stack)
    stack.pump(only=infra.START_WORKER)  # the next slot's run is buffered
    stack.pump()


def _retry_an_inline_run(stack: Stack) -> None:
    """A one-slice run that fails with a retry left: the start worker sends its start again
    (after a backoff, in the queue's delay: not delivered here)."""
    stack.submit(
        {
            "name": "flaky",
            "operations": [{"_op": "noop"}, {"_op": "fail", "slices": [0], "times": 1}],
            "max_retries": 1,
        }
    )
    stack.pump()


def _read_a_traceback(stack: Stack) -> None:
    """A sliced run one of whose slices fails once: the slice worker writes its traceback
    to the run log, which the API reads back."""
    _, ex_id = stack.submit(
        {
            "name": "flaky slice",
            "operations": [{"_op": "range", "end": 2}, {"_op": "fail", "slices": [1], "times": 1}],
            "max_retries": 1,
        }
    )
    stack.pump()
    r = stack.api("GET", f"/v1/ex/{ex_id}/logs")
    assert r.status_code == 200, r.body
    assert [e["source"] for e in r.json_body["entries"]] == ["traceback"]


def _resolve_secrets(stack: Stack) -> None:
    """Secrets named by reference, read by the worker that runs the op: a one-slice run (the
    start worker) and a sliced one (the slice worker), each naming an SSM parameter and a
    Secrets Manager secret under the stage's prefix (created as the operator would)."""
    prefix = stack.settings.secrets_prefix
    aws_client("ssm", stack.settings).put_parameter(
        Name=f"{prefix}db", Value="pw", Type="SecureString"
    )
    aws_client("secretsmanager", stack.settings).create_secret(
        Name=f"{prefix}api", SecretString="tok"
    )
    refs = f"{{{{resolve:ssm:{prefix}db}}}} {{{{resolve:secretsmanager:{prefix}api}}}}"
    quiet = {"_op": "fail", "slices": [], "message": refs}  # fails nothing, names both
    for reader in ({"_op": "noop"}, {"_op": "range", "end": 3}):
        stack.submit({"name": "secrets", "operations": [reader, quiet], "workers": 1})
    stack.pump()


def _run_commands_on_an_agent(stack: Stack) -> None:
    """A command job's slices run by a remote agent (its own principal): the start worker
    offers them as tasks, the agent takes them (a secret in the env resolved), reports one
    killed (an alert) and the rest ended, which finishes the run through the API."""
    r = stack.api("POST", "/v1/agents", {"name": "box1", "principal": IAM_AGENT.arn})
    assert r.status_code == 201, r.body
    agent = SignedClient(app_module.app, IAM_AGENT)
    assert (
        stack.api("POST", "/v1/agent/register", {"version": "1"}, client=agent).status_code == 200
    )
    prefix = stack.settings.secrets_prefix
    env = {
        "TOKEN": f"{{{{resolve:ssm:{prefix}db}}}}",
        "API": f"{{{{resolve:secretsmanager:{prefix}api}}}}",
    }
    command: dict[str, Any] = {"_op": "command", "argv": ["env"], "agent": "box1", "env": env}
    _, ex_id = stack.submit(
        {
            "name": "cmd",
            "operations": [{"_op": "range", "end": 2}, command],
            "workers": 2,
            "max_retries": 0,
        }
    )
    stack.pump()
    tasks = stack.api("POST", "/v1/agent/tasks", {"max": 2}, client=agent).json_body["tasks"]
    assert len(tasks) == 2 and tasks[0]["command"]["env"] == {"TOKEN": "pw", "API": "tok"}
    ends = (
        {"exit_code": -9, "error": "killed: no contact with the control plane"},
        {"exit_code": 0},
    )
    for task, end in zip(tasks, ends, strict=True):
        line = {"seq": 0, "ts": stack.clock.now(), "stream": "stdout", "text": "x"}
        body = {"token": task["token"], "lines": [line], "end": end}
        r = stack.api("POST", f"/v1/agent/tasks/{task['task_id']}/report", body, client=agent)
        assert r.status_code == 200, r.body
    beat = stack.api("POST", "/v1/agent/heartbeat", {"tasks": []}, client=agent)
    assert beat.status_code == 200
    assert stack.api("GET", f"/v1/ex/{ex_id}").json_body["_status"] == "failed"
    stack.clock.advance(1000)  # the agent silent: the tick's sweep alerts it lost
    stack.tick()
    assert stack.api("DELETE", "/v1/agents/box1").status_code == 200


def _notify(stack: Stack) -> None:
    """Runs whose job asks to be told when they succeed (a one-slice run: the start worker;
    a sliced one: the slice worker), delivered by the supervisor's tick to a webhook
    signed with a secret under the stage's prefix."""
    prefix = stack.settings.secrets_prefix
    aws_client("ssm", stack.settings).put_parameter(
        Name=f"{prefix}hook", Value="k", Type="SecureString"
    )
    aws_client("secretsmanager", stack.settings).create_secret(
        Name=f"{prefix}hook2", SecretString="k2"
    )
    hook = Hook([])
    try:
        for reader, service, name in (
            ({"_op": "noop"}, "ssm", "hook"),
            ({"_op": "range", "end": 2}, "secretsmanager", "hook2"),
        ):
            secret = f"{{{{resolve:{service}:{prefix}{name}}}}}"
            dest = {"type": "webhook", "url": hook.url, "secret": secret}
            notify = {"events": ["succeeded"], "destinations": [dest]}
            ops = [reader, {"_op": "noop"}]
            stack.submit({"name": "told", "operations": ops, "workers": 1, "notify": notify})
        stack.pump()
        assert stack.tick()["notified"] == 2
        assert len(hook.accepted()) == 2
    finally:
        hook.close()


def _drive(stack: Stack) -> None:
    r = stack.api("POST", "/v1/assets", ops_bundle(), client=stack.admin)
    assert r.status_code in (200, 201), r.body
    asset_id = r.json_body["_id"]
    # a sliced run writing a result file, and a run of the asset's ops
    job_id, ex_id = stack.submit(
        {
            "name": "csv",
            "operations": [{"_op": "range", "end": 5, "size": 2}, {"_op": "csv_result"}],
            "workers": 2,
        }
    )
    stack.submit({"name": "inline csv", "operations": [{"_op": "noop"}, {"_op": "csv_result"}]})
    for count in (1, 3):  # a run of the asset's ops, inline and sliced
        stack.submit(
            {
                "name": "asset",
                "assets": ["mathops"],
                "operations": [{"_op": "numbers", "count": count}, {"_op": "tag", "tag": "x"}],
                "workers": 2,
            }
        )
    stack.pump()
    # a scheduled slot, fired by the supervisor
    stack.api(
        "POST",
        "/v1/jobs?start=true",
        {
            "name": "every minute",
            "operations": [{"_op": "noop"}, {"_op": "noop"}],
            "schedule": {"rate": "rate(1 minute)"},
        },
    )
    stack.tick()
    stack.clock.t = T0 + 60
    assert stack.tick()["runs_created"] == 1
    stack.pump()
    _control_a_running_run(stack)
    _queue_runs_behind_others(stack)
    _retry_an_inline_run(stack)
    _read_a_traceback(stack)
    _resolve_secrets(stack)
    _run_commands_on_an_agent(stack)

    _notify(stack)
    failed_job, failed_ex = _lose_a_slice(stack)
    # a new execution of a failed run's failed slices; another's rerun (its slices deleted)
    assert stack.api("POST", f"/v1/ex/{failed_ex}/_recover").status_code == 202
    stack.pump()
    _, rerun_ex = _lose_a_slice(stack)
    r = stack.api("POST", f"/v1/ex/{rerun_ex}/_resolve?action=rerun")
    assert r.status_code == 200, r.body
    stack.pump()
    stack.every_route(World(failed_job, failed_ex, asset_id))
    stack.every_route(World(job_id, ex_id, asset_id))


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    recorder = Recorder()
    settings = replace(
        infra.stage_settings(CONFIG, STAGE),
        region=REGION,
        admins=ADMINS,
        lookahead_seconds=5.0,
        fire_concurrency=1,
        asset_cache_dir=str(tmp_path_factory.mktemp("assets")),
    )
    with mock_aws(), recorder.installed():
        settings = ensure_resources(settings)  # what the template creates: recorded as "-"
        _drive(Stack(recorder, FakeClock(T0), settings))
    yield recorder


@pytest.mark.parametrize("function", infra.FUNCTIONS)
def test_every_call_is_granted_by_the_functions_policy(recorder: Recorder, function: str) -> None:
    made = recorder.of(function)
    assert made, f"{function} made no AWS call: the flows do not drive it"
    denied = sorted(str(r) for r in made if not allowed(_policy(function), r))
    assert not denied, "grant these in cadenza_tools/infra.py (FUNCTION_GRANTS):\n" + "\n".join(
        denied
    )


@pytest.mark.parametrize("function", infra.FUNCTIONS)
def test_every_grant_of_the_functions_policy_is_needed(recorder: Recorder, function: str) -> None:
    spare = [
        f"{action} on {resource}"
        for action, resource, _ in unused(_policy(function), recorder.of(function))
        if not _unexercised(function, action, resource)
    ]
    assert not spare, f"{function}'s policy grants what it never needs:\n" + "\n".join(spare)


@pytest.mark.parametrize("function", infra.FUNCTIONS)
def test_the_list_of_unexercised_grants_is_current(recorder: Recorder, function: str) -> None:
    """A grant listed as not needed here that the flows need after all leaves the list."""
    needed = set(grants(_policy(function))) - set(unused(_policy(function), recorder.of(function)))
    stale = [grant for grant in needed if _unexercised(function, *grant[:2])]
    assert not stale, f"remove from UNEXERCISED: {stale}"


def test_the_recorder_sees_what_it_should(recorder: Recorder) -> None:
    """The requests are IAM's: a transaction's items, a batch's messages, a listing."""
    api = {(r.action, r.resource.rsplit(":", 1)[-1]) for r in recorder.of(infra.API_HANDLER)}
    assert ("dynamodb:TransactWriteItems", "table/cadenza-dev-jobs") not in api
    calls: set[Request] = recorder.requests
    assert any(r.action == "sqs:SendMessage" for r in calls)
    assert any(r.action == "s3:ListBucket" for r in calls)
    assert any(r.action == "sns:Publish" for r in recorder.of(infra.SUPERVISOR))


def test_the_api_lists_only_the_results_prefix() -> None:
    """Conditions count: the API may list the bucket under `results/` only."""
    policy, bucket = _policy(infra.API_HANDLER), "arn:aws:s3:::cadenza-dev-results"

    def listing(*context: tuple[str, str]) -> Request:
        return Request(infra.API_HANDLER, "s3:ListBucket", bucket, context)

    assert allowed(policy, listing(("s3:prefix", "results/j/r/")))
    assert not allowed(policy, listing(("s3:prefix", "assets/")))
    assert not allowed(policy, listing())
