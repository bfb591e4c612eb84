"""Owners' quotas in memory (the QuotaStore part of the Store port)."""

from __future__ import annotations

import threading
from collections.abc import Iterable


class QuotasMixin:
    """Each owner's sets, changed under the one lock: a take checks the size and adds."""

    _lock: threading.RLock
    _quotas: dict[tuple[str, str], set[str]]

    def _quota(self, owner: str, kind: str) -> set[str]:
        if not hasattr(self, "_quotas"):
            self._quotas = {}
        return self._quotas.setdefault((owner, kind), set())

    def take_quota(self, owner: str, kind: str, member: str, limit: int) -> bool:
        with self._lock:
            held = self._quota(owner, kind)
            if member not in held and len(held) >= limit:
                return False
            held.add(member)
            return True

    def quota_members(self, owner: str, kind: str) -> set[str]:
        with self._lock:
            return set(self._quota(owner, kind))

    def release_quota(self, owner: str, kind: str, members: Iterable[str]) -> None:
        with self._lock:
            self._quota(owner, kind).difference_update(members)
