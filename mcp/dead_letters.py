"""The dead-letter topic as the API sees it: an index of its records in Redis, and reading one
record back to requeue its task.

The projector indexes every record of `tasks.dlq` (`DeadLetter.of`, then `index_commands`):
`dlq:<project>` scores task ids by when they landed, `dlq:task:<id>` says where the record is.
Both are rebuilt by `autoglm replay`. A record whose value is not a task (undecodable input)
belongs to no project and is not indexed; operators read it from Kafka.

A requeue submits the dead task's request again as a new task, with the idempotency key
`dlq-requeue:<task id>`: one committed transaction, the old task keeps its one outcome, and a
repeated requeue answers with the same new task.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from mcp.kafka import consumer_config
from mcp.names import Keys, Topics
from mcp.records import decode_value
from mcp.settings import Settings
from schemas import AsyncTask, DecodeError, SubmitRequest

REQUEUE_KEY = "dlq-requeue:{task_id}"


@dataclass(frozen=True)
class DeadLetter:
    """Where a dead task's record is and why it is there."""

    task_id: str
    project: str
    model: str
    action: str
    error: str
    partition: int
    offset: int
    at_ms: int

    @classmethod
    def of(cls, msg: Message) -> DeadLetter | None:
        """The index entry of a `tasks.dlq` record; None for a value that is not a task."""
        value = msg.value()
        if value is None:
            return None
        try:
            task = decode_value(AsyncTask, value, msg.headers())
        except DecodeError:
            return None
        headers = dict(msg.headers() or [])
        error = headers.get("error") or b"unknown"
        _, at_ms = msg.timestamp()
        return cls(
            task_id=task.task_id,
            project=task.project,
            model=task.model,
            action=task.action,
            error=error.decode(errors="replace") if isinstance(error, bytes) else str(error),
            partition=int(msg.partition() or 0),
            offset=int(msg.offset() or 0),
            at_ms=int(at_ms) if at_ms > 0 else int(time.time() * 1000),
        )

    def fields(self) -> dict[str, str | int]:
        return {
            "task_id": self.task_id,
            "project": self.project,
            "model": self.model,
            "action": self.action,
            "error": self.error,
            "partition": self.partition,
            "offset": self.offset,
            "at_ms": self.at_ms,
        }


def index_commands(pipe: Any, keys: Keys, letters: list[DeadLetter], ttl_s: int) -> None:
    """Queue the index writes of these records on a Redis pipeline (sync or asyncio): setting
    the same entry twice changes nothing, so a re-read record is harmless."""
    cutoff_ms = (time.time() - ttl_s) * 1000
    for letter in letters:
        entry = keys.dead_letter(letter.task_id)
        pipe.hset(entry, mapping=letter.fields())
        pipe.expire(entry, ttl_s)
        pipe.zadd(keys.dead_letters(letter.project), {letter.task_id: letter.at_ms})
        pipe.zremrangebyscore(keys.dead_letters(letter.project), "-inf", f"({cutoff_ms}")


def read_task(
    settings: Settings, partition: int, offset: int, timeout_s: float = 10.0
) -> AsyncTask:
    """The task in the dead-letter record at (partition, offset), read committed."""
    topic = Topics.of(settings).dlq
    group = Topics.of(settings).group(f"dlq-read-{uuid.uuid4().hex[:8]}")
    consumer = Consumer(consumer_config(settings, group))
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.offset() == offset:
                return decode_value(AsyncTask, msg.value(), msg.headers())
            break
    finally:
        consumer.close()
    raise LookupError(f"no dead-letter record at {topic}[{partition}]@{offset}")


def resubmission(task: AsyncTask) -> SubmitRequest:
    """The request that submits a dead task again."""
    return SubmitRequest(
        model=task.model,
        action=task.action,
        payload=task.payload,
        callback_url=task.callback_url,
        webhook_events_filter=task.webhook_events_filter,
        timeout_s=task.timeout_s,
        ttl_s=task.ttl_s,
        metadata=task.metadata,
    )
