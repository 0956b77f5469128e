"""The Kafka records a worker publishes: running events, outcomes, dead letters."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import cast

from confluent_kafka import Message

from mcp.grouped_txn import Group, Refusal
from mcp.names import Topics
from mcp.records import CONTENT_TYPE, Record, content_type_of, record, refused_record
from schemas import DecodeError, TaskEvent, TaskStatus
from schemas.codec import JSON
from workers.backends.base import TaskContext
from workers.outcome import Outcome

log = logging.getLogger(__name__)


def running_record(topics: Topics, ctx: TaskContext, worker_id: str, wire: str = JSON) -> Record:
    event = TaskEvent.of(ctx.task, TaskStatus.RUNNING, attempt=ctx.attempt, worker_id=worker_id)
    return record(topics.events, ctx.task.task_id.encode(), event, wire)


def outcome_records(
    topics: Topics,
    outcome: Outcome,
    worker_id: str,
    wire: str = JSON,
    traceparent: str | None = None,
) -> list[Record]:
    """The result, the terminal event and, for a task given up on, its dead letter; values in
    the `wire` encoding (a `content-type` header says which). The first two carry
    `traceparent`, so that the webhook continues the task's trace."""
    key = outcome.task.task_id.encode()
    trace = (("traceparent", traceparent.encode()),) if traceparent else ()
    out = [
        record(topics.results, key, outcome.result_record(worker_id), wire, trace),
        record(topics.events, key, outcome.event_record(worker_id), wire, trace),
    ]
    if outcome.to_dlq:
        code = outcome.error.code if outcome.error else "failed"
        reason = outcome.error.message if outcome.error else ""
        headers = (("error", code.encode()), ("reason", reason.encode()))
        out.append(record(topics.dlq, key, outcome.task, wire, headers))
    return out


def undecodable_record(topics: Topics, msg: Message, exc: DecodeError) -> Record:
    headers: tuple[tuple[str, bytes], ...] = (
        ("error", b"undecodable"),
        ("reason", str(exc).encode()),
        ("source", f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode()),
    )
    sent_as = content_type_of(msg.headers())
    if sent_as is not None:
        headers += ((CONTENT_TYPE, sent_as.encode()),)
    return Record(topics.dlq, msg.key(), msg.value() or b"", headers)


def substitute(
    topics: Topics, worker_id: str, outcomes: list[Outcome], group: Group, refusal: Refusal
) -> Group | None:
    """What is published in place of a group Kafka refused; None: nothing can be. An outcome
    group is known by its place in `outcomes`, which gets the failure that replaces it."""
    kind, n = cast(tuple[str, int], group.id)
    error = refused_record(refusal.error, topic=refusal.topic)
    log.warning("Kafka refused the %s records of a task: %s", kind, error.message)
    if kind == "outcome":  # the task fails instead, with a copy in the DLQ
        done = outcomes[n]
        failed = Outcome.failure(
            done.task,
            done.attempt,
            error.code,
            f"the task's {done.status.value} outcome could not be published: {error.message}",
            to_dlq=True,
            started_at=done.started_at,
        )
        outcomes[n] = failed
        trace = done.task.trace.traceparent
        records = outcome_records(topics, failed, worker_id, traceparent=trace)
        return Group(("unpublishable", n), records)
    if kind == "unpublishable":  # even the DLQ copy was refused: the failure alone
        return Group(("failure", n), [r for r in group.records if r.topic != topics.dlq])
    if kind == "raw":  # an undecodable message the DLQ will not take: its coordinates
        return Group(("raw-refused", n), [replace(r, value=b"") for r in group.records])
    if kind in ("running", "raw-refused"):  # informational; nothing depends on it
        return Group((f"{kind}-dropped", n), [])
    return None
