"""Secrets by reference on a running local stack (`cadenza dev --backend moto`): a secret
made with `cadenza secrets put` is resolved by the stack's worker from moto's SSM, and what
the run shows has it redacted; the log never holds it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from cadenza_tools.cli.main import app
from cadenza_tools.local.secrets import LocalSecrets
from tests.e2e.test_local_stack import REPO, RUN_TIMEOUT_S, StackProcess, moto_stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NAME = "/cadenza/dev/e2e-db-password"
VALUE = "e2e-pa55word-value"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    yield from moto_stack(tmp_path_factory, "secrets")


def test_a_secret_put_with_the_cli_is_resolved_by_the_stack(stack: StackProcess) -> None:
    env = {"CADENZA_CREDENTIALS": str(stack.credentials)}
    put = CliRunner().invoke(app, ["secrets", "put", NAME], input=VALUE + "\n", env=env)
    assert put.exit_code == 0, put.output
    reference = put.stdout.strip()
    assert reference == "{{resolve:ssm:" + NAME + "}}"
    kept = stack.credentials.with_name("secrets.json")
    assert (kept.stat().st_mode & 0o777) == 0o600
    listed = CliRunner().invoke(app, ["secrets", "list"], env=env)
    assert NAME in listed.stdout and VALUE not in listed.stdout

    _, job = stack.submit({"name": "sec", "operations": [{"_op": "noop"}, {"_op": "echo"}]}, False)
    base = f"/scheduled-jobs/{job['job_id']}/runs"
    posted = stack.http.post(f"{stack.url}{base}", json={"args": f"-p {reference}"}, timeout=10)
    assert posted.status_code == 202, posted.text
    run_path = f"{base}/{posted.json()['id']}"

    def finished() -> dict[str, object] | None:
        run: dict[str, object] = stack.get(run_path).json()
        return run if run["status"] != "IN_PROGRESS" else None

    run = wait_for(finished, RUN_TIMEOUT_S, "the run to finish")
    assert run["status"] == "SUCCEEDED", run
    result = stack.get(f"/v1/ex/{posted.json()['id']}").json()["result"]
    assert result == {"request": {}, "args": ["-p", "***"]}
    assert VALUE not in stack.log_path.read_text()


def test_secrets_put_from_a_shell_without_aws_credentials(
    stack: StackProcess, tmp_path: Path
) -> None:
    """docs/api.md's example pasted into a plain shell: no AWS variables, no ~/.aws; the CLI
    signs with the keys the stack uses (dummy ones), so the running stack takes it."""
    name, value = "/cadenza/dev/e2e-plain-shell", "from-a-plain-shell"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # no ~/.aws
        "CADENZA_CREDENTIALS": str(stack.credentials),
    }
    put = subprocess.run(
        [sys.executable, "-m", "cadenza_tools.cli.main", "secrets", "put", name],
        input=value,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert put.returncode == 0, put.stderr
    assert "did not take" not in put.stderr, put.stderr
    running = LocalSecrets(stack.credentials.with_name("secrets.json")).running_endpoint()
    assert running is not None
    endpoint, region = running
    ssm = boto3.session.Session(
        aws_access_key_id="any", aws_secret_access_key="any", region_name=region
    ).client("ssm", endpoint_url=endpoint)
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == value
