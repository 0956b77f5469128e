"""A consume-process-produce transaction that Kafka leaves hanging is given up, not waited on.

librdkafka does not enforce the timeout of `send_offsets_to_transaction` on the group coordinator
request, and when the coordinator's broker is SIGKILLed and leaves the metadata the call never
returns (confluentinc/librdkafka#5456, #5511; the cluster's leader-kill test meets it). Past our
own deadline `ConsumerTransaction` abandons the producer to the blocked thread, a new producer
with the same transactional.id fences it and aborts its transaction, and the consumer reads
again from its committed offsets: every input still gets exactly one output.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from mcp.grouped_txn import Group
from mcp.kafka import consumer_config
from mcp.records import Record
from mcp.settings import Settings
from mcp.transaction import ConsumerTransaction, TransactionLost, rewind
from tests.mcp.txn_topics import seeded_source, take

pytestmark = pytest.mark.integration

N = 10


def _outputs(txn: ConsumerTransaction, batch: list[Message], sink: str) -> None:
    txn.produce(
        [Group(i, [Record(sink, None, b"out-" + (m.value() or b""))]) for i, m in enumerate(batch)]
    )


def test_hanging_send_offsets_is_abandoned_and_every_input_commits_once(
    settings: Settings, namespace: str
) -> None:
    source, sink, group, consumer = seeded_source(settings, namespace, N)
    txn = ConsumerTransaction(settings, f"{namespace}slot")
    first = txn.producer
    batch = take(consumer, N)
    assert [m.value() for m in batch] == [str(i).encode() for i in range(N)]
    offsets = [TopicPartition(source, 0, (batch[-1].offset() or 0) + 1)]

    _outputs(txn, batch, sink)
    txn.offsets_deadline_s = 0.0  # the call cannot have returned by then: as if it hung
    with pytest.raises(TransactionLost):
        txn.commit(offsets, consumer)
    assert txn.abandoned == 1
    assert txn.producer is not first

    rewind(consumer)
    txn.offsets_deadline_s = 30.0
    again = take(consumer, N)
    assert [m.value() for m in again] == [m.value() for m in batch]
    _outputs(txn, again, sink)
    txn.commit(offsets, consumer)
    txn.close()
    consumer.close()

    check = Consumer(consumer_config(settings, f"{namespace}check"))
    check.subscribe([sink])
    outputs = [m.value() for m in take(check, N + 1)]  # waits out a duplicate, if any
    check.close()
    assert outputs == [b"out-" + str(i).encode() for i in range(N)]
    committed = Consumer(consumer_config(settings, group))
    assert committed.committed([TopicPartition(source, 0)], timeout=30)[0].offset == N
    committed.close()
