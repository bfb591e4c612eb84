"""Job records: a job's definition and schedule state, each change a conditional write on
its version."""

from __future__ import annotations

import time
from typing import Any

from pynamodb.exceptions import PutError
from pynamodb.expressions.condition import Condition, size
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.dynamodb._tx import _conditional_update, _is_conditional, _unavailable
from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.models import JobModel
from chalicelib.adapters.dynamodb.run_items import run_item
from chalicelib.domain.errors import Conflict
from chalicelib.domain.jobs import Job, due_shard
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import JOB_MACHINE, JobState


def to_job(m: JobModel) -> Job:
    return Job(
        job_id=m.job_id,
        definition=dict(m.definition),
        state=JobState(m.state),
        active=bool(m.active),
        deleted=bool(m.deleted),
        deleted_on=m.deleted_on,
        next_fire_at=m.next_fire_at,
        anchor=m.anchor,
        version=int(m.version or 0),
        active_slots=set(m.active_slots or ()),
        buffered_slot=m.buffered_slot,
        waiting_slots=set(m.waiting_slots or ()),
        unrecorded=[(float(s), str(r)) for s, r in m.unrecorded or ()],
        suspended_at=m.suspended_at,
        resumed_at=m.resumed_at,
        created=float(m.created),
        updated=float(m.updated),
    )


def schedule_actions(
    base: StoreBase, job: Job, state: JobState, next_fire_at: float | None, now: float
) -> list[Action]:
    """The actions that move a job to `state`, on or off the due index."""
    J = base.m.job
    actions: list[Action] = [
        J.state.set(str(state)),
        J.version.set(job.version + 1),
        J.updated.set(now),
    ]
    if state in (JobState.SCHEDULED, JobState.SUSPENDED) and next_fire_at is not None:
        actions.append(J.next_fire_at.set(next_fire_at))
    else:
        actions.append(J.next_fire_at.remove())
    if state == JobState.SCHEDULED and next_fire_at is not None:
        actions.append(J.due_shard.set(due_shard(job.job_id, base.settings.due_shards)))
    else:  # off the due index: a suspended job keeps its next slot for its resumption
        actions.append(J.due_shard.remove())
    return actions


def has_room(J: type[JobModel], limit: int) -> Condition:
    """The job holds fewer than `limit` active slots."""
    taken = size(J.active_slots)  # type: ignore[no-untyped-call]  # unannotated in PynamoDB
    room: Condition = J.active_slots.does_not_exist() | (taken < limit)
    return room


class JobRecords(StoreBase):
    _job = staticmethod(to_job)

    def _job_model(self, job: Job) -> JobModel:
        d = job.definition
        scheduled = job.state == JobState.SCHEDULED and job.next_fire_at is not None
        keeps_slot = job.state in (JobState.SCHEDULED, JobState.SUSPENDED)
        return self.m.job(
            job.job_id,
            definition=d,
            name=str(d.get("name", "")),
            owner=str(d.get("owner", "anonymous")),
            state=str(job.state),
            active=job.active,
            deleted=job.deleted,
            deleted_on=job.deleted_on,
            next_fire_at=job.next_fire_at if keeps_slot else None,
            due_shard=due_shard(job.job_id, self.settings.due_shards) if scheduled else None,
            anchor=job.anchor,
            version=job.version,
            active_slots=set(job.active_slots) or None,
            buffered_slot=job.buffered_slot,
            waiting_slots=set(job.waiting_slots) or None,
            unrecorded=[list(u) for u in job.unrecorded] or None,
            suspended_at=job.suspended_at,
            resumed_at=job.resumed_at,
            list_part=self._list_part(job.job_id, job.deleted),
            created=job.created,
            updated=job.updated,
        )

    def create_job(self, job: Job, run: Run | None = None) -> None:
        J = self.m.job
        if run is not None:
            R = self.m.run

            def build(tx: TransactWrite) -> None:
                tx.save(self._job_model(job), condition=J.job_id.does_not_exist())
                tx.save(run_item(self, run), condition=R.slot.does_not_exist())

            if not self._transact(build):
                raise Conflict(f"job {job.job_id} exists", job_id=job.job_id)
            return
        try:
            self._job_model(job).save(condition=J.job_id.does_not_exist())
        except PutError as err:
            if _is_conditional(err):
                raise Conflict(f"job {job.job_id} exists", job_id=job.job_id) from err
            raise _unavailable(err) from err

    def get_job(self, job_id: str) -> Job | None:
        m = self._item(self.m.job, job_id)
        return None if m is None else to_job(m)

    def due_jobs(self, shard: int, horizon: float, limit: int = 500) -> list[Job]:
        J = self.m.job
        return self._get(
            lambda: [
                self._job(m)
                for m in J.due_index.query(shard, J.next_fire_at <= horizon, limit=limit)
            ]
        )

    def set_job_state(
        self,
        job: Job,
        state: JobState,
        next_fire_at: float | None,
        anchor: float | None = None,
        extra: dict[str, float | None] | None = None,
        now: float | None = None,
    ) -> bool:
        J = self.m.job
        sources = JOB_MACHINE.sources_for(state) | ({state} if state == job.state else set())
        actions = schedule_actions(self, job, state, next_fire_at, now or time.time())
        if anchor is not None:
            actions.append(J.anchor.set(anchor))
        for k, v in (extra or {}).items():
            attr = getattr(J, k)
            actions.append(attr.remove() if v is None else attr.set(v))
        cond = (J.version == job.version) & J.state.is_in(*map(str, sources))
        return _conditional_update(J(job.job_id), actions, cond)

    def update_job(
        self,
        job: Job,
        definition: dict[str, Any],
        schedule: tuple[JobState, float | None, float | None] | None,
        now: float,
    ) -> bool:
        J = self.m.job
        if schedule is None:
            actions: list[Action] = [J.version.set(job.version + 1), J.updated.set(now)]
        else:
            state, nxt, anchor = schedule
            actions = schedule_actions(self, job, state, nxt, now)
            if anchor is not None:
                actions.append(J.anchor.set(anchor))
        actions += [
            J.definition.set(definition),
            J.name.set(str(definition.get("name", ""))),
            J.owner.set(str(definition.get("owner", "anonymous"))),
        ]
        return self._job_update(job, actions)

    def set_job_active(self, job: Job, active: bool, now: float) -> bool:
        J = self.m.job
        return self._job_update(
            job, [J.active.set(active), J.version.set(job.version + 1), J.updated.set(now)]
        )

    def delete_job(self, job: Job, now: float) -> bool:
        J = self.m.job
        actions: list[Action] = [
            J.deleted.set(True),
            J.deleted_on.set(now),
            J.active.set(False),
            J.updated.set(now),
            J.version.set(job.version + 1),
            J.list_part.set(self._list_part(job.job_id, True)),
            J.due_shard.remove(),
            J.next_fire_at.remove(),
        ]
        taken = size(J.active_slots)  # type: ignore[no-untyped-call]  # unannotated in PynamoDB
        idle = J.active_slots.does_not_exist() | (taken == 0)
        return self._job_update(job, actions, idle)

    def _job_update(self, job: Job, actions: list[Action], extra: Condition | None = None) -> bool:
        """One conditional update of a job that is still at job.version and not deleted."""
        J = self.m.job
        cond = (J.version == job.version) & (
            J.deleted.does_not_exist() | (J.deleted == False)  # noqa: E712
        )
        if extra is not None:
            cond &= extra
        return _conditional_update(J(job.job_id), actions, cond)
