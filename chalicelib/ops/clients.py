"""The AWS clients of the ops that reach beyond Cadenza (`stepfunctions`, `ecs`, `s3`,
`s3_put`), set once per process by the composition root. Module state because readers are
called with their parameters and the run's args only (no context). What they may reach is
the stage's one allow-list (`targets.base.access`)."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.ports import ObjectStore, WaitTargets


@dataclass(frozen=True)
class TargetClients:
    """The clients (none where the stage allows nothing of their kind)."""

    waits: WaitTargets | None = None
    objects: ObjectStore | None = None

    def need_waits(self, op: str) -> WaitTargets:
        if self.waits is None:
            raise RuntimeError(f"{op}: this worker has no {op} client")
        return self.waits

    def need_objects(self, op: str) -> ObjectStore:
        if self.objects is None:
            raise RuntimeError(f"{op}: this worker has no S3 client")
        return self.objects


_current = TargetClients()


def use(clients: TargetClients) -> None:
    """Set this process's clients (the composition root; tests)."""
    global _current
    _current = clients


def current() -> TargetClients:
    """This process's clients (none until `use`)."""
    return _current
