"""Templates in targets' parameters (docs/targets.md#templates): `{{ slot }}`,
`{{ scheduled_time }}`, `{{ run_id }}`, `{{ args }}`, `{{ attempt }}`, `{{ job_id }}` in
string values, replaced by the slice's values as data when the target is called.

A value is never evaluated: each name is looked up and its text put in place, once (a value
that itself looks like a template stays as it is), escaped for where it goes: percent-quoted
in a URL, refused in a header if it would break the line, a JSON string's content in a JSON
body (the body is built as a value and serialized after, so it stays valid JSON). Any other
`{{ name }}` is refused when the job is submitted, naming its field; `{{resolve:...}}`
(a secret, chalicelib/domain/secrets.py) is not a template and is left alone here."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from chalicelib.domain.errors import InvalidInput

NAMES = ("slot", "scheduled_time", "run_id", "args", "attempt", "job_id")

# a name without a colon: `{{resolve:ssm:X}}` is a secret's reference, not a template
_TEMPLATE = re.compile(r"\{\{\s*([^{}:]*?)\s*\}\}")
_LINE_BREAKS = re.compile(r"[\r\n\x00]")


class TemplateContext(Protocol):
    """What a template's values come from: the slice's context (SliceContext)."""

    @property
    def ex_id(self) -> str: ...

    @property
    def job_id(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    @property
    def args(self) -> str | None: ...

    @property
    def slot(self) -> str: ...


def values(ctx: TemplateContext) -> dict[str, str]:
    """Each template name's text for this slice. `scheduled_time`: the slot's time (an
    on-demand run's: its request time), ISO 8601 UTC."""
    return {
        "slot": ctx.slot,
        "scheduled_time": ctx.slot.split("#", 1)[0],
        "run_id": ctx.ex_id,
        "args": ctx.args or "",
        "attempt": str(ctx.attempt),
        "job_id": ctx.job_id,
    }


def _strings(field: str, value: Any) -> Iterator[tuple[str, str]]:
    """Every string in a decoded JSON value (keys too), with the field that holds it."""
    if isinstance(value, str):
        yield field, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield f"{field}.{key}", str(key)
            yield from _strings(f"{field}.{key}", child)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _strings(f"{field}[{i}]", child)


def unknown_names(field: str, value: Any) -> list[tuple[str, str]]:
    """(field, reason) for each `{{ name }}` in `value`'s strings that is not a template
    name (keys may hold none: a key is not substituted)."""
    found = []
    for where, text in _strings(field, value):
        for match in _TEMPLATE.finditer(text):
            name = match[1]
            if name not in NAMES:
                found.append(
                    (where, f"unknown template {{{{ {name} }}}}; known: {', '.join(NAMES)}")
                )
    return found


def check(value: Any, field: str = "") -> Any:
    """`value` if every template in it is known, else ValueError naming the first unknown
    one (for a pydantic validator, whose error names the parameter). Keys may hold none."""
    for where, reason in unknown_names(field, value):
        raise ValueError(f"{where.lstrip('.')}: {reason}" if where.strip(".") else reason)
    if isinstance(value, dict):
        for key in value:
            if _TEMPLATE.search(str(key)):
                raise ValueError(
                    f"{field}.{key}: a key is not substituted; use a value".lstrip(".")
                )
    return value


def check_field(field: str, value: Any) -> None:
    """InvalidInput naming the field if `value` holds an unknown template (for callers
    outside an op's params model)."""
    for where, reason in unknown_names(field, value):
        raise InvalidInput(f"{where}: {reason}", [{"field": where, "reason": reason}])


def _sub(text: str, found: Mapping[str, str], escape: Any = None) -> str:
    if "{{" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        value = found[match[1]] if match[1] in found else match[0]
        return escape(value) if escape is not None and match[1] in found else value

    return _TEMPLATE.sub(one, text)


def render_text(text: str, found: Mapping[str, str]) -> str:
    """A plain text (a text body, a message) with its templates replaced."""
    return _sub(text, found)


def render_url(url: str, found: Mapping[str, str]) -> str:
    """A URL with its templates replaced by their percent-quoted values: a value cannot add
    a path segment, a query parameter or a fragment."""
    return _sub(url, found, lambda v: quote(v, safe=""))


def render_header(name: str, text: str, found: Mapping[str, str]) -> str:
    """A header's value with its templates replaced; ValueError if a value would break the
    header's line."""
    out = _sub(text, found)
    if _LINE_BREAKS.search(out):
        raise ValueError(f"header {name}: a template's value holds a line break")
    return out


def render_json(value: Any, found: Mapping[str, str]) -> Any:
    """A decoded JSON value with the templates in its strings replaced (keys unchanged):
    data inside strings, so the serialized body stays valid JSON."""
    if isinstance(value, str):
        return _sub(value, found)
    if isinstance(value, dict):
        return {k: render_json(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [render_json(v, found) for v in value]
    return value
