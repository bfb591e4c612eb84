"""`cadenza dev` keeps the bucket across a restart, as it keeps jobs and runs: a result file
written before the restart is served after it (the bucket is files beside DynamoDB Local's
data, not moto's memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import cli
from tests.e2e.test_kill_restart import StackSeries, restartable
from tests.e2e.test_local_stack import needs_java, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CSV_JOB = {
    "name": "kept-result",
    "workers": 2,
    "operations": [{"_op": "range", "end": 3}, {"_op": "csv_result"}],
}


@needs_java
def test_a_result_file_survives_a_local_stack_restart(tmp_path: Path) -> None:
    args, (api_port, _, _) = restartable(tmp_path)
    with StackSeries(args, api_port, tmp_path) as series:
        stack = series.start("first")
        _, job = stack.submit(CSV_JOB)
        file_of = ("runs", "result-file", job["job_id"], job["ex_id"])

        def completed() -> dict[str, Any] | None:
            response = stack.get(f"/v1/jobs/{job['job_id']}/ex")
            ex: dict[str, Any] = response.json()
            return ex if response.status_code == 200 and ex["_status"] == "completed" else None

        wait_for(completed, 60, "the csv run to complete")
        before = cli(stack, *file_of)
        assert before.exit_code == 0, (before.output, stack.tail())
        assert before.stdout_bytes.count(b"\n") >= 3, before.stdout_bytes
        stack.stop()

        again = series.start("second")
        after = cli(again, *file_of)
        assert after.exit_code == 0, (after.output, again.tail())
        assert after.stdout_bytes == before.stdout_bytes
