"""Kafka records: the envelope, how large one may be, and what Kafka's refusal of one means.

Two limits apply to every record: the producer's `message.max.bytes` (librdkafka refuses a larger
record at once) and the topic's `max.message.bytes` (the broker refuses the batch holding it, which
fails the whole transaction). Checking a request's records against the smaller of the two before
they join a group commit keeps one large request from costing anybody else a transaction.

A record's value is JSON or Protobuf, and its `content-type` header says which: producers encode
with `kafka.encoding`, every consumer decodes by the header, and a record without one (written
before the header existed) is JSON. Switching the producer setting is a rolling change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]
from pydantic import BaseModel

from mcp.errors import RecordNotAuthorized, RecordRefused, RecordTooLarge
from mcp.kafka import kafka_error, producer_config
from mcp.settings import Settings
from schemas.codec import JSON, PROTOBUF, decode, encode

log = logging.getLogger(__name__)

# librdkafka's default `message.max.bytes`; Kafka's default topic `max.message.bytes`.
PRODUCER_DEFAULT_MAX = 1_000_000
TOPIC_DEFAULT_MAX = 1_048_588
# A record batch header (61 bytes) plus the varints of one record, counted at their widest:
# a record alone in its batch is never larger on the wire than `wire_size` says.
BATCH_OVERHEAD = 61
RECORD_OVERHEAD = 36
HEADER_OVERHEAD = 10
LEARN_ATTEMPTS = 5

# Errors that Kafka reports for one record (or the batch of one partition) rather than for the
# connection or the transaction: the request behind that record is refused, the others retried.
RECORD_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.POLICY_VIOLATION,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    }
)
SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int = -1  # -1: the producer's partitioner chooses from the key


def is_record_error(err: KafkaError) -> bool:
    return err.code() in RECORD_ERRORS


def wire_size(record: Record) -> int:
    """An upper bound of the bytes `record` takes in a batch of its own."""
    headers = sum(len(k) + len(v) + HEADER_OVERHEAD for k, v in record.headers)
    key = len(record.key) if record.key is not None else 0
    return BATCH_OVERHEAD + RECORD_OVERHEAD + key + len(record.value) + headers


@dataclass
class RecordLimits:
    """The largest record each topic takes from this process's producers."""

    producer_max: int = PRODUCER_DEFAULT_MAX
    topic_max: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings) -> RecordLimits:
        configured = producer_config(settings, "limits").get("message.max.bytes")
        return cls(int(configured) if configured is not None else PRODUCER_DEFAULT_MAX)

    def limit(self, topic: str) -> int:
        return min(self.producer_max, self.topic_max.get(topic, TOPIC_DEFAULT_MAX))

    def smallest(self) -> int:
        return min([self.producer_max, *self.topic_max.values()])

    def check(self, records: Iterable[Record]) -> None:
        """Raise RecordTooLarge for the first record over its topic's limit."""
        for record in records:
            size = wire_size(record)
            limit = self.limit(record.topic)
            if size > limit:
                raise RecordTooLarge(
                    f"the task encodes to a Kafka record of {size} bytes; records may not be "
                    f"larger than {limit} bytes (producer message.max.bytes "
                    f"{self.producer_max}, topic max.message.bytes "
                    f"{self.topic_max.get(record.topic, TOPIC_DEFAULT_MAX)})",
                    {"record_bytes": size, "max_record_bytes": limit, "topic": record.topic},
                )

    def learn(self, settings: Settings, topics: Iterable[str], timeout: float = 10.0) -> None:
        """Read the topics' `max.message.bytes` from the cluster (best effort).

        A topic created a moment ago may not be known to the broker that answers yet: asked
        again a few times before its limit is left at Kafka's default."""
        admin = AdminClient(settings.kafka_client_config())
        pending = list(topics)
        for attempt in range(LEARN_ATTEMPTS):
            resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in pending]
            unknown = []
            for resource, future in admin.describe_configs(resources).items():
                try:
                    entry = future.result(timeout=timeout).get("max.message.bytes")
                except Exception as exc:  # the broker's refusal still isolates the request
                    err = kafka_error(exc)
                    last = attempt == LEARN_ATTEMPTS - 1
                    if (
                        not last
                        and err is not None
                        and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                    ):
                        unknown.append(resource.name)
                    else:
                        log.warning(
                            "could not read max.message.bytes of %s: %s", resource.name, exc
                        )
                    continue
                if entry is not None and entry.value is not None:
                    self.topic_max[resource.name] = int(entry.value)
            if not unknown:
                return
            pending = unknown
            time.sleep(0.5)


def refused_record(
    err: KafkaError, limits: RecordLimits | None = None, topic: str = ""
) -> RecordRefused:
    """The platform's error for Kafka's refusal of one record."""
    details: dict[str, object] = {"kafka_error": err.name(), "topic": topic}
    why = f"{err.name()}: {err.str()}"
    if err.code() in SIZE_ERRORS:
        limit = ""
        if limits is not None and topic:
            details["max_record_bytes"] = limits.limit(topic)
            limit = f" (records may not be larger than {limits.limit(topic)} bytes)"
        return RecordTooLarge(
            f"Kafka refused a record to {topic} as too large{limit}; {why}", details
        )
    if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return RecordNotAuthorized(
            f"the platform may not write to Kafka topic {topic}; {why}", details
        )
    return RecordRefused(f"Kafka refused a record to {topic}; {why}", details)


# -- encodings -----------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)
CONTENT_TYPE = "content-type"
Headers = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


def content_type_for(encoding: str) -> str:
    return PROTOBUF if encoding == "protobuf" else JSON


def record(
    topic: str,
    key: bytes | None,
    message: BaseModel,
    content_type: str = JSON,
    headers: tuple[tuple[str, bytes], ...] = (),
    partition: int = -1,
) -> Record:
    value = encode(message, content_type)
    typed = ((CONTENT_TYPE, content_type.encode()), *headers)
    return Record(topic, key, value, typed, partition)


def content_type_of(headers: Headers) -> str | None:
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in pairs:
        if name == CONTENT_TYPE and value is not None:
            return value.decode() if isinstance(value, bytes) else value
    return None


def decode_value(schema: type[M], value: bytes | None, headers: Headers) -> M:
    """The message in a record's value; DecodeError when it is none (or an unknown type)."""
    return decode(schema, value or b"", content_type_of(headers))
