"""What every command shares: the API client, the output mode, and error reporting."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

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


JSON_AFTER = inspect.Parameter(
    "json_after",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[
        bool, typer.Option("--json", help="Print the API's JSON instead of tables.")
    ],
)


def command(app: typer.Typer, name: str, **kwargs: Any) -> Callable[[F], F]:
    """Register a command whose CliErrors are reported on stderr with their exit code. It
    takes `--json` too, as the root command does: before or after the subcommand."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, json_after: bool = False, **kw: Any) -> Any:
            # typer hands over its own click context, not a typer.Context instance
            ctx = next((a for a in (*args, *kw.values()) if hasattr(a, "find_root")), None)
            if json_after and ctx is not None:
                state(ctx).json_output = True
            try:
                return fn(*args, **kw)
            except CliError as err:
                report(err)
                raise typer.Exit(err.exit_code) from None

        own = inspect.signature(fn, eval_str=True)
        params = [*own.parameters.values(), JSON_AFTER]
        # typer reads a command's options from its signature, which inspect takes from here
        wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        app.command(name, **kwargs)(wrapper)
        return fn

    return register
