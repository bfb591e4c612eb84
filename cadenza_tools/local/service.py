"""What the local stand-ins share: ``start`` and ``stop`` in place, and ``with`` for both."""

from __future__ import annotations

from types import TracebackType
from typing import ClassVar, Self


class LocalService:
    """A local piece that ``start`` brings up and ``stop`` tears down, as a context manager."""

    def start(self) -> Self:
        """Bring it up (a no-op if it is up already); returns itself."""
        raise NotImplementedError

    def stop(self) -> None:
        """Tear it down (a no-op if it is down)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ListeningService(LocalService):
    """A local service on ``http://host:port``; the port is known once it is started.

    Subclasses set ``_port`` in ``start`` and ``stop``, and name the error (``not_started``)
    and the words (``label``) that ``port`` raises before that.
    """

    host: str
    _port: int | None
    not_started: ClassVar[type[Exception]] = RuntimeError
    label: ClassVar[str] = "the service"

    @property
    def port(self) -> int:
        """The port it listens on (only once started)."""
        if self._port is None:
            raise self.not_started(f"{self.label} is not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://HOST:PORT``, for boto3's ``endpoint_url`` / PynamoDB's ``host``."""
        return f"http://{self.host}:{self.port}"
