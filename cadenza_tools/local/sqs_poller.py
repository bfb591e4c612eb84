"""A local stand-in for a Lambda SQS event source mapping.

:class:`SqsPoller` long-polls one queue, hands each batch to a Lambda-style handler in
the exact event shape Lambda uses, and deletes what the handler processed. With
``ReportBatchItemFailures`` semantics, messages named in the handler's
``{"batchItemFailures": [{"itemIdentifier": messageId}]}`` are left on the queue; if the
handler raises (or returns an invalid failure report) none is deleted, so the whole batch
comes back after the visibility timeout. Redrive to a DLQ is the queue's own business.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

_ERROR_BACKOFF_S = 1.0
_IDLE_SLEEP_S = 0.05


class LambdaContext:
    """The subset of the Lambda context object that handlers commonly use."""

    def __init__(
        self,
        function_name: str,
        *,
        timeout_s: float = 60.0,
        memory_limit_in_mb: int = 128,
        region: str = "us-east-1",
        account_id: str = "123456789012",
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (simulated) function timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_message_attributes(
    attributes: Mapping[str, MessageAttributeValueOutputTypeDef],
) -> dict[str, dict[str, Any]]:
    """Convert SQS API message attributes to Lambda's camelCase event form."""
    converted: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        item: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        converted[name] = item
    return converted


def lambda_sqs_record(message: MessageTypeDef, queue_arn: str) -> dict[str, Any]:
    """Build one ``Records[]`` entry of a Lambda SQS event from a received message."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": lambda_message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_message_ids(response: Any, batch_ids: Sequence[str]) -> set[str] | None:
    """Return the message ids a handler reported as failed.

    ``None`` means the report is invalid, which Lambda treats as a failure of the whole
    batch. A missing/empty report means every message succeeded.
    """
    if not isinstance(response, Mapping):
        return set()
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for failure in failures:
        item = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not isinstance(item, str) or item not in batch_ids:
            return None
        failed.add(item)
    return failed


@dataclass(frozen=True)
class PollerOptions:
    """The event source mapping's settings (batch size, long-poll wait, batching window,
    ReportBatchItemFailures) and the function's timeout."""

    batch_size: int = 10
    wait_seconds: int = 1
    report_batch_item_failures: bool = True
    function_timeout_s: float = 60.0
    batching_window_s: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10:
            raise ValueError("batch_size must be between 1 and 10")


class SqsPoller(threading.Thread):
    """Poll one SQS queue and invoke ``handler(event, context)`` per batch, like Lambda."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        handler: Handler,
        name: str | None = None,
        *,
        options: PollerOptions | None = None,
    ) -> None:
        super().__init__(name=name or f"sqs-poller:{queue_url.rsplit('/', 1)[-1]}", daemon=True)
        self.options = options or PollerOptions()
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.invocations = 0
        self.handler_errors = 0
        self.messages_deleted = 0
        self._queue_arn: str | None = None
        self._stop_event = threading.Event()

    @property
    def queue_arn(self) -> str:
        """The queue's ARN (fetched once)."""
        if self._queue_arn is None:
            attrs = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
            )
            self._queue_arn = attrs["Attributes"]["QueueArn"]
        return self._queue_arn

    def run(self) -> None:
        """Poll until :meth:`stop` is called; errors are logged, never fatal."""
        while not self._stop_event.is_set():
            try:
                if self.poll_once() == 0 and self.options.wait_seconds == 0:
                    self._stop_event.wait(_IDLE_SLEEP_S)
            except Exception:
                log.exception("%s: polling %s failed", self.name, self.queue_url)
                self._stop_event.wait(_ERROR_BACKOFF_S)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the thread to finish its current batch and wait for it."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def _fill(self, have: int) -> list[Any]:
        """Lambda's MaximumBatchingWindowInSeconds: gather more records until the batch is
        full or the window (counted from the first record) has passed."""
        more: list[Any] = []
        deadline = time.monotonic() + self.options.batching_window_s
        while have + len(more) < self.options.batch_size and time.monotonic() < deadline:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.options.batch_size - have - len(more),
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            more += got
            if not got:
                self._stop_event.wait(_IDLE_SLEEP_S)
        return more

    def poll_once(self) -> int:
        """Receive and process one batch synchronously; return how many messages it had."""
        received = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.options.batch_size,
            WaitTimeSeconds=self.options.wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = received.get("Messages", [])
        if not messages:
            return 0
        messages += self._fill(len(messages))
        queue_arn = self.queue_arn
        records = [lambda_sqs_record(message, queue_arn) for message in messages]
        event = {"Records": records}
        arn_parts = queue_arn.split(":")
        context = LambdaContext(
            self.name,
            timeout_s=self.options.function_timeout_s,
            region=arn_parts[3],
            account_id=arn_parts[4],
        )
        self.invocations += 1
        try:
            response = self.handler(event, context)
        except Exception:
            self.handler_errors += 1
            log.exception(
                "%s: handler failed; %d message(s) return after the visibility timeout",
                self.name,
                len(messages),
            )
            return len(messages)
        ids = [record["messageId"] for record in records]
        failed = (
            failed_message_ids(response, ids) if self.options.report_batch_item_failures else set()
        )
        if failed is None:
            self.handler_errors += 1
            log.error("%s: invalid batchItemFailures %r; whole batch fails", self.name, response)
            return len(messages)
        self._delete_messages([m for m in messages if m["MessageId"] not in failed])
        return len(messages)

    def _delete_messages(self, messages: Sequence[MessageTypeDef]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            result = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
            self.messages_deleted += len(result.get("Successful", []))
            for failure in result.get("Failed", []):
                log.warning("%s: delete failed: %s", self.name, failure)
