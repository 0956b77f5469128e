"""Topics for the consume-process-produce transaction tests: a source holding `n` records and a
sink, with a consumer of the source in a group of the test's own."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from mcp.kafka import consumer_config
from mcp.settings import Settings


def seeded_source(settings: Settings, namespace: str, n: int) -> tuple[str, str, str, Consumer]:
    """The source's and sink's names, the group's, and the group's consumer subscribed to the
    source, which holds the records b"0" .. b"<n - 1>"."""
    bootstrap = settings.kafka.bootstrap_servers
    source, sink, group = f"{namespace}src", f"{namespace}sink", f"{namespace}g"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (source, sink)]).values():
        future.result(timeout=30)
    seed = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        seed.produce(source, str(i).encode())
    assert seed.flush(30) == 0
    consumer = Consumer(consumer_config(settings, group))
    consumer.subscribe([source])
    return source, sink, group, consumer


def take(consumer: Consumer, n: int, wait_s: float = 60) -> list[Message]:
    """Up to `n` records, waiting at most `wait_s` for them."""
    taken: list[Message] = []
    deadline = time.monotonic() + wait_s
    while len(taken) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            taken.append(msg)
    return taken
