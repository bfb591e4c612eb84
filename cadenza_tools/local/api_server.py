"""Serve a Chalice app over HTTP in a background thread with ``chalice.local``'s server.

This is what ``chalice local`` runs (``LocalDevServer`` on a ``ThreadedHTTPServer``, one
thread per connection, API Gateway emulated by ``LocalGateway``), minus its reloader,
its ``print`` and its per-request lines on stderr (they go to the ``logging`` module).
"""

from __future__ import annotations

import functools
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Self

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalChalice, LocalDevServer

from cadenza_tools.local.gateway import SigV4Gateway
from cadenza_tools.local.service import LocalService
from cadenza_tools.local.users import LocalUsers

log = logging.getLogger(__name__)


class _LoggingRequestHandler(ChaliceRequestHandler):
    def __getattr__(self, name: str) -> Any:
        # any other method (TRACE, QUERY...) gets Chalice's 405 JSON, as no route has it,
        # not http.server's 501 HTML page
        if name.startswith("do_"):
            return self._generic_handle
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class _SigV4RequestHandler(_LoggingRequestHandler):
    """Requests go through `SigV4Gateway`: IAM authorization as API Gateway does it."""

    def __init__(
        self,
        request: Any,
        client_address: tuple[str, int],
        server: HTTPServer,
        app_object: Chalice,
        config: Config,
        users: LocalUsers,
    ) -> None:
        self.local_gateway = SigV4Gateway(app_object, config, users)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)


def make_local_app(app: Chalice) -> Chalice:
    """Make ``app.current_request`` thread-local, as ``chalice local`` does.

    ``chalice.local.create_local_server`` swaps the app's class for a shared
    ``CustomLocalChalice`` whose bases it rewrites on every call (a second call on the
    same app raises ``TypeError``); here each app class gets its own subclass instead.
    """
    if not isinstance(app, LocalChalice):
        cls = app.__class__
        app.__class__ = type(f"Local{cls.__name__}", (LocalChalice, cls), {})
    return app


class ApiServer(LocalService):
    """A Chalice app on ``http://host:port`` (``port=0``: a free one), as a context manager.
    With `users`, requests are authorized as API Gateway's IAM authorization does, against
    their keys (`SigV4Gateway`)."""

    def __init__(
        self,
        app: Chalice,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        config: Config | None = None,
        users: LocalUsers | None = None,
    ) -> None:
        self.app = app
        self.users = users
        self.host = host
        self._requested_port = port
        self.config = config or Config.create(
            chalice_stage="dev",
            app_name=app.app_name,
            chalice_app=app,
            lambda_timeout=60,
            lambda_memory_size=128,
        )
        self._server: LocalDevServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (only once started)."""
        if self._server is None:
            raise RuntimeError("API server is not started")
        port: int = self._server.server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Bind the socket and serve in a daemon thread."""
        if self._server is not None:
            return self
        handler: Any = (
            _LoggingRequestHandler
            if self.users is None
            else functools.partial(_SigV4RequestHandler, users=self.users)
        )
        server = LocalDevServer(
            make_local_app(self.app),
            self.config,
            self.host,
            self._requested_port,
            handler_cls=handler,
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"api-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("Chalice app %s on %s", self.app.app_name, self.url)
        return self

    def stop(self) -> None:
        """Stop accepting requests, close the socket and join the thread."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        server.shutdown()
        server.server.server_close()
        if thread is not None:
            thread.join(10)
