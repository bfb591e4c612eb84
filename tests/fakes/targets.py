"""An in-memory WaitTargets: Step Functions executions and ECS tasks that a test ends
(`finish`), recording every call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib.ports import WaitTargets

ACCOUNT = "123456789012"


class ExecutionAlreadyExists(Exception):
    """StartExecution with a name in use and another input (or a closed execution)."""


@dataclass
class FakeWaitTargets(WaitTargets):
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)  # by ARN
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # by ARN, per client token
    tokens: dict[str, str] = field(default_factory=dict)
    refuse_stops: bool = False  # StopExecution / StopTask raise, as AccessDenied would

    def _called(self, what: str, **kw: Any) -> None:
        self.calls.append((what, kw))

    def named(self, what: str) -> list[dict[str, Any]]:
        return [kw for name, kw in self.calls if name == what]

    def start_execution(self, state_machine_arn: str, name: str, input_json: str) -> dict[str, Any]:
        self._called("start_execution", arn=state_machine_arn, name=name, input=input_json)
        machine = state_machine_arn.rsplit(":", 1)[-1]
        arn = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:{machine}:{name}"
        known = self.executions.get(arn)
        if known is not None:
            if known["input"] != input_json or known["status"] != "RUNNING":
                raise ExecutionAlreadyExists(name)
            return {"executionArn": arn, "startDate": known["startDate"]}
        started = "2026-11-28T00:00:00+00:00"
        self.executions[arn] = {"input": input_json, "status": "RUNNING", "startDate": started}
        return {"executionArn": arn, "startDate": started}

    def describe_execution(self, execution_arn: str) -> dict[str, Any]:
        self._called("describe_execution", arn=execution_arn)
        return dict(self.executions[execution_arn])

    def stop_execution(self, execution_arn: str, cause: str) -> None:
        self._called("stop_execution", arn=execution_arn, cause=cause)
        if self.refuse_stops:
            raise PermissionError("stop_execution: access denied")
        self.executions[execution_arn]["status"] = "ABORTED"

    def finish(self, arn: str, **desc: Any) -> None:
        """End an execution or a task as a test says (status, output, error, cause ...)."""
        (self.executions if arn in self.executions else self.tasks)[arn].update(desc)

    def run_task(self, request: dict[str, Any]) -> dict[str, Any]:
        self._called("run_task", **request)
        token = request["clientToken"]
        if token not in self.tokens:
            arn = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/{request['cluster']}/{len(self.tokens)}"
            self.tokens[token] = arn
            self.tasks[arn] = {"taskArn": arn, "lastStatus": "PROVISIONING", "containers": []}
        return {"tasks": [dict(self.tasks[self.tokens[token]])], "failures": []}

    def describe_task(self, cluster: str, task_arn: str) -> dict[str, Any] | None:
        self._called("describe_task", cluster=cluster, arn=task_arn)
        task = self.tasks.get(task_arn)
        return None if task is None else dict(task)

    def stop_task(self, cluster: str, task_arn: str, reason: str) -> None:
        self._called("stop_task", cluster=cluster, arn=task_arn, reason=reason)
        self.tasks[task_arn].update(lastStatus="STOPPED", stoppedReason=reason)
