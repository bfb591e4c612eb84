"""moto in server mode, in-process (``moto.server.ThreadedMotoServer``).

The server shares moto's in-process backends: a ``mock_aws()`` started in the same
process sees (and its reset wipes) the server's state, and it intercepts boto3 calls
that were meant to go to the server over HTTP.
"""

from __future__ import annotations

import errno
import logging
import socket
import urllib.request
from collections.abc import Iterable
from typing import Self

from moto import backends
from moto.server import ThreadedMotoServer

from cadenza_tools.local import moto_serial, moto_sqs
from cadenza_tools.local.service import ListeningService


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
