"""The base of every op's parameters (kept apart from the registry, so that the modules
whose ops the registry lists can use it without importing the registry)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """An op's parameters, strict: `true` is not a number, nor `"5"` an integer."""

    model_config = ConfigDict(extra="forbid", strict=True)
