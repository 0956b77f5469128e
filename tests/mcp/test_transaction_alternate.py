"""Consecutive consume-process-produce transactions on two producers in turn (the worker's
`alternate_producers`): each transaction commits its outputs with its offsets exactly once,
whichever producer carried it, and an aborted one is done again on the next producer's turn."""

from __future__ import annotations

import itertools

import pytest
from confluent_kafka import Consumer, TopicPartition

from mcp.grouped_txn import Group
from mcp.kafka import consumer_config
from mcp.records import Record
from mcp.settings import Settings
from mcp.transaction import ConsumerTransaction, rewind
from tests.mcp.txn_topics import seeded_source, take

pytestmark = pytest.mark.integration

N = 6


def test_transactions_take_turns_and_each_input_commits_once(
    settings: Settings, namespace: str
) -> None:
    source, sink, group, consumer = seeded_source(settings, namespace, N)
    txn = ConsumerTransaction(settings, f"{namespace}slot", alternate=True)
    carriers: list[int] = []
    aborted = False
    done = 0
    while done < N:
        [msg] = take(consumer, 1)
        txn.produce([Group(done, [Record(sink, None, b"out-" + (msg.value() or b""))])])
        carriers.append(id(txn.producer))
        if done == 3 and not aborted:  # one transaction lost half way: read again, redo
            aborted = True
            txn.abort()
            rewind(consumer)
            continue
        txn.commit([TopicPartition(source, 0, (msg.offset() or 0) + 1)], consumer)
        done += 1
    txn.close()
    consumer.close()

    assert len(set(carriers)) == 2
    assert all(a != b for a, b in itertools.pairwise(carriers))
    check = Consumer(consumer_config(settings, f"{namespace}check"))
    check.subscribe([sink])
    outputs = [m.value() for m in take(check, N + 1, wait_s=10)]  # waits out a duplicate
    check.close()
    assert outputs == [b"out-" + str(i).encode() for i in range(N)]
    committed = Consumer(consumer_config(settings, group))
    assert committed.committed([TopicPartition(source, 0)], timeout=30)[0].offset == N
    committed.close()
