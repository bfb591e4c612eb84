"""Typed views of what the tests read back: the fields an InvalidInput names."""

from __future__ import annotations

from typing import cast

from chalicelib.domain.errors import DomainError


def field_errors(exc: DomainError) -> list[dict[str, str]]:
    """The `errors` an InvalidInput carries (DomainError types its details as `object`)."""
    return cast("list[dict[str, str]]", exc.details["errors"])
