"""API Gateway's IAM authorization, locally: Chalice's `LocalGateway`, which lets every
request through a route with an `IAMAuthorizer`, made to check its SigV4 signature against
the local users' keys and to put the caller in the request context as API Gateway does
(`requestContext.identity.userArn`), where the app reads it on AWS too. A request it
refuses is a 403 with API Gateway's body (`{"message": ...}`), as on AWS."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from chalice.app import Chalice, IAMAuthorizer
from chalice.config import Config
from chalice.local import (
    ForbiddenError,
    LambdaContext,
    LocalGateway,
    LocalGatewayAuthorizer,
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


class SigV4Gateway(LocalGateway):
    """Chalice's local API Gateway with the IAM authorization of `IamAuthorizer`."""

    def __init__(self, app: Chalice, config: Config, users: LocalUsers) -> None:
        super().__init__(app, config)
        self._authorizer = IamAuthorizer(app, users)
