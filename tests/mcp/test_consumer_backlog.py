"""A consumer facing a backlog keeps fetching: its bounded prefetch must not make it sit out.

librdkafka refuses to fetch a partition while the consumer's queue is above its prefetch bounds
(`queued.min.messages`), and then waits `fetch.queue.backoff.ms` (1 s by default) before it
looks again. One fetch returns up to 1 MiB a partition, thousands of small records, so a
consumer with a backlog went over the bound at every fetch, handled the records long before the
second was over, then waited for the rest of it: replay, the dispatcher and a worker with a
backlog spent most of their time waiting (`docs/benchmarks.md`).

Here a consumer with the platform's settings works through 60,000 records (30 MB) and counts
the polls of a quarter of a second that found nothing while records were left. With the 1 s
back-off 27 and 35 did (two runs: a stall after every few MB); with 10 ms none did.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from mcp.kafka import consumer_config
from mcp.settings import Settings

pytestmark = pytest.mark.integration

RECORDS = 60_000
VALUE = b"x" * 500  # about 2,000 records in a fetch of 1 MiB, twice the prefetch bound
POLL_S = 0.25
EMPTY_POLLS_ALLOWED = 2  # a loaded machine may lose a quarter of a second somewhere, not twenty


def test_a_consumer_with_a_backlog_never_sits_out_a_poll(
    settings: Settings, namespace: str
) -> None:
    topic = f"{namespace}backlog"
    bootstrap = settings.kafka.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for _ in range(RECORDS):  # 30 MB: within the producer's default buffer, no BufferError
        producer.produce(topic, VALUE)
    assert producer.flush(60) == 0

    consumer = Consumer(consumer_config(settings, f"{namespace}g"))
    consumer.assign([TopicPartition(topic, 0, 0)])
    read = empty = polls = 0
    while read < RECORDS and polls < 2_000:
        polls += 1
        batch = consumer.consume(500, POLL_S)
        if not batch and read:  # the first fetch may wait for the partition's leader
            empty += 1
        read += sum(1 for m in batch if m.error() is None)
    consumer.close()
    assert read == RECORDS
    assert empty <= EMPTY_POLLS_ALLOWED, f"{empty} polls of {POLL_S} s found nothing mid-backlog"
