"""``cadenza assets``: zip bundles of operations (Teraslice's /v1/assets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cadenza_tools.cli.client import CliError
from cadenza_tools.cli.context import command, state
from cadenza_tools.cli.options import From, Size, Sort
from cadenza_tools.cli.output import Column, document, emit, table

app = typer.Typer(help="Assets: upload, list, delete.", no_args_is_help=True)
ASSET_COLUMNS: list[Column] = [
    ("id", "id"),
    ("name", "name"),
    ("version", "version"),
    ("created", "_created"),
]


@command(app, "upload")
def upload(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A zip holding asset.json (name, version).")],
    blocking: Annotated[
        bool, typer.Option("--blocking", help="Wait until the asset is stored.")
    ] = False,
) -> None:
    """Upload an asset zip (POST /v1/assets)."""
    cli = state(ctx)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror or err}") from err
    answer = cli.client.call(
        "POST",
        "/v1/assets",
        params={"blocking": blocking},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    emit(cli.json_output, answer, document)


@command(app, "list")
def list_assets(
    ctx: typer.Context, start: From = None, size: Size = None, sort: Sort = None
) -> None:
    """List assets (GET /v1/assets)."""
    cli = state(ctx)
    rows = cli.client.get("/v1/assets", {"from": start, "size": size, "sort": sort})
    emit(cli.json_output, rows, lambda r: table(r, ASSET_COLUMNS, "assets"))


@command(app, "delete")
def delete(
    ctx: typer.Context, asset_id: Annotated[str, typer.Argument(help="The asset's id.")]
) -> None:
    """Delete an asset (DELETE /v1/assets/{id})."""
    cli = state(ctx)
    emit(cli.json_output, cli.client.call("DELETE", f"/v1/assets/{asset_id}"), document)
