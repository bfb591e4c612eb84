"""Structured logs in Lambda: one JSON object a line (Powertools' formatter), each with the
job id, the slot and the execution id of the message being handled, when there is one.

``configure()`` replaces the Lambda runtime's handler of the root logger (every module logs
through ``logging.getLogger(__name__)``); outside Lambda it does nothing, so the local stack
and the tests keep their plain text. ``log_context(job_id=..., slot=...)`` sets the ids for
what is logged inside it, in this thread (a context variable: the start worker handles a
batch's messages side by side in threads).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

_keys: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("cadenza_log_keys", default=())


@contextmanager
def log_context(**keys: str) -> Iterator[None]:
    """Add ``keys`` to every log line written inside, in this thread."""
    token = _keys.set(tuple({**dict(_keys.get()), **keys}.items()))
    try:
        yield
    finally:
        _keys.reset(token)


class ContextFilter(logging.Filter):
    """Copies the context's keys onto each record (the formatter prints a record's extras)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _keys.get():
            setattr(record, key, value)
        return True


def json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LambdaPowertoolsFormatter(utc=True))
    handler.addFilter(ContextFilter())
    return handler


def configure() -> None:
    """JSON logs on the root logger, in Lambda only (``AWS_LAMBDA_FUNCTION_NAME``)."""
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return
    root = logging.getLogger()
    root.handlers = [json_handler()]
    root.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO").upper())
