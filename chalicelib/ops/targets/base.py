"""What every target shares: the stage's allow-list (CADENZA_TARGETS_ALLOW, one for every
kind of target: `TargetAccess` holds it), the AWS clients targets call with, their failures
as slice errors, response excerpts."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any, Protocol

from chalicelib.config import get_settings
from chalicelib.ops.templates import TemplateContext

DEFAULT_EXCERPT = 4096
MAX_EXCERPT = 65536
ENV = "CADENZA_TARGETS_ALLOW"

_ARN = re.compile(r"arn:aws[a-z-]*:[^\s\"',]+")
_ACCOUNT = re.compile(r"(?<!\d)\d{12}(?!\d)")


class TargetContext(TemplateContext, Protocol):
    """What a target knows of its slice (SliceContext): its templates' values and its key."""

    @property
    def idempotency_key(self) -> str: ...


class TargetFailed(Exception):
    """A target's call failed (an unexpected status, a function error, a refused event): the
    slice fails with this text, and is retried under the job's `max_retries`."""


class TargetDenied(TargetFailed):
    """A call outside the stage's allow-list (refused before calling), or one AWS refused
    for want of a grant."""


class NotAllowed(TargetDenied):
    """A call to something the stage's allow-list does not name, refused before calling: no
    retry can mend it, the slice fails at once."""


def scrub(text: str) -> str:
    """An AWS error's text without ARNs or account ids (ours, in a role's name, or theirs)."""
    return _ACCOUNT.sub("<account>", _ARN.sub("<arn>", text))


def excerpt(data: bytes, limit: int) -> tuple[str, bool]:
    """The first `limit` bytes of a response as text, and whether it was cut."""
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


def body_bytes(value: Any) -> str:
    """A message's body: a string as it is, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def denied(kind: str, name: str) -> NotAllowed:
    """The refusal of a call outside the allow-list, naming the setting to change."""
    return NotAllowed(
        f"{kind} target {name!r} is not allowed in this stage: add it to {ENV} "
        "(docs/targets.md#grants)"
    )


@dataclass
class TargetAccess:
    """The stage's allow-list, (kind, name pattern) pairs for every kind of target, and a
    maker of AWS clients (`client(service, timeout)`)."""

    allow: tuple[tuple[str, str], ...]
    client: Callable[[str, float], Any]
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    def allows(self, kind: str, name: str) -> bool:
        """Whether a pattern of `kind` admits `name` (a host's name in any case)."""
        probe = name.lower() if kind == "http" else name
        return any(fnmatchcase(probe, p) for p in iter_allowed(kind, self.allow))

    def _of(self, kind: str) -> list[str]:
        return list(iter_allowed(kind, self.allow))

    def check(self, kind: str, name: str) -> None:
        """NotAllowed, before any call, unless the allow-list admits `name` for `kind`."""
        if not self.allows(kind, name):
            raise denied(kind, name)

    def state_machine(self, ref: str) -> str:
        """The allowed state machine's ARN that `ref` names: its ARN, or its name (the one
        allowed ARN, written without `*`, that ends with `:stateMachine:<name>`)."""
        if ref.startswith("arn:"):
            self.check("stepfunctions", ref)
            return ref
        for arn in self._of("stepfunctions"):
            if "*" not in arn and arn.rsplit(":", 1)[-1] == ref:
                return arn
        raise denied("stepfunctions", ref)

    def cluster(self, ref: str) -> str:
        """`ref` if it names an allowed cluster: an ARN the list admits, or a name it admits
        (as a name, or as the end of an allowed ARN)."""
        names = [p.rsplit("/", 1)[-1] if p.startswith("arn:") else p for p in self._of("ecs")]
        named = not ref.startswith("arn:") and any(fnmatchcase(ref, n) for n in names)
        if not (named or self.allows("ecs", ref)):
            raise denied("ecs", ref)
        return ref

    def bucket(self, name: str) -> str:
        """`name` if the stage allows its jobs that bucket."""
        self.check("s3", name)
        return name

    def cached(self, key: tuple[str, str], make: Callable[[], Any]) -> Any:
        """A value looked up once per process (a queue's URL, a topic's ARN)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


@lru_cache(maxsize=32)
def _boto_client(service: str, timeout: float) -> Any:
    """One client per service and timeout, for the process (clients are thread-safe)."""
    import boto3
    from botocore.config import Config

    s = get_settings()
    return boto3.client(  # type: ignore[call-overload]  # the service is a runtime string
        service,
        region_name=s.region,
        endpoint_url=s.endpoint_url,
        config=Config(
            connect_timeout=min(timeout, 10.0),
            read_timeout=timeout,
            retries={"mode": "standard", "max_attempts": 3},
        ),
    )


_lock = threading.Lock()
_access: TargetAccess | None = None


def access() -> TargetAccess:
    """This process's target access: the stage's settings, unless `use` set another."""
    global _access
    with _lock:
        if _access is None:
            _access = TargetAccess(get_settings().targets_allow, _boto_client)
        return _access


def no_client(service: str, timeout: float) -> Any:
    """A client maker for an access whose ops bring their own clients (`ops.clients`)."""
    raise RuntimeError(f"no {service} client here")


def use(chosen: TargetAccess | None) -> None:
    """Set (tests, local stacks) or reset (None: read the settings again) target access."""
    global _access
    with _lock:
        _access = chosen


def aws_error(kind: str, name: str, exc: Exception) -> TargetFailed:
    """A botocore error as a slice's error: AccessDenied said plainly, no ARN shown."""
    response = getattr(exc, "response", None) or {}
    err = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(err.get("Code", type(exc).__name__))
    if "AccessDenied" in code or "Authorization" in code or code == "UnauthorizedOperation":
        return TargetDenied(
            f"{kind} target {name!r}: AWS denied the call ({code}); the worker's role lacks the "
            f"grant (is it in {ENV}, and was the policy regenerated and deployed?)"
        )
    message = scrub(str(err.get("Message", exc)))
    return TargetFailed(f"{kind} target {name!r}: {code}: {message}")


def iter_allowed(kind: str, allow: tuple[tuple[str, str], ...]) -> Iterator[str]:
    """The patterns the allow-list has for `kind`."""
    return (p for k, p in allow if k == kind)
