"""``cadenza users``: the local stack's users and their keys (no API call: the stack's
credentials file, `$CADENZA_CREDENTIALS`, else `credentials.json` in `$CADENZA_HOME` or
`.cadenza/`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from cadenza_tools.cli.auth import local_users
from cadenza_tools.cli.output import Column, print_json, table
from cadenza_tools.local.users import LocalUser

app = typer.Typer(help="Users of the local stack (cadenza dev) and their keys.")
USER_COLUMNS: list[Column] = [
    ("name", "name"),
    ("arn", "arn"),
    ("admin", "admin"),
    ("access_key_id", "access_key_id"),
]


def user_doc(user: LocalUser) -> dict[str, Any]:
    return {**asdict(user), "arn": user.arn}


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The user name (letters, digits, +=,.@_-).")],
    admin: Annotated[
        bool, typer.Option(help="Give it the admin role (a running stack applies it at once).")
    ] = (False),
) -> None:
    """Create a user with new keys; print it as JSON (with its secret key)."""
    try:
        user = local_users().add(name, admin)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    print_json(user_doc(user))


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="The user name.")] = "admin") -> None:
    """Print a user as JSON, its secret key included."""
    users = local_users()
    user = users.get(name)
    if user is None:
        typer.echo(f"error: no user {name!r} in {users.path}", err=True)
        raise typer.Exit(3)
    print_json(user_doc(user))


@app.command("list")
def list_users() -> None:
    """The users (without their secret keys)."""
    users = local_users()
    rows = [{k: v for k, v in user_doc(u).items() if k != "secret_access_key"} for u in users.all()]
    table(rows, USER_COLUMNS, f"users ({users.path})")
