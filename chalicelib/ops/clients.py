"""The AWS clients and allow-lists of the ops that reach beyond Cadenza (`stepfunctions`,
`ecs`, `s3`, `s3_put`), set once per process by the composition root. Module state
because readers are called with their parameters and the run's args only (no context)."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.ports import ObjectStore, WaitTargets


class NotAllowed(Exception):
    """A call to something the stage's allow-list does not name: the slice fails, no call
    is made."""


@dataclass(frozen=True)
class TargetClients:
    """The clients, and what this stage allows them to reach (CADENZA_ALLOW_*)."""

    waits: WaitTargets | None = None
    objects: ObjectStore | None = None
    state_machines: tuple[str, ...] = ()  # ARNs
    clusters: tuple[str, ...] = ()  # names or ARNs
    buckets: tuple[str, ...] = ()  # names

    def state_machine(self, ref: str) -> str:
        """The allowed state machine's ARN that `ref` names (its ARN, or its name)."""
        for arn in self.state_machines:
            if ref in (arn, arn.rsplit(":", 1)[-1]):
                return arn
        raise NotAllowed(
            f"state machine {ref!r} is not in this stage's allow-list "
            "(CADENZA_ALLOW_STATE_MACHINES)"
        )

    def cluster(self, ref: str) -> str:
        """`ref` if it names an allowed cluster (by name or ARN)."""
        named = not ref.startswith("arn:") and any(
            c.rsplit("/", 1)[-1] == ref for c in self.clusters
        )
        if ref in self.clusters or named:
            return ref
        raise NotAllowed(
            f"ECS cluster {ref!r} is not in this stage's allow-list (CADENZA_ALLOW_ECS_CLUSTERS)"
        )

    def bucket(self, name: str) -> str:
        """`name` if the stage allows its jobs that bucket."""
        if name in self.buckets:
            return name
        raise NotAllowed(
            f"bucket {name!r} is not in this stage's allow-list (CADENZA_ALLOW_BUCKETS)"
        )

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
    """This process's clients (none, and nothing allowed, until `use`)."""
    return _current
