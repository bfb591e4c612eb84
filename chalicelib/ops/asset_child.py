"""The child side of an asset op (see `chalicelib.ops.sandbox`): run as a script by a fresh
`python -I -S`, it reads one call as JSON on stdin, imports the op from the bundle extracted in
its working directory, and writes `{"ok": result}` or `{"error": text}` on its stdout.

Standard library only, and nothing of Cadenza: the child must not need the worker's
packages, configuration or credentials. What the op prints or logs, and the traceback of
its failure, go to stderr as run log records (`RECORD` then JSON, one a line, each with
its time), which the worker reads back into the slice's run log; what bypasses Python's
streams (a subprocess, a C library) reaches stderr as plain text.
"""

from __future__ import annotations

import ctypes
import importlib
import itertools
import json
import logging
import os
import resource
import sys
import time
import traceback
import types
from typing import IO, Any

PR_SET_DUMPABLE = 4
RECORD = "\x1ecadenza-log "  # keep in step with chalicelib.ops.sandbox.RECORD


def _record(out: IO[str], level: str, source: str, message: str, ts: float | None = None) -> None:
    line = {"ts": time.time() if ts is None else ts, "level": level, "source": source}
    out.write(RECORD + json.dumps({**line, "message": message}) + "\n")
    out.flush()


class _Lines:
    """sys.stdout / sys.stderr of the op: each line a record."""

    def __init__(self, out: IO[str], source: str, level: str) -> None:
        self.out, self.source, self.level, self.partial = out, source, level, ""

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            _record(self.out, self.level, self.source, line)
        return len(text)

    def flush(self) -> None:
        if self.partial:
            _record(self.out, self.level, self.source, self.partial)
            self.partial = ""

    def isatty(self) -> bool:
        return False


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level = logging.getLevelName(min(max(record.levelno // 10 * 10, 10), 40)).lower()
        _record(self.stream, level, "logging", self.format(record), record.created)

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream


def _capture() -> IO[str]:
    """Point the op's streams and logging at run log records on stderr."""
    err = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace")
    sys.stdout = _Lines(err, "stdout", "info")
    sys.stderr = _Lines(err, "stderr", "warning")
    handler = _Handler(err)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    return err


def _harden(max_file_bytes: int) -> None:
    """Another op's child cannot read this one's memory or environment through /proc, and
    no file it writes (its answer included) grows past the cap."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))


def _op(call: dict[str, Any]) -> Any:
    package = str(call["package"])
    module = types.ModuleType(package)
    module.__path__ = [os.path.join(os.getcwd(), "bundle", str(call["root"]))]
    sys.modules[package] = module
    module_name, fn_name = str(call["target"]).split(":", 1)
    return getattr(importlib.import_module(f"{package}.{module_name}"), fn_name)


def _run(call: dict[str, Any]) -> Any:
    fn = _op(call)
    if call["role"] == "reader":
        limit = int(call["max_slices"]) + 1  # one more: the caller says "too many"
        return list(itertools.islice(fn(call["params"], call["args"]), limit))
    ctx = types.SimpleNamespace(**call["ctx"], files=None)
    return fn(call["params"], call["data"], ctx)


def main() -> None:
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the op's prints go to stderr, not into the answer
    err = _capture()
    call = json.loads(sys.stdin.read())
    _harden(int(call["max_output"]))
    try:
        out: dict[str, Any] = {"ok": _run(call)}
        text = json.dumps(out)
    except BaseException as exc:  # the op's failure, whatever it raised, is the answer
        # the class's name, never its module's path: the traceback is in the run log
        message = str(exc).strip()
        error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        text = json.dumps({"error": error})
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        _record(err, "error", "traceback", traceback.format_exc().rstrip("\n"))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if len(text.encode()) > int(call["max_output"]):
        text = json.dumps({"error": f"answer over the limit of {call['max_output']} bytes"})
    answer.write(text)
    answer.flush()


if __name__ == "__main__":
    main()
