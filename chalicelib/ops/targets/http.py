"""The `http` target: one HTTP request per slice (docs/targets.md#http).

Retries inside the slice, within its `timeout` (the whole call's budget): on a connection
error, a timeout of one attempt, 5xx and 429 (waiting what `Retry-After` says, when it fits
in the budget), at most `retries` times; then the slice fails, and the job's `max_retries`
retries the slice. Redirects are not followed (a 3xx is an answer: expect it or not), only
`http` and `https` URLs are called, only to hosts the stage allows.

The host is resolved once per call and every address it resolves to is checked: a
non-public one (private, loopback, shared, unique-local ...) only for a host the allow-list
names exactly, a link-local one (the instance metadata service) never. Every attempt then
connects to the first checked address, with the host's name as TLS server name (SNI), the
name the certificate must match, and `Host`: the name is not resolved again (rebinding)."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import time
from typing import Any, Literal, NamedTuple
from urllib.parse import urlencode, urlsplit, urlunsplit

import urllib3
from pydantic import Field, JsonValue, field_validator, model_validator
from urllib3 import HTTPHeaderDict
from urllib3.util.retry import Retry

from chalicelib.domain.logs import LogLevel
from chalicelib.ops import runlog, templates
from chalicelib.ops.params import Params
from chalicelib.ops.targets.base import (
    DEFAULT_EXCERPT,
    ENV,
    MAX_EXCERPT,
    NotAllowed,
    TargetContext,
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


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Pinned(NamedTuple):
    """Where a call goes: the URL as written (rendered), the checked address to connect to."""

    url: str
    address: str


def _address(text: str) -> Address | None:
    try:
        found = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(found, "ipv4_mapped", None)
    return mapped if mapped is not None else found


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order (an address: itself)."""
    if _address(host) is not None:
        return [host.strip("[]")]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetFailed(f"http target {host!r}: cannot resolve it ({exc})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def _explicit(host: str) -> bool:
    """Whether the allow-list names `host` as it is, not through a pattern."""
    return any(p == host.lower() for k, p in access().allow if k == "http")


def pin(host: str, port: int) -> str:
    """The address to connect to for `host`: each address it resolves to checked (see the
    module's doc), NotAllowed for one refused."""
    addresses = resolve(host, port)
    for text in addresses:
        found = _address(text)
        if found is None or found.is_link_local:
            raise NotAllowed(f"http target {host!r}: link-local addresses are never called")
        if not found.is_global and not _explicit(host):
            raise NotAllowed(
                f"http target {host!r} resolves to a non-public address (private, loopback "
                f"...): reached only if {ENV} names the host exactly, without a pattern"
            )
    return addresses[0]


def _request(p: HttpParams, ctx: TargetContext) -> tuple[Pinned, HTTPHeaderDict, bytes | None]:
    """The URL (and the address it is pinned to), headers (case-insensitive: a header given
    in any case is not added again) and body of the request, templates rendered; NotAllowed
    for a host not allowed."""
    found = templates.values(ctx)
    parts = urlsplit(templates.render_url(p.url, found))
    host = parts.hostname or ""
    literal = _address(host)
    if literal is not None and literal.is_link_local:
        raise NotAllowed(f"http target {host!r}: link-local addresses are never called")
    access().check("http", host)
    address = pin(host, parts.port or (443 if parts.scheme.lower() == "https" else 80))
    query = {k: templates.render_text(v, found) for k, v in p.query.items()}
    if query:
        joined = "&".join(q for q in (parts.query, urlencode(query)) if q)
        parts = parts._replace(query=joined)
    headers = HTTPHeaderDict(
        {k: templates.render_header(k, v, found) for k, v in p.headers.items()}
    )
    headers.setdefault("Host", parts.netloc)
    headers.setdefault("Idempotency-Key", ctx.idempotency_key)
    body: bytes | None = None
    if p.json_body is not None:
        body = json.dumps(templates.render_json(p.json_body, found)).encode()
        headers.setdefault("Content-Type", "application/json")
    elif p.text is not None:
        body = templates.render_text(p.text, found).encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    return Pinned(urlunsplit(parts), address), headers, body


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
    p: HttpParams, to: Pinned, headers: HTTPHeaderDict, body: bytes | None, left: float
) -> tuple[int, bytes, Any]:
    """One request, to the pinned address: its status, up to `max_response_bytes + 1` of its
    body, its headers."""
    parts = urlsplit(to.url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    tls = {"server_hostname": host, "assert_hostname": host} if scheme == "https" else None
    pool = _POOL.connection_from_host(to.address, port, scheme, pool_kwargs=tls)
    target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    response = pool.urlopen(
        p.method,
        target,
        body=body,
        headers=headers,
        timeout=urllib3.Timeout(connect=min(left, 10.0), read=left),
        redirect=False,
        retries=False,
        assert_same_host=False,
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


def _note(where: str, attempt: int, outcome: str, ok: bool) -> None:
    """One line per attempt in the slice's run log (if it keeps one): what it got."""
    slice_log = runlog.current()
    if slice_log is not None:
        level = LogLevel.INFO if ok else LogLevel.WARNING
        slice_log.add(level, "http", f"{where}: attempt {attempt}: {outcome}")


def call(p: HttpParams, data: Any, ctx: TargetContext) -> dict[str, Any]:
    """Make the request; its status, attempts and a body excerpt, or TargetFailed. Each
    attempt's outcome is a line of the slice's run log."""
    to, headers, body = _request(p, ctx)
    where = f"{p.method} " + urlunsplit(urlsplit(to.url)._replace(query="", fragment=""))
    deadline = time.monotonic() + p.timeout
    last, attempt = "timed out", 0
    while attempt <= p.retries and (left := deadline - time.monotonic()) > 0:
        attempt += 1
        try:
            status, got, answered = _attempt(p, to, headers, body, left)
        except urllib3.exceptions.HTTPError as exc:
            last = f"{type(exc).__name__} (no answer)"
            _note(where, attempt, last, False)
            if not _wait(_backoff(attempt), deadline):
                break
            continue
        text, cut = excerpt(got, p.max_response_bytes)
        ok = status in p.expect if p.expect else 200 <= status < 300
        _note(where, attempt, f"status {status}", ok)
        if ok:
            return _result(status, attempt, text, cut, answered)
        last = f"status {status}: {text[:200]}"
        after = _retry_after(answered)
        if status not in RETRIED or not _wait(
            _backoff(attempt) if after is None else after, deadline
        ):
            break
    raise TargetFailed(f"http {where}: {last} (after {attempt} attempts)")
