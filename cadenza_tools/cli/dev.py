"""``cadenza dev``: the whole app on this machine until Ctrl-C / SIGTERM."""

from __future__ import annotations

import enum
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from cadenza_tools.local.stack import (
    DEFAULT_HOST,
    DEFAULT_LOOKAHEAD,
    DEFAULT_PORT,
    DEFAULT_TICK_INTERVAL,
    DEFAULT_WARM_UP_S,
    DEFAULT_WORKERS,
    LocalStack,
    StackOptions,
)

_QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "pynamodb", "werkzeug", "s3transfer")


class BackendChoice(enum.StrEnum):
    ddblocal = "ddblocal"
    moto = "moto"


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s",
    )
    if logging.getLogger().level > logging.DEBUG:
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def dev(
    backend: Annotated[
        BackendChoice,
        typer.Option(help="ddblocal: DynamoDB Local, data kept on disk; moto: all in memory."),
    ] = BackendChoice.ddblocal,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            help="Use emulators already running here (LocalStack, another stack's moto) "
            "instead of starting any.",
        ),
    ] = None,
    dynamodb_endpoint: Annotated[
        str | None, typer.Option(help="DynamoDB endpoint, if not --endpoint-url.")
    ] = None,
    localstack: Annotated[
        bool,
        typer.Option(
            "--localstack",
            help="Use LocalStack (endpoints from localstack_client's config); started here, and "
            "stopped with the stack, if none answers there (set up on first use).",
        ),
    ] = False,
    host: Annotated[str, typer.Option(help="Address the HTTP API binds.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port of the HTTP API.")] = DEFAULT_PORT,
    tick_interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between supervisor ticks.")
    ] = DEFAULT_TICK_INTERVAL,
    lookahead: Annotated[
        float, typer.Option(min=0, help="Supervisor look-ahead, seconds.")
    ] = DEFAULT_LOOKAHEAD,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="DynamoDB Local's files (default: .cadenza/data/dynamodb)."),
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="Resource name prefix (default: cadenza-dev).")
    ] = None,
    start_halted: Annotated[
        bool, typer.Option("--start-halted", help="A new supervisor record starts HALTED.")
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="SQS pollers per queue (parallel batches).")
    ] = DEFAULT_WORKERS,
    moto_port: Annotated[int, typer.Option(min=0, help="Port of moto (0: a free one).")] = 0,
    dynamodb_port: Annotated[
        int, typer.Option(min=0, help="Port of DynamoDB Local (0: a free one).")
    ] = 0,
    warm_up_s: Annotated[
        float,
        typer.Option(
            "--warm-up",
            min=0,
            help="Seconds at most to warm up DynamoDB Local's JVM before the supervisor "
            "starts (0: none).",
        ),
    ] = DEFAULT_WARM_UP_S,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run Cadenza locally: HTTP API, supervisor ticks and SQS workers in one process."""
    _configure_logging(log_level)
    stop = threading.Event()
    starting = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if starting:  # abort a start-up (the JVM can take a while); start() cleans up
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    options = StackOptions(
        backend=backend.value,
        endpoint_url=endpoint_url,
        dynamodb_endpoint=dynamodb_endpoint,
        localstack=localstack,
        host=host,
        port=port,
        tick_interval=tick_interval,
        lookahead=lookahead,
        data_dir=data_dir,
        prefix=prefix,
        start_halted=start_halted,
        workers=workers,
        moto_port=moto_port,
        dynamodb_port=dynamodb_port,
        warm_up_s=warm_up_s,
    )
    stack = LocalStack(options)
    code = 0
    try:
        try:
            stack.start()
        except KeyboardInterrupt:
            typer.echo("interrupted during start-up", err=True)
            return
        except Exception as exc:
            typer.echo(f"error: cannot start the local stack: {exc}", err=True)
            raise typer.Exit(1) from exc
        starting = False
        while not stop.wait(1.0):
            problem = stack.problem()
            if problem is not None:
                typer.echo(f"error: {problem}; stopping", err=True)
                code = 1
                break
        typer.echo("stopping the local stack...", err=True)
        stack.stop()
        typer.echo("stopped", err=True)
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stack.abandoned:
        _exit_now(code)
    if code:
        raise typer.Exit(code)


def _exit_now(code: int) -> None:
    """Exit without joining the threads of a batch still in flight (an op's ``sleep``):
    the emulators are stopped; what the batch held is recovered as a lost worker's is."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
