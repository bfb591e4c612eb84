"""Benchmarks run as scripts (``python -m tests.benchmarks.NAME``); they print, assert nothing."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def bench_credentials() -> None:
    """Dummy AWS credentials and region for the emulators, unless the environment has some.

    Called before the script imports anything that makes an AWS client."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(k, v)


@contextmanager
def workdir(prefix: str, data_root: str | None, keep: bool) -> Iterator[Path]:
    """A directory for the stacks' logs and data (on `data_root`, e.g. /dev/shm), removed
    at the end unless `keep`; its place and the machine's load are printed first."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=data_root))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPU(s), load {load}; logs and data under {path}")
    try:
        yield path
    finally:
        if keep:
            print(f"\nkept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def add_workdir_arguments(ap: argparse.ArgumentParser) -> None:
    """`--data-root` and `--keep`, for `workdir`."""
    ap.add_argument(
        "--data-root",
        help="where DynamoDB Local's files and the stacks' logs go (default: the system's "
        "temporary directory; /dev/shm takes the disk's fsync out of the figures)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the stacks' logs and data")
