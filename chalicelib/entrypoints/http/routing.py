"""A resource's routes, declared once at import and mounted on as many blueprints as the API
has prefixes (Chalice's own Blueprint cannot be registered twice: registering consumes the
options of its routes)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from chalice.app import Blueprint, Request, Response

from chalicelib.bootstrap import get_container
from chalicelib.config import Settings
from chalicelib.domain.errors import TooLarge, UnsupportedMediaType
from chalicelib.entrypoints.http.errors import api_errors
from chalicelib.entrypoints.http.identity import authorizer, caller, require_admin

# What a JSON route reads. Forms and text/plain are refused (415): a web page can post those
# across sites without asking, a JSON body it cannot.
BODY_TYPES = ["application/json"]
# Chalice itself would answer other types 415 in its own shape: every type reaches the route,
# which answers in the API's.
ANY_TYPE = ["*/*"]

View = Callable[..., Response]
"""A view takes the request, then the path's parameters by name."""


def query(request: Request) -> Mapping[str, str]:
    """The request's query parameters (Chalice gives None when there are none)."""
    return request.query_params or {}


@dataclass(frozen=True)
class Route:
    """`content_types`: the media types of the bodies the route reads (None: it reads none)."""

    path: str
    methods: tuple[str, ...]
    content_types: tuple[str, ...] | None
    view: View
    admin: bool = False  # only principals with the admin role may call it


class Routes:
    """Collects `@routes(path, ...)` views; `mount` registers them all on a blueprint, each
    behind the stage's authorizer (AWS IAM, SigV4, unless the stage chose a Cognito user
    pool; the local stack's gateway checks signatures as API Gateway does), wrapped in the
    error mapping and in the check of its caller (authenticated; an admin for an `admin`
    route), and handed the current request."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def __call__(
        self,
        path: str,
        methods: tuple[str, ...] = ("GET",),
        content_types: list[str] | None = None,
        *,
        admin: bool = False,
    ) -> Callable[[View], View]:
        def register(view: View) -> View:
            types = None if content_types is None else tuple(content_types)
            self.routes.append(Route(path, methods, types, view, admin))
            return view

        return register

    def moved(self, old: str, new: str) -> Routes:
        """The same views at the paths that start with `old`, starting with `new` instead
        (another path for the same routes, e.g. a seed's own)."""
        out = Routes()
        out.routes = [replace(r, path=new + r.path.removeprefix(old)) for r in self.routes]
        return out

    def mount(self, bp: Blueprint) -> None:
        # read here, uncached (as app.py reads the queue names): `chalice package` imports
        # the app with the stage's environment set; the process-wide settings come later
        checked_by = authorizer(Settings.from_env())
        for route in self.routes:
            bp.route(
                route.path,
                methods=[*route.methods],
                content_types=ANY_TYPE,
                authorizer=checked_by,
            )(_bound(bp, route))


def media_type(request: Request) -> str | None:
    """The request's declared media type, lowercased, without parameters (None: none)."""
    header = request.headers.get("content-type")
    return header.split(";")[0].strip().lower() if header else None


def check_body(request: Request, accepted: tuple[str, ...]) -> None:
    """415 unless the body is of an accepted type (no body may come without a type); for a
    JSON route, 413 over the stage's body size limit."""
    declared, body = media_type(request), request.raw_body
    if (declared is None and body) or (declared is not None and declared not in accepted):
        got = "no Content-Type" if declared is None else f"Content-Type {declared}"
        reason = f"got {got}; send {' or '.join(accepted)}"
        raise UnsupportedMediaType(
            f"Content-Type: {reason}", [{"field": "Content-Type", "reason": reason}]
        )
    if tuple(accepted) == tuple(BODY_TYPES) and body:
        limit = get_container().settings.limits.max_body_bytes
        if len(body) > limit:
            raise TooLarge(
                "body", "max_body_bytes", limit, f"{len(body)} bytes; the limit is {limit} bytes"
            )


def request_id(bp: Blueprint) -> str:
    """API Gateway's id of the request, else the Lambda invocation's, else a new one."""
    try:
        found = bp.current_request.context.get("requestId")
        found = found or getattr(bp.lambda_context, "aws_request_id", None)
    except Exception:  # outside a request: no request or context
        found = None
    return str(found) if found else str(uuid.uuid4())


def _bound(bp: Blueprint, route: Route) -> View:
    view = route.view

    def handler(**params: str) -> Response:
        request = bp.current_request
        who = caller(request)
        if route.admin:
            require_admin(who)
        if route.content_types is not None:
            check_body(request, route.content_types)
        return view(request, **params)

    handler.__name__ = view.__name__
    handler.__doc__ = view.__doc__
    wrapped: View = api_errors(handler, lambda: request_id(bp))
    return wrapped
