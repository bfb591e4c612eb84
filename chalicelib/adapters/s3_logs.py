"""The RunLogStore port on S3: the stage's bucket, one object per batch of one slice
attempt's lines under `logs/<ex_id>/`, named by when it was written, so that listing the
execution's prefix from a key on (`StartAfter`) gives what was written since: paging and
following are one List and a Get per new object. Retention: the bucket's lifecycle rule
on `logs/` (infra)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from itertools import groupby
from typing import Any
from urllib.parse import quote, unquote

from botocore.exceptions import ClientError

from chalicelib.domain.errors import InvalidInput, StoreUnavailable
from chalicelib.domain.logs import LogEntry, LogLevel, LogPage
from chalicelib.ports import Clock, RunLogStore

LOGS_PREFIX = "logs/"
# objects written this recently may still have, beside them, a batch of another worker not
# yet visible: a caught-up token points before them, so a follower reads them again
SETTLE_SECONDS = 2.0
MAX_GETS = 200  # objects read by one call at most (the token goes on from there)
RANK = {level: i for i, level in enumerate(LogLevel)}


def _encode_slice(slice_id: str) -> str:
    return quote(slice_id, safe="").replace(".", "%2E")


def _slice_of(name: str) -> str:
    """The slice of an object, from its name: `<ms>.<slice>.<attempt>.<seq>.jsonl`."""
    parts = name.split(".")
    return unquote(parts[1]) if len(parts) > 2 else ""


def entry_of(raw: dict[str, Any]) -> LogEntry:
    return LogEntry(**{**raw, "level": LogLevel(raw["level"])})


def bad_token() -> InvalidInput:
    return InvalidInput(
        "token: not a token this route gave",
        [{"field": "token", "reason": "not a token this route gave"}],
    )


def encode_token(key: str, skip: int) -> str:
    raw = json.dumps([key, skip], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None) -> tuple[str, int]:
    """(the name of the object read up to, how many of its lines were read; 0: all)."""
    if not token:
        return "", 0
    try:
        name, skip = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise bad_token() from None
    if not isinstance(name, str) or not isinstance(skip, int) or skip < 0 or "/" in name:
        raise bad_token()
    return name, skip


class S3RunLogStore(RunLogStore):
    """Run logs in `bucket` under `logs/`; S3 failures are StoreUnavailable (a 503)."""

    def __init__(self, client: Any, bucket: str, clock: Clock) -> None:
        self.client, self.bucket, self.clock = client, bucket, clock

    def _fail(self, err: Exception, what: str) -> StoreUnavailable:
        return StoreUnavailable(f"S3: {what} of run logs: {err}")

    def append(self, entries: Sequence[LogEntry]) -> None:
        """One object per (execution, slice, attempt) of the batch."""
        written = int(self.clock.now() * 1000)

        def attempt_of(e: LogEntry) -> tuple[str, str, int]:
            return e.ex_id, e.slice_id, e.attempt

        for (ex_id, slice_id, attempt), group in groupby(entries, key=attempt_of):
            lines = list(group)
            name = f"{written:013d}.{_encode_slice(slice_id)}.{attempt:04d}.{lines[0].seq:08d}"
            body = "\n".join(json.dumps(asdict(e)) for e in lines).encode()
            key = f"{LOGS_PREFIX}{ex_id}/{name}.jsonl"
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson"
                )
            except ClientError as err:
                raise self._fail(err, "put") from err

    def _names(self, prefix: str, after: str) -> Iterator[str]:
        """The execution's object names after `after`, in order."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if after:
            kwargs["StartAfter"] = prefix + after
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                for obj in page.get("Contents", []):
                    yield str(obj["Key"])[len(prefix) :]
        except ClientError as err:
            raise self._fail(err, "list") from err

    def _lines(self, prefix: str, name: str) -> list[LogEntry]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=prefix + name)["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return []  # expired meanwhile
            raise self._fail(err, "get") from err
        return [entry_of(json.loads(line)) for line in body.decode().splitlines() if line]

    def read(
        self,
        ex_id: str,
        *,
        slice_id: str | None = None,
        level: LogLevel | None = None,
        token: str | None = None,
        limit: int = 100,
    ) -> LogPage:
        prefix = f"{LOGS_PREFIX}{ex_id}/"
        after, skip = decode_token(token)
        floor = RANK[level] if level is not None else 0
        out: list[LogEntry] = []
        seen: set[tuple[str, int, int]] = set()  # a batch sent twice, at another time
        names = self._names(prefix, after)
        if skip:  # the object the last page stopped in
            names = _chain([after], names)
        gets, state = 0, (after, 0)
        for name in names:
            if slice_id is not None and _slice_of(name) != slice_id:
                state = (name, 0)
                continue
            if gets == MAX_GETS:
                return LogPage(out, encode_token(*state))
            gets += 1
            lines = self._lines(prefix, name)
            begin = skip if name == after else 0
            for i in range(begin, len(lines)):
                line = lines[i]
                identity = (line.slice_id, line.attempt, line.seq)
                if RANK[line.level] >= floor and identity not in seen:
                    seen.add(identity)
                    out.append(line)
                if len(out) == limit:
                    rest = i + 1 < len(lines)
                    return LogPage(out, encode_token(name, i + 1 if rest else 0))
            state = (name, 0)
        return LogPage(out, self._caught_up(state))

    def _caught_up(self, state: tuple[str, int]) -> str | None:
        """The token at the end of the log: before the objects written in the last
        `SETTLE_SECONDS`, so that a batch written meanwhile but not yet listed is not
        skipped (those objects' lines come again: the same slice_id, attempt and seq)."""
        name = state[0]
        if not name:
            return None
        settled = f"{int((self.clock.now() - SETTLE_SECONDS) * 1000):013d}"
        return encode_token(min(name, settled), 0)


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest
