"""A local HTTP server for the `http` target's tests (stdlib, in a thread). It records
every request (method, path, headers, body) and answers by path:

- `/ok`: 200 with a JSON body;
- `/flaky/N`: 503 to the first N requests of that path, then 200;
- `/busy/N`: 429 with `Retry-After: N` (seconds) to the first request, then 200;
- `/slow/S`: waits S seconds, then 200;
- `/status/C`: answers C;
- `/big`: 200 with a 100 kB body;
- `/echo`: 200 with the request's headers as JSON.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class TargetServer:
    url: str
    seen: list[Seen] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _answer_for(parts: list[str], n: int) -> tuple[int, bytes, dict[str, str]]:
    """What the server answers the `n`th request of a path, by the path's parts."""
    if parts[0] == "flaky" and n <= int(parts[1]):
        return 503, b"try later", {}
    if parts[0] == "busy" and n == 1:
        return 429, b"slow down", {"Retry-After": parts[1]}
    if parts[0] == "slow":
        time.sleep(float(parts[1]))
    if parts[0] == "status":
        return int(parts[1]), b"as asked", {}
    if parts[0] == "big":
        return 200, b"x" * 100_000, {}
    ok = json.dumps({"ok": True, "n": n}).encode()
    return 200, ok, {"Content-Type": "application/json", "X-Request-Id": f"r{n}"}


def _handler(server: TargetServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            with server.lock:
                server.seen.append(
                    Seen(self.command, self.path, dict(self.headers.items()), body, time.time())
                )
                server.counts[path] += 1
                n = server.counts[path]
            if path == "/echo":  # the request's headers, as a careless server would
                return self._answer(200, json.dumps(dict(self.headers.items())).encode())
            status, body, headers = _answer_for(path.strip("/").split("/"), n)
            self._answer(status, body, headers)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

    return Handler


@contextmanager
def target_server() -> Iterator[TargetServer]:
    """A server on 127.0.0.1 and a free port, stopped on exit."""
    server = TargetServer("")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
