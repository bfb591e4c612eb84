"""Who is asking: the authenticated principal of a request, its roles, and what it may see.

A principal's id is what authenticated it (on AWS the caller's IAM ARN). The owner of a
job is the principal that submitted it; its runs, slices, errors and result files are the
owner's too. An admin sees and acts on everyone's objects; anyone else sees only their own,
and another principal's object is as absent as one that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

ADMIN = "admin"
ANONYMOUS = "anonymous"  # the owner of jobs stored before owners were authenticated


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its id (an IAM ARN on AWS) and its roles."""

    id: str
    roles: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    def sees(self, owner: str) -> bool:
        """Whether an object owned by `owner` exists for this principal."""
        return self.is_admin or owner == self.id

    @property
    def scope(self) -> str | None:
        """Whose objects a listing shows it: its own, or everyone's (None) for an admin."""
        return None if self.is_admin else self.id


SYSTEM = Principal("cadenza", frozenset({ADMIN}))
"""The engine itself (supervisor, workers) and what composes services without a caller."""


def principal(id: str, admins: Iterable[str]) -> Principal:
    """The principal `id`, an admin if it matches one of `admins` (exact ids, or patterns
    with `*`, such as `arn:aws:sts::123456789012:assumed-role/CadenzaAdmin/*`)."""
    admin = any(fnmatchcase(id, pattern) for pattern in admins)
    return Principal(id, frozenset({ADMIN}) if admin else frozenset())


def claimed_groups(value: Any) -> frozenset[str]:
    """A JWT's `cognito:groups` as API Gateway passes it: a list, or (a REST API's claims are
    all strings) `admins`, `admins,ops` or `[admins ops]`."""
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    if not isinstance(value, str):
        return frozenset()
    return frozenset(p for p in re.split(r"[\s,]+", value.strip("[] ")) if p)


def cognito_principal(
    claims: Mapping[str, Any], admins: Iterable[str], admin_group: str
) -> Principal | None:
    """The principal of a Cognito user pool's token (None without a subject): its id is
    `cognito:<issuer>:<sub>`, stable for the user's life and distinct across pools; an admin
    if it is in `admin_group` or its id matches one of `admins`."""
    sub, issuer = claims.get("sub"), claims.get("iss")
    if not isinstance(sub, str) or not sub or not isinstance(issuer, str) or not issuer:
        return None
    pool = issuer.rstrip("/").rsplit("/", 1)[-1]
    found = principal(f"cognito:{pool}:{sub}", admins)
    if admin_group in claimed_groups(claims.get("cognito:groups")):
        return Principal(found.id, found.roles | {ADMIN})
    return found


def owner_of(definition: Mapping[str, Any]) -> str:
    """The owner recorded in a job's definition (or a run's copy of it)."""
    return str(definition.get("owner") or ANONYMOUS)
