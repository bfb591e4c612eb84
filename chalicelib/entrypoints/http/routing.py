"""A resource's routes, declared once at import and mounted on as many blueprints as the API
has prefixes (Chalice's own Blueprint cannot be registered twice: registering consumes the
options of its routes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chalice.app import Blueprint, IAMAuthorizer, Request, Response

from chalicelib.entrypoints.http.errors import api_errors
from chalicelib.entrypoints.http.identity import caller, require_admin

# Teraslice's own examples post with `curl -d @job.json`, i.e. as a form: accept the body
# whatever its declared type and parse it as JSON.
BODY_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/octet-stream",
]

View = Callable[..., Response]
"""A view takes the request, then the path's parameters by name."""


def query(request: Request) -> Mapping[str, str]:
    """The request's query parameters (Chalice gives None when there are none)."""
    return request.query_params or {}


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    content_types: tuple[str, ...] | None
    view: View
    admin: bool = False  # only principals with the admin role may call it


# every route is authorized by API Gateway with AWS IAM (SigV4): the caller's IAM ARN is its
# principal; the local stack's gateway checks signatures the same way
AUTHORIZER = IAMAuthorizer()


class Routes:
    """Collects `@routes(path, ...)` views; `mount` registers them all on a blueprint, each
    behind the IAM authorizer, wrapped in the error mapping and in the check of its caller
    (authenticated; an admin for an `admin` route), and handed the current request."""

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

    def mount(self, bp: Blueprint) -> None:
        for route in self.routes:
            options = (
                {} if route.content_types is None else {"content_types": [*route.content_types]}
            )
            bp.route(route.path, methods=[*route.methods], authorizer=AUTHORIZER, **options)(
                _bound(bp, route)
            )


def _bound(bp: Blueprint, route: Route) -> View:
    def handler(**params: str) -> Response:
        request = bp.current_request
        who = caller(request)
        if route.admin:
            require_admin(who)
        return route.view(request, **params)

    handler.__name__ = route.view.__name__
    handler.__doc__ = route.view.__doc__
    wrapped: View = api_errors(handler)
    return wrapped
