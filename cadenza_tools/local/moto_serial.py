"""One DynamoDB request at a time in moto, as DynamoDB serialises a condition with its write.

moto's DynamoDB backend checks a ``ConditionExpression`` and then writes, with nothing
between: two threads can both pass ``attribute_not_exists`` and both write (two
``overlap: skip`` runs started, one slot run twice). Its tables are plain dicts, too, so
a transaction copying a table while another thread writes can fail with "dictionary
changed size during iteration".

:func:`install` wraps ``DynamoHandler.call_action`` (the one place every DynamoDB request
goes through, in server mode and under ``mock_aws`` alike) in a process-wide lock. Other
services (SQS long polls, S3) stay concurrent.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.responses import DynamoHandler

_lock = threading.Lock()
_dispatch_lock = threading.RLock()
_installed = False


def _serialised(call_action: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call_action)
    def call_action_serialised(self: DynamoHandler) -> Any:
        with _dispatch_lock:
            return call_action(self)

    return call_action_serialised


def install() -> None:
    """Serialise moto's DynamoDB requests in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        # patching the class is the point: every handler moto builds then takes the lock
        DynamoHandler.call_action = _serialised(DynamoHandler.call_action)  # type: ignore[method-assign]
        _installed = True


def installed() -> bool:
    """Tell whether :func:`install` has serialised moto's DynamoDB in this process."""
    return _installed
