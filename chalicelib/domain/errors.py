"""Domain errors: what can go wrong, said in the domain's words (the API maps them to HTTP)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain and services raise on purpose."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        body.update(self.details)
        return body


class InvalidInput(DomainError):
    """The request names a field with a value the domain refuses."""

    status_code = 400
    code = "invalid_input"

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, errors=errors or [])


class LimitExceeded(InvalidInput):
    """A request over one of the stage's limits: names the field, the limit and its value."""

    status_code = 400
    code = "limit_exceeded"

    def __init__(self, field: str, limit: str, maximum: float, reason: str) -> None:
        super().__init__(f"{field}: {reason}", [{"field": field, "reason": reason}])
        self.details.update(limit=limit, max=maximum)


class TooLarge(LimitExceeded):
    """A body, or what would be stored of it, over a size limit."""

    status_code = 413
    code = "too_large"


class OwnerLimitReached(LimitExceeded):
    """The owner holds as many of something (jobs, active runs) as its stage allows: a 429
    naming the limit, until one is deleted or ends."""

    status_code = 429


class UnsupportedMediaType(InvalidInput):
    """A body of a media type the route does not read."""

    status_code = 415
    code = "unsupported_media_type"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    """A state change that the record's current state does not allow, or a lost race."""

    status_code = 409
    code = "conflict"


class IllegalTransition(Conflict):
    """The transition table has no arrow from the current state to the target."""

    def __init__(self, machine: str, current: str, target: str) -> None:
        super().__init__(
            f"{machine}: cannot go from {current!r} to {target!r}",
            machine=machine,
            current_state=current,
            target_state=target,
        )
        self.current = current
        self.target = target


class StoreUnavailable(DomainError):
    """The state store could not be reached after retries; nothing was half-written."""

    status_code = 503
    code = "store_unavailable"


class Unauthenticated(DomainError):
    """The request carries no authenticated principal."""

    status_code = 401
    code = "unauthenticated"


class Forbidden(DomainError):
    """The principal is known but lacks the role the route requires. Never used for an
    object another principal owns: that one is NotFound, so its existence is not told."""

    status_code = 403
    code = "forbidden"
