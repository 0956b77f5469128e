"""Re-projection after a Redis Cluster failover.

Redis replicates asynchronously: a primary that dies may have acknowledged writes its replica
never received, and the replica that takes over has lost them. Redis is a projection of Kafka,
so the projections (task events, webhook records) take those writes again: each notes how far
it had read every few moments (`Checkpoints`), and when the cluster's primaries change
(`FailoverWatch`, from the client's own view of the cluster, no extra round trip) it reads
again from where it was `REPROJECT_S` earlier. Applying a record twice changes nothing (the
scripts are monotonic), so going back further than needed only costs time.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from mcp.redis_client import is_cluster

REPROJECT_S = 60.0
"""How far back the projections read again after a failover: longer than a failed primary's
unreplicated writes can be old when the failover is noticed (`cluster-node-timeout`, the
election and the client's retries take seconds)."""

CHECKPOINT_EVERY_S = 1.0


class FailoverWatch:
    """Tells whether the primaries of a Redis Cluster changed since the last look (never on a
    single Redis)."""

    def __init__(self, client: Any) -> None:
        self.client = client if is_cluster(client) else None
        self._primaries = self._now()

    def _now(self) -> frozenset[str]:
        if self.client is None:
            return frozenset()
        return frozenset(node.name for node in self.client.get_primaries())

    def failed_over(self) -> bool:
        now = self._now()
        changed = bool(now) and bool(self._primaries) and now != self._primaries
        if now:
            self._primaries = now
        return changed


Position = tuple[str, int]
"""A topic partition."""


class Checkpoints:
    """How far a projection had read over the last `REPROJECT_S` and a bit: `(topic, partition)`
    -> next offset, noted at most every `CHECKPOINT_EVERY_S`."""

    def __init__(self) -> None:
        self._marks: deque[tuple[float, dict[Position, int]]] = deque()
        self._latest: dict[Position, int] = {}
        self._first: dict[Position, int] = {}

    def note(self, read: dict[Position, tuple[int, int]]) -> None:
        """Note a batch: (first offset, next offset) of what it read of each partition."""
        for position, (first, after) in read.items():
            self._first.setdefault(position, first)
            self._latest[position] = max(self._latest.get(position, 0), after)
        now = time.monotonic()
        if not self._marks or now - self._marks[-1][0] >= CHECKPOINT_EVERY_S:
            self._marks.append((now, dict(self._latest)))
        while len(self._marks) > 1 and now - self._marks[1][0] >= REPROJECT_S:
            self._marks.popleft()

    def back(self) -> dict[Position, int]:
        """Where to read again from: where the projection was `REPROJECT_S` ago, or where it
        began (for partitions it had not read then, or when it began less long ago)."""
        if self._marks and time.monotonic() - self._marks[0][0] >= REPROJECT_S:
            return {**self._first, **self._marks[0][1]}
        return dict(self._first)


def batch_positions(messages: list[Any]) -> dict[Position, tuple[int, int]]:
    """(first offset, next offset) of each partition in a batch of Kafka messages."""
    read: dict[Position, tuple[int, int]] = {}
    for msg in messages:
        offset = msg.offset()
        if offset is None or offset < 0:
            continue
        position = (str(msg.topic()), int(msg.partition() or 0))
        first, after = read.get(position, (offset, offset + 1))
        read[position] = (min(first, offset), max(after, offset + 1))
    return read
