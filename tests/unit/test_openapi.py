"""The OpenAPI document against the app: no route undocumented, no documented path missing."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from app import app
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.jobs import JobDefinition
from chalicelib.entrypoints.http.openapi import V1, document
from chalicelib.ops.registry import REGISTRY, validate_operations
from tests.clients import OWNER, SignedClient

METHODS = ("get", "put", "post", "delete", "patch")


def _shape(path: str) -> str:
    """A path with its parameter names dropped: /jobs/{job_id} and /jobs/{id} are one path."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def _documented() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (_shape(path), method.upper()): operation
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def _routes() -> set[tuple[str, str]]:
    return {(_shape(path), m) for path, entry in app.routes.items() for m in entry}


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_is_documented() -> None:
    missing = sorted(_routes() - set(_documented()))
    assert missing == [], f"routes missing from chalicelib/entrypoints/http/openapi.json: {missing}"


def test_every_documented_operation_is_a_route() -> None:
    routes = _routes()
    stale = sorted(k for k in _documented() if k not in routes)
    assert stale == [], f"documented but not routes: {stale}"


def test_operation_ids_are_unique_and_v1_paths_have_root_aliases() -> None:
    ids = [op["operationId"] for op in _documented().values()]
    assert len(ids) == len(set(ids))
    paths = document()["paths"]
    for path in paths:
        if path.startswith(V1 + "/"):
            assert path[len(V1) :] in paths
    assert "/" in paths and V1 in paths


def _validator(name: str) -> Draft202012Validator:
    doc = document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return Draft202012Validator(schema)


def _api_accepts(payload: dict[str, Any]) -> bool:
    try:
        spec = JobDefinition.model_validate(payload)
        validate_operations([op.to_dict() for op in spec.operations])
    except (ValueError, InvalidInput):
        return False
    return True


JOBS: list[tuple[dict[str, Any], bool]] = [
    ({"name": "r", "operations": [{"_op": "range", "end": 10, "size": 2}, {"_op": "noop"}]}, True),
    ({"name": "t", "operations": [{"_op": "noop"}], "schedule": {"cron": "* * * * *"}}, True),
    ({"name": "t", "operations": [{"_op": "noop"}], "schedule": {"interval_seconds": 30}}, True),
    ({"name": "f", "operations": [{"_op": "noop"}, {"_op": "fail", "fraction": 0.5}]}, True),
    ({"name": "x", "operations": [{"_op": "nope"}]}, False),
    ({"name": "x", "assets": [], "operations": [{"_op": "nope"}]}, False),
    ({"name": "x", "operations": [{"_op": "sleep"}]}, False),  # sleep is no reader
    ({"name": "x", "operations": [{"_op": "range", "end": 1}, {"_op": "range", "end": 1}]}, False),
    ({"name": "x", "operations": [{"_op": "noop", "extra": 1}]}, False),
    ({"name": "x", "operations": [{"_op": "noop"}, {"_op": "sleep", "seconds": 901}]}, False),
    ({"name": "x", "operations": []}, False),
    ({"name": "x", "operations": [{"_op": "noop"}], "workers": 0}, False),
    ({"name": "x", "operations": [{"_op": "noop"}], "surprise": True}, False),
    ({"name": "x", "operations": [{"_op": "noop"}], "schedule": {}}, False),
    (
        {
            "name": "x",
            "operations": [{"_op": "noop"}],
            "schedule": {"cron": "* * * * *", "rate": "rate(1 minute)"},
        },
        False,
    ),
    ({"name": "x", "operations": [{"_op": "noop"}], "schedule": {"interval_seconds": 0}}, False),
]


@pytest.mark.parametrize(("payload", "accepted"), JOBS)
def test_the_job_schema_agrees_with_the_models(payload: dict[str, Any], accepted: bool) -> None:
    assert _api_accepts(payload) is accepted
    assert _validator("JobDefinition").is_valid(payload) is accepted


def test_a_job_naming_assets_may_use_their_ops() -> None:
    valid = _validator("JobDefinition").is_valid
    ops = [{"_op": "numbers", "count": 3}, {"_op": "noop"}, {"_op": "scale", "factor": 2}]
    assert valid({"name": "a", "assets": ["mathops:1.0.0"], "operations": ops})
    assert not valid({"name": "a", "operations": ops})  # no assets: built-in ops only
    # a built-in op keeps its own schema inside an asset job
    bad = [{"_op": "range", "end": 1}, {"_op": "sleep", "seconds": 901}]
    assert not valid({"name": "a", "assets": ["mathops"], "operations": bad})


def test_every_registered_op_is_in_the_schema() -> None:
    schemas = document()["components"]["schemas"]
    prefix = "#/components/schemas/Op_"
    readers = {r["$ref"].removeprefix(prefix) for r in schemas["Reader"]["oneOf"]}
    processors = {r["$ref"].removeprefix(prefix) for r in schemas["Processor"]["oneOf"]}
    assert readers == {n for n, s in REGISTRY.items() if s.reader}
    assert processors == {n for n, s in REGISTRY.items() if s.processor}


@pytest.mark.parametrize("path", ["/v1/openapi.json", "/openapi.json"])
def test_the_api_serves_the_document(path: str) -> None:
    with SignedClient(app, OWNER) as client:
        response = client.http.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.body) == document()


def test_every_operation_needs_sigv4_and_may_answer_401_and_403() -> None:
    doc = document()
    scheme = doc["components"]["securitySchemes"]["sigv4"]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert doc["security"] == [{"sigv4": []}]
    for (path, method), operation in _documented().items():
        assert {"401", "403"} <= set(operation["responses"]), (method, path)
    assert doc["components"]["responses"]["Forbidden"]["content"]["application/json"]
