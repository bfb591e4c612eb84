"""Workers: what the start and slice queues' handlers do, each step a conditional write.

The start path (`services.start`), the slice path (`services.slices`) and the run's
lifecycle (`services.lifecycle`, the one caller of the store's `apply_run`) share a store,
a queue and a clock; this class puts them together."""

from __future__ import annotations

import time
from collections.abc import Callable

from chalicelib.ops.registry import OpSource, Secrets
from chalicelib.ports import BlobStore, Clock, Queue, RunLogStore, Store
from chalicelib.services.slices import SlicePath
from chalicelib.services.start import StartPath


class WorkerService(StartPath, SlicePath):
    """Starts runs, processes slices, and applies every transition of a run."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
        ops: OpSource | None = None,
        files: BlobStore | None = None,
    ) -> None:
        super().__init__(store, queue, clock)
        self.sleep, self.ops, self.files = sleep, ops, files
        self.secrets: Secrets | None = None  # set by the composition root: without, none resolve
        self.run_logs: RunLogStore | None = None  # set by the composition root: without, none kept
