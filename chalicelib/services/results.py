"""A run's result file: the CSV its `csv_result` op wrote to the bucket, as
GET /scheduled-jobs/{jobId}/runs/{runId}/result-file serves it. A run without that op
writes no file: its result is on the run (GET /v1/ex/{ex_id})."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.errors import Conflict, NotFound
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import LEDGER_EX, TERMINAL_EX
from chalicelib.ops.csv_result import RESULT_OP, combine, result_prefix
from chalicelib.ports import BlobStore
from chalicelib.services.history import HistoryService


@dataclass(frozen=True)
class ResultFile:
    """The CSV text of a run's result file."""

    content: str


def writes_csv(run: Run) -> bool:
    """Whether the run's job (as it was when the run was created) writes a CSV file."""
    return any(op.get("_op") == RESULT_OP for op in run.operations[1:])


class ResultFileService:
    """Finds and assembles a run's result file."""

    def __init__(self, history: HistoryService, files: BlobStore) -> None:
        self.history, self.files = history, files

    def result_file(self, job_id: str, run_id: str) -> ResultFile:
        """NotFound (with the reason) for an unknown job or run, a slot that never ran, or
        a run that wrote no file (its job has no `csv_result` op, or it ended first);
        Conflict while the run is in progress."""
        run = self.history.run(job_id, run_id)
        if run.status in LEDGER_EX:
            raise NotFound(
                f"run {run_id} did not execute ({run.status}: {run.reason})",
                job_id=job_id,
                reason="not_executed",
            )
        if not writes_csv(run):
            raise NotFound(
                f"run {run_id} writes no result file (its job has no {RESULT_OP} op); "
                f"its result is on the run: GET /v1/ex/{run.ex_id}",
                job_id=job_id,
                reason="no_result_file",
            )
        if run.status not in TERMINAL_EX:
            raise Conflict(
                f"run {run_id} is still in progress ({run.status})",
                job_id=job_id,
                current_state=str(run.status),
            )
        keys = self.files.keys(result_prefix(run.job_id, run.ex_id))
        parts = [p for p in (self.files.get(k) for k in keys) if p is not None]
        if not parts:
            raise NotFound(
                f"run {run_id} wrote no result file ({run.status})",
                job_id=job_id,
                reason="no_result_file",
            )
        return ResultFile(combine(parts).decode())
