"""What a failed run shows through the API (issue #11): an exception's class name and its
message, never its module's path (`chalicelib.ops...`), a file path, a table name or an
ARN; the traceback is the run log's."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.ops.registry import error_text
from chalicelib.ops.targets.base import TargetDenied
from tests.clients import SignedClient
from tests.conftest import drain
from tests.helpers import get_ok

pytestmark = pytest.mark.fakes

JSON = {"Content-Type": "application/json"}
# a module path (`chalicelib.`), a file path (`/...py`, `/var/task`), a table or an ARN
# (the job's `owner` is an ARN by right: only error texts are checked)
INTERNAL = re.compile(r"chalicelib\.|\w\.py\b|/(var|tmp|work|home|usr|opt)/|arn:aws|cadenza-\w+-")


def start(client: SignedClient, job: dict[str, Any]) -> str:
    r = client.http.post("/v1/jobs?start=true", body=json.dumps(job), headers=JSON)
    assert r.status_code == 202, r.json_body
    return str(r.json_body["ex_id"])


def bodies(client: SignedClient, ex_id: str) -> list[Any]:
    """Every route that shows the run's errors."""
    ex = get_ok(client, f"/v1/ex/{ex_id}")
    return [
        ex,
        get_ok(client, f"/v1/ex/{ex_id}/errors"),
        get_ok(client, f"/v1/ex/{ex_id}/slices"),
        get_ok(client, f"/v1/jobs/{ex['job_id']}/errors"),
        get_ok(client, "/v1/ex/errors"),
    ]


def error_texts(body: Any) -> Iterator[str]:
    """Every error text a body shows (a slice's `error`, a run's `_failureReason`)."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key in ("error", "_failureReason") and isinstance(value, str):
                yield value
            else:
                yield from error_texts(value)
    elif isinstance(body, list):
        for item in body:
            yield from error_texts(item)


def test_error_text_names_the_class_not_its_module() -> None:
    assert error_text(TargetDenied("x")) == "TargetDenied: x"
    assert (
        error_text(ZeroDivisionError("division by zero")) == "ZeroDivisionError: division by zero"
    )
    assert error_text(KeyError("k")) == "KeyError: 'k'"
    assert error_text(RuntimeError()) == "RuntimeError"


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (
            {"operations": [{"_op": "noop"}, {"_op": "fail", "message": "boom"}]},
            "OpFailed: boom (slice 0, attempt 1)",
        ),
        (
            {"operations": [{"_op": "range", "end": 2}, {"_op": "fail", "slices": [1]}]},
            "OpFailed: injected failure (slice 1, attempt 1)",
        ),
        (
            {"operations": [{"_op": "http", "url": "https://billing.example.com/run"}]},
            "NotAllowed: http target 'billing.example.com' is not allowed in this stage",
        ),
    ],
    ids=["one-slice", "sliced", "target-denied"],
)
def test_no_body_shows_a_module_path_or_a_file_path(
    client: SignedClient,
    container: Container,
    queue: MemoryQueue,
    job: dict[str, Any],
    expected: str,
) -> None:
    ex_id = start(client, {"name": "failing", "max_retries": 0, **job})
    drain(container, queue)
    shown = bodies(client, ex_id)
    assert shown[0]["_status"] == "failed"
    errors = list(error_texts(shown))
    assert sum(e.startswith(expected) for e in errors) >= 4  # the run, its errors, its job's, all
    for text in errors:
        assert not INTERNAL.search(text), text
    # the traceback, with its module paths, is the run log's
    entries = get_ok(client, f"/v1/ex/{ex_id}/logs")["entries"]
    assert any(e["source"] == "traceback" and "chalicelib" in e["message"] for e in entries)
