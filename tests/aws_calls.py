"""The AWS calls a Cadenza function makes, recorded as the IAM requests they are (action
and resource ARN), and checked against IAM policies.

While a `Recorder` is installed every botocore client's API call (`_make_api_call`, with
the operation's name and the caller's parameters, before botocore serializes, signs or
sends anything) is seen, whenever the client was built. The recorder turns the call into the IAM
requests AWS authorizes for it: ``TransactWriteItems`` is one ``PutItem`` / ``UpdateItem`` /
``DeleteItem`` / ``ConditionCheckItem`` per item, ``SendMessageBatch`` is ``SendMessage``,
``ListObjectsV2`` is ``ListBucket`` and so on, each on the ARN of its table, index, queue,
bucket, object or topic. The requests are kept under the function named by `Recorder.as_`.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import botocore.client

ACCOUNT = "123456789012"  # moto's account

# operations AWS authorizes as another action (IAM's service authorization reference)
RENAMED = {
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "HeadBucket"): "ListBucket",
    ("s3", "HeadObject"): "GetObject",
    ("lambda", "Invoke"): "InvokeFunction",
}
TRANSACT_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


@dataclass(frozen=True, order=True)
class Request:
    """One IAM request: an action on a resource, made by a function."""

    function: str
    action: str
    resource: str
    # the request's condition keys and values, e.g. (("s3:prefix", "results/j/r/"),)
    context: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        keys = "".join(f" with {k}={v!r}" for k, v in self.context)
        return f"{self.function}: {self.action} on {self.resource}{keys}"


def _dynamodb(region: str, op: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    def table(name: str, index: str | None = None) -> str:
        arn = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{name}"
        return f"{arn}/index/{index}" if index else arn

    if op in ("TransactWriteItems", "TransactGetItems"):
        out = []
        for item in params["TransactItems"]:
            ((kind, body),) = item.items()
            out.append((TRANSACT_ITEMS[kind], table(body["TableName"])))
        return out
    if op in ("BatchGetItem", "BatchWriteItem"):
        return [(op, table(name)) for name in params["RequestItems"]]
    return [(op, table(params["TableName"], params.get("IndexName")))]


def _sqs(region: str, op: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    name = params.get("QueueName") or str(params["QueueUrl"]).rstrip("/").rsplit("/", 1)[-1]
    return [(RENAMED.get(("sqs", op), op), f"arn:aws:sqs:{region}:{ACCOUNT}:{name}")]


def _s3(region: str, op: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    action = RENAMED.get(("s3", op), op)
    bucket = f"arn:aws:s3:::{params['Bucket']}"
    if op == "DeleteObjects":
        return [("DeleteObject", f"{bucket}/{o['Key']}") for o in params["Delete"]["Objects"]]
    return [(action, f"{bucket}/{params['Key']}" if "Key" in params else bucket)]


def _sns(region: str, op: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    arn = params.get("TopicArn") or f"arn:aws:sns:{region}:{ACCOUNT}:{params.get('Name', '*')}"
    return [(op, str(arn))]


def _ssm(region: str, op: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    name = str(params.get("Name", "*"))  # a hierarchical name's ARN keeps its leading slash
    return [
        (op, f"arn:aws:ssm:{region}:{ACCOUNT}:parameter{'' if name.startswith('/') else '/'}{name}")
    ]


def _secretsmanager(region: str, op: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    secret = str(params.get("SecretId", "*"))  # a name here; IAM sees its ARN (name-XXXXXX)
    arn = (
        secret
        if secret.startswith("arn:")
        else f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{secret}-AbCdEf"
    )
    return [(op, arn)]


def _lambda(region: str, op: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{params.get('FunctionName', '*')}"
    qualifier = params.get("Qualifier")
    return [(RENAMED.get(("lambda", op), op), f"{arn}:{qualifier}" if qualifier else arn)]


def _events(region: str, op: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    buses = {e.get("EventBusName") or "default" for e in params.get("Entries", [{}])}
    return [(op, f"arn:aws:events:{region}:{ACCOUNT}:event-bus/{b}") for b in sorted(buses)]


RESOURCES: dict[str, Callable[[str, str, Mapping[str, Any]], list[tuple[str, str]]]] = {
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "s3": _s3,
    "sns": _sns,
    "ssm": _ssm,
    "secretsmanager": _secretsmanager,
    "lambda": _lambda,
    "events": _events,
}


def _context(action: str, params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The condition keys a policy may test on the request (those Cadenza's policies use)."""
    if action == "s3:ListBucket":
        return (("s3:prefix", str(params.get("Prefix", ""))),)
    return ()


def iam_requests(
    prefix: str, region: str, op: str, params: Mapping[str, Any]
) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(action, resource ARN, condition keys) of one API call of service `prefix` (its
    signing name)."""
    resources = RESOURCES.get(prefix)
    found = resources(region, op, params) if resources else [(op, "*")]
    out = []
    for action, resource in found:
        named = f"{prefix}:{action}"
        out.append((named, resource, _context(named, params)))
    return out


class Recorder:
    """Keeps the IAM requests of the calls made under `as_(function)`; a call made under no
    function is kept under ``"-"`` (a test's own set-up must not hide a function's call)."""

    def __init__(self) -> None:
        self.requests: set[Request] = set()
        self._function = "-"
        self._lock = threading.Lock()

    @contextmanager
    def as_(self, function: str) -> Iterator[None]:
        """Calls made meanwhile, from any thread (a handler's pools), are `function`'s."""
        previous, self._function = self._function, function
        try:
            yield
        finally:
            self._function = previous

    def of(self, function: str) -> set[Request]:
        return {r for r in self.requests if r.function == function}

    def _on_call(self, client: Any, operation: str, params: Mapping[str, Any]) -> None:
        service = client.meta.service_model
        prefix = str(service.signing_name or service.endpoint_prefix)
        region = str(client.meta.region_name or "us-east-1")
        for action, resource, keys in iam_requests(prefix, region, operation, params):
            with self._lock:
                self.requests.add(Request(self._function, action, resource, keys))

    @contextmanager
    def installed(self) -> Iterator[Recorder]:
        """Record every call any botocore client makes meanwhile (boto3's and PynamoDB's
        alike), whenever the client was built: PynamoDB's clients outlive a test (model
        bindings are cached per table names, and a serving container builds its clients
        when it starts), so hooking only the clients built meanwhile missed the calls of
        one an earlier test had built (CI: a supervisor's alert writes went unrecorded)."""
        original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
        recorder = self

        def make_api_call(client: Any, operation: str, params: Any) -> Any:
            recorder._on_call(client, operation, params)
            return original(client, operation, params)

        with mock.patch.object(botocore.client.BaseClient, "_make_api_call", make_api_call):
            yield self


# ---- policies ---------------------------------------------------------------------------------


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _matches(pattern: str, value: str) -> bool:
    # IAM's wildcards: `*` any run of characters (`/` and `:` included), `?` one character
    return fnmatch.fnmatchcase(value, pattern)


Grant = tuple[str, str, str]
"""(action, resource pattern, the statement's Condition as JSON): one thing a policy allows."""
OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringLike": _matches,
    "StringEquals": lambda pattern, value: pattern == value,
}


def grants(policy: Mapping[str, Any]) -> list[Grant]:
    """Every (action, resource pattern, condition) an Allow statement of `policy` grants."""
    out = []
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow", statement
        condition = json.dumps(statement.get("Condition", {}), sort_keys=True)
        for action in _listed(statement["Action"]):
            out += [(action, resource, condition) for resource in _listed(statement["Resource"])]
    return out


def _meets(condition: Mapping[str, Any], request: Request) -> bool:
    """IAM's condition operators Cadenza's policies use; a key the request lacks fails."""
    keys = dict(request.context)
    for operator, tests in condition.items():
        compare = OPERATORS[operator]  # another operator: teach it here first
        for key, patterns in tests.items():
            if key not in keys or not any(compare(p, keys[key]) for p in _listed(patterns)):
                return False
    return True


def grants_request(grant: Grant, request: Request) -> bool:
    action, resource, condition = grant
    return (
        _matches(action.lower(), request.action.lower())
        and _matches(resource, request.resource)
        and _meets(json.loads(condition), request)
    )


def allowed(policy: Mapping[str, Any], request: Request) -> bool:
    return any(grants_request(grant, request) for grant in grants(policy))


def unused(policy: Mapping[str, Any], requests: Iterable[Request]) -> list[Grant]:
    """The grants of `policy` that none of `requests` needed."""
    made = list(requests)
    return [g for g in grants(policy) if not any(grants_request(g, r) for r in made)]


# ---- the generated policies' references, resolved as CloudFormation would ------------------

ARN_FORMATS = {
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{region}:{account}:table/{name}",
    "AWS::SQS::Queue": "arn:aws:sqs:{region}:{account}:{name}",
    "AWS::S3::Bucket": "arn:aws:s3:::{name}",
    "AWS::SNS::Topic": "arn:aws:sns:{region}:{account}:{name}",
}


def stack_arns(
    template: Mapping[str, Any], names: Mapping[str, str], region: str
) -> dict[str, str]:
    """logical name -> ARN of each table, queue, bucket and topic of `template`, named as
    `names` (a row of its StageNames mapping) says, in `region` of moto's account."""
    return {
        logical: ARN_FORMATS[res["Type"]].format(
            region=region, account=ACCOUNT, name=names[logical]
        )
        for logical, res in template["Resources"].items()
        if res.get("Type") in ARN_FORMATS
    }


def resolved(value: Any, arns: Mapping[str, str], region: str) -> Any:
    """`value` with its ``Fn::GetAtt`` ``Arn``, ``Ref`` (a topic's ARN) and ``Fn::Sub``
    references replaced by what they stand for; a reference to anything else is a KeyError."""
    pseudo = {"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": ACCOUNT}

    def sub(match: re.Match[str]) -> str:
        name = match[1]
        return arns[name.removesuffix(".Arn")] if name.endswith(".Arn") else pseudo[name]

    if isinstance(value, list):
        return [resolved(v, arns, region) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::GetAtt"}:
        logical, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn", value
        return arns[logical]
    if set(value) == {"Ref"}:
        return arns[value["Ref"]]
    if set(value) == {"Fn::Sub"}:
        return re.sub(r"\$\{([^}]+)\}", sub, value["Fn::Sub"])
    return {k: resolved(v, arns, region) for k, v in value.items()}
