"""The `http` target: one HTTP request per slice (docs/targets.md#http).

Retries inside the slice, within its `timeout` (the whole call's budget): on a connection
error, a timeout of one attempt, 5xx and 429 (waiting what `Retry-After` says, when it fits
in the budget), at most `retries` times; then the slice fails, and the job's `max_retries`
retries the slice. Redirects are not followed (a 3xx is an answer: expect it or not), only
`http` and `https` URLs are called, only to hosts the stage allows."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import urllib3
from pydantic import Field, JsonValue, field_validator, model_validator
from urllib3 import HTTPHeaderDict
from urllib3.util.retry import Retry

from chalicelib.ops import templates
from chalicelib.ops.params import Params
from chalicelib.ops.targets.base import (
    DEFAULT_EXCERPT,
    MAX_EXCERPT,
    TargetContext,
    TargetDenied,
    TargetFailed,
    access,
    excerpt,
)

SCHEMES = ("http", "https")
RETRIED = frozenset({429, 500, 502, 503, 504})
_HEADER_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$"
_POOL = urllib3.PoolManager(num_pools=16, retries=False)


class HttpParams(Params):
    """One request: `url` (http or https), `method`, `headers`, `query`, a body (`json`: any
    JSON value, or `text`), `timeout` (seconds, for the whole call, retries included),
    `expect` (status codes that succeed; default any 2xx), `retries` (inside the slice),
    `max_response_bytes` (of the body kept in the result)."""

    url: str = Field(min_length=1, max_length=2048)
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    query: dict[str, str] = Field(default_factory=dict, max_length=100)
    json_body: JsonValue = Field(default=None, alias="json")
    text: str | None = Field(default=None, max_length=256 * 1024)
    timeout: float = Field(default=10.0, gt=0, le=900, allow_inf_nan=False)
    expect: list[int] = Field(default_factory=list, max_length=50)
    retries: int = Field(default=2, ge=0, le=10)
    max_response_bytes: int = Field(default=DEFAULT_EXCERPT, ge=0, le=MAX_EXCERPT)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        templates.check(url)
        parts = urlsplit(url)
        if parts.scheme.lower() not in SCHEMES:
            raise ValueError(f"scheme {parts.scheme!r} refused: only http and https")
        if not parts.hostname or "{{" in parts.netloc:
            raise ValueError("needs a host, without templates in it")
        if parts.username or parts.password:
            raise ValueError("credentials in a URL are refused: use a header and a secret")
        return url

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if not re.match(_HEADER_NAME, name):
                raise ValueError(f"{name!r} is not a header name")
        return templates.check(headers)  # type: ignore[no-any-return]

    @field_validator("query")
    @classmethod
    def _query(cls, query: dict[str, str]) -> dict[str, str]:
        return templates.check(query)  # type: ignore[no-any-return]

    @field_validator("json_body", "text")
    @classmethod
    def _body(cls, body: Any) -> Any:
        return templates.check(body)

    @field_validator("expect")
    @classmethod
    def _expect(cls, codes: list[int]) -> list[int]:
        for code in codes:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code")
        return codes

    @model_validator(mode="after")
    def _one_body(self) -> HttpParams:
        if self.json_body is not None and self.text is not None:
            raise ValueError("give `json` or `text`, not both")
        return self


def _link_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_link_local
    except ValueError:
        return False


def _request(p: HttpParams, ctx: TargetContext) -> tuple[str, HTTPHeaderDict, bytes | None]:
    """The URL, headers (case-insensitive: a header given in any case is not added again)
    and body of the request, templates rendered; TargetDenied for a host not allowed."""
    found = templates.values(ctx)
    parts = urlsplit(templates.render_url(p.url, found))
    host = parts.hostname or ""
    if _link_local(host):
        raise TargetDenied(f"http target {host!r}: link-local addresses are never called")
    access().check("http", host)
    query = {k: templates.render_text(v, found) for k, v in p.query.items()}
    if query:
        joined = "&".join(q for q in (parts.query, urlencode(query)) if q)
        parts = parts._replace(query=joined)
    headers = HTTPHeaderDict(
        {k: templates.render_header(k, v, found) for k, v in p.headers.items()}
    )
    headers.setdefault("Idempotency-Key", ctx.idempotency_key)
    body: bytes | None = None
    if p.json_body is not None:
        body = json.dumps(templates.render_json(p.json_body, found)).encode()
        headers.setdefault("Content-Type", "application/json")
    elif p.text is not None:
        body = templates.render_text(p.text, found).encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    return urlunsplit(parts), headers, body


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(Retry().parse_retry_after(value))
    except Exception:
        return None


def _wait(seconds: float, deadline: float) -> bool:
    """Sleep `seconds` if that leaves time for another attempt before `deadline`."""
    if time.monotonic() + seconds >= deadline:
        return False
    time.sleep(seconds)
    return True


def _attempt(
    p: HttpParams, url: str, headers: HTTPHeaderDict, body: bytes | None, left: float
) -> tuple[int, bytes, Any]:
    """One request: its status, up to `max_response_bytes + 1` of its body, its headers."""
    response = _POOL.request(
        p.method,
        url,
        body=body,
        headers=headers,
        timeout=urllib3.Timeout(connect=min(left, 10.0), read=left),
        redirect=False,
        preload_content=False,
    )
    try:
        return response.status, response.read(p.max_response_bytes + 1), response.headers
    finally:
        response.release_conn()


def _backoff(attempt: int) -> float:
    return min(0.2 * 2.0**attempt, 2.0)


def _result(status: int, attempt: int, text: str, cut: bool, headers: Any) -> dict[str, Any]:
    return {
        "status": status,
        "attempts": attempt,
        "body": text,
        "truncated": cut,
        "content_type": headers.get("Content-Type"),
        "request_id": headers.get("X-Request-Id") or headers.get("X-Amzn-RequestId"),
    }


def call(p: HttpParams, data: Any, ctx: TargetContext) -> dict[str, Any]:
    """Make the request; its status, attempts and a body excerpt, or TargetFailed."""
    url, headers, body = _request(p, ctx)
    where = urlunsplit(urlsplit(url)._replace(query="", fragment=""))
    deadline = time.monotonic() + p.timeout
    last, attempt = "timed out", 0
    while attempt <= p.retries and (left := deadline - time.monotonic()) > 0:
        attempt += 1
        try:
            status, got, answered = _attempt(p, url, headers, body, left)
        except urllib3.exceptions.HTTPError as exc:
            last = f"{type(exc).__name__} (no answer)"
            if not _wait(_backoff(attempt), deadline):
                break
            continue
        text, cut = excerpt(got, p.max_response_bytes)
        if status in p.expect if p.expect else 200 <= status < 300:
            return _result(status, attempt, text, cut, answered)
        last = f"status {status}: {text[:200]}"
        after = _retry_after(answered)
        if status not in RETRIED or not _wait(
            _backoff(attempt) if after is None else after, deadline
        ):
            break
    raise TargetFailed(f"http {p.method} {where}: {last} (after {attempt} attempts)")
