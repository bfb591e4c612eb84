"""Principals (chalicelib.domain.identity): roles from the stage's admins, what each sees;
a job's owner is its submitter (services.jobs.with_owner)."""

from __future__ import annotations

from unittest.mock import ANY

import pytest

from chalicelib.config import Settings
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.identity import (
    ANONYMOUS,
    SYSTEM,
    claimed_groups,
    cognito_principal,
    owner_of,
    principal,
)
from chalicelib.services.jobs import with_owner

ROLE = "arn:aws:sts::123456789012:assumed-role/CadenzaAdmin/alice"
ADMINS = (
    "arn:aws:iam::123456789012:user/root-ops",
    "arn:aws:sts::123456789012:assumed-role/CadenzaAdmin/*",
)


def test_admins_are_exact_arns_or_patterns() -> None:
    assert principal(ROLE, ADMINS).is_admin
    assert principal("arn:aws:iam::123456789012:user/root-ops", ADMINS).is_admin
    assert not principal("arn:aws:iam::123456789012:user/root-ops-2", ADMINS).is_admin
    assert not principal("arn:aws:sts::123456789012:assumed-role/Other/alice", ADMINS).is_admin
    assert not principal(ROLE, ()).is_admin
    assert SYSTEM.is_admin


def test_a_user_sees_only_its_own_and_an_admin_everything() -> None:
    bob = principal("arn:aws:iam::1:user/bob", ADMINS)
    assert bob.sees(bob.id) and not bob.sees("arn:aws:iam::1:user/ann")
    assert not bob.sees(ANONYMOUS) and bob.scope == bob.id
    admin = principal(ROLE, ADMINS)
    assert admin.sees("arn:aws:iam::1:user/ann") and admin.scope is None
    assert owner_of({}) == ANONYMOUS and owner_of({"owner": bob.id}) == bob.id


def test_the_owner_is_the_submitter_and_a_body_cannot_name_another() -> None:
    assert with_owner({"name": "j"}, "me") == {"name": "j", "owner": "me"}
    assert with_owner({"name": "j", "owner": "me"}, "me")["owner"] == "me"
    assert with_owner({"name": "j", "owner": None}, "me")["owner"] == "me"
    with pytest.raises(InvalidInput) as err:
        with_owner({"name": "j", "owner": "mallory"}, "me")
    assert err.value.details["errors"] == [{"field": "owner", "reason": ANY}]
    assert with_owner([1], "me") == [1]  # not an object: parse_definition says so


# ---- a stage whose authorizer is a Cognito user pool ----------------------------------------

POOL = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"


def _claims(**kw: object) -> dict[str, object]:
    return {"sub": "0f1e-22", "iss": POOL, "cognito:username": "carol", "token_use": "id", **kw}


def test_a_tokens_principal_is_its_pool_and_subject() -> None:
    who = cognito_principal(_claims(), (), "cadenza-admins")
    assert who is not None
    assert who.id == "cognito:eu-west-1_AbC123:0f1e-22"
    assert not who.is_admin
    assert cognito_principal({"iss": POOL}, (), "cadenza-admins") is None
    assert cognito_principal({"sub": "x"}, (), "cadenza-admins") is None


@pytest.mark.parametrize(
    "groups",
    [["cadenza-admins"], "cadenza-admins", "ops,cadenza-admins", "[ops cadenza-admins]"],
)
def test_the_admin_group_gives_the_admin_role(groups: object) -> None:
    who = cognito_principal(_claims(**{"cognito:groups": groups}), (), "cadenza-admins")
    assert who is not None and who.is_admin


@pytest.mark.parametrize("groups", [None, "", "ops", ["cadenza-admins-2"], 7])
def test_other_groups_do_not(groups: object) -> None:
    who = cognito_principal(_claims(**{"cognito:groups": groups}), (), "cadenza-admins")
    assert who is not None and not who.is_admin
    assert claimed_groups(groups) <= {"ops", "cadenza-admins-2"}


def test_cadenza_admins_may_name_a_cognito_principal_too() -> None:
    who = cognito_principal(_claims(), ("cognito:eu-west-1_AbC123:*",), "cadenza-admins")
    assert who is not None and who.is_admin


def test_a_cognito_stage_needs_a_user_pool_and_a_known_authorizer() -> None:
    pool = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbC123"
    env = {"CADENZA_AUTHORIZER": "cognito", "CADENZA_COGNITO_USER_POOL_ARNS": pool}
    settings = Settings.from_env({**env, "CADENZA_ADMIN_GROUP": "ops"})
    assert (settings.authorizer, settings.cognito_user_pools) == ("cognito", (pool,))
    assert settings.admin_group == "ops"
    assert Settings.from_env({}).authorizer == "iam"
    with pytest.raises(ValueError, match="CADENZA_COGNITO_USER_POOL_ARNS"):
        Settings.from_env({"CADENZA_AUTHORIZER": "cognito"})
    with pytest.raises(ValueError, match="CADENZA_AUTHORIZER"):
        Settings.from_env({"CADENZA_AUTHORIZER": "oauth"})
