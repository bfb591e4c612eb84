"""Run records: creating a run (with its job's schedule or slot in the same transaction),
ledger records, the job's slot set, reading a run, and changing it (apply_run)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from pynamodb.exceptions import PutError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.dynamodb._tx import (
    MAX_TX_ITEMS,
    _conditional_update,
    _is_conditional,
    _unavailable,
)
from chalicelib.adapters.dynamodb.jobs import has_room, schedule_actions
from chalicelib.adapters.dynamodb.models import RUN_FLAGS, RunModel
from chalicelib.adapters.dynamodb.retention import Retention
from chalicelib.adapters.dynamodb.run_items import _one_slice_error, run_item, to_run
from chalicelib.domain.runs import Run, RunTransition
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus, JobState
from chalicelib.ports import SlotWrite


class RunRecords(Retention):
    _run = staticmethod(to_run)

    def _run_model(self, run: Run) -> RunModel:
        return run_item(self, run)

    def create_slots(self, writes: Sequence[SlotWrite]) -> bool:
        return self.create_slots_refused(writes) is None

    def create_slots_refused(self, writes: Sequence[SlotWrite]) -> frozenset[int] | None:
        R = self.m.run
        items = sum(len(w.records) + 1 for w in writes)
        if not writes or any(not w.records for w in writes) or items > MAX_TX_ITEMS:
            raise ValueError(f"between 1 and {MAX_TX_ITEMS} items, and records for each job")
        if len({w.job.job_id for w in writes}) != len(writes):
            raise ValueError("one write per job")
        updates = [self._slot_job_update(w) for w in writes]
        missed = str(ExStatus.missed)

        def build(tx: TransactWrite) -> None:
            for w in writes:
                for record in w.records:
                    new = R.slot.does_not_exist()
                    if record.status == ExStatus.missed:  # the same ledger record, twice
                        new |= R.status == missed
                    tx.save(self._run_model(record), condition=new)
            for item, actions, condition in updates:
                tx.update(item, actions=actions, condition=condition)

        failed = self._transact_refused(build)
        if failed is None:
            return None
        owner = [i for i, w in enumerate(writes) for _ in w.records] + list(range(len(writes)))
        if len(failed) != len(owner):  # no reason per item: none to blame
            return frozenset()
        return frozenset(owner[k] for k, refused in enumerate(failed) if refused)

    def _slot_job_update(self, w: SlotWrite) -> tuple[Any, list[Any], Any]:
        """The job's side of a tick's write: its schedule advanced (or, for a ledger write,
        left), its waiting runs and its missed slots still to record."""
        J = self.m.job
        actions: list[Any] = []
        if w.unrecorded is not None:
            pending = [list(u) for u in w.unrecorded]
            actions.append(J.unrecorded.set(pending) if pending else J.unrecorded.remove())
        if w.ledger:
            return J(w.job.job_id), actions, J.version == w.job.version
        expire = w.expire or w.next_fire_at is None
        state = JobState.EXPIRED if expire else JobState.SCHEDULED
        actions += schedule_actions(self, w.job, state, w.next_fire_at, w.records[0].created)
        waiting = {r.slot for r in w.records if r.buffered and r.catchup}
        if waiting:
            actions.append(J.waiting_slots.add(waiting))
        current = (J.version == w.job.version) & (J.state == str(JobState.SCHEDULED))
        return J(w.job.job_id), actions, current

    def create_run(self, run: Run, limit: int | None = None) -> bool:
        R, J = self.m.run, self.m.job
        if limit is None:
            try:
                self._run_model(run).save(condition=R.slot.does_not_exist())
                return True
            except PutError as err:
                if _is_conditional(err):
                    return False
                raise _unavailable(err) from err
        run.holds_slot = True

        def build(tx: TransactWrite) -> None:
            tx.save(self._run_model(run), condition=R.slot.does_not_exist())
            tx.update(
                J(run.job_id),
                actions=[J.active_slots.add({run.slot})],
                condition=J.job_id.exists() & has_room(J, limit),
            )

        return self._transact(build)

    def wait_for_slot(self, run: Run, check_at: float) -> bool:
        R, J = self.m.run, self.m.job
        job_actions: list[Action]
        if run.catchup:
            job_actions, job_cond = [J.waiting_slots.add({run.slot})], J.job_id.exists()
        else:
            job_actions = [J.buffered_slot.set(run.slot)]
            job_cond = J.job_id.exists() & J.buffered_slot.does_not_exist()
        run_actions: list[Action] = [
            R.buffered.set(True),
            R.catchup.set(True) if run.catchup else R.catchup.remove(),
            R.check_at.set(check_at),
            R.sweep_shard.set(self._sweep_shard(run.ex_id)),
        ]

        def build(tx: TransactWrite) -> None:
            tx.update(J(run.job_id), actions=job_actions, condition=job_cond)
            tx.update(
                R(run.job_id, run.slot),
                actions=run_actions,
                condition=(R.status == str(ExStatus.pending)) & (R.holds_slot != True),  # noqa: E712
            )

        return self._transact(build)

    def acquire_buffered(self, run: Run, limit: int) -> bool:
        R, J = self.m.run, self.m.job
        actions: list[Action]
        if run.catchup:
            actions = [J.active_slots.add({run.slot}), J.waiting_slots.delete({run.slot})]
            turn = J.waiting_slots.contains(run.slot) & J.buffered_slot.does_not_exist()
        else:
            actions = [J.active_slots.add({run.slot}), J.buffered_slot.remove()]
            turn = J.buffered_slot == run.slot

        def build(tx: TransactWrite) -> None:
            tx.update(J(run.job_id), actions=actions, condition=turn & has_room(J, limit))
            tx.update(
                R(run.job_id, run.slot),
                actions=[R.buffered.remove(), R.holds_slot.set(True)],
                condition=(R.status == str(ExStatus.pending)) & (R.buffered == True),  # noqa: E712
            )

        return self._transact(build)

    def release_slots(self, job_id: str, slots: Iterable[str]) -> None:
        J = self.m.job
        stale = set(slots)
        if not stale:
            return
        _conditional_update(J(job_id), [J.active_slots.delete(stale)], J.job_id.exists())

    def get_run(self, job_id: str, slot: str) -> Run | None:
        m = self._item(self.m.run, job_id, slot)
        return None if m is None else to_run(m)

    def get_runs(self, keys: Sequence[tuple[str, str]]) -> list[Run | None]:
        items = self._runs_by_key(keys)
        return [None if (m := items.get(k)) is None else to_run(m) for k in keys]

    def get_run_by_ex(self, ex_id: str) -> Run | None:
        R = self.m.run
        keys = self._get(lambda: [(m.job_id, m.slot) for m in R.ex_index.query(ex_id, limit=1)])
        if not keys:
            return None
        return self.get_run(*keys[0])

    def apply_run(self, run: Run, transition: RunTransition) -> Run | None:
        written = self._apply_run(run, transition)
        if written is not None and transition.terminal:
            self._retire_older(written)
        return written

    def _run_actions(self, run: Run, transition: RunTransition) -> list[Any]:
        R = self.m.run
        sets, removes = self._run_sets(run, transition)
        actions: list[Any] = []
        for k, v in sets.items():
            attr = getattr(R, k)
            unset = v is None or (v is False and k in RUN_FLAGS)
            actions.append(attr.remove() if unset else attr.set(v))
        for k, n in transition.adds.items():
            actions.append(getattr(R, k).add(n))
        return actions + [getattr(R, k).remove() for k in removes]

    def claim_runs_together(self, claims: Sequence[tuple[Run, RunTransition]]) -> list[Run] | None:
        R, J = self.m.run, self.m.job
        writes: list[tuple[Run, RunTransition, list[Any], Any]] = []
        for run, transition in claims:
            cond = self._run_guard(run, transition)
            if cond is None or transition.terminal:
                return None
            writes.append((run, transition, self._run_actions(run, transition), cond))
        items = len(writes) + sum(1 for _, t, _, _ in writes if t.acquire is not None)
        if len({run.job_id for run, _ in claims}) < len(claims) or items > MAX_TX_ITEMS:
            return None  # one transaction writes an item once, and 100 items at most

        def build(tx: TransactWrite) -> None:
            for run, transition, actions, cond in writes:
                tx.update(R(run.job_id, run.slot), actions=actions, condition=cond)
                if transition.acquire is not None:
                    tx.update(
                        J(run.job_id),
                        actions=[J.active_slots.add({run.slot})],
                        condition=J.job_id.exists() & has_room(J, transition.acquire),
                    )

        if not self._transact(build):
            return None
        return [t.applied_to(run) for run, t in claims]

    def _apply_run(self, run: Run, transition: RunTransition) -> Run | None:
        R = self.m.run
        cond = self._run_guard(run, transition)
        if cond is None:
            return None
        actions = self._run_actions(run, transition)
        if transition.terminal and run.holds_slot:
            if not self._finish_holding(run, actions, cond):
                return None
            return transition.applied_to(run)  # a transaction returns no item
        if transition.acquire is not None:
            if not self._take_slot(run, actions, cond, transition.acquire):
                return None
            return transition.applied_to(run)
        item = R(run.job_id, run.slot)
        return self._run(item) if _conditional_update(item, actions, cond) else None

    def _run_guard(self, run: Run, transition: RunTransition) -> Any:
        """The write's condition: a source status the table allows, and the guard's
        conditions. None when no source is allowed (nothing to try)."""
        R, g = self.m.run, transition.guard
        sources = sorted(str(s) for s in transition.sources)
        if not sources:
            return None
        cond = R.status.is_in(*sources)
        if g.lease_token is not None:
            cond &= R.lease_token == g.lease_token
        if g.lease_expired_before is not None:
            expired = R.lease_expires_at < g.lease_expired_before
            cond &= R.lease_expires_at.does_not_exist() | expired
        if g.check_at is not None:
            cond &= R.check_at == g.check_at
        if g.remaining_zero:
            cond &= R.remaining == 0
        if g.cursor_below_total:
            cond &= R.queued_cursor < R.slices_total
        if g.unread:
            cond &= (
                (R.ex_id == run.ex_id)
                & (R.buffered != True)  # noqa: E712 (DynamoDB conditions)
                & (R.presliced != True)  # noqa: E712
                & (R.deleted != True)  # noqa: E712
            )
        if g.same_config:
            cond &= R.config == run.config
        return cond

    def _run_sets(self, run: Run, transition: RunTransition) -> tuple[dict[str, Any], list[str]]:
        """The fields the write sets (with the indexes' keys that follow them) and those it
        removes: a terminal write takes the run off the sweep and marks it for the tally."""
        target = transition.target
        sets: dict[str, Any] = dict(transition.sets)
        if target is not None:
            sets = {"status": target, **sets}
        removes: list[str] = []
        if transition.terminal:
            removes = ["check_at", "sweep_shard", "lease_token", "lease_expires_at"]
            if sets.get("notify_due"):  # on the sweep until its events are recorded
                removes = removes[2:]
                sets["sweep_shard"] = self._sweep_shard(run.ex_id)
            sets = {k: v for k, v in sets.items() if k not in removes}
            sets["tally_shard"] = self._tally_shard(run.ex_id)
        elif sets.get("check_at") is not None:
            sets["sweep_shard"] = self._sweep_shard(run.ex_id)
        if target is not None:  # the listing index follows the status
            sets["ex_part"] = self._ex_part(run.ex_id, str(target), run.deleted)
        if sets.get("has_errors") is True and _one_slice_error(run, sets):
            sets["err_shard"] = self._err_shard(run.ex_id)
        return sets, removes

    def _finish_holding(self, run: Run, actions: list[Any], cond: Any) -> bool:
        """A terminal transition of a run that holds one of its job's active slots: the run
        and the job's slot set change together, so a slot is never leaked or freed early.
        A transaction returns no item: the caller builds the run it wrote."""
        R, J = self.m.run, self.m.job
        actions = [*actions, R.holds_slot.remove()]

        def build(tx: TransactWrite) -> None:
            tx.update(
                R(run.job_id, run.slot),
                actions=actions,
                condition=cond & (R.holds_slot == True),  # noqa: E712 (a DynamoDB condition)
            )
            tx.update(
                J(run.job_id),
                actions=[J.active_slots.delete({run.slot})],
                condition=J.job_id.exists(),
            )

        return bool(self._transact(build))

    def _take_slot(self, run: Run, actions: list[Any], cond: Any, limit: int) -> bool:
        """A write that takes one of the job's active slots, only if fewer than `limit`
        are taken: the run and the job's slot set change together."""
        R, J = self.m.run, self.m.job

        def build(tx: TransactWrite) -> None:
            tx.update(R(run.job_id, run.slot), actions=actions, condition=cond)
            tx.update(
                J(run.job_id),
                actions=[J.active_slots.add({run.slot})],
                condition=J.job_id.exists() & has_room(J, limit),
            )

        return bool(self._transact(build))

    def stalled_runs(self, shard: int, now: float, limit: int = 100) -> list[Run]:
        R = self.m.run
        return self._get(
            lambda: [
                self._run(m) for m in R.sweep_index.query(shard, R.check_at <= now, limit=limit)
            ]
        )

    def clear_notify_due(self, run: Run) -> bool:
        R = self.m.run
        actions: list[Any] = [R.notify_due.remove()]
        if run.status in TERMINAL_EX:
            actions += [R.check_at.remove(), R.sweep_shard.remove()]
        mine = (R.ex_id == run.ex_id) & R.notify_due.exists()
        return _conditional_update(R(run.job_id, run.slot), actions, mine)

    def live_runs(self, limit: int = 1000) -> list[Run]:
        R = self.m.run

        def shard_runs(shard: int) -> list[Run]:
            found = [self._run(m) for m in R.sweep_index.query(shard, limit=limit)]
            return [r for r in found if r.status not in TERMINAL_EX]  # not one being told

        out: list[Run] = []
        for shard in range(self.settings.lease_shards):
            out += self._get(functools.partial(shard_runs, shard))
        return out[:limit]

    def mark_runs_deleted(self, job_id: str) -> int:
        R = self.m.run

        def mark() -> int:
            marked = 0
            for m in R.query(job_id, consistent_read=True):
                if m.deleted:
                    continue
                done = float(m.finished_at or m.updated)
                marked += _conditional_update(
                    R(job_id, m.slot),
                    [
                        R.deleted.set(True),
                        R.ex_part.set(self._ex_part(m.ex_id, m.status, True)),
                        R.expires_at.set(m.expires_at or self._expiry(dict(m.config), done)),
                    ],
                    R.status.is_in(*map(str, TERMINAL_EX)),
                )
            return marked

        return self._get(mark)
