"""The AWS targets (docs/targets.md): `lambda` (Invoke), `sqs` (SendMessage, FIFO
included), `sns` (Publish), `eventbridge` (PutEvents). Each names its resource by name, in
this stage's account and region, and only one the stage allows (CADENZA_TARGETS_ALLOW);
botocore retries throttling and connection errors (standard mode, 3 attempts) within the
op's `timeout`; a failure fails the slice, which the job's `max_retries` retries."""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, JsonValue, field_validator

from chalicelib.ops import templates
from chalicelib.ops.params import Params
from chalicelib.ops.targets.base import (
    DEFAULT_EXCERPT,
    MAX_EXCERPT,
    TargetContext,
    TargetFailed,
    access,
    aws_error,
    body_bytes,
    excerpt,
)

_NAME = r"^[A-Za-z0-9_.\-]{1,256}$"
_FUNCTION = r"^[A-Za-z0-9_\-]{1,64}$"
_ATTRIBUTE = r"^[A-Za-z0-9_.\-]{1,256}$"


def _as_attributes(attrs: dict[str, str]) -> dict[str, dict[str, str]]:
    return {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}


def _checked_attributes(attrs: dict[str, str]) -> dict[str, str]:
    for name in attrs:
        if not re.match(_ATTRIBUTE, name) or name.lower().startswith(("aws.", "amazon.")):
            raise ValueError(f"{name!r} is not a message attribute's name")
    return templates.check(attrs)  # type: ignore[no-any-return]


class _AwsParams(Params):
    timeout: float = Field(default=10.0, gt=0, le=900, allow_inf_nan=False)


class _MessageParams(_AwsParams):
    """What a message to a queue or a topic may carry besides its body."""

    attributes: dict[str, str] = Field(default_factory=dict, max_length=10)
    group_id: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: Any) -> Any:
        return _checked_attributes(value)

    def options(self, fifo: bool, found: dict[str, str], ctx: TargetContext) -> dict[str, Any]:
        """The attributes; on FIFO the group (default: the job's id) and the slice's
        idempotency key as the deduplication id."""
        out: dict[str, Any] = {}
        if self.attributes:
            out["MessageAttributes"] = _as_attributes(templates.render_json(self.attributes, found))
        if fifo:
            group = templates.render_text(self.group_id, found) if self.group_id else ctx.job_id
            out |= {"MessageGroupId": group, "MessageDeduplicationId": ctx.idempotency_key}
        return out


def _call(kind: str, name: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(kind, name, exc) from None


# ---- lambda -------------------------------------------------------------------------------


class LambdaParams(_AwsParams):
    """Invoke `function` (a name, optionally its `qualifier`: a version or alias) with
    `payload` (any JSON value), `invocation` `RequestResponse` (wait for its answer) or
    `Event` (queued by Lambda)."""

    function: str = Field(pattern=_FUNCTION)
    qualifier: str | None = Field(default=None, pattern=r"^[A-Za-z0-9$_\-]{1,128}$")
    invocation: Literal["RequestResponse", "Event"] = "RequestResponse"
    payload: JsonValue = None
    timeout: float = Field(default=30.0, gt=0, le=900, allow_inf_nan=False)
    max_response_bytes: int = Field(default=DEFAULT_EXCERPT, ge=0, le=MAX_EXCERPT)

    @field_validator("payload")
    @classmethod
    def _templates(cls, value: Any) -> Any:
        return templates.check(value)


def invoke(p: LambdaParams, data: Any, ctx: TargetContext) -> dict[str, Any]:
    """Invoke the function; its status, request id and answer (an excerpt), or TargetFailed
    with the function's error."""
    a = access()
    a.check("lambda", p.function)
    payload = json.dumps(templates.render_json(p.payload, templates.values(ctx)))
    client_context = {"custom": {"idempotency_key": ctx.idempotency_key, "run_id": ctx.ex_id}}
    kwargs: dict[str, Any] = {
        "FunctionName": p.function,
        "InvocationType": p.invocation,
        "Payload": payload.encode(),
    }
    if p.invocation == "RequestResponse":  # Lambda passes it on synchronous calls only
        kwargs["ClientContext"] = base64.b64encode(json.dumps(client_context).encode()).decode()
    if p.qualifier:
        kwargs["Qualifier"] = p.qualifier
    out = _call("lambda", p.function, a.client("lambda", p.timeout).invoke, **kwargs)
    raw = out["Payload"].read() if "Payload" in out else b""
    text, cut = excerpt(raw, p.max_response_bytes)
    if out.get("FunctionError"):
        raise TargetFailed(
            f"lambda {p.function!r}: function error ({out['FunctionError']}): {text[:500]}"
        )
    return {
        "status": out.get("StatusCode"),
        "request_id": out.get("ResponseMetadata", {}).get("RequestId"),
        "executed_version": out.get("ExecutedVersion"),
        "response": text,
        "truncated": cut,
    }


# ---- sqs ----------------------------------------------------------------------------------


class SqsParams(_MessageParams):
    """Send `body` (text as it is, any other JSON value as JSON) to the queue named `queue`,
    with `attributes` (strings). A FIFO queue (`.fifo`): `group_id` (default: the job's id)
    and the slice's idempotency key as its deduplication id. `delay_seconds`: not on FIFO."""

    queue: str = Field(pattern=_NAME, max_length=80)
    body: JsonValue = Field()
    delay_seconds: int | None = Field(default=None, ge=0, le=900)

    @field_validator("body", "group_id")
    @classmethod
    def _templates(cls, value: Any) -> Any:
        return templates.check(value)


def send(p: SqsParams, data: Any, ctx: TargetContext) -> dict[str, Any]:
    """Send one message; its MessageId (and SequenceNumber on FIFO)."""
    a = access()
    a.check("sqs", p.queue)
    client = a.client("sqs", p.timeout)
    url = a.cached(
        ("sqs", p.queue),
        lambda: _call("sqs", p.queue, client.get_queue_url, QueueName=p.queue)["QueueUrl"],
    )
    found = templates.values(ctx)
    kwargs: dict[str, Any] = {
        "QueueUrl": url,
        "MessageBody": body_bytes(templates.render_json(p.body, found)),
    }
    kwargs |= p.options(p.queue.endswith(".fifo"), found, ctx)
    if p.delay_seconds is not None and not p.queue.endswith(".fifo"):
        kwargs["DelaySeconds"] = p.delay_seconds
    out = _call("sqs", p.queue, client.send_message, **kwargs)
    return {
        "message_id": out["MessageId"],
        "sequence_number": out.get("SequenceNumber"),
        "deduplication_id": kwargs.get("MessageDeduplicationId"),
    }


# ---- sns ----------------------------------------------------------------------------------


class SnsParams(_MessageParams):
    """Publish `message` (text, or any JSON value as JSON) to the topic named `topic`, with
    `subject` and `attributes`; a FIFO topic: `group_id` (default: the job's id) and the
    slice's idempotency key as the deduplication id."""

    topic: str = Field(pattern=_NAME)
    message: JsonValue = Field()
    subject: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("message", "subject", "group_id")
    @classmethod
    def _templates(cls, value: Any) -> Any:
        return templates.check(value)


def _topic_arn(a: Any, topic: str, timeout: float) -> str:
    def make() -> str:
        who = _call("sns", topic, a.client("sts", timeout).get_caller_identity)
        partition = who["Arn"].split(":")[1]
        region = a.client("sns", timeout).meta.region_name
        return f"arn:{partition}:sns:{region}:{who['Account']}:{topic}"

    return str(a.cached(("sns", topic), make))


def publish(p: SnsParams, data: Any, ctx: TargetContext) -> dict[str, Any]:
    """Publish one message; its MessageId (and SequenceNumber on FIFO)."""
    a = access()
    a.check("sns", p.topic)
    found = templates.values(ctx)
    kwargs: dict[str, Any] = {
        "TopicArn": _topic_arn(a, p.topic, p.timeout),
        "Message": body_bytes(templates.render_json(p.message, found)),
    }
    if p.subject:
        kwargs["Subject"] = templates.render_header("subject", p.subject, found)
    kwargs |= p.options(p.topic.endswith(".fifo"), found, ctx)
    out = _call("sns", p.topic, a.client("sns", p.timeout).publish, **kwargs)
    return {"message_id": out["MessageId"], "sequence_number": out.get("SequenceNumber")}


# ---- eventbridge --------------------------------------------------------------------------


class EventBridgeParams(_AwsParams):
    """Put one event on the bus named `bus`: `source`, `detail_type`, `detail` (a JSON
    object), `resources` (ARNs the event is about)."""

    bus: str = Field(default="default", pattern=_NAME)
    source: str = Field(min_length=1, max_length=256)
    detail_type: str = Field(min_length=1, max_length=128)
    detail: dict[str, JsonValue] = Field(default_factory=dict)
    resources: list[str] = Field(default_factory=list, max_length=10)

    @field_validator("detail", "source", "detail_type")
    @classmethod
    def _templates(cls, value: Any) -> Any:
        return templates.check(value)

    @field_validator("source")
    @classmethod
    def _not_aws(cls, source: str) -> str:
        if source.startswith("aws."):
            raise ValueError("a source starting with `aws.` is AWS's own")
        return source


def put_event(p: EventBridgeParams, data: Any, ctx: TargetContext) -> dict[str, Any]:
    """Put the event; its EventId, or TargetFailed with the entry's error."""
    a = access()
    a.check("eventbridge", p.bus)
    found = templates.values(ctx)
    entry = {
        "EventBusName": p.bus,
        "Source": templates.render_text(p.source, found),
        "DetailType": templates.render_text(p.detail_type, found),
        "Detail": json.dumps(templates.render_json(p.detail, found)),
        "Resources": p.resources,
    }
    out = _call("eventbridge", p.bus, a.client("events", p.timeout).put_events, Entries=[entry])
    first = (out.get("Entries") or [{}])[0]
    if out.get("FailedEntryCount") or "EventId" not in first:
        reason = f"{first.get('ErrorCode', 'failed')}: {first.get('ErrorMessage', '')}"
        raise TargetFailed(f"eventbridge bus {p.bus!r}: the event was refused ({reason})")
    return {"event_id": first["EventId"]}
