"""The slices in error of every execution of a job (Teraslice's GET /jobs/{job_id}/errors)."""

from __future__ import annotations

from chalicelib.domain.slices import Slice
from chalicelib.ports import Store
from chalicelib.services.executions import ExecutionService
from chalicelib.services.jobs import JobService

# the job's runs read, newest first; older ones' errors are not listed
RUNS_READ = 1000


class JobErrorService:
    """A job's failed slices across its executions, oldest first."""

    def __init__(self, store: Store, jobs: JobService, executions: ExecutionService) -> None:
        self.store, self.jobs, self.executions = store, jobs, executions

    def of_job(self, job_id: str) -> list[Slice]:
        """The failed slices of the job's newest executions (404 if there is no such job)."""
        self.jobs.get(job_id)
        return self.executions.errors(self.store.list_runs(job_id, limit=RUNS_READ))
