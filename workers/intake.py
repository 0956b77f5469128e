"""Reading a model's lane topics into the worker's fair backlog: which partitions may be read
now (flow control), the poll for up to a batch of records, and decoding each into a job."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, Message

from mcp.names import Topics
from mcp.records import Record, decode_value
from mcp.settings import ModelSpec, Settings
from schemas import AsyncTask, DecodeError
from workers.claims import Job
from workers.fairness import FairQueue
from workers.lanes import Key, Lane, Lanes
from workers.records import undecodable_record

log = logging.getLogger(__name__)

# A record done with without running: its lane and offset, and the dead-letter record to
# publish for it (None: its result is committed already, it was skipped).
Done = tuple[Lane, int, Record | None]


class Intake:
    def __init__(
        self,
        consumer: Consumer,
        settings: Settings,
        spec: ModelSpec,
        topics: Topics,
        lanes: Lanes,
        backlog: FairQueue[Job],
        slots: int = 1,
    ) -> None:
        self.consumer = consumer
        # Enough waiting jobs per partition to fill every slot: below that, a partition that
        # is paused as soon as it holds one batch drops what was prefetched for it and must be
        # fetched again after each batch, which bounds a busy project's throughput by fetch
        # round trips.
        self.cap = spec.max_batch_size * slots
        self.settings = settings
        self.spec = spec
        self.topics = topics
        self.lanes = lanes
        self.backlog = backlog

    def poll(self, timeout: float) -> list[Message]:
        """Up to a batch of records: the first within `timeout`, the rest within the model's
        `max_wait_ms`."""
        first = self.consumer.poll(timeout)
        if first is None:
            return []
        messages = [first]
        room = self.spec.max_batch_size - 1
        if room > 0:
            messages += self.consumer.consume(room, self.spec.max_wait_ms / 1000)
        return messages

    def flow(self) -> None:
        """Pause what must not be read now: a partition with a batch's worth of records waiting
        for each slot (so one project's flood cannot crowd the other partitions out of the
        fetches; pausing also drops what was prefetched for it), and a partition read a window
        past its lowest unfinished record."""
        full = self.backlog.full(self.cap)
        crowded = set(self.lanes.crowded(self.settings.worker.lane_window))
        self.lanes.hold(self.consumer, full | crowded)

    def read(self, messages: list[Message]) -> list[Done]:
        """Queue each record's job in the backlog; return the records done with at once."""
        done: list[Done] = []
        for msg in messages:
            if msg.error():
                log.warning("consume error: %s", msg.error())
                continue
            key: Key = (msg.topic() or "", msg.partition() or 0)
            offset = msg.offset() or 0
            lane = self.lanes.get(key)
            if lane is None:
                continue  # its partition was taken away meanwhile
            if not lane.read(offset):
                log.info("%s/%d@%d: result already committed; skipping", *key, offset)
                done.append((lane, offset, None))
                continue
            try:
                task = decode_value(AsyncTask, msg.value(), msg.headers())
            except DecodeError as exc:
                done.append((lane, offset, undecodable_record(self.topics, msg, exc)))
                continue
            job = Job(task=task, key=key, offset=offset, lane=lane)
            self.backlog.push(key, task.priority, task.project, job)
        return done
