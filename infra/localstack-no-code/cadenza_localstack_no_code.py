"""A Lambda runtime executor for LocalStack that runs no code.

Community LocalStack's only executor runs functions in Docker containers, and its
``prepare_version`` (run when a function is created) downloads its runtime and pulls the
runtime's image: with neither Docker nor the internet, every function ends ``Failed`` and a
CloudFormation stack holding one rolls back. With ``LAMBDA_RUNTIME_EXECUTOR=cadenza-no-code``
a function is created and becomes ``Active`` with nothing prepared, so the stack around it
(tables, queues, roles, the API, event source mappings, the schedule, alarms) is created as
on AWS; an invocation fails, saying that this LocalStack runs no Lambda code.
"""

from __future__ import annotations

from typing import Any

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

NAME = "cadenza-no-code"
REFUSAL = f"this LocalStack runs no Lambda code (LAMBDA_RUNTIME_EXECUTOR={NAME})"


class NoCodeExecutor(RuntimeExecutor):
    def start(self, env_vars: dict[str, str]) -> None:
        raise LambdaRuntimeException(REFUSAL)

    def stop(self) -> None:
        return None

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        return ""

    def invoke(self, payload: dict[str, str]) -> Any:
        raise LambdaRuntimeException(REFUSAL)

    def get_logs(self) -> str:
        return REFUSAL

    @classmethod
    def prepare_version(cls, function_version: Any) -> None:
        return None

    @classmethod
    def cleanup_version(cls, function_version: Any) -> None:
        return None


class NoCodeExecutorPlugin(RuntimeExecutorPlugin):
    name = NAME

    def load(self, *args: Any, **kwargs: Any) -> type[RuntimeExecutor]:
        return NoCodeExecutor
