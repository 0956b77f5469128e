"""The ground every promise stands on, proven against the real broker.

A committed transaction is visible to a read_committed consumer and an aborted one is not;
consume-transform-produce with send_offsets_to_transaction resumes exactly after the commit.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.integration


def _create(bootstrap: str, *topics: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    for future in futures.values():
        future.result(timeout=30)


def _producer(bootstrap: str, txn_id: str) -> Producer:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 0}
    )
    producer.init_transactions(30)
    return producer


def _consumer(bootstrap: str, group: str, isolation: str = "read_committed") -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": isolation,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


def _drain(consumer: Consumer, expect: int, idle_s: float = 3.0) -> list[bytes]:
    """Read until `expect` values arrived and then `idle_s` more passed without a new one."""
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    last = time.monotonic()
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            if len(values) >= expect and time.monotonic() - last > idle_s:
                break
            continue
        if msg.error():
            raise KafkaException(msg.error())
        values.append(msg.value())
        last = time.monotonic()
    return values


def test_read_committed_sees_committed_not_aborted(kafka_bootstrap: str, namespace: str) -> None:
    topic = f"{namespace}txn"
    _create(kafka_bootstrap, topic)
    producer = _producer(kafka_bootstrap, f"{namespace}p")

    producer.begin_transaction()
    producer.produce(topic, b"committed-1")
    producer.produce(topic, b"committed-2")
    producer.commit_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.flush(30)  # the records reach the log; only the abort marker hides them
    producer.abort_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, b"committed-3")
    producer.commit_transaction(30)

    committed = _consumer(kafka_bootstrap, f"{namespace}rc")
    committed.subscribe([topic])
    assert _drain(committed, 3) == [b"committed-1", b"committed-2", b"committed-3"]
    committed.close()

    uncommitted = _consumer(kafka_bootstrap, f"{namespace}ru", isolation="read_uncommitted")
    uncommitted.subscribe([topic])
    assert b"aborted" in _drain(uncommitted, 4)
    uncommitted.close()


def test_consume_transform_produce_resumes_after_committed_offsets(
    kafka_bootstrap: str, namespace: str
) -> None:
    source, sink, group = f"{namespace}src", f"{namespace}sink", f"{namespace}ctp"
    _create(kafka_bootstrap, source, sink)
    seed = _producer(kafka_bootstrap, f"{namespace}seed")
    seed.begin_transaction()
    for i in range(10):
        seed.produce(source, str(i).encode())
    seed.commit_transaction(30)

    def step(txn_id: str, take: int, commit: bool) -> list[bytes]:
        """Consume `take` records, produce their transforms, then commit or abort."""
        consumer = _consumer(kafka_bootstrap, group)
        consumer.subscribe([source])
        producer = _producer(kafka_bootstrap, txn_id)
        taken: list[bytes] = []
        producer.begin_transaction()
        deadline = time.monotonic() + 60
        while len(taken) < take and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            taken.append(msg.value())
            producer.produce(sink, b"out-" + msg.value())
        positions = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
        consumer.close()
        return taken

    assert step(f"{namespace}w", 4, commit=True) == [b"0", b"1", b"2", b"3"]
    # An aborted batch leaves neither output nor offsets: the next run takes the same records.
    assert step(f"{namespace}w", 3, commit=False) == [b"4", b"5", b"6"]
    assert step(f"{namespace}w", 6, commit=True) == [str(i).encode() for i in range(4, 10)]

    check = _consumer(kafka_bootstrap, f"{namespace}check")
    check.subscribe([sink])
    assert _drain(check, 10) == [b"out-" + str(i).encode() for i in range(10)]
    committed = _consumer(kafka_bootstrap, group)
    offsets = committed.committed([TopicPartition(source, 0)], timeout=30)
    assert offsets[0].offset == 10  # the position just past the tenth record
    committed.close()
    check.close()


def test_restart_with_same_transactional_id_fences_zombie(
    kafka_bootstrap: str, namespace: str
) -> None:
    topic = f"{namespace}fence"
    _create(kafka_bootstrap, topic)
    txn_id = f"{namespace}slot-{uuid.uuid4().hex[:6]}"
    zombie = _producer(kafka_bootstrap, txn_id)
    zombie.begin_transaction()
    zombie.produce(topic, b"zombie")
    zombie.flush(30)

    successor = _producer(kafka_bootstrap, txn_id)  # aborts the zombie's open transaction
    successor.begin_transaction()
    successor.produce(topic, b"successor")
    successor.commit_transaction(30)

    with pytest.raises(KafkaException) as excinfo:
        zombie.commit_transaction(10)
    assert excinfo.value.args[0].fatal() or excinfo.value.args[0].txn_requires_abort()

    reader = _consumer(kafka_bootstrap, f"{namespace}fr")
    reader.subscribe([topic])
    assert _drain(reader, 1) == [b"successor"]
    reader.close()
