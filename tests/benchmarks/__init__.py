"""Benchmarks run as scripts (``python -m tests.benchmarks.NAME``); they print, assert nothing."""

from __future__ import annotations

import os


def bench_credentials() -> None:
    """Dummy AWS credentials and region for the emulators, unless the environment has some.

    Called before the script imports anything that makes an AWS client."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(k, v)
