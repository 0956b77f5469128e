"""A record Kafka refuses fails only the request it belongs to, proven against the real broker.

The API's group commit shares one transaction between many requests; the refusals come from
librdkafka (a record over the producer's `message.max.bytes`) and from the broker (a record over
the topic's `max.message.bytes`, which fails the whole batch of its partition).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

from mcp.errors import BrokerUnavailable, RecordNotAuthorized, RecordRefused, RecordTooLarge
from mcp.producer import TaskProducer
from mcp.records import Record, RecordLimits, refused_record, wire_size
from mcp.settings import Settings
from tests.harness import scan

pytestmark = pytest.mark.integration


def _topic(settings: Settings, name: str, **config: str) -> str:
    topic = f"{settings.kafka.topic_prefix}{name}"
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, 2, 1, config=config)]).values():
        future.result(timeout=30)
    return topic


def _committed_values(settings: Settings, topic: str) -> Counter[bytes]:
    return Counter(value for _, value, _ in scan(settings, topic))


def _publish_all(
    producer: TaskProducer, requests: list[list[Record]]
) -> list[BaseException | None]:
    """Publish every request at once from one event loop; each one's error, or None."""

    async def publish_all() -> list[BaseException | None]:
        producer.start()
        try:
            answers = await asyncio.gather(
                *(producer.publish(records) for records in requests), return_exceptions=True
            )
        finally:
            await asyncio.to_thread(producer.close, 2)
        return [a if isinstance(a, BaseException) else None for a in answers]

    return asyncio.run(publish_all())


@pytest.mark.parametrize("refused_by", ["broker", "client"])
def test_refused_record_fails_only_its_request(settings: Settings, refused_by: str) -> None:
    topic = _topic(settings, "small", **{"max.message.bytes": "20000"})
    big = b"B" * (30_000 if refused_by == "broker" else 1_100_000)
    # Many small requests around the large one, several records each, all in one group commit.
    requests = [
        [Record(topic, f"k{i}".encode(), f"small-{i}-{j}".encode()) for j in range(2)]
        for i in range(120)
    ]
    requests.insert(60, [Record(topic, b"big", b"first record"), Record(topic, b"big", big)])
    slow_window = settings.kafka.model_copy(
        update={"group_commit_max_ms": 50.0, "group_commit_wait_alone": True}
    )
    producer = TaskProducer(
        settings.model_copy(update={"kafka": slow_window}), f"{settings.instance_id}.isolation"
    )
    errors = _publish_all(producer, requests)

    error = errors[60]
    assert isinstance(error, RecordTooLarge), error
    assert error.details["kafka_error"] == "MSG_SIZE_TOO_LARGE"
    assert errors[:60] + errors[61:] == [None] * 120
    values = _committed_values(settings, topic)
    expected = {f"small-{i}-{j}".encode() for i in range(120) for j in range(2)}
    assert set(values) == expected  # nothing of the refused request, not even its first record
    assert max(values.values()) == 1  # the retried requests were committed once


def test_outage_is_broker_unavailable(settings: Settings) -> None:
    unreachable = settings.kafka.model_copy(
        update={"bootstrap_servers": "127.0.0.1:1", "request_timeout_s": 2.0}
    )
    producer = TaskProducer(
        settings.model_copy(update={"kafka": unreachable}), f"{settings.instance_id}.outage"
    )
    errors = _publish_all(producer, [[Record("t", b"k", b"v")]] * 3)
    assert all(isinstance(e, BrokerUnavailable) for e in errors), errors


def test_limits_cover_what_kafka_counts(settings: Settings) -> None:
    topic = _topic(settings, "limits", **{"max.message.bytes": "5000"})
    limits = RecordLimits.of(settings)
    limits.learn(settings, [topic])
    assert limits.limit(topic) == 5000
    assert limits.limit("unknown-topic") == limits.producer_max == 1_000_000
    fits = Record(topic, b"key", b"x" * (5000 - wire_size(Record(topic, b"key", b""))))
    limits.check([fits])
    with pytest.raises(RecordTooLarge) as refused:
        limits.check([fits, Record(topic, b"key", fits.value + b"x")])
    assert refused.value.details == {"record_bytes": 5001, "max_record_bytes": 5000, "topic": topic}


def test_refusals_have_their_own_codes() -> None:
    size = refused_record(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), topic="t")
    denied = refused_record(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), topic="t")
    policy = refused_record(KafkaError(KafkaError.POLICY_VIOLATION), topic="t")
    assert (type(size), size.code) == (RecordTooLarge, "record_too_large")
    assert (type(denied), denied.code) == (RecordNotAuthorized, "record_not_authorized")
    assert (type(policy), policy.code) == (RecordRefused, "record_refused")
