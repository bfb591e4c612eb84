"""The operation registry: readers (slicers) and processors, looked up by `_op` name."""

from __future__ import annotations

import hashlib
import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from chalicelib.domain.errors import InvalidInput, LimitExceeded
from chalicelib.domain.secrets import Substitution, has_references
from chalicelib.ops import runlog, templates
from chalicelib.ops.params import Params as Params  # re-exported: ops and tests import it here
from chalicelib.ops.targets import aws as aws_targets
from chalicelib.ops.targets import http as http_target
from chalicelib.ports import BlobStore, SecretSource

MAX_SLICES = 100_000


@dataclass(frozen=True)
class SliceContext:
    """What a processor knows about the slice it runs on."""

    ex_id: str
    job_id: str
    order: int
    attempt: int
    args: str | None
    files: BlobStore | None = None
    slot: str = ""
    wait: dict[str, Any] | None = None  # a waiting slice's check: what its op started

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt and redelivery of this slice of this job's slot, so
        a target that dedups on it (HTTP `Idempotency-Key`, SQS FIFO deduplication id, a
        Step Functions execution name, an ECS client token) does the side effect once."""
        raw = f"{self.job_id}/{self.slot}/{self.order}".encode()
        return hashlib.sha256(raw).hexdigest()[:32]


class AnyParams(Params):
    """An asset op's parameters: whatever the job gives, handed over as a dict."""

    model_config = ConfigDict(extra="allow")

    def as_dict(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


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
    seconds: float = Field(default=0.1, ge=0, le=900, allow_inf_nan=False)


class FailParams(Params):
    """Which slices fail: those in `slices` and a `fraction` of the others; given neither,
    every slice (a `fail` op is written to fail)."""

    slices: list[int] = Field(default_factory=list)
    fraction: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    times: int | None = Field(default=None, ge=1)
    message: str = "injected failure"


class CsvParams(Params):
    columns: list[str] | None = Field(default=None, min_length=1, max_length=1000)


ARN_OR_NAME = Field(min_length=1, max_length=2048)


class StepFunctionsParams(Params):
    """Start an execution of `state_machine` (its ARN, or its name in the stage's
    allow-list) with `input` (any JSON; default: the slice's data); `wait`: the slice ends
    when the execution does, checked every `check_seconds`."""

    state_machine: str = ARN_OR_NAME
    input: Any = None
    wait: bool = False
    check_seconds: int = Field(default=30, ge=1, le=900)

    @field_validator("input")
    @classmethod
    def _templates(cls, value: Any) -> Any:
        return templates.check(value)


class EcsParams(Params):
    """Run one task of `task_definition` on `cluster` (in the stage's allow-list); with
    `subnets`, in awsvpc network mode."""

    cluster: str = ARN_OR_NAME
    task_definition: str = ARN_OR_NAME
    launch_type: Literal["FARGATE", "EC2", "EXTERNAL"] | None = None
    subnets: list[str] | None = Field(default=None, min_length=1, max_length=16)
    security_groups: list[str] = Field(default_factory=list, max_length=5)
    assign_public_ip: bool = False
    overrides: dict[str, Any] | None = None
    wait: bool = False
    check_seconds: int = Field(default=30, ge=1, le=900)

    @field_validator("overrides")
    @classmethod
    def _templates(cls, value: Any) -> Any:
        return templates.check(value)


class S3ReadParams(Params):
    """One slice per object under `prefix` in `bucket`; objects larger than `chunk_bytes`
    make one slice per range of that many bytes."""

    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = Field(default="", max_length=1024)
    chunk_bytes: int | None = Field(default=None, ge=1024)


class S3GetParams(Params):
    format: Literal["lines", "text", "json_lines", "base64"] = "lines"
    encoding: str = "utf-8"


class S3PutParams(Params):
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = Field(default="", max_length=1024)
    format: Literal["json_lines", "csv"] = "json_lines"
    columns: list[str] | None = Field(default=None, min_length=1, max_length=1000)


class CommandParams(Params):
    """A command run by a remote agent (docs/agents.md): `argv` (no shell; with `shell`, one
    string the agent's `/bin/sh -c` runs), `env` (values may be secret references), `cwd`,
    `timeout_seconds`, and which agent: `agent` (a name) or `labels` (any agent with all of
    them); `deadline_seconds`: how long the agent keeps running it without reaching the
    control plane (default: the agent's)."""

    argv: list[str] = Field(min_length=1, max_length=1000)
    shell: bool = False
    env: dict[str, str] = Field(default_factory=dict, max_length=200)
    cwd: str | None = Field(default=None, min_length=1, max_length=4096)
    timeout_seconds: float = Field(default=3600, gt=0, le=7 * 86_400, allow_inf_nan=False)
    agent: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)
    deadline_seconds: float | None = Field(default=None, ge=30, le=86_400, allow_inf_nan=False)

    @model_validator(mode="after")
    def _chosen(self) -> CommandParams:
        if (self.agent is None) == (not self.labels):
            raise ValueError("name the agent (agent) or the labels it must have (labels)")
        if self.shell and len(self.argv) != 1:
            raise ValueError("with shell, argv is one string: the script")
        return self


Reader = Callable[[Any, str | None], Iterator[dict[str, Any]]]
Processor = Callable[[Any, Any, SliceContext], Any]


@dataclass(frozen=True)
class OpSpec:
    """An op: its name, its params model, and what it does as a reader or a processor;
    `run_seconds`: the parameter that says how long it runs, if one does."""

    name: str
    params: type[Params]
    reader: Reader | None = None
    processor: Processor | None = None
    run_seconds: str | None = None
    # a target: as the reader it makes one slice, and acts when that slice is processed
    acts: bool = False


class OpSource(ABC):
    """Operations that a job's assets provide, ready to run (workers). A port, kept beside
    the OpSpec it returns so that `chalicelib.ports` needs nothing from the ops."""

    @abstractmethod
    def ops_for(self, assets: Sequence[str]) -> dict[str, OpSpec]:
        """The ops of these asset references (ids, names, name:version), loaded."""

    @abstractmethod
    def pin(self, assets: Sequence[str]) -> list[str]:
        """The ids these references name now (a name: its newest upload), so that every
        slice of a run loads the same bundles whatever is uploaded meanwhile."""


@dataclass(frozen=True)
class Secrets:
    """Where a worker reads the secrets that processors' parameters and runs' args name,
    and the stage's prefix that every such name must start with."""

    source: SecretSource
    prefix: str

    def substitution(self) -> Substitution:
        return Substitution(self.source.secret_value, self.prefix)


class RedactedError(Exception):
    """A processor's failure on a slice that used secrets, as text with their values
    redacted (the original exception is dropped, not chained)."""


def error_text(exc: BaseException) -> str:
    """An op's exception as runs record it (and the API shows it): its class's name and
    its message, never its module's path (`TargetDenied: ...`, not `chalicelib.ops...`);
    the traceback goes to the run log."""
    if isinstance(exc, RedactedError):
        return str(exc)
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def asset_ops(source: OpSource | None, assets: Sequence[str]) -> dict[str, OpSpec]:
    """The ops of these asset references (none without assets or a source to load them)."""
    return source.ops_for(assets) if source is not None and assets else {}


class OpFailed(Exception):
    """A processor's deliberate failure (the `fail` op)."""


def _noop_reader(p: Any, args: str | None) -> Iterator[dict[str, Any]]:
    yield {}


TARGETS = ("http", "lambda", "sqs", "sns", "eventbridge")
ONE_SLICE_READERS = frozenset({"noop", *TARGETS})  # built-in: an asset cannot take these names


def always_one_slice(operations: list[dict[str, Any]]) -> bool:
    """Whether the job's reader makes exactly one slice whatever the run's args."""
    return bool(operations) and operations[0].get("_op") in ONE_SLICE_READERS


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
    every = not p.model_fields_set & {"slices", "fraction"}
    chosen = every or ctx.order in p.slices or _chosen(ctx.ex_id, ctx.order, p.fraction)
    if chosen and (p.times is None or ctx.attempt <= p.times):
        raise OpFailed(f"{p.message} (slice {ctx.order}, attempt {ctx.attempt})")
    return data


def _echo(p: Any, data: Any, ctx: SliceContext) -> Any:
    """The slice's request and the run's arguments (OpenSpecimen's rtArgs), split as a
    shell would split them: what a processor receives, for tests and drills."""
    return {"request": data, "args": shlex.split(ctx.args) if ctx.args else []}


def _csv_result(p: Any, data: Any, ctx: SliceContext) -> Any:
    from chalicelib.ops.csv_result import write_part

    write_part(p, data, ctx)
    return data


def _stepfunctions(p: Any, data: Any, ctx: SliceContext) -> Any:
    from chalicelib.ops.waiting import start_execution

    return start_execution(p, data, ctx)


def _ecs(p: Any, data: Any, ctx: SliceContext) -> Any:
    from chalicelib.ops.waiting import run_task

    return run_task(p, data, ctx)


def _s3_reader(p: Any, args: str | None) -> Iterator[dict[str, Any]]:
    from chalicelib.ops.s3_data import read_objects

    return read_objects(p, args)


def _s3_get(p: Any, data: Any, ctx: SliceContext) -> Any:
    from chalicelib.ops.s3_data import get_object

    return get_object(p, data, ctx)


def _s3_put(p: Any, data: Any, ctx: SliceContext) -> Any:
    from chalicelib.ops.s3_data import put_object

    return put_object(p, data, ctx)


def _command(p: Any, data: Any, ctx: SliceContext) -> Any:
    raise OpFailed("a command runs on a remote agent, not in a worker function")


COMMAND = "command"


def agent_command(operations: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The `command` op of a run whose slices remote agents run, else None."""
    found = [op for op in operations[1:] if op.get("_op") == COMMAND]
    return dict(found[0]) if found else None


REGISTRY: dict[str, OpSpec] = {
    s.name: s
    for s in (
        OpSpec("noop", NoParams, reader=_noop_reader, processor=_noop),
        OpSpec("range", RangeParams, reader=_range_reader),
        OpSpec("sleep", SleepParams, processor=_sleep, run_seconds="seconds"),
        OpSpec("fail", FailParams, processor=_fail),
        OpSpec("echo", NoParams, processor=_echo),
        OpSpec("csv_result", CsvParams, processor=_csv_result),
        OpSpec("stepfunctions", StepFunctionsParams, processor=_stepfunctions),
        OpSpec("ecs", EcsParams, processor=_ecs),
        OpSpec("s3", S3ReadParams, reader=_s3_reader),
        OpSpec("s3_get", S3GetParams, processor=_s3_get),
        OpSpec("s3_put", S3PutParams, processor=_s3_put),
        *(
            OpSpec(name, params, _noop_reader, processor, run_seconds="timeout", acts=True)
            for name, params, processor in (
                ("http", http_target.HttpParams, http_target.call),
                ("lambda", aws_targets.LambdaParams, aws_targets.invoke),
                ("sqs", aws_targets.SqsParams, aws_targets.send),
                ("sns", aws_targets.SnsParams, aws_targets.publish),
                ("eventbridge", aws_targets.EventBridgeParams, aws_targets.put_event),
            )
        ),
        OpSpec(COMMAND, CommandParams, processor=_command),
    )
}

WAITING_OPS = frozenset({"stepfunctions", "ecs"})


def waits(operations: list[dict[str, Any]]) -> bool:
    """Whether the job's last op waits for what it started (`wait: true`): its runs are
    sliced, even with one slice, so the slice record can wait (docs/targets-waiting.md)."""
    last = operations[-1] if len(operations) > 1 else {}
    return last.get("_op") in WAITING_OPS and last.get("wait") is True


def runs_inline(operations: list[dict[str, Any]], slices: int) -> bool:
    """Whether a run of so many slices runs on its own record (one slice, not waiting,
    not a remote agent's command)."""
    return slices == 1 and not waits(operations) and agent_command(operations) is None


def check_wait(operations: list[dict[str, Any]], ctx: SliceContext) -> Any:
    """A waiting slice's check: only its last op runs again, given what it waits for
    (`ctx.wait`); the ops before it ran when it started."""
    spec, params = _spec(len(operations) - 1, operations[-1], "processor")
    assert spec.processor is not None
    return spec.processor(params, None, ctx)


def _unknown(where: str, name: object, known: list[str]) -> InvalidInput:
    return InvalidInput(
        f"{where}._op: unknown operation {name!r}",
        [
            {
                "field": f"{where}._op",
                "reason": f"unknown operation {name!r}; known: " + ", ".join(sorted(known)),
            }
        ],
    )


def _not_role(where: str, name: object, role: str) -> InvalidInput:
    return InvalidInput(
        f"{where}._op: {name!r} is not a {role}",
        [{"field": f"{where}._op", "reason": f"{name!r} cannot be used as a {role}"}],
    )


def _reason(kind: str, message: str) -> str:
    """Pydantic's words, but for NaN and infinity, which it calls not finite."""
    return "is not a number (NaN and infinity are refused)" if kind == "finite_number" else message


def _spec(
    index: int, op: dict[str, Any], role: str, extra: Mapping[str, OpSpec] | None = None
) -> tuple[OpSpec, Params]:
    name = op.get("_op")
    spec = REGISTRY.get(str(name)) or (extra or {}).get(str(name))
    where = f"operations[{index}]"
    if spec is None:
        raise _unknown(where, name, [*REGISTRY, *(extra or {})])
    if (role == "reader" and spec.reader is None) or (role == "processor" and not spec.processor):
        raise _not_role(where, name, role)
    params = {k: v for k, v in op.items() if k != "_op"}
    try:
        return spec, spec.params.model_validate(params)
    except ValidationError as err:
        errors = [
            {
                "field": ".".join([where, *map(str, e["loc"])]),
                "reason": _reason(e["type"], e["msg"]),
            }
            for e in err.errors()
        ]
        raise InvalidInput(f"{errors[0]['field']}: {errors[0]['reason']}", errors) from err


def validate_operations(
    operations: list[dict[str, Any]],
    declared: Mapping[str, frozenset[str]] | None = None,
    max_op_seconds: float | None = None,
) -> None:
    """Check that the first op is a reader and the rest are processors, with valid params,
    none running longer than `max_op_seconds`. `declared`: the ops the job's assets provide
    and their roles (their params are the asset's business, checked when they run)."""
    for i, op in enumerate(operations):
        _waits_last(i, op, len(operations))
        role = "reader" if i == 0 else "processor"
        name = str(op.get("_op"))
        if name not in REGISTRY and declared and name in declared:
            if role not in declared[name]:
                raise _not_role(f"operations[{i}]", name, role)
            continue
        spec, params = _spec(i, op, role, {k: OpSpec(k, AnyParams) for k in declared or {}})
        if name == COMMAND and len(operations) != 2:
            reason = "a command is the only processor, after the reader"
            raise InvalidInput(
                f"operations[{i}]._op: {reason}",
                [{"field": f"operations[{i}]._op", "reason": reason}],
            )
        if spec.run_seconds is not None and max_op_seconds is not None:
            _check_run_time(f"operations[{i}].{spec.run_seconds}", params, spec, max_op_seconds)


def _waits_last(index: int, op: dict[str, Any], count: int) -> None:
    """A waiting op must be the last: a check runs it again alone."""
    if op.get("_op") in WAITING_OPS and op.get("wait") is True and index != count - 1:
        field = f"operations[{index}].wait"
        raise InvalidInput(
            f"{field}: a waiting op must be the job's last operation",
            [{"field": field, "reason": "a waiting op must be the job's last operation"}],
        )


def _check_run_time(field: str, params: Params, spec: OpSpec, limit: float) -> None:
    seconds = float(getattr(params, spec.run_seconds or ""))
    if seconds > limit:
        raise LimitExceeded(
            field,
            "max_op_seconds",
            limit,
            f"{seconds:g} seconds; an op may run at most {limit:g} seconds, within its "
            "worker function's timeout",
        )


def slice_requests(
    operations: list[dict[str, Any]],
    args: str | None,
    extra: Mapping[str, OpSpec] | None = None,
) -> list[dict[str, Any]]:
    """The reader's slices for a run, in order (`extra`: the ops of the job's assets)."""
    spec, params = _spec(0, operations[0], "reader", extra)
    assert spec.reader is not None
    out: list[dict[str, Any]] = []
    for request in spec.reader(params, args):
        out.append(request)
        if len(out) > MAX_SLICES:
            raise InvalidInput(f"the reader produced more than {MAX_SLICES} slices")
    return out


def process(
    operations: list[dict[str, Any]],
    request: Any,
    ctx: SliceContext,
    extra: Mapping[str, OpSpec] | None = None,
    secrets: Secrets | None = None,
) -> Any:
    """Run every processor over one slice's request; returns the last one's output. With
    `secrets`, the references in the processors' parameters and the run's args are
    replaced by their values first, and those values are redacted from the output and from
    any error (RedactedError): they are never stored or returned."""
    acting = 0 if acting_reader(operations) else 1
    if secrets is None or not has_references([operations[acting:], ctx.args]):
        return _process(operations, request, ctx, extra)
    sub = secrets.substitution()
    slice_log = runlog.current()
    if slice_log is not None:
        slice_log.redact_with(sub.redact)
    try:
        resolved = [*operations[:acting], *sub.value(operations[acting:])]
        args = None if ctx.args is None else sub.text(ctx.args)
        return sub.redact(_process(resolved, request, replace(ctx, args=args), extra))
    except Exception as exc:
        if slice_log is not None:  # redacted when written; the exception is not kept
            slice_log.failure(exc)
        raise RedactedError(sub.redact(error_text(exc))) from None


def _process(
    operations: list[dict[str, Any]],
    request: Any,
    ctx: SliceContext,
    extra: Mapping[str, OpSpec] | None = None,
) -> Any:
    data = request
    first = 0 if acting_reader(operations) else 1
    for i, op in enumerate(operations[first:], start=first):
        spec, params = _spec(i, op, "processor", extra)
        assert spec.processor is not None
        data = spec.processor(params, data, ctx)
    return data


def acting_reader(operations: list[dict[str, Any]]) -> bool:
    """Whether the job's reader is a target, which acts on its one slice."""
    spec = REGISTRY.get(str(operations[0].get("_op"))) if operations else None
    return spec is not None and spec.acts
