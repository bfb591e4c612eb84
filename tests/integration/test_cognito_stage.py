"""A stage that chooses a Cognito user pool (JWT) instead of AWS IAM: every route behind
Chalice's `CognitoUserPoolAuthorizer` on that pool (in the API definition `chalice package`
deploys), the principal read from the token's claims API Gateway passes on, admins from the
stage's group. The local stack stays SigV4 whatever the environment says."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from chalice.app import Chalice, CognitoUserPoolAuthorizer, IAMAuthorizer, Request
from chalice.deploy.swagger import SwaggerGenerator

from chalicelib.config import Settings
from chalicelib.domain.errors import Unauthenticated
from chalicelib.entrypoints.http import blueprints
from chalicelib.entrypoints.http import identity as http_identity

POOL_ARN = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbC123"
ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
COGNITO = {"CADENZA_AUTHORIZER": "cognito", "CADENZA_COGNITO_USER_POOL_ARNS": POOL_ARN}


@pytest.fixture
def cognito_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Chalice]:
    """The app as `chalice package` imports it for a Cognito stage (its environment set)."""
    with monkeypatch.context() as m:
        for key, value in COGNITO.items():
            m.setenv(key, value)
        app = Chalice(app_name="cadenza")
        for blueprint, prefix in blueprints():
            app.register_blueprint(blueprint, url_prefix=prefix)
    yield app


def test_every_route_is_behind_the_stages_user_pool(cognito_app: Chalice) -> None:
    entries = [e for routes in cognito_app.routes.values() for e in routes.values()]
    assert len(entries) > 90
    for entry in entries:
        assert isinstance(entry.authorizer, CognitoUserPoolAuthorizer), entry.view_name
        assert entry.authorizer.to_swagger()["x-amazon-apigateway-authorizer"] == {
            "type": "cognito_user_pools",
            "providerARNs": [POOL_ARN],
        }
    swagger = SwaggerGenerator(
        "eu-west-1", {"api_handler_arn": "arn:aws:lambda:fn"}
    ).generate_swagger(cognito_app)
    assert set(swagger["securityDefinitions"]) == {http_identity.COGNITO_AUTHORIZER}
    for path in swagger["paths"].values():
        for method in path.values():
            if isinstance(method, dict) and "security" in method:
                assert method["security"] == [{http_identity.COGNITO_AUTHORIZER: []}]


def test_a_stage_without_the_choice_is_iam() -> None:
    assert isinstance(http_identity.authorizer(Settings.from_env({})), IAMAuthorizer)


def _request(context: dict[str, Any]) -> Request:
    return Request(
        {
            "multiValueQueryStringParameters": None,
            "headers": {},
            "pathParameters": None,
            "requestContext": {"httpMethod": "GET", "resourcePath": "/v1/jobs", **context},
            "body": None,
            "stageVariables": None,
        }
    )


@pytest.fixture
def cognito_stage(monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = replace(Settings.from_env(COGNITO), admins=())
    container = SimpleNamespace(settings=settings)
    monkeypatch.setattr(http_identity, "get_container", lambda: container)
    return settings


def test_the_caller_is_the_tokens_subject_and_the_group_makes_an_admin(
    cognito_stage: Settings,
) -> None:
    claims = {"sub": "0f1e-22", "iss": ISSUER, "cognito:groups": "cadenza-admins"}
    who = http_identity.caller(_request({"authorizer": {"claims": claims}}))
    assert who.id == "cognito:eu-west-1_AbC123:0f1e-22" and who.is_admin
    claims["cognito:groups"] = "ops"
    assert not http_identity.caller(_request({"authorizer": {"claims": claims}})).is_admin


def test_a_cognito_stage_reads_no_iam_identity(cognito_stage: Settings) -> None:
    """Each stage reads only what its own authorizer sets."""
    iam = {"identity": {"userArn": "arn:aws:iam::123456789012:user/alice"}}
    with pytest.raises(Unauthenticated):
        http_identity.caller(_request(iam))
    with pytest.raises(Unauthenticated):
        http_identity.caller(_request({"authorizer": {"claims": {"iss": ISSUER}}}))


def test_an_iam_stage_reads_no_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    container = SimpleNamespace(settings=Settings.from_env({}))
    monkeypatch.setattr(http_identity, "get_container", lambda: container)
    claims = {"sub": "0f1e-22", "iss": ISSUER, "cognito:groups": "cadenza-admins"}
    with pytest.raises(Unauthenticated):
        http_identity.caller(_request({"authorizer": {"claims": claims}}))
