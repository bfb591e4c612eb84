"""Principals (chalicelib.domain.identity): roles from the stage's admins, what each sees;
a job's owner is its submitter (services.jobs.with_owner)."""

from __future__ import annotations

from unittest.mock import ANY

import pytest

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.identity import ANONYMOUS, SYSTEM, owner_of, principal
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
