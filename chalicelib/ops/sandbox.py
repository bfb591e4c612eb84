"""Asset ops run in a child process, one per call: a fresh `python -I -S` (so whatever the
op changes of an interpreter, the ops registry included, dies with it; the standard library
and the bundle are all it imports, on AWS as locally), in a working directory
of its own holding a private copy of the bundle, with an environment that holds none of the
worker's: no AWS credentials or endpoints, no container credentials URI, no `CADENZA_*`
naming tables, queues or the bucket. The call goes in as JSON on stdin and the answer comes
back as JSON, size-capped, within a timeout below the worker function's.

What a child can still reach: docs/auth.md#what-an-asset-can-do.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from chalicelib.domain.assets import Asset, AssetLimits, checked_members, read_members
from chalicelib.domain.logs import LogLevel
from chalicelib.ops import runlog

log = logging.getLogger(__name__)
CHILD = str(Path(__file__).with_name("asset_child.py"))
# passed through as they are: none says where Cadenza's resources are or who it is
PASSED = ("PATH", "LANG", "LC_ALL", "TZ", "LD_LIBRARY_PATH")
PR_SET_DUMPABLE = 4
TAIL = 4096
RECORD = b"\x1ecadenza-log "  # a run log record's start (asset_child.RECORD)
POLL_SECONDS = 1.0  # how often a running child's output is read into its run log


class AssetUnavailable(RuntimeError):
    """A job's asset cannot be loaded: its bundle is gone, altered or broken."""


class AssetOpFailed(RuntimeError):
    """An asset op raised, timed out, answered too much or died; the message says which."""


def child_env(work: Path) -> dict[str, str]:
    """The child's whole environment. botocore is also told to look nowhere for credentials
    (no config files, no instance metadata)."""
    env = {k: os.environ[k] for k in PASSED if k in os.environ}
    env.update(
        HOME=str(work),
        TMPDIR=str(work / "tmp"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


_undumpable = threading.Lock()
_done: list[bool] = []


def keep_out_of_proc() -> None:
    """Make this process non-dumpable (Linux), once: its /proc entries (environ, mem) are
    then no longer readable by its children, which run as the same user."""
    with _undumpable:
        if not _done:
            if sys.platform.startswith("linux"):
                ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
            _done.append(True)


def extract(data: bytes, into: Path, limits: AssetLimits) -> None:
    """Extract a bundle with the upload's checks (paths, sizes, what really inflates)."""
    base = into.resolve()
    zf, _ = checked_members(data, limits)
    with zf:
        for info, chunks in read_members(zf, len(data), limits):
            target = (base / info.filename).resolve()
            if not target.is_relative_to(base):
                raise AssetUnavailable(f"entry {info.filename!r} escapes the bundle")
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)


def _kill_group(pid: int) -> None:
    """The child and whatever it started in its session."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _Output:
    """Reads a child's stderr while it runs (`os.pread`: the file's offset is untouched)
    into the slice's run log, record by record: the op's prints, log records, traceback."""

    def __init__(self, fh: IO[bytes], into: runlog.SliceLog, work: Path) -> None:
        self.fd, self.into, self.work = fh.fileno(), into, str(work)
        self.offset, self.rest = 0, b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def _follow(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            self.read()
            self.into.tick()

    def read(self) -> None:
        while chunk := os.pread(self.fd, 65536, self.offset):
            self.offset += len(chunk)
            *lines, self.rest = (self.rest + chunk).split(b"\n")
            for line in lines:
                self._line(line)

    def _line(self, raw: bytes) -> None:
        if not raw.startswith(RECORD):  # written past Python's streams
            self.into.add(LogLevel.WARNING, "stderr", raw.decode(errors="replace"))
            return
        try:
            rec = json.loads(raw[len(RECORD) :])
            level, message = LogLevel(rec["level"]), str(rec["message"])
            ts, source = float(rec["ts"]), str(rec["source"])
        except (ValueError, KeyError, TypeError):
            self.into.add(LogLevel.WARNING, "stderr", raw.decode(errors="replace"))
            return
        self.into.add(level, source, message.replace(self.work, "<asset>"), ts)

    def __enter__(self) -> _Output:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.read()
        if self.rest:
            self._line(self.rest)


def _head(fh: IO[bytes], limit: int) -> bytes:
    fh.seek(0)
    return fh.read(limit + 1)


def _tail(fh: IO[bytes]) -> str:
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - TAIL))
    return fh.read().decode(errors="replace")


def _shown(line: str) -> str:
    """A stderr line as text: a run log record's message."""
    if not line.startswith(RECORD.decode()):
        return line
    try:
        return str(json.loads(line[len(RECORD) :])["message"]).strip().splitlines()[-1]
    except (ValueError, KeyError, TypeError, IndexError):
        return line


@dataclass(frozen=True)
class Sandbox:
    """How asset ops are run: `timeout` seconds per call (below the worker function's),
    answers up to `max_output` bytes (also the largest file the child may write)."""

    limits: AssetLimits
    timeout: float
    max_output: int = 8 * 1024 * 1024
    python: str = field(default=sys.executable)

    def call(self, asset: Asset, data: bytes, target: str, call: dict[str, Any]) -> Any:
        """Run `target` (module:function) of the bundle `data` with `call` (role, params,
        data or args, ctx): its JSON answer, or AssetOpFailed."""
        keep_out_of_proc()
        with tempfile.TemporaryDirectory(prefix="cadenza-op-") as tmp:
            work = Path(tmp)
            extract(data, work / "bundle", self.limits)
            (work / "tmp").mkdir()
            request = {
                **call,
                "package": f"_cadenza_asset_{asset.asset_id}",
                "root": asset.root,
                "target": target,
                "max_output": self.max_output,
            }
            try:
                return self._spawn(json.dumps(request).encode(), work, asset)
            except AssetOpFailed as err:  # no worker path in what the run records
                raise AssetOpFailed(str(err).replace(str(work), "<asset>")) from None

    def _spawn(self, payload: bytes, work: Path, asset: Asset) -> Any:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                [self.python, "-I", "-S", CHILD],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                cwd=work,
                env=child_env(work),
                start_new_session=True,
                close_fds=True,
            )
            slice_log = runlog.current()
            reading = (
                contextlib.nullcontext() if slice_log is None else _Output(err, slice_log, work)
            )
            with reading:
                try:
                    proc.communicate(payload, timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    raise AssetOpFailed(
                        f"asset op ran longer than {self.timeout:g} seconds (its limit) "
                        "and was stopped"
                    ) from None
                finally:
                    _kill_group(proc.pid)
                    proc.wait()
            stderr = _tail(err)
            if stderr and slice_log is None:
                log.info("asset %s wrote on stderr: %s", asset.asset_id, stderr)
            return self._answer(_head(out, self.max_output), proc.returncode, stderr)

    def _answer(self, raw: bytes, code: int, stderr: str) -> Any:
        if len(raw) > self.max_output:
            raise AssetOpFailed(f"answer over the limit of {self.max_output} bytes")
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "error" in answer:
            raise AssetOpFailed(str(answer["error"]))
        if isinstance(answer, dict) and "ok" in answer:
            return answer["ok"]
        lines = [_shown(line) for line in stderr.strip().splitlines()]
        last = lines[-1:] or ["nothing on stderr"]
        raise AssetOpFailed(f"asset op ended without an answer (exit code {code}): {last[0]}")
