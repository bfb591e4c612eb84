"""How long history is kept: the `expires_at` attribute, DynamoDB's TTL.

Records are kept for the job's `history_days` (its definition, copied on each run), else
the stage's `CADENZA_HISTORY_DAYS`, counted from when they ended:

- a ledger record (skipped / missed) from when it is written;
- a slice from when it ends (completed or error);
- an alert from when it is raised (the stage's days: an alert may name no job);
- a finished run from when it ended, but only once a newer run of its job ran: the run
  that `latest_run_that_ran` returns (the job's current execution) has no `expires_at`,
  however old. When a run ends, it takes an `expires_at` if a newer run that ran exists,
  and gives one to the newest older run that ran if that one has ended without one (it
  was the latest until now). A run that ends while a newer one already ran is timed by
  its own end; every other one by the end of the next run that ran after it. Only a job
  that may run more than one run at once can end a run after a newer one ended, so only
  its runs make the first read. A deleted job's runs are all timed when they are marked
  deleted.

The cost, per run that ends: one Query (its predecessor; two for a job that overlaps
itself), and one UpdateItem when the predecessor takes its `expires_at`.

DynamoDB deletes an expired item within a few days of `expires_at`, not at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from chalicelib.adapters.dynamodb._tx import _conditional_update
from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.models import RunModel
from chalicelib.domain.errors import StoreUnavailable
from chalicelib.domain.jobs import active_limit_of
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import EX_MACHINE, LEDGER_EX, TERMINAL_EX

log = logging.getLogger(__name__)
DAY_SECONDS = 86400
# the reads that find a run's neighbours read this many records a call at most (ledger
# records between two runs that ran are skipped server-side, a page at a time)
NEIGHBOUR_PAGE = 50
RAN = sorted(str(s) for s in EX_MACHINE.states - LEDGER_EX)
ENDED = sorted(str(s) for s in TERMINAL_EX - LEDGER_EX)


def history_days(config: Mapping[str, Any], default: int) -> int:
    """The job's `history_days` (a run's copy of its definition), else `default`."""
    days = config.get("history_days")
    return int(days) if isinstance(days, int) and days > 0 else default


def expiry(config: Mapping[str, Any], default_days: int, since: float) -> datetime:
    """When a record that ended at `since` expires."""
    return datetime.fromtimestamp(since + history_days(config, default_days) * DAY_SECONDS, UTC)


class Retention(StoreBase):
    """The store's side of retention: `expires_at` on the records it writes."""

    def _expiry(self, config: Mapping[str, Any], since: float) -> datetime:
        return expiry(config, self.settings.history_days, since)

    def _neighbour(self, run: Run, newer: bool) -> RunModel | None:
        """The job's nearest run that ran after (`newer`) or before `run`, in slot order."""
        R = self.m.run
        side = R.slot > run.slot if newer else R.slot < run.slot
        found = self._get(
            lambda: list(
                R.query(
                    run.job_id,
                    side,
                    scan_index_forward=newer,
                    filter_condition=R.status.is_in(*RAN),
                    limit=1,
                    page_size=NEIGHBOUR_PAGE,
                    consistent_read=True,
                )
            )
        )
        return found[0] if found else None

    def _time(self, job_id: str, slot: str, config: Mapping[str, Any], since: float) -> bool:
        """Give an ended run without `expires_at` one (no-op if it has one or is live)."""
        R = self.m.run
        cond = R.expires_at.does_not_exist() & R.status.is_in(*ENDED)
        return _conditional_update(
            R(job_id, slot), [R.expires_at.set(self._expiry(config, since))], cond
        )

    def _retire_older(self, ended: Run) -> None:
        """After `ended` ended: time it if a newer run ran, and time the run before it if
        that one ended and was the latest till now. Its end is written whatever happens
        here: a failure only leaves a run kept longer (the next end retries)."""
        try:
            since = ended.finished_at or ended.updated
            overlaps = active_limit_of(ended.config) != 1
            if overlaps and self._neighbour(ended, newer=True) is not None:
                self._time(ended.job_id, ended.slot, ended.config, since)
            before = self._neighbour(ended, newer=False)
            if before is not None and before.status in ENDED and before.expires_at is None:
                done = before.finished_at or before.updated
                self._time(before.job_id, before.slot, dict(before.config), float(done))
        except StoreUnavailable as err:
            log.warning("retention of %s/%s left for later: %s", ended.job_id, ended.slot, err)
