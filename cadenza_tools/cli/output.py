"""Rendering for the CLI: JSON on request, rich tables for lists, key/value views for
single documents, and readable errors on stderr."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cadenza_tools.cli.client import CliError

Column = tuple[str, str | Callable[[Mapping[str, Any]], Any]]
PIPED_WIDTH = 1000  # piped output: rows on one line each, ids never folded
UUID_LENGTH = 36


def console(stderr: bool = False) -> Console:
    con = Console(stderr=stderr, highlight=False)
    if not con.is_terminal:
        con = Console(stderr=stderr, highlight=False, width=PIPED_WIDTH)
    return con


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _is_id(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == UUID_LENGTH


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], title: str) -> None:
    """A list as a table; each column is a key of the row or a function of it. A column of
    ids (UUIDs) is never folded: the other columns give way."""
    con = console()
    if not rows:
        con.print(f"no {title}")
        return
    cells = [
        [_cell(get(row) if callable(get) else row.get(get)) for _, get in columns] for row in rows
    ]
    grid = Table(title=title, title_justify="left")
    for i, (header, _) in enumerate(columns):
        if any(_is_id(line[i]) for line in cells):
            grid.add_column(header, no_wrap=True, min_width=UUID_LENGTH)
        else:
            grid.add_column(header, overflow="fold")
    for line in cells:
        grid.add_row(*(escape(c) for c in line))
    con.print(grid)


def document(doc: Any, title: str | None = None) -> None:
    """One document as key / value lines; nested objects as compact JSON. Piped, plain
    lines: the key, then the value, nothing padded after it."""
    con = console()
    if not isinstance(doc, dict):
        con.print(escape(_cell(doc)))
        return
    if not con.is_terminal:
        width = max((len(str(k)) for k in doc), default=0)
        lines = [f"{k!s:<{width}}  {_cell(v)}".rstrip() for k, v in doc.items()]
        sys.stdout.write("".join(line + "\n" for line in [*([title] if title else []), *lines]))
        sys.stdout.flush()
        return
    grid = Table(title=title, title_justify="left", show_header=False, box=None)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in doc.items():
        grid.add_row(escape(key), escape(_cell(value)))
    con.print(grid)


def emit(json_output: bool, data: Any, render: Callable[[Any], None]) -> None:
    if json_output:
        print_json(data)
    else:
        render(data)


def report(err: CliError) -> None:
    """An error as the API said it: the message, then each field's reason."""
    con = console(stderr=True)
    con.print(f"[bold red]error:[/] {escape(err.message)}")
    for line in err.details:
        con.print(f"  {escape(line)}")
