"""The DynamoDB store: the Store port over PynamoDB, with every change a conditional write.

DynamoStore is a composition of one part per record kind (jobs, runs, repairs of a run,
slices, the supervisor, the cluster counters, alerts) and the two read sides (history
and listings). Each part is a small class over StoreBase, which holds what they share:
the settings, the models bound to them, and the transaction helper. Inheriting the parts,
rather than delegating to them, writes each method of the port once (with its signature,
which mypy checks against the port; most parts also inherit the port they implement).
What one part needs of another's record is a module-level function (`has_room`,
`run_item`, `add_to_counters`), never a method, so no part depends on another."""

from __future__ import annotations

from chalicelib.adapters.dynamodb.alerts import AlertRecords
from chalicelib.adapters.dynamodb.counters import CounterRecords
from chalicelib.adapters.dynamodb.history import HistoryReads
from chalicelib.adapters.dynamodb.jobs import JobRecords
from chalicelib.adapters.dynamodb.listings import ListingReads
from chalicelib.adapters.dynamodb.quotas import QuotaRecords
from chalicelib.adapters.dynamodb.repairs import RepairRecords
from chalicelib.adapters.dynamodb.runs import RunRecords
from chalicelib.adapters.dynamodb.slices import SliceRecords
from chalicelib.adapters.dynamodb.supervisor import SupervisorRecords
from chalicelib.ports import Store


class DynamoStore(
    JobRecords,
    RunRecords,
    RepairRecords,
    SliceRecords,
    SupervisorRecords,
    CounterRecords,
    AlertRecords,
    QuotaRecords,
    HistoryReads,
    ListingReads,
    Store,
):
    """The Store port on DynamoDB through PynamoDB."""

    def ensure_tables(self) -> None:
        for model in self.m.all:
            if not model.exists():
                model.create_table(wait=True, billing_mode="PAY_PER_REQUEST")
