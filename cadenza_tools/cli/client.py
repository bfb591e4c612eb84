"""The HTTP client of the ``cadenza`` CLI: every command goes through the REST API.

Failures become :class:`CliError` subclasses, each with the process exit code it maps to,
so a script can tell "not found" from "conflict" from "the API is down".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from cadenza_tools.cli.auth import NoCredentials, auth_for

DEFAULT_URL = "http://127.0.0.1:5678"
DEFAULT_TIMEOUT = 30.0

EXIT_FAILED = 1  # the API refused the request (400 and other 4xx), or a run did not complete
EXIT_USAGE = 2  # as click: bad options or arguments
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_SERVER = 5  # 5xx from the API
EXIT_CONNECTION = 6  # nothing answered at the URL, or not in time

Params = Mapping[str, str | int | float | bool | None]


class CliError(Exception):
    """A failure to report on stderr: a headline, detail lines, and the exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class ApiError(CliError):
    """The API answered with an error status; its JSON error body, when it sent one."""

    def __init__(self, status: int, body: Any, text: str) -> None:
        self.status = status
        self.body = body
        if isinstance(body, dict) and ("message" in body or "error" in body):
            headline = str(body.get("message") or "")
            message = f"{body.get('error') or 'error'}: {headline} (HTTP {status})"
            details = [
                f"{e.get('field', '?')}: {e.get('reason', '')}"
                for e in body.get("errors") or []
                if isinstance(e, dict)
            ]
            details = [d for d in details if d != headline]
            details += [
                f"{k}: {v}" for k, v in body.items() if k not in ("error", "message", "errors")
            ]
        elif isinstance(body, dict) and "Message" in body:  # Chalice's and API Gateway's own
            message = f"HTTP {status}: {body['Message']}"
            details = []
        else:
            message = f"HTTP {status}: {text.strip()[:500] or '(empty body)'}"
            details = []
        super().__init__(message, details)


class NotFoundError(ApiError):
    exit_code = EXIT_NOT_FOUND


class ConflictError(ApiError):
    exit_code = EXIT_CONFLICT


class ServerError(ApiError):
    exit_code = EXIT_SERVER


class ConnectionFailed(CliError):
    exit_code = EXIT_CONNECTION


def api_error(response: requests.Response) -> ApiError:
    """The :class:`ApiError` subclass for an error response."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    status = response.status_code
    kind: type[ApiError] = ApiError
    signed = "Authorization" in response.request.headers
    if status == 403 and not signed:
        return ApiError(
            403,
            None,
            "the request was not signed: no credentials found (local stack: start it with "
            "`cadenza dev`, which creates them; AWS: configure AWS credentials)",
        )
    if _no_such_route(status, body):
        return NotFoundError(
            404,
            None,
            f"no route {response.request.method} {urlsplit(response.url).path} on this API "
            "(older than this CLI?)",
        )
    if status == 404:
        kind = NotFoundError
    elif status == 409:
        kind = ConflictError
    elif status >= 500:
        kind = ServerError
    return kind(status, body, response.text)


def _no_such_route(status: int, body: Any) -> bool:
    """API Gateway answers a signed request to an unknown path with 403 'Missing
    Authentication Token'; Chalice's local gateway with 'Authorization header requires...'."""
    message = str(body.get("message") or body.get("Message")) if isinstance(body, dict) else ""
    return status == 403 and (
        "Authentication Token" in message or "Authorization header requires" in message
    )


def _query(params: Params | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer():
            out[key] = str(int(value))
        else:
            out[key] = str(value)
    return out


class Client:
    """A thin wrapper over one ``requests.Session`` bound to the API's base URL."""

    def __init__(
        self, base_url: str = DEFAULT_URL, timeout: float = DEFAULT_TIMEOUT, user: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.user = user
        self.session = requests.Session()
        self._signing = False

    def _sign(self) -> None:
        """Sign from now on with the credentials for this URL (`cli.auth`), found once."""
        if self._signing:
            return
        try:
            self.session.auth = auth_for(self.base_url, self.user)
        except NoCredentials as err:
            raise CliError(str(err)) from err
        self._signing = True

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one request; an error status or a transport failure raises a CliError."""
        url = f"{self.base_url}{path}"
        self._sign()
        try:
            response = self.session.request(
                method,
                url,
                params=_query(params),
                json=json,
                data=data,
                headers=dict(headers or {}),
                timeout=self.timeout,
            )
        except requests.exceptions.Timeout as err:
            raise ConnectionFailed(
                f"no answer from the Cadenza API at {self.base_url} within {self.timeout:g}s",
                [f"{method} {path}: {err}"],
            ) from err
        except requests.exceptions.ConnectionError as err:
            raise ConnectionFailed(
                f"cannot connect to the Cadenza API at {self.base_url}",
                [
                    f"{type(err).__name__}: {_root_cause(err)}",
                    "is it running (cadenza dev)? set --url or CADENZA_URL",
                ],
            ) from err
        except requests.exceptions.RequestException as err:
            raise ConnectionFailed(f"request to {url} failed: {err}") from err
        if response.status_code >= 400:
            raise api_error(response)
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request whose answer is JSON; the decoded body."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as err:
            raise ServerError(response.status_code, None, response.text) from err

    def get(self, path: str, params: Params | None = None) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, params: Params | None = None, json: Any = None) -> Any:
        return self.call("POST", path, params=params, json=json)


def _root_cause(err: requests.exceptions.ConnectionError) -> str:
    text = str(err)
    return "connection refused" if "Connection refused" in text else text
