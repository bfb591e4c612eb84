"""moto in server mode: in-process (``MotoServer``, ``moto.server.ThreadedMotoServer``), or
in a process of its own (``MotoProcess``, what the local stack runs).

An in-process server shares moto's in-process backends: a ``mock_aws()`` started in the
same process sees (and its reset wipes) the server's state, and it intercepts boto3 calls
that were meant to go to the server over HTTP. A server in its own process does not take
the interpreter lock from the stack's workers, supervisor and API, which share one process
locally as they never would on AWS (a burst's SQS requests cost the emulator CPU).
"""

from __future__ import annotations

import argparse
import atexit
import errno
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Self

from moto import backends
from moto.server import ThreadedMotoServer

from cadenza_tools.local import moto_serial, moto_sqs
from cadenza_tools.local.dynamodb_local import free_port
from cadenza_tools.local.service import ListeningService, ProcessService


class MotoServerError(RuntimeError):
    """The moto server could not be started."""


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MotoServerError(f"port {port} on {host} is already in use") from exc
            raise


class MotoServer(ListeningService):
    """A moto server on ``host:port`` (``port=0``: a free one), usable as a context manager.

    ``quiet`` silences werkzeug's per-request log lines (only if the ``werkzeug``
    logger has no level set yet). ``fast_sqs`` installs :mod:`cadenza_tools.local.moto_sqs`
    (linear-cost SQS queues, same semantics) in this process before serving. DynamoDB
    requests are always serialised (:mod:`cadenza_tools.local.moto_serial`): moto checks a
    condition and writes with nothing between.
    """

    not_started = MotoServerError
    label = "moto server"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True, fast_sqs: bool = True
    ) -> None:
        self.host = host
        self._requested_port = port
        self._quiet = quiet
        self._fast_sqs = fast_sqs
        self._server: ThreadedMotoServer | None = None
        self._port = None

    @property
    def running(self) -> bool:
        """Tell whether the server is started."""
        return self._server is not None

    def start(self) -> Self:
        """Start serving in a daemon thread; returns once the socket is bound."""
        if self._server is not None:
            return self
        if self._quiet:
            werkzeug_logger = logging.getLogger("werkzeug")
            if werkzeug_logger.level == logging.NOTSET:
                werkzeug_logger.setLevel(logging.WARNING)
        if self._fast_sqs:
            moto_sqs.install()
        moto_serial.install()  # DynamoDB's guarantees: a condition and its write as one
        _cache_module_list()
        if self._requested_port:
            # ThreadedMotoServer.start() waits forever if the bind fails in its thread.
            _check_port_free(self.host, self._requested_port)
        server = ThreadedMotoServer(ip_address=self.host, port=self._requested_port, verbose=False)
        server.start()
        self._port = server.get_host_and_port()[1]
        self._server = server
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        self._port = None

    def reset(self) -> None:
        """Wipe every moto backend (``POST /moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            response.read()


_listed: tuple[str, ...] = ()


def _listed_modules() -> Iterable[str]:
    return _listed


def _cache_module_list() -> None:
    """moto's server lists its package directory (a stat of every service folder) to
    route each request, under its dispatch lock; the list does not change while it runs."""
    global _listed
    if backends.list_of_moto_modules is not _listed_modules:
        _listed = tuple(backends.list_of_moto_modules())
        backends.list_of_moto_modules = _listed_modules


class MotoProcess(ProcessService):
    """A moto server in a child process (``python -m cadenza_tools.local.moto_server``,
    with ``MotoServer``'s patches), usable as a context manager. It is in its parent's
    process group (a kill of the stack's group ends it) and ends itself when its parent
    is gone. Its output goes to ``log_path``."""

    not_started = MotoServerError
    label = "moto server"
    startup_timeout = 30.0
    stop_timeout = 5.0

    def __init__(self, host: str, port: int, log_path: Path) -> None:
        self.host = host
        self.log_path = log_path
        self._requested_port = port
        self._port = None

    def start(self) -> Self:
        """Launch the server and wait until it answers."""
        if self.running:
            return self
        port = self._requested_port or free_port(self.host)
        _check_port_free(self.host, port)
        cmd = [sys.executable, "-m", __name__, "--host", self.host, "--port", str(port)]
        cmd += ["--parent", str(os.getpid())]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        atexit.register(self.stop)
        self._port = port
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                self.stop()
                raise MotoServerError(f"the moto server exited; see {self.log_path}")
            try:
                with opener.open(f"{self.endpoint}/moto-api/data.json", timeout=2) as response:
                    response.read()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise MotoServerError(f"the moto server did not answer in {self.startup_timeout:g}s")

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``stop_timeout``)."""
        atexit.unregister(self.stop)
        self._end(self.stop_timeout)


def _orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    """Serve moto on ``--host:--port`` until terminated or ``--parent`` is gone."""
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent", type=int, help="end when this process is gone")
    args = parser.parse_args(argv)
    server = MotoServer(args.host, args.port).start()
    if args.parent:
        _orphaned(args.parent)
    try:
        threading.Event().wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
