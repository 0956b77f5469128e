"""The `task-events` records this process has itself applied to Redis, so that its own projector
reads past them instead of applying them a second time.

The API writes each submission's `queued` event to Redis right after its commit (write path 1
of `mcp.store`) and its projector then reads the same record from `task-events` (path 5), which
used to decode and apply it again: at 1,000 tasks/s, a third of that projector's events, and the
largest ones (they carry the task). The second application changes nothing (the scripts are
monotonic) unless the first was lost, and it is lost only in ways the projector sees:

- the process died between the commit and its write: then it never noted the record, and the
  partition's next projector (another process, or this one started again) has an empty memo;
- the write failed (Redis away): only a write that succeeded is noted;
- a Redis Cluster primary failed over and lost it: the projector reads the last
  `mcp.failover.REPROJECT_S` again, and a record is skipped once at most (`take` forgets it).

A record is known by its key and the hash of its value, both taken from the bytes written to
Kafka, so the projector skips it before decoding it. The memo is bounded: where several API
processes share the projector's partitions, the records of the others' partitions are never
taken and the oldest give way.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from mcp.records import Record
from schemas import TaskEvent

LIMIT = 16_384
"""Records remembered at most: far more than a projector has in flight (its batches wait
`server.projector_batch_wait_ms`), and a few MB at most."""


class Queued(NamedTuple):
    """A submission's `queued` event and the `task-events` record that carries it: the API's
    after-commit hook writes the one to Redis and notes the other for its projector."""

    event: TaskEvent
    record: Record


class AppliedHere:
    """Records written to Redis by this process: noted by the writer (another thread), taken by
    the projector."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._records: OrderedDict[tuple[bytes | None, int], None] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Remember these (key, value) records: applied to Redis, in full."""
        with self._lock:
            for key, value in records:
                self._records[(key, hash(value))] = None
            while len(self._records) > self.limit:
                self._records.popitem(last=False)

    def take(self, key: bytes | None, value: bytes) -> bool:
        """Whether this record was applied here; it is forgotten, so a second reading of it
        (a rewind) applies it."""
        with self._lock:
            try:
                del self._records[(key, hash(value))]
            except KeyError:
                return False
            return True

    def __len__(self) -> int:
        return len(self._records)
