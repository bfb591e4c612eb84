"""One task attempt's process: started in its own session (a process group it leads, through
the shim that records its exit code), its output files read into the journal line by line,
its end found, and the whole group killed: SIGTERM, a grace, then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cadenza_tools.agent.journal import Entry, Journal

TAIL_BYTES = 4096
MAX_LINE = 8192


def start(journal: Journal, entry: Entry, base_env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the attempt's command; its process group id is its pid (journaled)."""
    out, err, exit_file = journal.output_paths(entry.task_id, entry.attempt)
    cmd = entry.command
    argv = list(cmd["argv"])
    if cmd.get("shell"):
        argv = ["/bin/sh", "-c", argv[0]]
    env = {
        **base_env,
        **{k: str(v) for k, v in (cmd.get("env") or {}).items()},
        "CADENZA_TASK_ID": entry.task_id,
        "CADENZA_ATTEMPT": str(entry.attempt),
        "CADENZA_SLICE": _json(cmd.get("slice")),
        "CADENZA_ARGS": str(cmd.get("args") or ""),
    }
    with out.open("ab") as stdout, err.open("ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cadenza_tools.agent.shim", str(exit_file), "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=cmd.get("cwd") or None,
            env=env,
            start_new_session=True,
        )
    journal.started(entry.key, proc.pid, time.time())
    return proc


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def collect(journal: Journal, entry: Entry, final: bool = False) -> None:
    """Journal the complete lines written since the last look (with `final`, the last
    partial line too), secrets' values redacted."""
    out, err, _ = journal.output_paths(entry.task_id, entry.attempt)
    secrets = _secret_values(entry)
    for stream, path, offset in (
        ("stdout", out, entry.out_offset),
        ("stderr", err, entry.err_offset),
    ):
        data = _read_from(path, offset)
        if not data:
            continue
        cut = len(data) if final else data.rfind(b"\n") + 1
        if cut <= 0:
            continue
        now = time.time()
        lines = [
            (now, _redact(raw.decode("utf-8", "replace"), secrets)[:MAX_LINE])
            for raw in data[:cut].splitlines()
        ]
        journal.add_lines(entry.key, stream, offset + cut, lines)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


def _secret_values(entry: Entry) -> list[str]:
    env = entry.command.get("env") or {}
    return [str(env[k]) for k in entry.command.get("secret_env") or [] if env.get(k)]


def _redact(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return text


def exit_code(journal: Journal, entry: Entry) -> int | None:
    """The code the shim recorded, once the command has ended."""
    _, _, exit_file = journal.output_paths(entry.task_id, entry.attempt)
    try:
        return int(exit_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def tail(journal: Journal, entry: Entry) -> str:
    """The end of the attempt's output (stdout, else stderr), capped."""
    out, err, _ = journal.output_paths(entry.task_id, entry.attempt)
    for path in (out, err):
        size = path.stat().st_size if path.exists() else 0
        if size:
            text = _read_from(path, max(0, size - TAIL_BYTES)).decode("utf-8", "replace")
            return _redact(text, _secret_values(entry))
    return ""


def alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, grace: float, reap: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM to the whole group, then SIGKILL to what is left after `grace` seconds."""
    _signal(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if reap is not None:
            reap.poll()
        if not alive(pgid):
            return
        time.sleep(0.05)
    _signal(pgid, signal.SIGKILL)
    if reap is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            reap.wait(5)


def _signal(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
