"""``cadenza agent`` (run an agent on this machine) and ``cadenza agents`` (an owner's
agents: add, list, show, remove). See docs/agents.md."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from cadenza_tools.agent.agent import Agent, Failures, Settings
from cadenza_tools.agent.journal import Journal
from cadenza_tools.cli.client import (
    CliError,
    ConflictError,
    ConnectionFailed,
    NotFoundError,
    ServerError,
)
from cadenza_tools.cli.context import command, state
from cadenza_tools.cli.output import Column, emit, print_json, table

app = typer.Typer(help="Remote agents: processes that run command jobs on your machines.")
AGENT_COLUMNS: list[Column] = [
    ("name", "name"),
    ("state", "state"),
    ("labels", "labels"),
    ("version", "version"),
    ("last_heartbeat", "last_heartbeat"),
    ("running_tasks", "running_tasks"),
]


def _labels(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: a label is KEY=VALUE")
        out[key] = value
    return out


FAILURES = Failures((ConnectionFailed, ServerError), (ConflictError, NotFoundError), CliError)
LabelOption = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="A label KEY=VALUE (repeat for more).")
]


@command(app, "add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The agent's name.")],
    principal: Annotated[str, typer.Option(help="The principal (IAM ARN) that acts as the agent.")],
    label: LabelOption = None,
    deadline: Annotated[
        float | None,
        typer.Option(help="Seconds it keeps its tasks running without the control plane."),
    ] = None,
) -> None:
    """Add an agent of yours (POST /v1/agents)."""
    body: dict[str, Any] = {"name": name, "principal": principal, "labels": _labels(label)}
    if deadline is not None:
        body["deadline_seconds"] = deadline
    cli = state(ctx)
    print_json(cli.client.post("/v1/agents", json=body))


@command(app, "list")
def list_agents(ctx: typer.Context) -> None:
    """Your agents and their state (GET /v1/agents)."""
    cli = state(ctx)
    rows = cli.client.get("/v1/agents")
    emit(cli.json_output, rows, lambda r: table(r, AGENT_COLUMNS, "agents"))


@command(app, "show")
def show(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The agent's name.")]
) -> None:
    """One agent, with the tasks it runs (GET /v1/agents/NAME)."""
    print_json(state(ctx).client.get(f"/v1/agents/{name}"))


@command(app, "remove")
def remove(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The agent's name.")]
) -> None:
    """Remove an agent (DELETE /v1/agents/NAME)."""
    print_json(state(ctx).client.call("DELETE", f"/v1/agents/{name}"))


def run_agent(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Option("--dir", help="The agent's journal and its tasks' output.")
    ] = Path("cadenza-agent"),
    label: LabelOption = None,
    max_tasks: Annotated[int, typer.Option(min=1, max=64, help="Tasks run at once.")] = 4,
    version: Annotated[str, typer.Option(help="The version it reports.")] = "0",
    idle_poll: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=60,
            help="While idle, ask for work at most this many seconds apart (0.5 s doubling"
            " up to it).",
        ),
    ] = 5.0,
) -> None:
    """Run an agent on this machine, as the principal it signs with (--user on a local
    stack, else the AWS credentials botocore finds); stops on SIGTERM or Ctrl-C, leaving
    its tasks running (a restart with the same --dir takes them up)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    journal = Journal(directory)
    settings = Settings(_labels(label), version, max_tasks, max_idle_s=idle_poll)
    agent = Agent(state(ctx).client, journal, settings, FAILURES)

    def stop(signum: int, frame: FrameType | None) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        agent.run()
    finally:
        journal.close()
