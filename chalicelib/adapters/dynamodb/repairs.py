"""Repairs of a hanging run (seed 000's two manual fixes): complete it with its open
slices, or reset it to a fresh run in its place."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pynamodb.transactions import TransactWrite

from chalicelib.adapters.dynamodb._tx import MAX_TX_ITEMS
from chalicelib.adapters.dynamodb.counters import add_to_counters, totals_of
from chalicelib.adapters.dynamodb.jobs import has_room
from chalicelib.adapters.dynamodb.retention import Retention
from chalicelib.adapters.dynamodb.run_items import run_item
from chalicelib.domain.errors import Conflict
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import Slice
from chalicelib.domain.transitions import EX_MACHINE, TERMINAL_EX, ExStatus, SliceState
from chalicelib.ports import RepairStore


class RepairRecords(Retention, RepairStore):
    def resolve_complete(self, run: Run, open_slices: Sequence[Slice], now: float) -> bool:
        R, S, J = self.m.run, self.m.slice, self.m.job
        if len(open_slices) > MAX_TX_ITEMS - 2:
            raise Conflict(
                f"{len(open_slices)} open slices: more than one transaction can hold",
                ex_id=run.ex_id,
            )
        live = [str(s) for s in EX_MACHINE.states - TERMINAL_EX]

        def build(tx: TransactWrite) -> None:
            tx.update(
                R(run.job_id, run.slot),
                actions=[
                    R.status.set(str(ExStatus.completed)),
                    R.ex_part.set(self._ex_part(run.ex_id, str(ExStatus.completed), run.deleted)),
                    R.processed.set(run.slices_total - run.failed if run.slices_total else 1),
                    R.remaining.set(0),
                    R.finished_at.set(now),
                    R.updated.set(now),
                    R.reason.set("resolved: completed by an operator"),
                    R.holds_slot.remove(),
                    R.tally_shard.set(self._tally_shard(run.ex_id)),
                    R.check_at.remove(),
                    R.sweep_shard.remove(),
                    R.lease_token.remove(),
                    R.lease_expires_at.remove(),
                ],
                condition=(R.ex_id == run.ex_id) & R.status.is_in(*live),
            )
            for sl in open_slices:
                tx.update(
                    S(sl.ex_id, sl.slice_id),
                    actions=[
                        S.state.set(str(SliceState.completed)),
                        S.updated.set(now),
                        S.error.set("resolved: completed by an operator"),
                        S.expires_at.set(self._expiry(run.config, now)),
                        S.lease_token.remove(),
                        S.lease_expires_at.remove(),
                    ],
                    condition=S.state.is_in(str(SliceState.pending), str(SliceState.started)),
                )
            if run.holds_slot:
                tx.update(
                    J(run.job_id),
                    actions=[J.active_slots.delete({run.slot})],
                    condition=J.job_id.exists(),
                )

        if not self._transact(build):
            return False
        ended = ExStatus.completed
        self._retire_older(dataclasses.replace(run, status=ended, finished_at=now, updated=now))
        return True

    def reset_run(self, run: Run, fresh: Run, slices: Sequence[Slice], limit: int | None) -> bool:
        R, S, J = self.m.run, self.m.slice, self.m.job
        if len(slices) > MAX_TX_ITEMS - 2:
            raise Conflict(
                f"{len(slices)} slices: more than one transaction can delete", ex_id=run.ex_id
            )
        takes_slot = limit is not None and not run.holds_slot
        fresh.holds_slot = limit is not None
        replaced = R.ex_id == run.ex_id
        # an ended run not yet folded is counted as it is replaced, or its figures would be lost
        replaced &= R.tally_shard.exists() if run.tally_pending else R.tally_shard.does_not_exist()

        def build(tx: TransactWrite) -> None:
            tx.save(run_item(self, fresh), condition=replaced)
            if run.tally_pending:
                shard = self._tally_shard(run.ex_id)
                add_to_counters(tx, self.stats, shard, totals_of(run), fresh.updated)
            for sl in slices:
                tx.delete(S(sl.ex_id, sl.slice_id))
            if takes_slot:
                assert limit is not None
                tx.update(
                    J(run.job_id),
                    actions=[J.active_slots.add({run.slot})],
                    condition=J.job_id.exists() & has_room(J, limit),
                )

        return self._transact(build)
