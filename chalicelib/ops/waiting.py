"""The `stepfunctions` and `ecs` processors: start an execution / run a task, named by the
slice's idempotency key so a redelivered slice starts nothing twice; with `wait: true`,
return `Waiting` and, at each later check (`ctx.wait` set), look at how it is doing: its
end decides the slice (docs/targets-waiting.md)."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.domain.slices import Waiting
from chalicelib.ops import templates
from chalicelib.ops.clients import current
from chalicelib.ops.targets.base import NotAllowed, access

EXCERPT_CHARS = 4000
ENDED_BADLY = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})


class TargetFailed(Exception):
    """The execution or task ended without success: the slice fails with its cause."""


def is_final(exc: BaseException, waiting: dict[str, Any] | None) -> bool:
    """A failure no retry can mend: a call the stage does not allow (any target's), or the
    end of what a waiting slice waited for (its name cannot start it again)."""
    return isinstance(exc, NotAllowed) or (waiting is not None and isinstance(exc, TargetFailed))


def _excerpt(text: str | None) -> str | None:
    if text is None or len(text) <= EXCERPT_CHARS:
        return text
    return text[:EXCERPT_CHARS] + f"... ({len(text)} chars)"


def _when(value: Any) -> str | None:
    return (
        None if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    )


# ---- Step Functions ---------------------------------------------------------------------------
def start_execution(p: Any, data: Any, ctx: Any) -> Any:
    """Start (or, at a check, look at) the slice's execution."""
    clients = current()
    if ctx.wait is not None:
        return _check_execution(ctx.wait, p.check_seconds)
    arn = access().state_machine(p.state_machine)
    found = templates.values(ctx)
    payload = templates.render_json(p.input, found) if "input" in p.model_fields_set else data
    started = clients.need_waits("stepfunctions").start_execution(
        arn, ctx.idempotency_key, json.dumps(payload, separators=(",", ":"), sort_keys=True)
    )
    out = {"executionArn": started["executionArn"], "startDate": _when(started.get("startDate"))}
    if not p.wait:
        return out
    return Waiting({"kind": "stepfunctions", **out}, p.check_seconds)


def _check_execution(wait: dict[str, Any], check_seconds: int) -> Any:
    desc = current().need_waits("stepfunctions").describe_execution(wait["executionArn"])
    status = str(desc.get("status"))
    if status == "RUNNING" or status == "PENDING_REDRIVE":
        return Waiting(wait, check_seconds)
    if status in ENDED_BADLY:
        cause = ": ".join(str(x) for x in (desc.get("error"), desc.get("cause")) if x)
        raise TargetFailed(f"execution {status}" + (f": {_excerpt(cause)}" if cause else ""))
    return {
        "executionArn": wait["executionArn"],
        "startDate": wait.get("startDate"),
        "status": status,
        "stopDate": _when(desc.get("stopDate")),
        "output": _excerpt(desc.get("output")),
    }


def stop_execution(wait: dict[str, Any], cause: str) -> None:
    current().need_waits("stepfunctions").stop_execution(wait["executionArn"], cause)


# ---- ECS --------------------------------------------------------------------------------------
def run_task(p: Any, data: Any, ctx: Any) -> Any:
    """Run (or, at a check, look at) the slice's task."""
    clients = current()
    if ctx.wait is not None:
        return _check_task(ctx.wait, p.check_seconds)
    cluster = access().cluster(p.cluster)
    answer = clients.need_waits("ecs").run_task(_run_request(p, cluster, ctx))
    tasks, failures = answer.get("tasks") or [], answer.get("failures") or []
    if not tasks:
        reasons = "; ".join(f"{f.get('arn', '')} {f.get('reason', '')}".strip() for f in failures)
        raise TargetFailed(f"RunTask started no task: {reasons or 'no reason given'}")
    task = tasks[0]
    out = {"taskArn": task["taskArn"], "cluster": cluster, "lastStatus": task.get("lastStatus")}
    if not p.wait:
        return out
    return Waiting({"kind": "ecs", **out}, p.check_seconds)


def _run_request(p: Any, cluster: str, ctx: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "cluster": cluster,
        "taskDefinition": p.task_definition,
        "count": 1,
        "clientToken": ctx.idempotency_key,
        "startedBy": "cadenza",
    }
    if p.launch_type is not None:
        request["launchType"] = p.launch_type
    if p.subnets is not None:
        vpc: dict[str, Any] = {
            "subnets": p.subnets,
            "assignPublicIp": "ENABLED" if p.assign_public_ip else "DISABLED",
        }
        if p.security_groups:
            vpc["securityGroups"] = p.security_groups
        request["networkConfiguration"] = {"awsvpcConfiguration": vpc}
    if p.overrides is not None:
        request["overrides"] = templates.render_json(p.overrides, templates.values(ctx))
    return request


def _check_task(wait: dict[str, Any], check_seconds: int) -> Any:
    task = current().need_waits("ecs").describe_task(wait["cluster"], wait["taskArn"])
    if task is None:
        raise TargetFailed("task not found (ECS keeps stopped tasks for about an hour)")
    if task.get("lastStatus") != "STOPPED":
        return Waiting(wait, check_seconds)
    exits = {c.get("name"): c.get("exitCode") for c in task.get("containers") or []}
    bad = {name: code for name, code in exits.items() if code != 0}
    if bad:
        why = task.get("stoppedReason") or "a container did not exit with 0"
        raise TargetFailed(f"task stopped: {why}; exit codes {bad}")
    return {
        "taskArn": wait["taskArn"],
        "cluster": wait["cluster"],
        "lastStatus": "STOPPED",
        "stoppedReason": task.get("stoppedReason"),
        "exitCodes": exits,
    }


def stop_task(wait: dict[str, Any], cause: str) -> None:
    current().need_waits("ecs").stop_task(wait["cluster"], wait["taskArn"], cause)


STOPS = {"stepfunctions": stop_execution, "ecs": stop_task}


def stop_waited(wait: dict[str, Any], cause: str) -> None:
    """Stop what a waiting slice waits for (its record says what)."""
    STOPS[str(wait.get("kind"))](wait, cause)
