"""The principal of a request, read the same way on AWS and in the local stack: from the
identity API Gateway's IAM (SigV4) authorization puts in the request context (`userArn`),
which the local stack's gateway fills in the same way once it has checked a signature; or,
on a stage whose authorizer is a Cognito user pool, from the token's claims API Gateway puts
there (`authorizer.claims`). Each stage reads only what its own authorizer sets."""

from __future__ import annotations

from typing import Any

from chalice.app import Authorizer, CognitoUserPoolAuthorizer, IAMAuthorizer, Request

from chalicelib.bootstrap import Container, get_container
from chalicelib.config import Settings
from chalicelib.domain.errors import Forbidden, Unauthenticated
from chalicelib.domain.identity import Principal, cognito_principal, principal

SIGN_HINT = "sign the request with AWS Signature Version 4 (service execute-api)"
TOKEN_HINT = "send a Cognito user pool token in the Authorization header"
COGNITO_AUTHORIZER = "CadenzaUserPool"


def authorizer(settings: Settings) -> Authorizer:
    """What API Gateway checks on every route of this stage: AWS IAM (SigV4), or a JWT of
    one of the stage's Cognito user pools."""
    if settings.authorizer == "cognito":
        return CognitoUserPoolAuthorizer(
            COGNITO_AUTHORIZER, provider_arns=list(settings.cognito_user_pools)
        )
    return IAMAuthorizer()


def _from_claims(context: dict[str, Any], settings: Settings) -> Principal:
    claims = (context.get("authorizer") or {}).get("claims") or {}
    who = cognito_principal(claims, settings.admins, settings.admin_group)
    if who is None:
        raise Unauthenticated(f"authentication required: {TOKEN_HINT}")
    return who


def caller(request: Request) -> Principal:
    """The authenticated principal, an admin if the stage names it now; else
    Unauthenticated (API Gateway refuses an unsigned request before this runs)."""
    context = request.context or {}
    settings = get_container().settings
    if settings.authorizer == "cognito":
        return _from_claims(context, settings)
    arn = (context.get("identity") or {}).get("userArn")
    if not isinstance(arn, str) or not arn:
        raise Unauthenticated(f"authentication required: {SIGN_HINT}")
    return principal(arn, get_container().admins())


def require_admin(who: Principal) -> None:
    if not who.is_admin:
        raise Forbidden("this route requires the admin role", required_role="admin")


def scoped(request: Request) -> Container:
    """The services as the caller sees them: only its own objects unless it is an admin."""
    return get_container().scoped(caller(request))
