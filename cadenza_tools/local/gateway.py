"""API Gateway's IAM authorization, locally: Chalice's `LocalGateway`, which lets every
request through a route with an `IAMAuthorizer`, made to check its SigV4 signature against
the local users' keys and to put the caller in the request context as API Gateway does
(`requestContext.identity.userArn`), where the app reads it on AWS too. A request it
refuses (a 403, as on AWS) has the API's error body, `{"error": "forbidden", "message":
..., "request_id": ...}`, as API Gateway's responses do on AWS (the `GatewayResponses` of
`infra/resources.json`)."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from typing import Any

from chalice.app import Chalice, IAMAuthorizer
from chalice.config import Config
from chalice.local import (
    ForbiddenError,
    LambdaContext,
    LocalGateway,
    LocalGatewayAuthorizer,
    LocalGatewayException,
)

from cadenza_tools.local.users import ACCOUNT, LocalUsers
from cadenza_tools.sigv4 import SignatureRejected, verify

log = logging.getLogger(__name__)
EventType = dict[str, Any]


def _body(event: EventType) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else bytes(body)


class IamAuthorizer(LocalGatewayAuthorizer):
    """Verifies the signature of a request to a route behind an IAMAuthorizer."""

    def __init__(self, app: Chalice, users: LocalUsers) -> None:
        super().__init__(app)
        self.users = users

    def authorize(
        self, raw_path: str, lambda_event: EventType, lambda_context: LambdaContext
    ) -> tuple[EventType, LambdaContext]:
        route = self._route_for_event(lambda_event)
        if route is None or not isinstance(route.authorizer, IAMAuthorizer):
            return super().authorize(raw_path, lambda_event, lambda_context)
        headers = lambda_event["headers"]
        method = lambda_event["requestContext"]["httpMethod"]
        url = f"http://{headers.get('host', 'localhost')}{raw_path}"
        try:
            signed = verify(method, url, headers, _body(lambda_event), self.users.secret_of)
            user = self.users.by_key(signed.access_key_id)
            if user is None:  # removed from the file meanwhile
                raise SignatureRejected("The security token included in the request is invalid.")
        except SignatureRejected as err:
            log.info("refused %s %s: %s", method, raw_path.split("?")[0], err)
            raise ForbiddenError(
                {"x-amzn-ErrorType": "IncompleteSignatureException"},
                json.dumps({"message": str(err)}).encode(),
            ) from err
        lambda_event["requestContext"]["identity"].update(
            {
                "accountId": ACCOUNT,
                "accessKey": user.access_key_id,
                "caller": user.access_key_id,
                "user": user.access_key_id,
                "userArn": user.arn,
            }
        )
        return lambda_event, lambda_context


_CODES = {401: "unauthenticated", 403: "forbidden"}


def api_error_body(status: int, message: str, request_id: str) -> bytes:
    """A refusal of the gateway in the API's error shape (entrypoints/http/errors.py)."""
    error = {"error": _CODES.get(status, "gateway_error"), "message": message}
    return json.dumps({**error, "request_id": request_id}).encode()


def _message(body: bytes | None) -> str:
    try:
        return str(json.loads(body or b"{}").get("message") or "refused")
    except (ValueError, AttributeError):
        return "refused"


class SigV4Gateway(LocalGateway):
    """Chalice's local API Gateway with the IAM authorization of `IamAuthorizer`; its
    refusals answer in the API's error shape."""

    def __init__(self, app: Chalice, config: Config, users: LocalUsers) -> None:
        super().__init__(app, config)
        self._authorizer = IamAuthorizer(app, users)

    def handle_request(
        self, method: str, path: str, headers: dict[str, Any], body: bytes | None
    ) -> dict[str, Any]:
        try:
            return super().handle_request(method, path, headers, body)
        except LocalGatewayException as err:
            request_id = str(err.headers.get("x-amzn-RequestId") or uuid.uuid4())
            err.headers = {**err.headers, "Content-Type": "application/json"}
            err.body = api_error_body(err.CODE, _message(err.body), request_id)
            raise
