"""Slice records: writing a run's slices, claiming one with a lease, releasing it, and
finishing it together with its run's counters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pynamodb.exceptions import PutError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.dynamodb._tx import (
    TX_BATCH,
    _conditional_update,
    _is_conditional,
    _unavailable,
)
from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.models import SliceModel
from chalicelib.adapters.dynamodb.retention import expiry
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import Slice, SliceEnding
from chalicelib.domain.transitions import EX_MACHINE, TERMINAL_EX, SliceState
from chalicelib.ports import SliceStore


def to_slice(m: SliceModel) -> Slice:
    return Slice(
        ex_id=m.ex_id,
        slice_id=m.slice_id,
        order=int(m.order),
        request=dict(m.request or {}),
        state=SliceState(m.state),
        attempts=int(m.attempts or 0),
        lease_token=m.lease_token,
        lease_expires_at=m.lease_expires_at,
        not_before=m.not_before,
        result=m.result,
        error=m.error,
        created=float(m.created),
        updated=float(m.updated),
        wait=m.wait,
    )


class SliceRecords(StoreBase, SliceStore):
    _slice = staticmethod(to_slice)

    def _slice_model(self, sl: Slice) -> SliceModel:
        return self.m.slice(
            sl.ex_id,
            sl.slice_id,
            order=sl.order,
            request=sl.request,
            state=str(sl.state),
            attempts=sl.attempts,
            lease_token=sl.lease_token,
            lease_expires_at=sl.lease_expires_at,
            not_before=sl.not_before,
            result=sl.result,
            error=sl.error,
            err_shard=self._err_shard(f"{sl.ex_id}/{sl.slice_id}")
            if sl.state == SliceState.error
            else None,
            created=sl.created,
            updated=sl.updated,
            wait=sl.wait,
        )

    def put_slices(self, slices: Sequence[Slice]) -> int:
        S = self.m.slice
        new = 0
        for i in range(0, len(slices), TX_BATCH):
            chunk = [self._slice_model(s) for s in slices[i : i + TX_BATCH]]

            def build(tx: TransactWrite, chunk: list[SliceModel] = chunk) -> None:
                for item in chunk:
                    tx.save(item, condition=S.slice_id.does_not_exist())

            if self._transact(build):
                new += len(chunk)
                continue
            for item in chunk:  # some exist already: keep them, add the rest one by one
                try:
                    item.save(condition=S.slice_id.does_not_exist())
                    new += 1
                except PutError as err:
                    if not _is_conditional(err):
                        raise _unavailable(err) from err
        return new

    def get_slice(self, ex_id: str, slice_id: str) -> Slice | None:
        m = self._item(self.m.slice, ex_id, slice_id)
        return None if m is None else to_slice(m)

    def list_slices(self, ex_id: str) -> list[Slice]:
        S = self.m.slice
        return self._get(lambda: [self._slice(m) for m in S.query(ex_id, consistent_read=True)])

    def _slice_update(
        self, ex_id: str, slice_id: str, actions: list[Action], cond: Condition
    ) -> SliceModel | None:
        item = self.m.slice(ex_id, slice_id)
        return item if _conditional_update(item, actions, cond) else None

    def claim_slice(
        self, ex_id: str, slice_id: str, token: str, now: float, lease_until: float
    ) -> Slice | None:
        S = self.m.slice
        pending = S.state == str(SliceState.pending)
        expired = (S.state == str(SliceState.started)) & (S.lease_expires_at < now)
        item = self._slice_update(
            ex_id,
            slice_id,
            [
                S.state.set(str(SliceState.started)),
                S.lease_token.set(token),
                S.lease_expires_at.set(lease_until),
                S.attempts.add(1),
                S.updated.set(now),
                S.not_before.remove(),
            ],
            S.slice_id.exists() & (pending | expired),
        )
        return None if item is None else self._slice(item)

    def release_slice(
        self, sl: Slice, token: str, not_before: float, error: str, now: float
    ) -> bool:
        return self._back_to_pending(
            sl, token, not_before, now, [self.m.slice.error.set(error[:4000])]
        )

    def wait_slice(
        self, sl: Slice, token: str, check_at: float, wait: dict[str, Any], now: float
    ) -> bool:
        S = self.m.slice
        return self._back_to_pending(
            sl, token, check_at, now, [S.wait.set(wait), S.attempts.add(-1)]
        )

    def _back_to_pending(
        self, sl: Slice, token: str, not_before: float, now: float, more: list[Action]
    ) -> bool:
        """started (held by `token`) -> pending, not to be re-sent before `not_before`."""
        S = self.m.slice
        actions: list[Action] = [
            S.state.set(str(SliceState.pending)),
            S.not_before.set(not_before),
            S.updated.set(now),
            S.lease_token.remove(),
            S.lease_expires_at.remove(),
            *more,
        ]
        held = (S.state == str(SliceState.started)) & (S.lease_token == token)
        return self._slice_update(sl.ex_id, sl.slice_id, actions, held) is not None

    def finish_slice(self, sl: Slice, run: Run, ending: SliceEnding) -> bool:
        S, R = self.m.slice, self.m.run
        completed = ending.completed
        held = (
            S.lease_expires_at == ending.expected_lease
            if ending.worker_lost
            else S.lease_token == ending.token
        )
        slice_actions: list[Action] = [
            S.state.set(str(SliceState.completed if completed else SliceState.error)),
            S.updated.set(ending.now),
            S.lease_token.remove(),
            S.lease_expires_at.remove(),
            S.expires_at.set(expiry(run.config, self.settings.history_days, ending.now)),
        ]
        if completed:
            slice_actions.append(S.error.remove())
            if ending.result is not None:
                slice_actions.append(S.result.set(ending.result))
        else:
            slice_actions.append(S.error.set((ending.error or "error")[:4000]))
            slice_actions.append(S.err_shard.set(self._err_shard(f"{sl.ex_id}/{sl.slice_id}")))
        counter = R.processed if completed else R.failed
        run_actions: list[Action] = [
            counter.add(1),
            R.remaining.add(-1),
            R.updated.set(ending.now),
            R.check_at.set(run.check_after(ending.now, ending.now + run.lease_seconds)),
            R.sweep_shard.set(self._sweep_shard(run.ex_id)),
        ]
        if not completed:
            run_actions.append(R.has_errors.set(True))
        if ending.worker_lost:
            run_actions.append(R.workers_lost.add(1))

        def build(tx: TransactWrite) -> None:
            tx.update(
                self.m.slice(sl.ex_id, sl.slice_id),
                actions=slice_actions,
                condition=(S.state == str(SliceState.started)) & held,
            )
            tx.update(
                R(run.job_id, run.slot),
                actions=run_actions,
                condition=R.status.is_in(*[str(s) for s in EX_MACHINE.states - TERMINAL_EX]),
            )

        return self._transact(build)
