"""Mapping domain errors to JSON HTTP responses; request parsing helpers."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from chalice.app import Response

from chalicelib.domain.errors import DomainError, InvalidInput

log = logging.getLogger(__name__)
JSON: dict[str, str | list[str]] = {"Content-Type": "application/json"}


def json_response(body: Any, status: int = 200) -> Response:
    return Response(body=json.dumps(body), status_code=status, headers=JSON)


def api_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn DomainErrors into 4xx/5xx JSON bodies; anything else into a logged 500."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DomainError as err:
            return json_response(err.to_dict(), err.status_code)
        except Exception:
            log.exception("unhandled error in %s", fn.__name__)
            return json_response({"error": "internal", "message": "internal error"}, 500)

    return wrapper


def parse_json_body(raw: str | bytes | None) -> Any:
    if not raw:
        raise InvalidInput(
            "body: a JSON body is required", [{"field": "body", "reason": "empty body"}]
        )
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput(
            f"body: not valid JSON ({err})", [{"field": "body", "reason": f"not valid JSON: {err}"}]
        ) from err


def query_bool(params: Mapping[str, str] | None, name: str, default: bool) -> bool:
    raw = (params or {}).get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"true", "1", "yes"}:
        return True
    if value in {"false", "0", "no"}:
        return False
    raise InvalidInput(
        f"{name}: expected true or false, got {raw!r}",
        [{"field": name, "reason": f"expected true or false, got {raw!r}"}],
    )


def query_number(
    params: Mapping[str, str] | None, name: str, default: float | None
) -> float | None:
    raw = (params or {}).get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise InvalidInput(
            f"{name}: expected a number >= 0, got {raw!r}",
            [{"field": name, "reason": f"expected a number >= 0, got {raw!r}"}],
        )
    return value


def query_int(params: Mapping[str, str] | None, name: str) -> int | None:
    raw = (params or {}).get(name)
    if raw is None or raw == "":
        return None
    if not raw.strip().isdigit():
        raise InvalidInput(
            f"{name}: expected a whole number >= 0, got {raw!r}",
            [{"field": name, "reason": f"expected a whole number >= 0, got {raw!r}"}],
        )
    return int(raw)
