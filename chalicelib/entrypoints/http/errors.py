"""Mapping domain errors to JSON HTTP responses; request parsing helpers."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from chalice.app import Response

from chalicelib.config import Limits
from chalicelib.domain.errors import DomainError, InvalidInput
from chalicelib.domain.limits import check_depth, too_deep

log = logging.getLogger(__name__)
JSON: dict[str, str | list[str]] = {"Content-Type": "application/json"}


def json_response(body: Any, status: int = 200) -> Response:
    return Response(body=json.dumps(body), status_code=status, headers=JSON)


def api_errors(
    fn: Callable[..., Any], request_id: Callable[[], str] | None = None
) -> Callable[..., Any]:
    """Turn DomainErrors into 4xx/5xx JSON bodies; anything else into a logged 500. A 5xx
    body says nothing internal: its code, a generic message and the request's id, which the
    log line with the detail carries too."""

    def rid() -> str:
        return request_id() if request_id is not None else str(uuid.uuid4())

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DomainError as err:
            if err.status_code < 500:
                return json_response(err.to_dict(), err.status_code)
            request = rid()
            log.error("%s in %s [request %s]: %s", err.code, fn.__name__, request, err.message)
            return server_error(err.code, RETRY_LATER, err.status_code, request)
        except Exception:
            request = rid()
            log.exception("unhandled error in %s [request %s]", fn.__name__, request)
            return server_error("internal", "internal error", 500, request)

    return wrapper


def method_not_allowed(request: Any, get_response: Callable[[Any], Response]) -> Response:
    """HTTP middleware: Chalice's own 405 (`{"Code": "MethodNotAllowedError", ...}`, before
    any route runs) in the API's error shape, naming the methods the path allows."""
    response = get_response(request)
    body = response.body
    if response.status_code != 405 or not isinstance(body, dict) or "Code" not in body:
        return response
    allow = str((response.headers or {}).get("Allow", ""))
    allowed = [m.strip() for m in allow.split(",") if m.strip()]
    reason = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
    out = json_response({"error": "method_not_allowed", "message": reason, "allowed": allowed}, 405)
    out.headers = {**JSON, "Allow": allow}
    return out


RETRY_LATER = "the service is unavailable; try again later"


def server_error(code: str, message: str, status: int, request_id: str) -> Response:
    """A 5xx body: the request id to quote, nothing of the cause (that is in the log)."""
    body = {"error": code, "message": f"{message} (request {request_id})", "request_id": request_id}
    return json_response(body, status)


def parse_json_body(raw: str | bytes | None, limits: Limits) -> Any:
    """The body as JSON, within the stage's depth limit (its size was checked on arrival)."""
    if not raw:
        raise InvalidInput(
            "body: a JSON body is required", [{"field": "body", "reason": "empty body"}]
        )
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep("body", limits.max_json_depth) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput(
            f"body: not valid JSON ({err})", [{"field": "body", "reason": f"not valid JSON: {err}"}]
        ) from err
    check_depth("body", value, limits.max_json_depth)
    return value


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
