"""The SecretSource port on SSM Parameter Store (`GetParameter` with decryption) and
Secrets Manager (`GetSecretValue`), through Powertools' parameter providers, which keep
each value for `max_age` seconds in the warm worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider
from botocore.exceptions import ClientError

from chalicelib.domain.secrets import SecretRef, SecretUnavailable
from chalicelib.ports import SecretSource

log = logging.getLogger(__name__)

_reading = threading.local()


class _SecretBodies(logging.Filter):
    """Drops botocore's DEBUG lines of a response body (its parser logs them whole) while
    this thread reads a secret: a stage that turns on botocore's DEBUG log does not log
    secrets' values."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_reading, "active", False)


_PARSER_LOG = logging.getLogger("botocore.parsers")
_PARSER_LOG.addFilter(_SecretBodies())


@contextmanager
def _reading_secret() -> Iterator[None]:
    _reading.active = True
    try:
        yield
    finally:
        _reading.active = False


_NOT_FOUND = {"ParameterNotFound", "ParameterVersionNotFound", "ResourceNotFoundException"}


def _reason(exc: BaseException) -> str:
    """What a user may read of a failed read: not the AWS message (it names the worker's
    role); that one goes to the log."""
    cause = exc.__cause__ or exc.__context__
    code = cause.response.get("Error", {}).get("Code", "") if isinstance(cause, ClientError) else ""
    if code in _NOT_FOUND:
        return "not found"
    if code.startswith("AccessDenied") or code in {"KMSAccessDeniedException", "DecryptionFailure"}:
        return "the worker may not read it"
    return "could not be read"


class AwsSecretSource(SecretSource):
    """Reads SSM parameters and Secrets Manager secrets with the given boto3 clients."""

    def __init__(self, ssm_client: Any, secretsmanager_client: Any, max_age: int = 30) -> None:
        self.ssm = SSMProvider(boto3_client=ssm_client)
        self.secretsmanager = SecretsProvider(boto3_client=secretsmanager_client)
        self.max_age = max_age

    def secret_value(self, ref: SecretRef) -> str:
        try:
            with _reading_secret():
                value = self._read(ref)
        except Exception as exc:  # Powertools wraps every failure in GetParameterError
            log.warning("secret %s not read: %s", ref.text, exc)
            raise SecretUnavailable(ref, _reason(exc)) from None
        if not isinstance(value, str):
            raise SecretUnavailable(ref, "is binary; only a text secret can be named")
        return value

    def _read(self, ref: SecretRef) -> object:
        if ref.service == "ssm":
            return self.ssm.get(ref.name, max_age=self.max_age, decrypt=True)
        return self.secretsmanager.get(ref.name, max_age=self.max_age)
