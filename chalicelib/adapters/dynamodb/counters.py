"""The cluster counters: ended runs are marked on the tally index by their terminal write
and folded, a batch at a time, into `stats#<shard>` items of the supervisor table."""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.dynamodb._tx import _unavailable
from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.models import RunModel, StatsModel
from chalicelib.domain.cluster import ClusterTotals, run_totals
from chalicelib.domain.runs import Run
from chalicelib.ports import StatsStore

STATS_KEY = "stats#{}"
FOLD_BATCH = 24  # runs per fold transaction (with their shard's counter item)


def totals_of(m: RunModel | Run) -> ClusterTotals:
    """An ended run's share of the counters, from its record (or its tally index entry)."""
    return run_totals(
        processed=int(m.processed or 0),
        failed=int(m.failed or 0),
        started_at=m.started_at,
        finished_at=m.finished_at,
        workers=int(m.workers or 0),
        workers_lost=int(m.workers_lost or 0),
    )


def add_to_counters(
    tx: TransactWrite, C: type[StatsModel], shard: int, totals: ClusterTotals, now: float
) -> None:
    """Add `totals` to the counter item of `shard`, in the transaction `tx`."""
    tx.update(
        C(STATS_KEY.format(shard)),
        actions=[
            *(getattr(C, k).add(v) for k, v in totals.as_dict().items()),
            C.updated.set(now),
        ],
    )


class CounterRecords(StoreBase, StatsStore):
    def _marked(self, shard: int, limit: int | None = None) -> list[RunModel]:
        R = self.m.run
        return self._get(lambda: list(R.tally_index.query(shard, limit=limit)))

    def fold_tallies(self, now: float, limit: int = 240) -> int:
        R = self.m.run
        folded = 0
        for shard in range(self.settings.stats_shards):
            if folded >= limit:
                break
            marked = self._marked(shard, limit - folded)
            for i in range(0, len(marked), FOLD_BATCH):
                batch = marked[i : i + FOLD_BATCH]

                def build(
                    tx: TransactWrite, batch: list[RunModel] = batch, shard: int = shard
                ) -> None:
                    for m in batch:
                        tx.update(
                            R(m.job_id, m.slot),
                            actions=[R.tally_shard.remove()],
                            condition=(R.ex_id == m.ex_id) & (R.tally_shard == shard),
                        )
                    total = sum((totals_of(m) for m in batch), ClusterTotals())
                    add_to_counters(tx, self.stats, shard, total, now)

                if self._transact(build):
                    folded += len(batch)
                    continue
                for m in batch:  # one was taken by a concurrent fold: add the rest singly

                    def single(tx: TransactWrite, m: RunModel = m, shard: int = shard) -> None:
                        build(tx, [m], shard)

                    folded += int(self._transact(single))
        return folded

    def cluster_totals(self) -> ClusterTotals:
        C = self.stats
        keys = [STATS_KEY.format(i) for i in range(self.settings.stats_shards)]
        total = ClusterTotals()
        try:
            counters = list(C.batch_get(keys, consistent_read=True))
        except PynamoDBException as err:
            raise _unavailable(err) from err
        for c in counters:
            total += ClusterTotals(
                **{k: int(getattr(c, k) or 0) for k in ClusterTotals().as_dict()}
            )
        for shard in range(self.settings.stats_shards):
            for m in self._marked(shard):
                total += totals_of(m)
        return total
