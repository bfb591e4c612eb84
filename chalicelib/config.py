"""Settings read from the environment, lazily, once per process (or per explicit call)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _directory(prefix: str) -> str:
    """A name prefix that ends a path segment: `/cadenza/dev` must not admit
    `/cadenza/dev-other/...`."""
    return prefix if prefix.endswith("/") else prefix + "/"


@dataclass(frozen=True)
class Limits:
    """The limits of a stage (docs/operations.md#limits), on requests and per owner: each
    refusal names its field, the limit and its value."""

    max_body_bytes: int = 256 * 1024  # any request body
    max_json_depth: int = 32  # nesting of a JSON body, and of a stored job definition
    # a job definition as stored: each run keeps a copy, and a tick writes up to 100 runs in
    # one transaction, which DynamoDB caps at 4 MB
    max_job_bytes: int = 32 * 1024
    max_workers: int = 100  # workers of one execution (a job's `workers`, `_workers`)
    min_schedule_seconds: int = 1  # the shortest period between two slots of a schedule
    max_op_seconds: float = 50.0  # an op's declared run time (`sleep`): below the workers'
    # function timeouts (start_worker runs one-slice runs, slice_worker the others)
    max_jobs_per_owner: int = 1000  # live (not deleted) jobs one principal owns
    max_active_runs_per_owner: int = 100  # runs started on demand, active at once, per owner

    @classmethod
    def from_env(cls, e: Mapping[str, str]) -> Limits:
        d = cls()
        return cls(
            max_body_bytes=int(e.get("CADENZA_MAX_BODY_BYTES", d.max_body_bytes)),
            max_json_depth=int(e.get("CADENZA_MAX_JSON_DEPTH", d.max_json_depth)),
            max_job_bytes=int(e.get("CADENZA_MAX_JOB_BYTES", d.max_job_bytes)),
            max_workers=int(e.get("CADENZA_MAX_WORKERS", d.max_workers)),
            min_schedule_seconds=int(e.get("CADENZA_MIN_SCHEDULE_SECONDS", d.min_schedule_seconds)),
            max_op_seconds=float(e.get("CADENZA_MAX_OP_SECONDS", d.max_op_seconds)),
            max_jobs_per_owner=int(e.get("CADENZA_MAX_JOBS_PER_OWNER", d.max_jobs_per_owner)),
            max_active_runs_per_owner=int(
                e.get("CADENZA_MAX_ACTIVE_RUNS_PER_OWNER", d.max_active_runs_per_owner)
            ),
        )


@dataclass(frozen=True)
class Settings:
    """Everything that differs between stages, stacks and tests."""

    stage: str = "dev"
    region: str = "us-east-1"
    prefix: str = "cadenza-dev"
    endpoint_url: str | None = None
    dynamodb_endpoint: str | None = None
    jobs_table: str = "cadenza-dev-jobs"
    runs_table: str = "cadenza-dev-runs"
    slices_table: str = "cadenza-dev-slices"
    supervisor_table: str = "cadenza-dev-supervisor"
    alerts_table: str = "cadenza-dev-alerts"
    assets_table: str = "cadenza-dev-assets"
    alerts_topic: str = "cadenza-dev-alerts"
    # the topic's ARN, which the notifier publishes to: set by the template (deployed) or
    # by the local stack once it made the topic; the functions never create it
    alerts_topic_arn: str | None = None
    start_queue: str = "cadenza-dev-start"
    slice_queue: str = "cadenza-dev-slices"
    dead_letter_queue: str = "cadenza-dev-dlq"
    bucket: str = "cadenza-dev-results"
    due_shards: int = 8
    lease_shards: int = 4
    list_shards: int = 4
    stats_shards: int = 8
    lookahead_seconds: float = 60.0
    fire_concurrency: int = 8
    claim_rate: float = 400.0  # store calls a second the start workers' claims get (burst leads)
    max_receive_count: int = 5
    start_halted: bool = False
    create_tables: bool = True
    asset_max_bytes: int = 4 * 1024 * 1024
    asset_max_uncompressed: int = 50 * 1024 * 1024
    asset_max_ratio: float = 100.0
    asset_max_entries: int = 1000
    asset_cache_dir: str = "/tmp/cadenza-assets"
    asset_max_output: int = 8 * 1024 * 1024  # an asset op's answer (JSON), and its files
    limits: Limits = field(default_factory=Limits)
    # principals with the admin role: IAM ARNs, or patterns with `*` (CADENZA_ADMINS, comma
    # separated)
    admins: tuple[str, ...] = ()
    # where the secrets that jobs name must be: SSM parameters and Secrets Manager secrets
    # whose names start with it (CADENZA_SECRETS_PREFIX)
    secrets_prefix: str = "/cadenza/dev/"
    # how API Gateway authenticates callers: "iam" (SigV4; the principal is the caller's IAM
    # ARN) or "cognito" (a JWT of one of `cognito_user_pools`; admins are `admin_group`)
    authorizer: str = "iam"
    cognito_user_pools: tuple[str, ...] = ()
    admin_group: str = "cadenza-admins"
    extra: dict[str, str] = field(default_factory=dict)
    # what the targets of this stage's jobs may call (docs/targets.md#grants): (kind, name
    # pattern) pairs from CADENZA_TARGETS_ALLOW, e.g. `lambda:nightly-*,http:api.example.com`,
    # and from the older CADENZA_ALLOW_STATE_MACHINES / _ECS_CLUSTERS / _BUCKETS (aliases);
    # the workers' IAM policy is generated from it. Empty: no target may be called.
    targets_allow: tuple[tuple[str, str], ...] = ()
    # notifications (docs/notifications.md): the SNS topics jobs may name (ARNs,
    # CADENZA_NOTIFY_TOPICS, comma separated), and the `notify` a job without one gets
    # (CADENZA_NOTIFY_DEFAULT, JSON; checked as a job's is)
    notify_topics: tuple[str, ...] = ()
    notify_default: str | None = None
    # how long finished runs, their slices, ledger records and alerts are kept (DynamoDB
    # TTL), unless a job's `history_days` says otherwise (CADENZA_HISTORY_DAYS)
    history_days: int = 90

    @property
    def ddb_endpoint(self) -> str | None:
        return self.dynamodb_endpoint or self.endpoint_url

    def with_prefix(self, prefix: str) -> Settings:
        """The same settings with every resource name under another prefix."""
        return replace(
            self,
            prefix=prefix,
            jobs_table=f"{prefix}-jobs",
            runs_table=f"{prefix}-runs",
            slices_table=f"{prefix}-slices",
            supervisor_table=f"{prefix}-supervisor",
            alerts_table=f"{prefix}-alerts",
            assets_table=f"{prefix}-assets",
            alerts_topic=f"{prefix}-alerts",
            start_queue=f"{prefix}-start",
            slice_queue=f"{prefix}-slices",
            dead_letter_queue=f"{prefix}-dlq",
            bucket=f"{prefix}-results",
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        stage = e.get("CADENZA_STAGE", "dev")
        base = cls(stage=stage).with_prefix(e.get("CADENZA_PREFIX", f"cadenza-{stage}"))
        region = e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or "us-east-1"
        return replace(
            base,
            region=region,
            endpoint_url=e.get("AWS_ENDPOINT_URL") or None,
            dynamodb_endpoint=e.get("CADENZA_DYNAMODB_ENDPOINT")
            or e.get("AWS_ENDPOINT_URL_DYNAMODB")
            or None,
            jobs_table=e.get("CADENZA_JOBS_TABLE", base.jobs_table),
            runs_table=e.get("CADENZA_RUNS_TABLE", base.runs_table),
            slices_table=e.get("CADENZA_SLICES_TABLE", base.slices_table),
            supervisor_table=e.get("CADENZA_SUPERVISOR_TABLE", base.supervisor_table),
            alerts_table=e.get("CADENZA_ALERTS_TABLE", base.alerts_table),
            alerts_topic=e.get("CADENZA_ALERTS_TOPIC", base.alerts_topic),
            alerts_topic_arn=e.get("CADENZA_ALERTS_TOPIC_ARN") or None,
            assets_table=e.get("CADENZA_ASSETS_TABLE", base.assets_table),
            start_queue=e.get("CADENZA_START_QUEUE", base.start_queue),
            slice_queue=e.get("CADENZA_SLICE_QUEUE", base.slice_queue),
            dead_letter_queue=e.get("CADENZA_DLQ", base.dead_letter_queue),
            bucket=e.get("CADENZA_BUCKET", base.bucket),
            due_shards=int(e.get("CADENZA_DUE_SHARDS", base.due_shards)),
            lease_shards=int(e.get("CADENZA_LEASE_SHARDS", base.lease_shards)),
            stats_shards=int(e.get("CADENZA_STATS_SHARDS", base.stats_shards)),
            lookahead_seconds=float(e.get("CADENZA_LOOKAHEAD_SECONDS", base.lookahead_seconds)),
            fire_concurrency=int(e.get("CADENZA_FIRE_CONCURRENCY", base.fire_concurrency)),
            claim_rate=float(e.get("CADENZA_CLAIM_RATE", base.claim_rate)),
            max_receive_count=int(e.get("CADENZA_MAX_RECEIVE_COUNT", base.max_receive_count)),
            start_halted=_bool(e.get("CADENZA_START_HALTED")),
            create_tables=_bool(e.get("CADENZA_CREATE_TABLES"), default=True),
            asset_max_bytes=int(e.get("CADENZA_ASSET_MAX_BYTES", base.asset_max_bytes)),
            asset_max_uncompressed=int(
                e.get("CADENZA_ASSET_MAX_UNCOMPRESSED", base.asset_max_uncompressed)
            ),
            asset_max_ratio=float(e.get("CADENZA_ASSET_MAX_RATIO", base.asset_max_ratio)),
            asset_max_entries=int(e.get("CADENZA_ASSET_MAX_ENTRIES", base.asset_max_entries)),
            asset_cache_dir=e.get("CADENZA_ASSET_CACHE_DIR", base.asset_cache_dir),
            asset_max_output=int(e.get("CADENZA_ASSET_MAX_OUTPUT", base.asset_max_output)),
            limits=Limits.from_env(e),
            admins=_list(e.get("CADENZA_ADMINS")),
            secrets_prefix=_directory(e.get("CADENZA_SECRETS_PREFIX") or f"/cadenza/{stage}/"),
            authorizer=_authorizer(e),
            cognito_user_pools=_list(e.get("CADENZA_COGNITO_USER_POOL_ARNS")),
            admin_group=e.get("CADENZA_ADMIN_GROUP") or base.admin_group,
            targets_allow=_targets_allow(e),
            notify_topics=_list(e.get("CADENZA_NOTIFY_TOPICS")),
            notify_default=_json_object("CADENZA_NOTIFY_DEFAULT", e.get("CADENZA_NOTIFY_DEFAULT")),
            history_days=_positive("CADENZA_HISTORY_DAYS", e, base.history_days),
        )


def _json_object(name: str, value: str | None) -> str | None:
    """A setting holding a JSON object, checked where it is read (at import, not at a
    request)."""
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as err:
        raise ValueError(f"{name}: not JSON: {err}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name}: expected a JSON object")
    return value


def _positive(name: str, e: Mapping[str, str], default: int) -> int:
    """A whole number of at least 1 from `name`, checked where it is read."""
    value = int(e.get(name) or default)
    if value < 1:
        raise ValueError(f"{name}: expected a whole number of at least 1, got {value}")
    return value


AUTHORIZERS = ("iam", "cognito")


def _authorizer(e: Mapping[str, str]) -> str:
    """CADENZA_AUTHORIZER, checked where it is read: a stage naming an unknown authorizer, or
    Cognito without a user pool, fails at import (`chalice package` too), not at a request."""
    chosen = (e.get("CADENZA_AUTHORIZER") or "iam").strip().lower()
    if chosen not in AUTHORIZERS:
        raise ValueError(f"CADENZA_AUTHORIZER: expected one of {AUTHORIZERS}, got {chosen!r}")
    if chosen == "cognito" and not _list(e.get("CADENZA_COGNITO_USER_POOL_ARNS")):
        raise ValueError("CADENZA_AUTHORIZER=cognito needs CADENZA_COGNITO_USER_POOL_ARNS")
    return chosen


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()


TARGET_KINDS = ("http", "lambda", "sqs", "sns", "eventbridge", "stepfunctions", "ecs", "s3")
_TARGET_NAME = re.compile(r"[A-Za-z0-9_.*:/\-]{1,256}")
# the settings the stepfunctions, ecs and s3 ops were allowed by before CADENZA_TARGETS_ALLOW
# covered them: read as its entries of that kind (deprecated, docs/targets.md#grants)
TARGET_ALIASES = {
    "CADENZA_ALLOW_STATE_MACHINES": "stepfunctions",
    "CADENZA_ALLOW_ECS_CLUSTERS": "ecs",
    "CADENZA_ALLOW_BUCKETS": "s3",
}


def _target_entry(setting: str, kind: str, pattern: str) -> tuple[str, str]:
    kind, pattern = kind.strip().lower(), pattern.strip()
    if kind not in TARGET_KINDS:
        raise ValueError(
            f"{setting}: {kind}:{pattern!r}: expected kind:name, kind one of {TARGET_KINDS}"
        )
    if not _TARGET_NAME.fullmatch(pattern):
        raise ValueError(f"{setting}: {kind}:{pattern!r}: not a name or a pattern")
    if kind == "stepfunctions" and not pattern.startswith("arn:"):
        raise ValueError(f"{setting}: {kind}:{pattern!r}: a state machine is named by its ARN")
    return kind, pattern.lower() if kind == "http" else pattern


def _targets_allow(e: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """CADENZA_TARGETS_ALLOW and its aliases, checked where they are read (a typo fails at
    import, not when a slice runs): `kind:pattern` entries, comma separated; a pattern may
    hold `*`. The same entry given twice is kept once."""
    out = [
        _target_entry("CADENZA_TARGETS_ALLOW", *entry.partition(":")[::2])
        for entry in _list(e.get("CADENZA_TARGETS_ALLOW"))
    ]
    for setting, kind in TARGET_ALIASES.items():
        out += [_target_entry(setting, kind, name) for name in _list(e.get(setting))]
    return tuple(dict.fromkeys(out))
