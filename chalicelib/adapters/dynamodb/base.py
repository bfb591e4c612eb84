"""What every part of the DynamoDB store shares: the settings, the bound models, the
transaction helper, and the partition keys of the sharded indexes."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.adapters.dynamodb._tx import Transactor, _get
from chalicelib.adapters.dynamodb.models import (
    M,
    Models,
    RunModel,
    build_models,
    build_stats_model,
)
from chalicelib.config import Settings
from chalicelib.domain.jobs import due_shard


class StoreBase(Transactor):
    """The base of the per-record parts that DynamoStore composes."""

    _get = staticmethod(_get)

    def __init__(self, settings: Settings, models: Models | None = None) -> None:
        self.settings = settings
        self.m = models or build_models(settings)
        self.stats = build_stats_model(settings)
        super().__init__(self.m.connection)

    def _item(self, model: type[M], hash_key: str, range_key: str | None = None) -> M | None:
        """The item under that key (a consistent read), or None."""

        def get() -> M | None:
            try:
                return model.get(hash_key, range_key, consistent_read=True)
            except model.DoesNotExist:
                return None

        return self._get(get)

    def _whole_runs(self, copies: Sequence[RunModel]) -> list[RunModel]:
        """The table's items (consistent reads, BatchGetItem) of runs an index query found:
        the runs' indexes project a few attributes, not whole runs. In the copies' order; a
        run gone since (its expiry) is left out."""
        keys = [(m.job_id, m.slot) for m in copies]
        items = self._runs_by_key(keys)
        return [items[k] for k in keys if k in items]

    def _runs_by_key(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RunModel]:
        """The runs under these keys that exist (consistent reads, BatchGetItem)."""
        if not keys:
            return {}
        R = self.m.run

        def read() -> dict[tuple[str, str], RunModel]:
            found = R.batch_get(list(dict.fromkeys(keys)), consistent_read=True)
            return {(m.job_id, m.slot): m for m in found}

        return self._get(read)

    def _list_part(self, job_id: str, deleted: bool) -> str:
        shard = due_shard(job_id, self.settings.list_shards)
        return f"{'deleted' if deleted else 'live'}#{shard}"

    def _ex_part(self, ex_id: str, status: str, deleted: bool) -> str:
        shard = due_shard(ex_id, self.settings.list_shards)
        return f"{status}#{'deleted' if deleted else 'live'}#{shard}"

    def _err_shard(self, key: str) -> int:
        return due_shard(key, self.settings.list_shards)

    def _sweep_shard(self, ex_id: str) -> int:
        return due_shard(ex_id, self.settings.lease_shards)

    def _tally_shard(self, ex_id: str) -> int:
        return due_shard(ex_id, self.settings.stats_shards)
