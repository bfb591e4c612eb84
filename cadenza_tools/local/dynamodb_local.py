"""DynamoDB Local: install the official jar and run it as a subprocess.

The jar is taken from the npm package ``amplify-dynamodb-simulator``, which ships AWS's
DynamoDB Local distribution in its ``package/emulator/`` folder. Only that tarball is
fetched (``npm pack``), never its npm dependencies.

Usage::

    python -m cadenza_tools.local.dynamodb_local install
    python -m cadenza_tools.local.dynamodb_local run --port 8000 [--in-memory | --data-dir DIR]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import boto3
from botocore.config import Config

from cadenza_tools.local.service import ProcessService

NPM_PACKAGE = "amplify-dynamodb-simulator"
JAR_NAME = "DynamoDBLocal.jar"
LIB_DIR_NAME = "DynamoDBLocal_lib"
INSTALL_DIR_NAME = "dynamodb-local"
DATA_DIR_NAME = "dynamodb-data"
LOG_DIR_NAME = "logs"
_ARCHIVE_PREFIX = "package/emulator/"
_NPM_TIMEOUT_S = 900


class DynamoDBLocalError(RuntimeError):
    """Installing or running DynamoDB Local failed."""


class ToolNotFoundError(DynamoDBLocalError):
    """A required executable (``npm`` or ``java``) is not on PATH."""

    def __init__(self, tool: str, hint: str) -> None:
        super().__init__(f"`{tool}` was not found on PATH: {hint}")
        self.tool = tool


def default_home() -> Path:
    """Return Cadenza's local state folder: ``$CADENZA_HOME`` or ``<repo>/.cadenza``."""
    env = os.environ.get("CADENZA_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / ".cadenza"


def find_java() -> str:
    """Return the path of ``java`` or raise :class:`ToolNotFoundError`."""
    java = shutil.which("java")
    if java is None:
        raise ToolNotFoundError("java", "DynamoDB Local needs a Java runtime (11 or newer).")
    return java


def _find_npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise ToolNotFoundError(
            "npm", f"it is used to download DynamoDB Local (npm package {NPM_PACKAGE})."
        )
    return npm


def install_dir(home: Path | None = None) -> Path:
    """Return the folder that holds (or will hold) ``DynamoDBLocal.jar``."""
    return (home if home is not None else default_home()) / INSTALL_DIR_NAME


def is_installed(home: Path | None = None) -> bool:
    """Tell whether DynamoDB Local is already installed under ``home``."""
    return (install_dir(home) / JAR_NAME).is_file()


def install(home: Path | None = None, package: str = NPM_PACKAGE) -> Path:
    """Install DynamoDB Local under ``home/dynamodb-local`` unless it is already there.

    ``package`` is the npm package spec (e.g. ``amplify-dynamodb-simulator@2.9.30``).
    Returns the folder holding ``DynamoDBLocal.jar``. The folder appears atomically, so
    concurrent installs (e.g. pytest-xdist workers) are safe.
    """
    target = install_dir(home)
    if (target / JAR_NAME).is_file():
        return target
    npm = _find_npm()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ddblocal-", dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        tarball = _npm_pack(npm, package, tmp_path)
        staging = tmp_path / "emulator"
        _extract_emulator(tarball, staging)
        if not (staging / JAR_NAME).is_file():
            raise DynamoDBLocalError(f"{package} has no {_ARCHIVE_PREFIX}{JAR_NAME}")
        if target.exists() and not (target / JAR_NAME).is_file():
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            if not (target / JAR_NAME).is_file():
                raise
    return target


def _npm_pack(npm: str, package: str, dest: Path) -> Path:
    cmd = [npm, "pack", package, "--json", "--pack-destination", str(dest)]
    try:
        proc = subprocess.run(
            cmd, cwd=dest, capture_output=True, text=True, timeout=_NPM_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DynamoDBLocalError(f"`npm pack {package}` timed out") from exc
    if proc.returncode != 0:
        raise DynamoDBLocalError(
            f"`npm pack {package}` failed (exit {proc.returncode}):\n{proc.stderr.strip()}"
        )
    try:
        filename = json.loads(proc.stdout)[0]["filename"]
        tarball = dest / Path(str(filename)).name
    except (ValueError, LookupError, TypeError):
        tarball = next(iter(sorted(dest.glob("*.tgz"))), dest / "missing.tgz")
    if not tarball.is_file():
        raise DynamoDBLocalError(f"`npm pack {package}` produced no tarball in {dest}")
    return tarball


def _extract_emulator(tarball: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    root = dest.resolve()
    with tarfile.open(tarball, "r:*") as archive:
        for member in archive:
            if not member.name.startswith(_ARCHIVE_PREFIX):
                continue
            rel = member.name[len(_ARCHIVE_PREFIX) :]
            if not rel:
                continue
            out = (root / rel).resolve()
            if Path(rel).is_absolute() or ".." in Path(rel).parts or not out.is_relative_to(root):
                raise DynamoDBLocalError(f"unsafe path in {tarball.name}: {member.name!r}")
            if member.isdir():
                out.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                out.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                if source is None:
                    continue
                with source, open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink)
                out.chmod(0o644)
            else:
                raise DynamoDBLocalError(
                    f"refusing link or special file in {tarball.name}: {member.name!r}"
                )


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Tell whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def local_client(endpoint: str, config: Config) -> Any:
    """A DynamoDB client of a local emulator at ``endpoint`` (its dummy credentials)."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=config,
    )


def probe_client(endpoint: str, read_timeout: float) -> Any:
    """A DynamoDB client that asks once, to see whether ``endpoint`` answers yet."""
    config = Config(connect_timeout=1, read_timeout=read_timeout, retries={"max_attempts": 1})
    return local_client(endpoint, config)


class DynamoDBLocal(ProcessService):
    """A DynamoDB Local subprocess (``-sharedDb``), usable as a context manager.

    ``data_dir=None`` runs it ``-inMemory``; otherwise tables persist in
    ``data_dir/shared-local-instance.db``. ``port=0`` picks a free port. Output of the
    JVM goes to ``home/logs/dynamodb-local.log``. Note that DynamoDB Local has no bind
    address option: it listens on all interfaces; ``endpoint`` uses 127.0.0.1.
    """

    host = "127.0.0.1"
    not_started = DynamoDBLocalError
    label = "DynamoDB Local"
    # seconds to wait for it to answer, and for it to exit; its extra command-line options
    startup_timeout = 60.0
    stop_timeout = 10.0
    extra_args: tuple[str, ...] = ("-disableTelemetry",)

    def __init__(
        self,
        port: int = 0,
        data_dir: Path | None = None,
        *,
        home: Path | None = None,
        auto_install: bool = True,
    ) -> None:
        self.home = home if home is not None else default_home()
        self.data_dir = data_dir
        self.auto_install = auto_install
        self.log_path = self.home / LOG_DIR_NAME / "dynamodb-local.log"
        self._requested_port = port
        self._port = None

    def start(self) -> Self:
        """Launch the JVM and wait until DynamoDB Local answers ``ListTables``."""
        if self.running:
            return self
        java = find_java()
        folder = install(self.home) if self.auto_install else install_dir(self.home)
        if not (folder / JAR_NAME).is_file():
            raise DynamoDBLocalError(f"{JAR_NAME} not found in {folder}; run `install` first")
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        attempts = 3 if self._requested_port == 0 else 1
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port(self.host)
            try:
                self._launch(java, folder, port)
                return self
            except DynamoDBLocalError:
                self.stop()
                if attempt == attempts:
                    raise
        return self

    def _command(self, java: str, folder: Path, port: int) -> list[str]:
        storage = ["-inMemory"] if self.data_dir is None else ["-dbPath", str(self.data_dir)]
        return [
            java,
            f"-Djava.library.path={folder / LIB_DIR_NAME}",
            "-jar",
            str(folder / JAR_NAME),
            "-sharedDb",
            "-port",
            str(port),
            *storage,
            *self.extra_args,
        ]

    def _launch(self, java: str, folder: Path, port: int) -> None:
        if port_in_use(port, self.host):
            raise DynamoDBLocalError(f"port {port} is already in use")
        cmd = self._command(java, folder, port)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self._log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            cmd,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        atexit.register(self.stop)
        self._port = port
        self._wait_ready()

    def _wait_ready(self) -> None:
        client = probe_client(self.endpoint, read_timeout=5)
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise DynamoDBLocalError(
                    f"DynamoDB Local exited with code {code} on port {self._port}; "
                    f"see {self.log_path}:\n{self._log_tail()}"
                )
            try:
                client.list_tables(Limit=1)
                return
            except Exception as exc:
                last_error = exc
                time.sleep(0.2)
        raise DynamoDBLocalError(
            f"DynamoDB Local did not answer within {self.startup_timeout}s "
            f"({last_error}); see {self.log_path}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the JVM (SIGTERM, then SIGKILL after ``stop_timeout``)."""
        atexit.unregister(self.stop)
        self._end(self.stop_timeout)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``install`` or ``run`` DynamoDB Local."""
    parser = argparse.ArgumentParser(prog="python -m cadenza_tools.local.dynamodb_local")
    parser.add_argument(
        "--home", type=Path, default=None, help="default: $CADENZA_HOME or .cadenza"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", help="download DynamoDB Local (idempotent)")
    p_install.add_argument("--package", default=NPM_PACKAGE, help="npm package spec")
    p_run = sub.add_parser("run", help="run DynamoDB Local in the foreground")
    p_run.add_argument("--port", type=int, default=8000)
    storage = p_run.add_mutually_exclusive_group()
    storage.add_argument("--in-memory", action="store_true")
    storage.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    home: Path = args.home.resolve() if args.home is not None else default_home()
    try:
        if args.command == "install":
            print(install(home, args.package))
            find_java()
            return 0
        data_dir = None if args.in_memory else (args.data_dir or home / DATA_DIR_NAME)
        with DynamoDBLocal(args.port, data_dir, home=home) as ddb:
            where = "in memory" if data_dir is None else str(data_dir)
            print(f"DynamoDB Local on {ddb.endpoint} ({where}); Ctrl-C to stop", flush=True)
            while ddb.running:
                time.sleep(0.5)
            print(f"DynamoDB Local exited; see {ddb.log_path}", file=sys.stderr)
            return 1
    except DynamoDBLocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
