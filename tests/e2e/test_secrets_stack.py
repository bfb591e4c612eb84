"""Secrets by reference on a running local stack (`cadenza dev --backend moto`): a secret
made with `cadenza secrets put` is resolved by the stack's worker from moto's SSM, and what
the run shows has it redacted; the log never holds it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from cadenza_tools.cli.main import app
from tests.e2e.test_local_stack import RUN_TIMEOUT_S, StackProcess, moto_stack, wait_for

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
