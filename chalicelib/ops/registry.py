"""The operation registry: readers (slicers) and processors, looked up by `_op` name."""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chalicelib.domain.errors import InvalidInput

MAX_SLICES = 100_000


@dataclass(frozen=True)
class SliceContext:
    """What a processor knows about the slice it runs on."""

    ex_id: str
    job_id: str
    order: int
    attempt: int
    args: str | None


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(Params):
    pass


class RangeParams(Params):
    start: int = 0
    end: int = Field(ge=0)
    size: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _bounded(self) -> RangeParams:
        if self.end < self.start:
            raise ValueError("end must be >= start")
        if (self.end - self.start + self.size - 1) // self.size > MAX_SLICES:
            raise ValueError(f"more than {MAX_SLICES} slices")
        return self


class SleepParams(Params):
    seconds: float = Field(default=0.1, ge=0, le=900)


class FailParams(Params):
    slices: list[int] = Field(default_factory=list)
    fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    times: int | None = Field(default=None, ge=1)
    message: str = "injected failure"


Reader = Callable[[Any, str | None], Iterator[dict[str, Any]]]
Processor = Callable[[Any, Any, SliceContext], Any]


@dataclass(frozen=True)
class OpSpec:
    name: str
    params: type[Params]
    reader: Reader | None = None
    processor: Processor | None = None


class OpFailed(Exception):
    """A processor's deliberate failure (the `fail` op)."""


def _noop_reader(p: Any, args: str | None) -> Iterator[dict[str, Any]]:
    yield {}


def _range_reader(p: Any, args: str | None) -> Iterator[dict[str, Any]]:
    for lo in range(p.start, p.end, p.size):
        yield {"start": lo, "end": min(lo + p.size, p.end)}


def _noop(p: Any, data: Any, ctx: SliceContext) -> Any:
    return data


def _sleep(p: Any, data: Any, ctx: SliceContext) -> Any:
    time.sleep(p.seconds)
    return data


def _chosen(ex_id: str, order: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"{ex_id}:{order}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def _fail(p: Any, data: Any, ctx: SliceContext) -> Any:
    chosen = ctx.order in p.slices or _chosen(ctx.ex_id, ctx.order, p.fraction)
    if chosen and (p.times is None or ctx.attempt <= p.times):
        raise OpFailed(f"{p.message} (slice {ctx.order}, attempt {ctx.attempt})")
    return data


def _echo(p: Any, data: Any, ctx: SliceContext) -> Any:
    """The slice's request and the run's arguments (OpenSpecimen's rtArgs), split as a
    shell would split them: what a processor receives, for tests and drills."""
    return {"request": data, "args": shlex.split(ctx.args) if ctx.args else []}


REGISTRY: dict[str, OpSpec] = {
    s.name: s
    for s in (
        OpSpec("noop", NoParams, reader=_noop_reader, processor=_noop),
        OpSpec("range", RangeParams, reader=_range_reader),
        OpSpec("sleep", SleepParams, processor=_sleep),
        OpSpec("fail", FailParams, processor=_fail),
        OpSpec("echo", NoParams, processor=_echo),
    )
}


def _spec(index: int, op: dict[str, Any], role: str) -> tuple[OpSpec, Params]:
    name = op.get("_op")
    spec = REGISTRY.get(str(name))
    where = f"operations[{index}]"
    if spec is None:
        raise InvalidInput(
            f"{where}._op: unknown operation {name!r}",
            [
                {
                    "field": f"{where}._op",
                    "reason": f"unknown operation {name!r}; known: " + ", ".join(sorted(REGISTRY)),
                }
            ],
        )
    if (role == "reader" and spec.reader is None) or (role == "processor" and not spec.processor):
        raise InvalidInput(
            f"{where}._op: {name!r} is not a {role}",
            [{"field": f"{where}._op", "reason": f"{name!r} cannot be used as a {role}"}],
        )
    params = {k: v for k, v in op.items() if k != "_op"}
    try:
        return spec, spec.params.model_validate(params)
    except ValidationError as err:
        errors = [
            {"field": ".".join([where, *map(str, e["loc"])]), "reason": e["msg"]}
            for e in err.errors()
        ]
        raise InvalidInput(f"{errors[0]['field']}: {errors[0]['reason']}", errors) from err


def validate_operations(operations: list[dict[str, Any]]) -> None:
    """Check that the first op is a reader and the rest are processors, with valid params."""
    for i, op in enumerate(operations):
        _spec(i, op, "reader" if i == 0 else "processor")


def slice_requests(operations: list[dict[str, Any]], args: str | None) -> list[dict[str, Any]]:
    """The reader's slices for a run, in order."""
    spec, params = _spec(0, operations[0], "reader")
    assert spec.reader is not None
    out: list[dict[str, Any]] = []
    for request in spec.reader(params, args):
        out.append(request)
        if len(out) > MAX_SLICES:
            raise InvalidInput(f"the reader produced more than {MAX_SLICES} slices")
    return out


def process(operations: list[dict[str, Any]], request: Any, ctx: SliceContext) -> Any:
    """Run every processor over one slice's request; returns the last one's output."""
    data = request
    for i, op in enumerate(operations[1:], start=1):
        spec, params = _spec(i, op, "processor")
        assert spec.processor is not None
        data = spec.processor(params, data, ctx)
    return data
