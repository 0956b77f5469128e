"""Per-partition lanes: records finish out of order, offsets stay exactly-once.

A worker runs several records of one partition at once, so a quick record can finish while a
slow one before it is still running. The offset committed for a partition is its lowest
unfinished record; the records above it that did finish are listed in the commit's metadata
(a bitmap, `hol1:<base64>`), in the same transaction as their results. Whoever reads the
partition next (the same worker after a lost transaction, another one after a crash or a
rebalance) starts at that offset and skips the listed records: their results are committed.

Offsets are not contiguous (transaction markers take offsets too), so a lane only reasons
about offsets it has read: the commit point is the lowest open one, or the one after the
last read when nothing is open.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)

PREFIX = "hol1:"

Key = tuple[str, int]


def encode(position: int, done: Iterable[int]) -> str:
    """Metadata listing the finished offsets at or above `position` (bit i = position + i)."""
    rel = sorted({o - position for o in done if o >= position})
    if not rel:
        return ""
    bits = bytearray(rel[-1] // 8 + 1)
    for r in rel:
        bits[r // 8] |= 1 << (r % 8)
    return PREFIX + base64.urlsafe_b64encode(bytes(bits)).decode()


def decode(position: int, metadata: str | None) -> set[int]:
    """The finished offsets listed by `encode`; nothing for metadata written by anyone else."""
    if not metadata or not metadata.startswith(PREFIX):
        return set()
    try:
        bits = base64.urlsafe_b64decode(metadata[len(PREFIX) :])
    except (binascii.Error, ValueError):
        return set()
    return {position + i * 8 + j for i, byte in enumerate(bits) for j in range(8) if byte >> j & 1}


class Lane:
    """One partition's read position, open records and finished records above the open ones."""

    def __init__(self, start: int, metadata: str | None = None) -> None:
        # A partition without a committed offset starts wherever the first record is.
        self.next_read = start if start >= 0 else -1
        self.skip = decode(start, metadata) if start >= 0 else set()
        self.open: set[int] = set()
        self.done: set[int] = set()
        self.changed = False

    def read(self, offset: int) -> bool:
        """Record a read; False when the record's result is already committed (skip it)."""
        self.next_read = max(self.next_read, offset + 1)
        if offset in self.skip:
            self.skip.discard(offset)
            self.done.add(offset)
            self.changed = True
            return False
        self.open.add(offset)
        return True

    def finish(self, offset: int) -> None:
        self.open.discard(offset)
        self.done.add(offset)
        self.changed = True

    def position(self) -> int:
        return min(self.open) if self.open else self.next_read

    def span(self) -> int:
        """How far reading has run ahead of the lowest unfinished record."""
        return self.next_read - self.position() if self.open else 0

    def commit_point(self) -> tuple[int, str]:
        position = self.position()
        self.done = {o for o in self.done if o > position}
        marks = self.done | {o for o in self.skip if o >= position}
        return position, encode(position, marks)


def committed_offsets(consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    """Committed offsets with their metadata. Without them, going on could skip or redo work,
    so this waits for the broker (and for a predecessor's pending transaction, KIP-447)."""
    while True:
        try:
            return list(consumer.committed(partitions, timeout=10))
        except KafkaException as exc:
            log.warning("cannot read committed offsets yet: %s", exc)
            time.sleep(1.0)


class Lanes:
    """The lanes of the partitions a worker owns, and which of them are paused."""

    def __init__(self) -> None:
        self.by_key: dict[Key, Lane] = {}
        self.paused: set[Key] = set()

    def assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.take(committed_offsets(consumer, partitions))

    def rewind(self, consumer: Consumer, exclude: set[Key]) -> None:
        """New lanes from the committed offsets, and the consumer back at them."""
        self.hold(consumer, set())
        self.by_key.clear()
        assignment = [tp for tp in consumer.assignment() if (tp.topic, tp.partition) not in exclude]
        if not assignment:
            return
        committed = committed_offsets(consumer, assignment)
        self.take(committed)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else 0
            try:
                consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as exc:
                log.warning("seek %s failed: %s", tp, exc)

    def hold(self, consumer: Consumer, wanted: set[Key]) -> None:
        """Pause exactly the partitions in `wanted` (the consumer still serves its group)."""
        stop, go = wanted - self.paused, self.paused - wanted
        if stop:
            consumer.pause([TopicPartition(t, p) for t, p in stop])
        if go:
            consumer.resume([TopicPartition(t, p) for t, p in go])
        self.paused = set(wanted)

    def take(self, committed: Iterable[TopicPartition]) -> None:
        for tp in committed:
            self.by_key[(tp.topic, tp.partition)] = Lane(tp.offset, tp.metadata)

    def drop(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.by_key.pop(key, None)
            self.paused.discard(key)

    def get(self, key: Key) -> Lane | None:
        return self.by_key.get(key)

    @property
    def changed(self) -> bool:
        return any(lane.changed for lane in self.by_key.values())

    def offsets(self) -> list[TopicPartition]:
        """Commit points (with metadata) of the lanes that moved since the last commit."""
        out = []
        for (topic, partition), lane in self.by_key.items():
            if lane.changed and lane.next_read >= 0:
                position, metadata = lane.commit_point()
                out.append(TopicPartition(topic, partition, position, metadata=metadata))
        return out

    def committed(self) -> None:
        for lane in self.by_key.values():
            lane.changed = False

    def crowded(self, window: int) -> list[Key]:
        """Partitions read `window` offsets past their lowest unfinished record."""
        return [key for key, lane in self.by_key.items() if lane.span() >= window]
