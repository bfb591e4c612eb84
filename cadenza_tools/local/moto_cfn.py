"""moto's CloudFormation, able to create the REST API ``cadenza deploy`` sends it, and
keeping on deletion what CloudFormation keeps.

moto creates an ``AWS::ApiGateway::RestApi`` from its ``Name`` alone and ignores its
``Body`` (the OpenAPI document Chalice generates), so the API has no methods and the
``AWS::ApiGateway::Deployment`` after it fails ("The REST API doesn't contain any
methods"). :func:`install` imports the ``Body`` into the API it creates, through moto's
own ``PutRestApi`` (its OpenAPI import: the paths and their methods). moto also resolves a
stack's outputs from the template the stack was made with, which a change set's stack gets
only once it is executed: a stack created by change set has none. :func:`install` resolves
them again after each change set, as CloudFormation has them (``EndpointURL``...). Only for
the deploy test against moto (``tests/e2e/test_deploy_moto.py``); the deploy command needs
none of it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.apigateway.models import RestAPI, apigateway_backends
from moto.cloudformation.models import CloudFormationBackend
from moto.cloudformation.parsing import ResourceMap

_lock = threading.Lock()
_installed = False


def _with_body(create: Callable[..., RestAPI]) -> Callable[..., RestAPI]:
    @functools.wraps(create)
    def create_with_body(
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> RestAPI:
        api = create(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        body = cloudformation_json["Properties"].get("Body")
        if body:
            # moto imports OpenAPI 3 only; of Chalice's Swagger 2 document it reads the
            # paths and their methods, which are written the same way in both
            document = {k: v for k, v in body.items() if k != "swagger"}
            document["openapi"] = "3.0.1"
            backend = apigateway_backends[account_id][region_name]
            api = backend.put_rest_api(api.id, document, fail_on_warnings=False, mode="overwrite")
        return api

    return create_with_body


def _keeping_data(delete: Callable[[ResourceMap], None]) -> Callable[[ResourceMap], None]:
    """moto keeps only ``DeletionPolicy: Retain`` on a stack's deletion; CloudFormation
    keeps ``RetainExceptOnCreate`` too once the stack was created (the tables, the bucket)."""

    @functools.wraps(delete)
    def delete_keeping_data(self: ResourceMap) -> None:
        for resource in self._resource_json_map.values():
            if resource.get("DeletionPolicy") == "RetainExceptOnCreate":
                resource["DeletionPolicy"] = "Retain"
        delete(self)

    return delete_keeping_data


def _with_outputs(execute: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(execute)
    def execute_with_outputs(
        self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None
    ) -> None:
        execute(self, change_set_name, stack_name)
        for stack in self.stacks.values():  # the one just executed (again for the others)
            if stack.status.endswith("_COMPLETE") and not stack.status.startswith("DELETE"):
                stack._parse_template()  # its template is the change set's by now
                stack.output_map = stack._create_output_map()

    return execute_with_outputs


def install() -> None:
    """Make moto's CloudFormation import a REST API's ``Body`` and keep what
    ``RetainExceptOnCreate`` keeps (idempotent). Patching moto's classes is the point:
    every stack moto builds in this process then behaves so."""
    global _installed
    with _lock:
        if _installed:
            return
        # a classmethod: the bound function wrapped, stored back as a static method
        create = RestAPI.create_from_cloudformation_json
        RestAPI.create_from_cloudformation_json = staticmethod(_with_body(create))  # type: ignore[method-assign]
        setattr(ResourceMap, "delete", _keeping_data(ResourceMap.delete))  # noqa: B010
        execute = _with_outputs(CloudFormationBackend.execute_change_set)
        setattr(CloudFormationBackend, "execute_change_set", execute)  # noqa: B010
        _installed = True
