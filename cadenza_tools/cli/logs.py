"""``cadenza ex logs``: an execution's run log, page by page, or followed to its end."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from cadenza_tools.cli.client import Client
from cadenza_tools.cli.watch import TERMINAL

PAGE = 1000
REMEMBERED = 10_000  # lines' identities kept to print each once when following


def line_of(entry: dict[str, Any]) -> str:
    """A log line as text: time, slice and attempt, level, where it came from, message."""
    where = f"{entry.get('slice_id')}#{entry.get('attempt')}"
    level = str(entry.get("level") or "").upper()
    return f"{entry.get('ts')} {where} {level:<7} {entry.get('source')}: {entry.get('message')}"


class _Once:
    """Lines printed once: a follower reads the last seconds' lines again (the API's
    caught-up token points before them); their slice, attempt and seq tell them apart."""

    def __init__(self) -> None:
        self.seen: set[tuple[Any, ...]] = set()
        self.order: deque[tuple[Any, ...]] = deque()

    def new(self, entry: dict[str, Any]) -> bool:
        key = (entry.get("slice_id"), entry.get("attempt"), entry.get("seq"))
        if key in self.seen:
            return False
        self.seen.add(key)
        self.order.append(key)
        if len(self.order) > REMEMBERED:
            self.seen.discard(self.order.popleft())
        return True


def show_logs(
    client: Client,
    ex_id: str,
    params: dict[str, Any],
    print_line: Callable[[dict[str, Any]], None],
    follow: float | None = None,
) -> None:
    """Print the execution's lines, oldest first (`params`: slice, level). With `follow`
    (seconds between polls), poll for new lines until the execution is terminal."""
    once, token = _Once(), None
    while True:
        page = client.get(f"/v1/ex/{ex_id}/logs", {**params, "token": token, "size": PAGE})
        entries = page.get("entries") or []
        for entry in entries:
            if once.new(entry):
                print_line(entry)
        token = page.get("next_token") or token
        if len(entries) == PAGE:
            continue
        if follow is None or page.get("status") in TERMINAL:
            return
        time.sleep(follow)


def printer(json_output: bool, out: Callable[[str], None]) -> Callable[[dict[str, Any]], None]:
    def print_line(entry: dict[str, Any]) -> None:
        out(json.dumps(entry) if json_output else line_of(entry))

    return print_line
