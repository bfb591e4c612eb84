"""What every command shares: the API client, the output mode, and error reporting."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import typer

from cadenza_tools.cli.client import Client, CliError
from cadenza_tools.cli.output import report

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Cli:
    """The root command's options, for the subcommands."""

    client: Client
    json_output: bool


def state(ctx: typer.Context) -> Cli:
    obj = ctx.find_root().obj
    if not isinstance(obj, Cli):
        raise RuntimeError("the root callback sets the CLI's state before any command runs")
    return obj


def command(app: typer.Typer, name: str, **kwargs: Any) -> Callable[[F], F]:
    """Register a command whose CliErrors are reported on stderr with their exit code."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except CliError as err:
                report(err)
                raise typer.Exit(err.exit_code) from None

        app.command(name, **kwargs)(wrapper)
        return fn

    return register
