"""An in-memory Store that honours the port's contract as DynamoStore does.

Every write takes the one lock, checks its whole condition against the stored records,
then applies every change, so a write (or a "transaction") is all or nothing, and a lost
race returns False / None exactly where DynamoDB's conditional write fails. Records are
copied in and out: a caller's object is never the stored one. DynamoDB's sparse indexes
are derived from the records (an item is on an index when it carries the index's keys).
One module per part of the port, as the DynamoDB store is split.
"""

from __future__ import annotations

from chalicelib.ports import Store
from tests.fakes.jobs import JobsMixin
from tests.fakes.listings import ListingsMixin
from tests.fakes.quotas import QuotasMixin
from tests.fakes.runs import RunsMixin
from tests.fakes.slices import SlicesMixin
from tests.fakes.supervisor import SupervisorMixin

__all__ = ["MemoryStore"]


class MemoryStore(
    JobsMixin, ListingsMixin, RunsMixin, SlicesMixin, SupervisorMixin, QuotasMixin, Store
):
    """The Store port in memory: one lock, records copied in and out."""

    def ensure_tables(self) -> None:
        """Nothing to create."""
