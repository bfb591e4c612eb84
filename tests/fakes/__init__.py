"""In-memory implementations of every port, each honouring its port's contract (the
suites in tests/contract run them beside the AWS adapters). The queue and the notifier
live in chalicelib.adapters.memory."""

from __future__ import annotations

from chalicelib.adapters.memory import MemoryNotifier, MemoryQueue, Message
from tests.fakes.blobs import MemoryAssetStore, MemoryBlobStore
from tests.fakes.ops import StaticOpSource
from tests.fakes.store import MemoryStore

__all__ = [
    "MemoryAssetStore",
    "MemoryBlobStore",
    "MemoryNotifier",
    "MemoryQueue",
    "MemoryStore",
    "Message",
    "StaticOpSource",
]
