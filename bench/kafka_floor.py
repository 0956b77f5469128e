"""Kafka's floor under the end-to-end latency: the platform's two transactions per task, with no
HTTP, no Redis and none of the platform's own code between them.

A task end to end is two Kafka transactions in series: the submission's (the task and its
`queued` event, before the 202) and the worker's (its events and result, with the consumed
offset). Here a front commits each task's two records in a transaction of its own, a worker
process (read_committed) consumes it and commits three records and its offset in one
transaction, and a read_committed watcher sees the result: the same topics, records and client
settings (`mcp.kafka`) as the platform, at the same rate. What the platform adds on top of this
is its HTTP, Redis and Python work; what this takes is Kafka's, on the same machine in the same
run. `celery_e2e` measures it beside ours and Celery's (`kafka_floor` in its results).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from multiprocessing.synchronize import Event as EventType
from typing import Any

import orjson
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from bench.distribution import latency_ms
from bench.pipeline import KAFKA
from mcp.kafka import consumer_config, ensure_topics, producer_config
from mcp.names import Topics
from mcp.settings import Settings

MODEL = "echo"
WARM_UP_S = 3.0
POLL_S = 0.05
SETTLE_S = 2.0


def _settings(prefix: str) -> Settings:
    return Settings(kafka={"bootstrap_servers": KAFKA, "topic_prefix": prefix})


def _worker(prefix: str, ready: EventType, stop: EventType) -> None:
    """Consume each task, then commit its `running` and terminal events, its result and its
    offset in one transaction (the worker's shape for one task)."""
    settings = _settings(prefix)
    topics = Topics.of(settings)
    consumer = Consumer(
        consumer_config(
            settings,
            topics.group("floor"),
            **{"fetch.wait.max.ms": settings.worker.fetch_wait_max_ms},
        )
    )
    producer = Producer(producer_config(settings, f"{prefix}floor-worker"))
    producer.init_transactions(30)
    consumer.subscribe([topics.tasks(MODEL)], on_assign=lambda _consumer, _partitions: ready.set())
    try:
        while not stop.is_set():
            msg = consumer.poll(POLL_S)
            if msg is None or msg.error():
                continue
            key, value = msg.key(), msg.value() or b""
            producer.begin_transaction()
            producer.produce(topics.events, value, key, partition=0)
            producer.produce(topics.events, value, key, partition=0)
            producer.produce(topics.results, value, key, partition=0)
            topic, partition, at = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and at is not None
            offset = TopicPartition(topic, partition, at + 1)
            producer.send_offsets_to_transaction([offset], consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
    finally:
        consumer.close()


class _Watcher:
    """A read_committed consumer of `task-results`: when each result became visible."""

    def __init__(self, settings: Settings) -> None:
        topics = Topics.of(settings)
        self.seen: dict[bytes, float] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._consumer = Consumer(
            consumer_config(settings, topics.group(f"floor-watch-{uuid.uuid4().hex[:6]}"))
        )
        self._consumer.assign([TopicPartition(topics.results, 0)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg: Message | None = self._consumer.poll(POLL_S)
            self._ready.set()
            key = msg.key() if msg is not None and not msg.error() else None
            if key is not None:
                self.seen.setdefault(key, time.time())
        self._consumer.close()

    def wait_ready(self) -> None:
        self._ready.wait(30)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _front(producer: Producer, topics: Topics, rate: float, seconds: float) -> dict[bytes, Any]:
    """One transaction per task at `rate`: (sent, committed) wall times by task key."""
    sent: dict[bytes, tuple[float, float]] = {}
    began = time.perf_counter()
    for n in range(int(rate * seconds)):
        pause = began + n / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        key = uuid.uuid4().hex.encode()
        t0 = time.time()
        value = orjson.dumps({"task_id": key.decode(), "sent": t0})
        producer.begin_transaction()
        producer.produce(topics.tasks(MODEL), value, key, partition=0)
        producer.produce(topics.events, value, key, partition=0)
        producer.commit_transaction(30)
        sent[key] = (t0, time.time())
    return sent


def measure(rate: float, seconds: float) -> dict[str, Any]:
    """The two transactions per task at `rate` for `seconds` (after `WARM_UP_S` unmeasured):
    submit → result visible, and its two halves."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = _settings(prefix)
    ensure_topics(settings, [MODEL])
    topics = Topics.of(settings)
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    worker = context.Process(target=_worker, args=(prefix, ready, stop), daemon=True)
    worker.start()
    watcher = _Watcher(settings)
    producer = Producer(producer_config(settings, f"{prefix}floor-front"))
    try:
        producer.init_transactions(30)
        if not ready.wait(60):
            raise RuntimeError("the floor's worker got no partitions in 60 s")
        watcher.wait_ready()
        _front(producer, topics, rate, WARM_UP_S)
        sent = _front(producer, topics, rate, seconds)
        deadline = time.time() + SETTLE_S
        while time.time() < deadline and not all(k in watcher.seen for k in sent):
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(30)
        if worker.is_alive():
            worker.kill()
        watcher.close()
    seen = {k: watcher.seen[k] for k in sent if k in watcher.seen}
    return {
        "rate_per_s": rate,
        "tasks": len(sent),
        "visible": len(seen),
        **latency_ms([(seen[k] - sent[k][0]) * 1000 for k in seen]),
        "stages_ms": {
            "submit_transaction": latency_ms([(c - t0) * 1000 for t0, c in sent.values()]),
            "committed_to_visible": latency_ms([(seen[k] - sent[k][1]) * 1000 for k in seen]),
        },
    }
