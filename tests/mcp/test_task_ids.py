"""New task ids of a window share one `task-events` partition (`mcp.names.TaskIds`), by the key
alone: the producers' own partitioner puts them there."""

from __future__ import annotations

import re
import zlib
from unittest import mock

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from mcp import names
from mcp.names import TaskIds
from mcp.settings import Settings

HEX_ID = re.compile(r"[0-9a-f]{32}")


def _partition(task_id: str, partitions: int) -> int:
    return zlib.crc32(task_id.encode()) % partitions


def test_the_ids_of_a_window_share_a_partition_and_the_next_window_takes_the_next() -> None:
    ids = TaskIds(Settings())
    with mock.patch.object(names.time, "monotonic", return_value=10 * names.TASK_IDS_WINDOW_S):
        first = [ids.new(4) for _ in range(200)]
    with mock.patch.object(names.time, "monotonic", return_value=11 * names.TASK_IDS_WINDOW_S):
        second = [ids.new(4) for _ in range(200)]
    assert {_partition(i, 4) for i in first} == {10 % 4}
    assert {_partition(i, 4) for i in second} == {11 % 4}
    assert all(HEX_ID.fullmatch(i) for i in first + second)
    assert len(set(first + second)) == 400


def test_odd_partition_counts_and_no_steering_where_it_cannot_help() -> None:
    ids = TaskIds(Settings())
    assert len({_partition(ids.new(7), 7) for _ in range(50)}) <= 2  # one window, or its edge
    for partitions in (None, 0, 1):
        assert HEX_ID.fullmatch(ids.new(partitions))


def test_another_partitioner_gets_plain_ids() -> None:
    murmur = Settings(kafka={"client_config": {"partitioner": "murmur2_random"}})
    assert not TaskIds(murmur).steered
    assert TaskIds(Settings(kafka={"client_config": {"partitioner": "consistent"}})).steered
    assert TaskIds(Settings()).steered


def test_kafka_puts_the_records_in_the_partition_the_ids_were_drawn_for(
    kafka_bootstrap: str, namespace: str
) -> None:
    topic = f"{namespace}task-events"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, 4, 1)]).values():
        future.result(30)
    ids = TaskIds(Settings())
    sent = {ids.new(4): None for _ in range(40)}
    landed: dict[str, int] = {}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})  # the default partitioner
    for task_id in sent:

        def report(err: object, msg: object, task_id: str = task_id) -> None:
            assert err is None
            landed[task_id] = msg.partition()  # type: ignore[attr-defined]

        producer.produce(topic, b"{}", task_id.encode(), on_delivery=report)
    assert producer.flush(30) == 0
    assert landed == {task_id: _partition(task_id, 4) for task_id in sent}
