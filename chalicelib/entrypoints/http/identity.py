"""The principal of a request, read the same way on AWS and in the local stack: from the
identity API Gateway's IAM (SigV4) authorization puts in the request context (`userArn`),
which the local stack's gateway fills in the same way once it has checked a signature."""

from __future__ import annotations

from chalice.app import Request

from chalicelib.bootstrap import Container, get_container
from chalicelib.domain.errors import Forbidden, Unauthenticated
from chalicelib.domain.identity import Principal, principal

SIGN_HINT = "sign the request with AWS Signature Version 4 (service execute-api)"


def caller(request: Request) -> Principal:
    """The authenticated principal, an admin if the stage names it now; else
    Unauthenticated (API Gateway refuses an unsigned request before this runs)."""
    identity = (request.context or {}).get("identity") or {}
    arn = identity.get("userArn")
    if not isinstance(arn, str) or not arn:
        raise Unauthenticated(f"authentication required: {SIGN_HINT}")
    return principal(arn, get_container().admins())


def require_admin(who: Principal) -> None:
    if not who.is_admin:
        raise Forbidden("this route requires the admin role", required_role="admin")


def scoped(request: Request) -> Container:
    """The services as the caller sees them: only its own objects unless it is an admin."""
    return get_container().scoped(caller(request))
