"""Owners' quotas: one `quota#<kind>#<owner>` item per owner and kind in the supervisor
table, a string set; an addition is one conditional update on the set's size."""

from __future__ import annotations

from collections.abc import Iterable

from pynamodb.expressions.condition import Condition, size

from chalicelib.adapters.dynamodb._tx import _conditional_update
from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.models import QuotaModel, build_quota_model
from chalicelib.ports import QuotaStore

QUOTA_KEY = "quota#{}#{}"


class QuotaRecords(StoreBase, QuotaStore):
    @property
    def _quota(self) -> type[QuotaModel]:
        return build_quota_model(self.settings)

    def take_quota(self, owner: str, kind: str, member: str, limit: int) -> bool:
        Q = self._quota
        held = size(Q.members)  # type: ignore[no-untyped-call]  # unannotated in PynamoDB
        room: Condition = Q.members.does_not_exist() | (held < limit) | Q.members.contains(member)
        item = Q(QUOTA_KEY.format(kind, owner))
        return _conditional_update(item, [Q.members.add({member})], room)

    def quota_members(self, owner: str, kind: str) -> set[str]:
        m = self._item(self._quota, QUOTA_KEY.format(kind, owner))
        return set(m.members or ()) if m is not None else set()

    def release_quota(self, owner: str, kind: str, members: Iterable[str]) -> None:
        gone = set(members)
        if gone:
            Q = self._quota
            _conditional_update(
                Q(QUOTA_KEY.format(kind, owner)), [Q.members.delete(gone)], Q.key.exists()
            )
