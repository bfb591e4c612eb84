"""The one transaction helper and the translation of PynamoDB / botocore errors.

Every module of the store writes through these: a failed condition is an answer (False or
None), a transaction conflict is retried, anything else is StoreUnavailable."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pynamodb.connection import Connection
from pynamodb.exceptions import (
    GetError,
    PynamoDBException,
    QueryError,
    TransactWriteError,
    UpdateError,
)
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.domain.errors import StoreUnavailable, TooLarge

T = TypeVar("T")
CONDITIONAL = "ConditionalCheckFailedException"
_RACE_CODES = {"TransactionConflict"}
TX_BATCH = 25
MAX_TX_ITEMS = 100  # DynamoDB's limit of items in one transaction


def _cancel_codes(err: TransactWriteError) -> list[str]:
    return [r.code for r in (err.cancellation_reasons or []) if r is not None]


def _failed_items(err: TransactWriteError) -> list[bool]:
    """Per item of a cancelled transaction, whether its condition failed."""
    reasons = err.cancellation_reasons or []
    return [r is not None and r.code == "ConditionalCheckFailed" for r in reasons]


def _code(err: PynamoDBException) -> str | None:
    """The DynamoDB error code, if DynamoDB answered. (PynamoDB's cause_response_code fails
    on transport errors, such as a read timeout, that carry no response.)"""
    response = getattr(err.cause, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


def _is_conditional(err: PynamoDBException) -> bool:
    return _code(err) == CONDITIONAL


ITEM_LIMIT_BYTES = 400 * 1024  # DynamoDB's size limit of one item


class StoreRejected(Exception):
    """DynamoDB refused a request as malformed: a bug of ours (a 500), never retryable."""


def _too_large(err: PynamoDBException) -> bool:
    reasons = err.cancellation_reasons if isinstance(err, TransactWriteError) else None
    messages = [str(err.cause or err), *(r.message or "" for r in reasons or [] if r)]
    return any("item size" in m.lower() for m in messages)


def _unavailable(err: PynamoDBException) -> Exception:
    """What a failed request means: too large an item is the caller's (413), a request
    DynamoDB refuses as malformed is ours (500), anything else is the store's (503)."""
    if _too_large(err):
        return TooLarge(
            "body",
            "store_item_bytes",
            ITEM_LIMIT_BYTES,
            f"would not fit a stored item ({ITEM_LIMIT_BYTES} bytes)",
        )
    cause = _code(err) or type(err.cause or err).__name__
    if cause == "ValidationException" or "ValidationError" in _cancel_codes_of(err):
        return StoreRejected(f"DynamoDB: {cause}: {err}")
    return StoreUnavailable(f"DynamoDB: {cause}: {err}")


def _cancel_codes_of(err: PynamoDBException) -> list[str]:
    return _cancel_codes(err) if isinstance(err, TransactWriteError) else []


def _conditional_update(item: Model, actions: list[Action], condition: Condition) -> bool:
    """One conditional UpdateItem: False if its condition failed."""
    try:
        item.update(actions=actions, condition=condition)
        return True
    except UpdateError as err:
        if _is_conditional(err):
            return False
        raise _unavailable(err) from err


def _get(fn: Callable[[], T]) -> T:
    """A read, its failures as StoreUnavailable."""
    try:
        return fn()
    except (GetError, QueryError) as err:
        raise _unavailable(err) from err


class Transactor:
    """Runs TransactWrite transactions on one connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._client_lock = threading.Lock()
        self._client_ready = False

    def _transact(self, build: Callable[[TransactWrite], None], attempts: int = 4) -> bool:
        """Run a transaction; False on a failed condition, retried on transaction conflicts."""
        return self._transact_refused(build, attempts) is None

    def _transact_refused(
        self, build: Callable[[TransactWrite], None], attempts: int = 4
    ) -> list[bool] | None:
        """Run a transaction, retried on transaction conflicts: None once written; else, per
        item in the order built, whether its condition failed (empty when no item is to
        blame: the conflicts outlasted the attempts)."""
        connection = self.connection
        if not self._client_ready:
            # PynamoDB builds the botocore client on first use, once per thread that races
            # to it: a burst's first transactions (a fire pool, a poller batch) would each
            # build one (tens of milliseconds of CPU apiece).
            with self._client_lock:
                connection.client  # noqa: B018 (built here, once)
                self._client_ready = True
        for attempt in range(attempts):
            try:
                with TransactWrite(connection=connection) as tx:
                    build(tx)
                return None
            except TransactWriteError as err:
                failed = _failed_items(err)
                if any(failed):
                    return failed
                codes = _cancel_codes(err)
                if (set(codes) & _RACE_CODES or not codes) and attempt + 1 < attempts:
                    time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                    continue
                if set(codes) & _RACE_CODES:
                    return []
                raise _unavailable(err) from err
        return []
