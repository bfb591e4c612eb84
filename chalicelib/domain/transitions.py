"""One transition table per state machine, and the one function that applies them.

Stores use `sources_for(machine, target)` as the condition of the conditional write that
performs a transition, so a racing writer cannot apply an arrow that is not in the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from chalicelib.domain.errors import IllegalTransition


class JobState(StrEnum):
    """A job's schedule state (Apache Lens)."""

    NEW = "NEW"
    SCHEDULED = "SCHEDULED"
    SUSPENDED = "SUSPENDED"
    EXPIRED = "EXPIRED"


class ExStatus(StrEnum):
    """An execution's status (Teraslice)."""

    pending = "pending"
    scheduling = "scheduling"
    initializing = "initializing"
    running = "running"
    recovering = "recovering"
    failing = "failing"
    paused = "paused"
    stopping = "stopping"
    completed = "completed"
    stopped = "stopped"
    rejected = "rejected"
    failed = "failed"
    terminated = "terminated"
    # the missed-run ledger: slots that did not run, recorded with the reason
    skipped = "skipped"
    missed = "missed"


class SliceState(StrEnum):
    pending = "pending"
    started = "started"
    completed = "completed"
    error = "error"


class SupervisorState(StrEnum):
    RUNNING = "RUNNING"
    HALTED = "HALTED"
    FINISHED = "FINISHED"


TERMINAL_EX = frozenset(
    {
        ExStatus.completed,
        ExStatus.stopped,
        ExStatus.rejected,
        ExStatus.failed,
        ExStatus.terminated,
        ExStatus.skipped,
        ExStatus.missed,
    }
)
ACTIVE_EX = frozenset(set(ExStatus) - TERMINAL_EX)
LEDGER_EX = frozenset({ExStatus.skipped, ExStatus.missed})  # slots that never ran


@dataclass(frozen=True)
class Machine:
    """A named state machine: for each state, the states it may move to."""

    name: str
    arrows: Mapping[str, frozenset[str]]

    def allows(self, current: str, target: str) -> bool:
        return target in self.arrows.get(current, frozenset())

    def sources_for(self, target: str) -> frozenset[str]:
        """Every state from which `target` is reachable in one step."""
        return frozenset(s for s, targets in self.arrows.items() if target in targets)

    @property
    def states(self) -> frozenset[str]:
        return frozenset(self.arrows)


def _m(name: str, arrows: Mapping[str, set[str]]) -> Machine:
    return Machine(name, {k: frozenset(v) for k, v in arrows.items()})


_J = JobState
JOB_MACHINE = _m(
    "job",
    {
        _J.NEW: {_J.SCHEDULED, _J.EXPIRED},
        _J.SCHEDULED: {_J.SUSPENDED, _J.EXPIRED},
        _J.SUSPENDED: {_J.SCHEDULED, _J.EXPIRED},
        _J.EXPIRED: set(),
    },
)

_E = ExStatus
EX_MACHINE = _m(
    "execution",
    {
        _E.pending: {
            _E.scheduling,
            _E.initializing,
            _E.running,
            _E.stopping,
            _E.stopped,
            _E.rejected,
            _E.failed,
            _E.terminated,
            _E.completed,  # its reader gave no slice: nothing to run
            _E.skipped,
            _E.missed,
        },
        _E.scheduling: {_E.initializing, _E.stopping, _E.stopped, _E.failed, _E.terminated},
        _E.initializing: {
            _E.running,
            _E.completed,
            _E.failing,
            _E.failed,
            _E.stopping,
            _E.stopped,
            _E.terminated,
        },
        _E.running: {
            _E.completed,
            _E.failing,
            _E.failed,
            _E.paused,
            _E.stopping,
            _E.stopped,
            _E.terminated,
        },
        _E.recovering: {_E.running, _E.failing, _E.failed, _E.stopping, _E.terminated},
        _E.failing: {_E.failed, _E.terminated},
        # a slice in flight when paused may still finish its (one-slice) run
        _E.paused: {_E.running, _E.completed, _E.failed, _E.stopping, _E.stopped, _E.terminated},
        _E.stopping: {_E.stopped, _E.terminated},
        _E.completed: set(),
        _E.stopped: set(),
        _E.rejected: set(),
        _E.failed: set(),
        _E.terminated: set(),
        _E.skipped: set(),  # a ledger record, or a run its job's limit kept from starting
        _E.missed: set(),  # a ledger record, or a run whose start came too late
    },
)

_S = SliceState
SLICE_MACHINE = _m(
    "slice",
    {
        _S.pending: {_S.started, _S.error},
        # started -> started is a re-claim after the lease expired; -> pending is a retry
        _S.started: {_S.started, _S.completed, _S.error, _S.pending},
        _S.completed: set(),
        _S.error: set(),
    },
)

_V = SupervisorState
SUPERVISOR_MACHINE = _m(
    "supervisor",
    {
        _V.RUNNING: {_V.HALTED, _V.FINISHED},
        _V.HALTED: {_V.RUNNING},
        _V.FINISHED: {_V.RUNNING, _V.HALTED},
    },
)

MACHINES: Mapping[str, Machine] = {
    m.name: m for m in (JOB_MACHINE, EX_MACHINE, SLICE_MACHINE, SUPERVISOR_MACHINE)
}


def ex_sources(target: ExStatus, among: Iterable[ExStatus]) -> frozenset[ExStatus]:
    """The states of `among` from which a run may be written with status `target`: the
    execution table's arrows into it, plus staying in it when it is not terminal (a
    re-claim, a renewed lease). A finished record is never rewritten."""
    legal = EX_MACHINE.sources_for(target) | ({target} - TERMINAL_EX)
    return frozenset(ExStatus(s) for s in among if s in legal)


def apply(machine: Machine, current: str, target: str) -> str:
    """Return `target` if the machine allows current -> target, else raise IllegalTransition."""
    if not machine.allows(current, target):
        raise IllegalTransition(machine.name, str(current), str(target))
    return target
