"""A webhook delivery as the dispatcher handles it, and as Redis holds it.

`NewDelivery` is a webhook to send (its body fixed once); its first `webhook-deliveries` record
comes from `scheduled`. `Delivery` is one claimed for an attempt, with its whole state; a
delivery hash in Redis holds a record as `hash_fields` (what scripts and views read, the record
itself, the body), and `record_of` reads it back.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from schemas.webhooks import WebhookAttempt, WebhookRecord, WebhookType

Publish = Callable[[Sequence[WebhookRecord]], Awaitable[None]]
"""Commits delivery states to `webhook-deliveries` (raises when that did not happen)."""


@functools.lru_cache(maxsize=8192)
def destination(url: str) -> str:
    """The `host:port` a delivery goes to; concurrency limits and due queues are per destination.
    (Asked several times in a delivery's life: kept for the latest URLs.)"""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


@dataclass(frozen=True)
class NewDelivery:
    """A webhook to send: its body is fixed now, so every attempt sends the same bytes."""

    webhook_id: str
    task_id: str
    project: str
    type: WebhookType
    url: str
    body: bytes
    traceparent: str = field(default="", kw_only=True)
    """The trace its attempts continue (sent to the receiver as `traceparent`); "" for none.
    Kept in Redis beside the delivery, not in its journal: a trace is best effort."""

    def scheduled(self, at: float) -> WebhookRecord:
        """Its first record: due at `at` (unix seconds)."""
        return WebhookRecord.scheduled(
            webhook_id=self.webhook_id,
            task_id=self.task_id,
            project=self.project,
            type=self.type,
            url=self.url,
            body=self.body.decode(),
            at=datetime.fromtimestamp(at, UTC),
        )


def scheduled(deliveries: Sequence[NewDelivery], due: float | None = None) -> list[WebhookRecord]:
    """The first records of new deliveries, due at `due` (now by default) in this order."""
    # Whole microseconds: a record's times are datetimes, exact to the microsecond.
    start_us = round((time.time() if due is None else due) * 1_000_000)
    return [d.scheduled((start_us + i) / 1_000_000) for i, d in enumerate(deliveries)]


@dataclass(frozen=True)
class Delivery(NewDelivery):
    """A delivery claimed for an attempt."""

    attempts: int
    step: int
    status: str
    state: WebhookRecord | None = None
    """Its whole state when claimed; None only for a delivery built by hand."""

    @property
    def destination(self) -> str:
        return destination(self.url)

    @classmethod
    def of(cls, record: WebhookRecord) -> Delivery:
        return cls(
            webhook_id=record.webhook_id,
            task_id=record.task_id,
            project=record.project,
            type=record.type,
            url=record.url,
            body=record.body.encode(),
            attempts=record.attempts,
            step=record.step,
            status=record.status,
            state=record,
        )

    def after(self, attempt: WebhookAttempt, delivered: bool) -> WebhookRecord:
        """Its state after `attempt` (see `WebhookRecord.after`)."""
        if self.state is None:
            raise ValueError(f"delivery {self.webhook_id} was not claimed from the store")
        return self.state.after(attempt, delivered)


@dataclass(frozen=True)
class Claim:
    deliveries: list[Delivery]
    next_due: float | None
    """When the next delivery to a destination with free slots is due, as far as is known."""


def encoded(record: WebhookRecord) -> bytes:
    """A record as JSON without its body: what a delivery hash keeps as `record`. Made once per
    state: `with_body` makes the journal's value from it."""
    return WebhookRecord.__pydantic_serializer__.to_json(record, exclude=_BODY)


_BODY = {"body"}


def encoded_states(
    records: Sequence[WebhookRecord], made: Sequence[bytes] | None
) -> Sequence[bytes]:
    """Each record's `encoded` JSON: `made` when the caller made it already, else made here."""
    return [encoded(r) for r in records] if made is None else made


def with_body(without: bytes, body: str) -> bytes:
    """The whole record's JSON (its `webhook-deliveries` value) from `encoded`'s and its body,
    instead of serialising the record a second time; the same object, the body its last key."""
    return b'%s,"body":%s}' % (without[:-1], orjson.dumps(body))


def hash_fields(
    record: WebhookRecord, without_body: bytes, body: bool = True
) -> dict[str, str | bytes]:
    """What a delivery hash holds of a record: the fields scripts and views read, the record
    itself without its body (`without_body`, made by `encoded`) and, last, the body. `body`
    False leaves the body out, for a hash that holds it already (a delivery's body never
    changes): `scripts.STEPS` writes nothing where the hash is gone and asks for it."""
    created = record.created_at.timestamp()
    fields: dict[str, str | bytes] = {
        "webhook_id": record.webhook_id,
        "task_id": record.task_id,
        "project": record.project,
        "type": record.type,
        "url": record.url,
        "host": destination(record.url),
        "status": record.status,
        "attempts": str(record.attempts),
        "step": str(record.step),
        "last_status_code": "" if record.last_status_code is None else str(record.last_status_code),
        "last_error": record.last_error,
        "created_at": repr(created),
        "next_attempt_at": _stamp(record.next_attempt_at),
        "finished_at": _stamp(record.finished_at),
        "version": str(record.version),
        "record": without_body,
    }
    if body:
        fields["body"] = record.body
    return fields


def _stamp(at: datetime | None) -> str:
    return "" if at is None else repr(at.timestamp())


def record_of(row: dict[str, Any]) -> WebhookRecord:
    """The record a delivery hash holds (see `record_fields`)."""
    data = orjson.loads(row["record"])
    data["body"] = _text(row.get("body", b""))
    return WebhookRecord.model_validate(data)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
