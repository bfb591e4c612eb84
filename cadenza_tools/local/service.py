"""What the local stand-ins share: ``start`` and ``stop`` in place, and ``with`` for both."""

from __future__ import annotations

import subprocess
from types import TracebackType
from typing import IO, ClassVar, Self


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


class ProcessService(ListeningService):
    """A listening service run as a subprocess (``_proc``), its output in a log (``_log``)."""

    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        """Tell whether the subprocess is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _end(self, timeout: float) -> subprocess.Popen[bytes] | None:
        """SIGTERM the subprocess, SIGKILL after ``timeout`` s, close the log; the process
        that was ended (None if there was none)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._port = None
        return proc
