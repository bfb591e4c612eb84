"""Structured logs: JSON lines with the ids of the message being handled, per thread."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from chalicelib.entrypoints import logs


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "cadenza-dev-slice_worker")
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    logs.configure()
    try:
        yield out
    finally:
        root.handlers, root.level = saved, level


def _records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_each_line_is_json_with_the_ids_of_its_message(lines: io.StringIO) -> None:
    log = logging.getLogger("chalicelib.services.slices")
    with logs.log_context(job_id="j1", slot="2027-01-15T08:00:00Z"):
        with logs.log_context(ex_id="e1"):
            log.info("slice %s done", "s1")
        log.warning("outer")
    log.info("none")
    first, second, third = _records(lines)
    assert first["message"] == "slice s1 done" and first["level"] == "INFO"
    assert (first["job_id"], first["slot"], first["ex_id"]) == ("j1", "2027-01-15T08:00:00Z", "e1")
    assert second["job_id"] == "j1" and "ex_id" not in second
    assert "job_id" not in third


def test_threads_keep_their_own_ids(lines: io.StringIO) -> None:
    log = logging.getLogger("chalicelib.services.start")
    barrier = threading.Barrier(2)

    def handle(job_id: str) -> None:
        with logs.log_context(job_id=job_id):
            barrier.wait()
            log.info("started %s", job_id)

    threads = [threading.Thread(target=handle, args=(j,)) for j in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for record in _records(lines):
        assert record["message"] == f"started {record['job_id']}"


def test_outside_lambda_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    root = logging.getLogger()
    before = root.handlers[:]
    logs.configure()
    assert root.handlers == before
