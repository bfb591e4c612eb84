"""The ``cadenza`` command line: one Typer app, each command group in its own module.

Every command but ``dev`` talks to a running Cadenza through its HTTP API only."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from cadenza_tools.cli import (
    agents,
    alerts,
    assets,
    cluster,
    ex,
    jobs,
    localstack,
    runs,
    secrets,
    supervisor,
    users,
)
from cadenza_tools.cli.client import DEFAULT_TIMEOUT, DEFAULT_URL, Client
from cadenza_tools.cli.context import Cli
from cadenza_tools.cli.deploy import deploy, destroy
from cadenza_tools.cli.dev import dev

app = typer.Typer(
    name="cadenza",
    help="Cadenza: a job scheduler on AWS serverless parts.",
    no_args_is_help=True,
    add_completion=True,
)


def cadenza_version() -> str:
    try:
        return version("cadenza")
    except PackageNotFoundError:
        return "0+unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cadenza {cadenza_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="CADENZA_URL", help="Base URL of the Cadenza HTTP API.")
    ] = DEFAULT_URL,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the API's JSON instead of tables.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for each HTTP answer.")
    ] = DEFAULT_TIMEOUT,
    user: Annotated[
        str | None,
        typer.Option(
            envvar="CADENZA_USER",
            help="Sign as this local stack user (default: admin on a local URL; on AWS, "
            "the AWS credentials botocore finds).",
        ),
    ] = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Cadenza: a job scheduler on AWS serverless parts."""
    ctx.obj = Cli(Client(url, timeout, user), json_output)


app.add_typer(jobs.app, name="jobs")
app.add_typer(ex.app, name="ex")
app.add_typer(runs.app, name="runs")
app.add_typer(assets.app, name="assets")
app.add_typer(cluster.app, name="cluster")
app.add_typer(alerts.app, name="alerts")
app.add_typer(supervisor.app, name="supervisor")
app.add_typer(users.app, name="users")
app.add_typer(secrets.app, name="secrets")
app.command("dev")(dev)
app.add_typer(agents.app, name="agents")
app.command("agent")(agents.run_agent)
app.command("deploy")(deploy)
app.command("destroy")(destroy)
app.add_typer(localstack.app, name="localstack")


def main() -> None:
    """Console-script entry point (``cadenza``)."""
    app()


if __name__ == "__main__":
    main()
