"""Secrets by reference: `{{resolve:ssm:NAME}}` or `{{resolve:secretsmanager:NAME}}` in a
processor's parameters or a run's args (docs/api.md#secrets-by-reference).

A job and its runs store the reference; a worker replaces it with the secret's value just
before the processors run, and the value is redacted from whatever they return or raise.
Here: parsing, checking (a reference must name a secret under the stage's prefix),
substituting and redacting, all pure."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from chalicelib.domain.errors import DomainError, InvalidInput

Service = Literal["ssm", "secretsmanager"]
SERVICES: tuple[Service, ...] = ("ssm", "secretsmanager")
REDACTED = "***"

# anything that looks like a reference is one, so that a typo is refused, not passed on
_REFERENCE = re.compile(r"\{\{\s*resolve:([^:}]*):([^}]*)\}\}")
_NAME = re.compile(r"[A-Za-z0-9_.\-/]{1,1024}")


@dataclass(frozen=True)
class SecretRef:
    """A reference to one secret: the service that keeps it and its name."""

    service: Service
    name: str

    @property
    def text(self) -> str:
        return f"{{{{resolve:{self.service}:{self.name}}}}}"


class SecretUnavailable(DomainError):
    """A referenced secret could not be read when a slice ran (missing, or not allowed).
    Says which reference, never a value."""

    code = "secret_unavailable"

    def __init__(self, ref: SecretRef, reason: str) -> None:
        super().__init__(f"{ref.text}: {reason}")


def _walk(field: str, value: Any) -> Iterator[tuple[str, str]]:
    """Every string in a decoded JSON value (keys too), with the field that holds it."""
    stack = [(field, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            yield where, node
        elif isinstance(node, dict):
            for key, child in node.items():
                yield f"{where}.{key}", str(key)
                stack.append((f"{where}.{key}", child))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(node))


def has_references(value: Any) -> bool:
    """Whether any string in `value` holds a reference (checked or not)."""
    return any("{{" in text and _REFERENCE.search(text) for _, text in _walk("", value))


def _parse(field: str, service: str, name: str, prefix: str) -> SecretRef:
    def refused(reason: str) -> InvalidInput:
        return InvalidInput(f"{field}: {reason}", [{"field": field, "reason": reason}])

    if service not in SERVICES:
        raise refused(f"unknown secret service {service!r}; use one of: " + ", ".join(SERVICES))
    if not _NAME.fullmatch(name) or "//" in name or "/../" in f"{name}/":
        raise refused(f"{name!r} is not a secret name (letters, digits and _.-/)")
    if not name.startswith(prefix):
        raise refused(f"names a secret outside this stage's prefix {prefix!r}")
    return SecretRef("ssm" if service == "ssm" else "secretsmanager", name)


def check_references(field: str, value: Any, prefix: str) -> list[SecretRef]:
    """The references in `value` (a run's args, an op's parameters), each checked: a known
    service and a name under the stage's `prefix`; else InvalidInput naming the field."""
    refs = []
    for where, text in _walk(field, value):
        for match in _REFERENCE.finditer(text):
            refs.append(_parse(where, match[1].strip(), match[2].strip(), prefix))
    return refs


def refuse_references(field: str, value: Any, reason: str) -> None:
    """InvalidInput naming the field if `value` holds any reference (where none resolves)."""
    for where, text in _walk(field, value):
        if _REFERENCE.search(text):
            raise InvalidInput(f"{where}: {reason}", [{"field": where, "reason": reason}])


class Substitution:
    """Replaces references by their values (read once each through `lookup`) and keeps
    the values it used, to redact them afterwards."""

    def __init__(self, lookup: Callable[[SecretRef], str], prefix: str) -> None:
        self.lookup, self.prefix = lookup, prefix
        self.values: dict[SecretRef, str] = {}

    def _value(self, match: re.Match[str]) -> str:
        ref = _parse("reference", match[1].strip(), match[2].strip(), self.prefix)
        if ref not in self.values:
            self.values[ref] = self.lookup(ref)
        return self.values[ref]

    def text(self, text: str) -> str:
        return _REFERENCE.sub(self._value, text) if "{{" in text else text

    def value(self, value: Any) -> Any:
        """`value` with every reference in its strings replaced (a copy; keys unchanged)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def redact(self, value: Any) -> Any:
        """`value` with every resolved secret replaced by `***`."""
        return redact(value, self.values.values())


def redact(value: Any, secrets: Collection[str]) -> Any:
    """`value` (text, or a decoded JSON value, keys included) with each of `secrets`
    replaced by `***`; the longest first, so that one secret inside another is not left
    half shown."""
    shown = sorted((s for s in secrets if s), key=len, reverse=True)
    if not shown:
        return value

    def scrub(node: Any) -> Any:
        if isinstance(node, str):
            for secret in shown:
                node = node.replace(secret, REDACTED)
            return node
        if isinstance(node, dict):
            return {scrub(k): scrub(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [scrub(v) for v in node]
        return node

    return scrub(value)


READER_REASON = (
    "a reader's parameters are not resolved (the slices it makes are stored): name secrets "
    "in a processor's parameters or in the run's args"
)


def check_operations(
    operations: list[dict[str, Any]], prefix: str, reader_resolved: bool = False
) -> None:
    """The references in a job's operations, checked at submit: none in the reader's
    parameters (unless `reader_resolved`: a target as the reader, which acts when its one
    slice is processed and is resolved then), each processor's under the stage's `prefix`."""
    for i, op in enumerate(operations):
        params = {k: v for k, v in op.items() if k != "_op"}
        if i == 0 and not reader_resolved:
            refuse_references("operations[0]", params, READER_REASON)
        else:
            check_references(f"operations[{i}]", params, prefix)
