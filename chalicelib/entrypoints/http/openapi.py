"""The OpenAPI 3.1 document of the HTTP API, and its route: GET /v1/openapi.json.

`openapi.json` beside this module holds the paths and the response shapes. The request
schemas a user submits (JobDefinition, Schedule, each operation's parameters) are generated
here from the pydantic models that validate them, so the document cannot drift from the
validation. Every `/v1` path is also listed without the prefix, as the API serves it.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib.resources import files
from typing import Any

from chalice.app import Request, Response
from pydantic.json_schema import models_json_schema

from chalicelib.domain.jobs import JobDefinition
from chalicelib.entrypoints.http.errors import JSON
from chalicelib.entrypoints.http.routing import Routes
from chalicelib.ops.registry import REGISTRY

V1 = "/v1"
REF_TEMPLATE = "#/components/schemas/{model}"
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def _op_schema(name: str) -> dict[str, Any]:
    """One `{"_op": name, ...params}` object: the op's pydantic params plus its name."""
    spec = REGISTRY[name]
    params = spec.params.model_json_schema(ref_template=REF_TEMPLATE)
    params.pop("title", None)
    params["properties"] = {"_op": {"const": name}, **params.get("properties", {})}
    params["required"] = ["_op", *params.get("required", [])]
    params["additionalProperties"] = False
    return params


def _operation_schemas() -> dict[str, Any]:
    """`Op_<name>` per registered op; `Reader` / `Processor`: the ops fit for each place."""
    out: dict[str, Any] = {f"Op_{name}": _op_schema(name) for name in sorted(REGISTRY)}
    for name in sorted(REGISTRY):  # what an op's params refer to (JsonValue), as components
        out.update(out[f"Op_{name}"].pop("$defs", {}))
    for role, attr in (("Reader", "reader"), ("Processor", "processor")):
        names = sorted(n for n, s in REGISTRY.items() if getattr(s, attr) is not None)
        out[role] = {"oneOf": [{"$ref": REF_TEMPLATE.format(model=f"Op_{n}")} for n in names]}
        out[f"{role}WithAssets"] = {
            "anyOf": [
                {"$ref": REF_TEMPLATE.format(model=role)},
                {"$ref": REF_TEMPLATE.format(model="AssetOp")},
            ]
        }
    out["AssetOp"] = {
        "type": "object",
        "description": "an operation that one of the job's `assets` provides (its parameters "
        "are the asset's to check)",
        "required": ["_op"],
        "properties": {"_op": {"type": "string", "not": {"enum": sorted(REGISTRY)}}},
    }
    return out


def _operations(reader: str, processor: str, max_items: int) -> dict[str, Any]:
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": max_items,
        "prefixItems": [{"$ref": REF_TEMPLATE.format(model=reader)}],
        "items": {"$ref": REF_TEMPLATE.format(model=processor)},
    }


def request_schemas() -> dict[str, Any]:
    """JobDefinition and what it refers to, generated from the models, as components."""
    _, top = models_json_schema([(JobDefinition, "validation")], ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = dict(top["$defs"])
    job = schemas["JobDefinition"]
    # the first operation slices the work, the rest process each slice; a job that names
    # assets may also use the ops they provide
    max_items = job["properties"]["operations"].get("maxItems", 50)
    job["properties"]["operations"] = {"type": "array", "minItems": 1, "maxItems": max_items}
    job["if"] = {
        "required": ["assets"],
        "properties": {"assets": {"type": "array", "minItems": 1}},
    }
    job["then"] = {
        "properties": {
            "operations": _operations("ReaderWithAssets", "ProcessorWithAssets", max_items)
        }
    }
    job["else"] = {"properties": {"operations": _operations("Reader", "Processor", max_items)}}
    schemas.pop("Operation", None)
    schemas.update(_operation_schemas())
    _constrain_schedule(schemas["Schedule"])
    return schemas


def _constrain_schedule(schedule: dict[str, Any]) -> None:
    """What Schedule's validators check and its fields cannot say: exactly one kind,
    intervals of at least a second."""
    kinds = {"cron": "string", "rate": "string", "at": "string", "interval_seconds": "integer"}
    schedule["oneOf"] = [
        {"required": [kind], "properties": {kind: {"type": kind_type}}}
        for kind, kind_type in kinds.items()
    ]
    schedule["properties"]["interval_seconds"]["anyOf"][0]["minimum"] = 1


def _root_alias(path: str, item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    alias = path[len(V1) :] or "/"
    item = copy.deepcopy(item)
    for method, operation in item.items():
        if method in METHODS:
            operation["operationId"] = f"{operation['operationId']}_root"
    return alias, item


SIGV4 = "sigv4"
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
AUTH_RESPONSES = {
    "Unauthenticated": {
        "description": "No authenticated principal: the request was not signed",
        "content": _ERROR_BODY,
    },
    "Forbidden": {
        "description": "Refused: a missing or wrong signature (API Gateway or the local "
        "gateway, error `forbidden`), or a route that needs the admin role",
        "content": _ERROR_BODY,
    },
}


def _secure(doc: dict[str, Any]) -> None:
    """Every operation needs a SigV4 signature (AWS IAM authorization, docs/auth.md) and
    can answer 401 / 403: declared for all, so that a new path cannot leave them out."""
    doc["components"]["securitySchemes"] = {
        SIGV4: {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "description": "AWS Signature Version 4 (service `execute-api`), signed with the "
            "caller's AWS credentials (locally: a local user's keys); see docs/auth.md",
            "x-amazon-apigateway-authtype": "awsSigv4",
        }
    }
    doc["security"] = [{SIGV4: []}]
    doc["components"]["responses"].update(AUTH_RESPONSES)
    for item in doc["paths"].values():
        for method, operation in item.items():
            if method in METHODS:
                responses = operation.setdefault("responses", {})
                responses.setdefault("401", {"$ref": "#/components/responses/Unauthenticated"})
                responses.setdefault("403", {"$ref": "#/components/responses/Forbidden"})


def build_document(raw: dict[str, Any]) -> dict[str, Any]:
    """The served document: `raw` plus generated request schemas, the authentication every
    operation needs, and the root aliases."""
    doc = copy.deepcopy(raw)
    doc["components"]["schemas"].update(request_schemas())
    _secure(doc)
    paths: dict[str, Any] = {}
    for path, item in doc["paths"].items():
        paths[path] = item
        if path == V1 or path.startswith(V1 + "/"):
            alias, alias_item = _root_alias(path, item)
            paths[alias] = alias_item
    doc["paths"] = paths
    return doc


@cache
def document() -> dict[str, Any]:
    """The document, built once per process."""
    raw = json.loads(
        files("chalicelib.entrypoints.http").joinpath("openapi.json").read_text("utf-8")
    )
    return build_document(raw)


@cache
def document_json() -> str:
    return json.dumps(document())


routes = Routes()


@routes("/openapi.json")
def openapi(request: Request) -> Response:
    return Response(body=document_json(), status_code=200, headers=JSON)
