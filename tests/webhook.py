"""A local webhook for the notification tests (a server thread on a free port)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Hook:
    """A local webhook: answers each request with the next status of `script` (then 200)
    and records what it got."""

    def __init__(self, script: list[int]) -> None:
        self.script = list(script)
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = hook.script.pop(0) if hook.script else 200
                hook.requests.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> list[tuple[dict[str, str], bytes, int]]:
        return [r for r in self.requests if 200 <= r[2] < 300]
