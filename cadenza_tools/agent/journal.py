"""The agent's journal: a SQLite file in its directory that survives a restart. It keeps each
task attempt (what it runs, its process group, start, end, exit code), its output lines with
their sequence numbers, and what of it the control plane has acknowledged, so that after a
lost connection or a restart each line and each end is reported exactly once (the control
plane also keeps one of each by its key: task, attempt, seq)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    token TEXT NOT NULL,
    command TEXT NOT NULL,
    deadline_s REAL NOT NULL,
    pgid INTEGER,
    started_at REAL,
    out_offset INTEGER NOT NULL DEFAULT 0,
    err_offset INTEGER NOT NULL DEFAULT 0,
    next_seq INTEGER NOT NULL DEFAULT 0,
    ended_at REAL,
    exit_code INTEGER,
    error TEXT,
    tail TEXT,
    end_reported INTEGER NOT NULL DEFAULT 0,
    contact_at REAL,
    PRIMARY KEY (task_id, attempt)
);
CREATE TABLE IF NOT EXISTS lines (
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, attempt, seq)
);
"""


@dataclass(frozen=True)
class Entry:
    """One task attempt as journaled."""

    task_id: str
    attempt: int
    token: str
    command: dict[str, Any]
    deadline_s: float
    pgid: int | None
    started_at: float | None
    out_offset: int
    err_offset: int
    next_seq: int
    ended_at: float | None
    exit_code: int | None
    error: str | None
    tail: str | None
    end_reported: bool
    contact_at: float | None

    @property
    def key(self) -> tuple[str, int]:
        return self.task_id, self.attempt


class Journal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._lock = threading.Lock()
        self._db = sqlite3.connect(directory / "journal.sqlite3", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def output_paths(self, task_id: str, attempt: int) -> tuple[Path, Path, Path]:
        """Where the attempt's stdout, stderr and exit code are written."""
        base = self.directory / "tasks" / f"{task_id}.{attempt}"
        base.mkdir(parents=True, exist_ok=True)
        return base / "stdout", base / "stderr", base / "exit"

    def add(self, task: dict[str, Any]) -> bool:
        """Journal a task the control plane handed this agent (False: known already)."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO tasks (task_id, attempt, token, command, deadline_s)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    task["task_id"],
                    task["attempt"],
                    task["token"],
                    json.dumps(task["command"]),
                    float(task["deadline_seconds"]),
                ),
            )
            return cur.rowcount == 1

    def contact(self, keys: list[tuple[str, int]], at: float) -> None:
        """The control plane confirmed these leases in a request sent at `at` (wall time):
        their deadline runs from there, across a restart too."""
        with self._tx() as db:
            db.executemany(
                "UPDATE tasks SET contact_at = ? WHERE task_id = ? AND attempt = ?",
                [(at, *k) for k in keys],
            )

    def started(self, key: tuple[str, int], pgid: int, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE tasks SET pgid = ?, started_at = ? WHERE task_id = ? AND attempt = ?",
                (pgid, at, *key),
            )

    def add_lines(
        self, key: tuple[str, int], stream: str, offset: int, lines: list[tuple[float, str]]
    ) -> None:
        """New lines of one stream, read up to `offset`: numbered and kept with the offset
        in one transaction (a restart reads on from there, none twice)."""
        column = "out_offset" if stream == "stdout" else "err_offset"
        with self._tx() as db:
            (seq,) = db.execute(
                "SELECT next_seq FROM tasks WHERE task_id = ? AND attempt = ?", key
            ).fetchone()
            db.executemany(
                "INSERT INTO lines (task_id, attempt, seq, ts, stream, text) VALUES (?,?,?,?,?,?)",
                [(*key, seq + i, ts, stream, text) for i, (ts, text) in enumerate(lines)],
            )
            db.execute(
                f"UPDATE tasks SET {column} = ?, next_seq = ? WHERE task_id = ? AND attempt = ?",
                (offset, seq + len(lines), *key),
            )

    def ended(
        self, key: tuple[str, int], at: float, code: int | None, error: str | None, tail: str
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE tasks SET ended_at = ?, exit_code = ?, error = ?, tail = ?"
                " WHERE task_id = ? AND attempt = ? AND ended_at IS NULL",
                (at, code, error, tail, *key),
            )

    def entries(self, *, running: bool | None = None) -> list[Entry]:
        """Task attempts not yet reported ended (running: only those not ended / ended)."""
        query = "SELECT * FROM tasks WHERE end_reported = 0"
        if running is True:
            query += " AND ended_at IS NULL"
        elif running is False:
            query += " AND ended_at IS NOT NULL"
        with self._tx() as db:
            rows = db.execute(query + " ORDER BY task_id, attempt").fetchall()
        return [_entry(r) for r in rows]

    def all_entries(self) -> list[Entry]:
        with self._tx() as db:
            rows = db.execute("SELECT * FROM tasks ORDER BY task_id, attempt").fetchall()
        return [_entry(r) for r in rows]

    def unreported_lines(self, key: tuple[str, int], limit: int = 500) -> list[dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT seq, ts, stream, text FROM lines WHERE task_id = ? AND attempt = ?"
                " AND reported = 0 ORDER BY seq LIMIT ?",
                (*key, limit),
            ).fetchall()
        return [{"seq": s, "ts": ts, "stream": st, "text": t} for s, ts, st, t in rows]

    def reported(self, key: tuple[str, int], seqs: list[int], end: bool) -> None:
        """The control plane acknowledged these lines (and the end)."""
        with self._tx() as db:
            db.executemany(
                "UPDATE lines SET reported = 1 WHERE task_id = ? AND attempt = ? AND seq = ?",
                [(*key, s) for s in seqs],
            )
            if end:
                db.execute(
                    "UPDATE tasks SET end_reported = 1 WHERE task_id = ? AND attempt = ?", key
                )


def _entry(row: tuple[Any, ...]) -> Entry:
    (task_id, attempt, token, command, deadline, pgid, started, out_off, err_off, nxt) = row[:10]
    ended_at, code, error, tail, end_reported, contact_at = row[10:]
    return Entry(
        task_id,
        int(attempt),
        token,
        json.loads(command),
        float(deadline),
        pgid,
        started,
        int(out_off),
        int(err_off),
        int(nxt),
        ended_at,
        code,
        error,
        tail,
        bool(end_reported),
        contact_at,
    )
