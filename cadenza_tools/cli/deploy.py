"""``cadenza deploy`` / ``cadenza destroy``: a stage's stack in an AWS account (or an
emulator's CloudFormation), from this checkout (:mod:`cadenza_tools.deploy`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cadenza_tools import deploy as stack
from cadenza_tools.infra import PROJECT_DIR

StageOption = Annotated[str, typer.Option(help="A stage in .chalice/config.json.")]
RegionOption = Annotated[
    str | None, typer.Option(envvar="AWS_DEFAULT_REGION", help="The AWS region.")
]
ProfileOption = Annotated[
    str | None, typer.Option(envvar="AWS_PROFILE", help="The AWS credentials profile.")
]
EndpointOption = Annotated[
    str | None,
    typer.Option(help="An emulator's endpoint for every service (moto, LocalStack)."),
]
StackOption = Annotated[str | None, typer.Option(help="The stack's name (default: cadenza-STAGE).")]


def _say(text: str) -> None:
    typer.echo(text, err=True)


def deploy(
    stage: StageOption,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    stack_name: StackOption = None,
    package_dir: Annotated[
        Path | None,
        typer.Option(
            help="Deploy this `chalice package` output of the stage instead of packaging "
            "again (sam.json and deployment.zip).",
        ),
    ] = None,
    project_dir: Annotated[Path, typer.Option(help="The Cadenza checkout.")] = PROJECT_DIR,
    json_output: Annotated[bool, typer.Option("--json", help="Print the outputs as JSON.")] = False,
) -> None:
    """Package, upload and deploy a stage's stack (create or update), then print the API's
    URL and the first admin steps."""
    target = stack.Target(stage, region, endpoint_url, profile, stack_name)
    try:
        done = stack.deploy(project_dir, target, _say, package_dir=package_dir)
    except stack.DeployError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(1) from exc
    if json_output:
        typer.echo(json.dumps({"stack": done.stack, "changed": done.changed, **done.outputs}))
        return
    typer.echo(f"stack {done.stack}: {'deployed' if done.changed else 'no changes'}")
    typer.echo(stack.first_steps(target, done.outputs))


def destroy(
    stage: StageOption,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    stack_name: StackOption = None,
    delete_data: Annotated[
        bool,
        typer.Option(help="Delete the tables and the results bucket too (every version)."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a stage's stack. Its tables and results bucket are kept, and listed, unless
    --delete-data."""
    target = stack.Target(stage, region, endpoint_url, profile, stack_name)
    if not yes:
        what = "the stack AND ITS DATA" if delete_data else "the stack (the data is kept)"
        typer.confirm(f"Delete {what} of {target.stack}?", abort=True)
    try:
        done = stack.destroy(target, _say, delete_data=delete_data)
    except stack.DeployError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(1) from exc
    typer.echo(f"stack {done.stack}: deleted")
    for kind, name in done.deleted:
        typer.echo(f"deleted {kind} {name}")
    if done.kept:
        typer.echo("kept (delete them with --delete-data, or import them into a new stack):")
        for kind, name in done.kept:
            typer.echo(f"  {kind} {name}")
