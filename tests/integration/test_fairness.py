"""Priority and fair sharing: one project's flood does not starve another, high jumps the queue.

Project alpha floods 5,000 low-priority echo tasks (2 ms each), then 500 normal ones (10 ms);
project beta then submits 20 normal and 5 high-priority tasks. One echo worker, one slot, batches
of 16:

- beta's high tasks jump the flood: between a high task's record reaching Kafka and its start, at
  most four batches (64) of alpha's 4,000+ queued tasks are dispatched (measured: 0 to 8);
- beta's normal tasks share the normal lane with alpha's 500 round robin: at most 20 + four
  batches (84) of alpha's normal tasks are dispatched ahead of any of them, where first come,
  first served would put every queued one (300+) ahead; their p95 queue wait is reported;
- every one of the 5,525 tasks has exactly one committed result.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from mcp.names import Topics, lane_partition
from mcp.settings import Settings
from schemas import AsyncTask, TaskEvent, TaskStatus, loads
from tests.conftest import make_settings
from tests.harness import Platform, committed_results, scan, wait_for

pytestmark = pytest.mark.integration

FLOOD = 5_000
ALPHA_NORMAL = 500
BATCH = 16
# A high task waits for the batch in flight and the ones already read ahead of it (the consumer
# hands records over in fetch order); measured 0 to 8, bound four batches. It was 48 to 79 while
# librdkafka's fetch-queue back-off (1 s) stalled the worker's fetches (`mcp.kafka`).
HIGH_AHEAD_BOUND = 4 * BATCH
NORMAL_P95_BOUND_S = 1.5  # reported; on a loaded machine the count below is what is asserted
NORMAL_AHEAD_BOUND = 20 + 4 * BATCH
KEYS = {"key-alpha": "alpha", "key-beta": "beta"}


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, namespace: str) -> Settings:
    echo = {
        "name": "echo",
        "backend": "echo",
        "actions": ["generate"],
        "max_batch_size": BATCH,
        "max_wait_ms": 0,
        "concurrency": 1,
        "builtin": True,
    }
    return make_settings(
        kafka_bootstrap,
        redis_url,
        namespace,
        auth={"enabled": True, "api_keys": KEYS},
        models=[echo],
    )


def _submit_many(url: str, key: str, bodies: list[dict[str, Any]]) -> list[str]:
    def one(chunk: list[dict[str, Any]]) -> list[str]:
        headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            out = []
            for body in chunk:
                response = client.post("/v1/tasks", content=orjson.dumps(body))
                assert response.status_code == 202, response.text
                out.append(response.json()["task_id"])
            return out

    chunks = [bodies[i::8] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        return [task_id for ids in pool.map(one, chunks) for task_id in ids]


def _echo(priority: str, n: int, sleep_ms: int = 2) -> dict[str, Any]:
    body = {"model": "echo", "action": "generate", "priority": priority}
    return {**body, "payload": {"n": n, "sleep_ms": sleep_ms}}


def _visible(settings: Settings, topic: str) -> dict[str, datetime]:
    """When each record of a topic was produced (its Kafka timestamp), by task id."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"fairness-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: dict[str, datetime] = {}
    at_end: set[int] = set()
    while len(at_end) < len(partitions):
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            at_end.add(msg.partition() or 0)
            continue
        task = loads(AsyncTask, msg.value() or b"")
        out[task.task_id] = datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC)
    consumer.close()
    return out


def _times(settings: Settings) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """(created_at, first dispatch) of every task, from the committed task-events."""
    created: dict[str, datetime] = {}
    started: dict[str, datetime] = {}
    for _, value, _ in scan(settings, Topics.of(settings).events):
        event = loads(TaskEvent, value)
        if event.status is TaskStatus.QUEUED and event.task is not None:
            created[event.task_id] = event.task.created_at
        elif event.status is TaskStatus.RUNNING:
            at = started.get(event.task_id)
            started[event.task_id] = min(at, event.at) if at else event.at
    return created, started


def test_high_jumps_the_flood_and_projects_share_a_lane(platform: Platform) -> None:
    assert lane_partition("alpha", 2) != lane_partition("beta", 2)
    platform.api()
    alpha = _submit_many(platform.url, "key-alpha", [_echo("low", i) for i in range(FLOOD)])
    platform.worker("echo")
    time.sleep(1.0)  # the worker is busy with alpha's flood
    alpha += _submit_many(
        platform.url, "key-alpha", [_echo("normal", i, sleep_ms=10) for i in range(ALPHA_NORMAL)]
    )
    normal = _submit_many(platform.url, "key-beta", [_echo("normal", i) for i in range(20)])
    high = _submit_many(platform.url, "key-beta", [_echo("high", i) for i in range(5)])

    everything = set(alpha) | set(normal) | set(high)
    assert len(everything) == FLOOD + ALPHA_NORMAL + 25

    def all_done() -> bool:
        return len({r.task_id for r in committed_results(platform.settings)}) >= len(everything)

    wait_for(all_done, 300, "every task's result", interval=2.0)
    results = committed_results(platform.settings)
    per_task: dict[str, int] = {}
    for result in results:
        per_task[result.task_id] = per_task.get(result.task_id, 0) + 1
    assert set(per_task) == everything
    assert set(per_task.values()) == {1}, "a task has more than one committed result"
    assert {r.status for r in results} == {TaskStatus.SUCCEEDED}

    created, started = _times(platform.settings)
    topics = Topics.of(platform.settings)
    visible = _visible(platform.settings, topics.tasks("echo", "high"))
    visible |= _visible(platform.settings, topics.tasks("echo"))
    alpha_starts = [started[t] for t in alpha]
    high_waits, jumped = [], []
    for task_id in high:
        high_waits.append((started[task_id] - visible[task_id]).total_seconds())
        # alpha's tasks dispatched after this one was submitted and before it started
        since = visible[task_id]
        jumped.append(sum(1 for at in alpha_starts if since < at < started[task_id]))
    # Queue wait: from the record reaching Kafka to the task's dispatch.
    normal_waits = sorted((started[t] - visible[t]).total_seconds() for t in normal)
    p95 = normal_waits[int(0.95 * (len(normal_waits) - 1))]
    backlog = sum(1 for t in alpha if started[t] > created[high[0]])
    lane_backlog = sum(1 for t in alpha[FLOOD:] if started[t] > created[normal[0]])
    alpha_normal_waits = [(started[t] - visible[t]).total_seconds() for t in alpha[FLOOD:]]
    print(
        f"\nalpha tasks still queued when beta's high tasks came: {backlog}"
        f"\nalpha normal tasks still queued when beta's normal tasks came: {lane_backlog}"
        f"\nbeta high: queue wait max {max(high_waits):.3f} s, tasks dispatched ahead {jumped}"
        f"\nbeta normal: queue wait p50 {statistics.median(normal_waits):.3f} s"
        f" p95 {p95:.3f} s (bound {NORMAL_P95_BOUND_S} s)"
        f"\nalpha normal: queue wait p50 {statistics.median(alpha_normal_waits):.3f} s"
    )
    assert backlog > 1_000, "the flood was over before beta came: the test proves nothing"
    assert lane_backlog > 100, "alpha's normal tasks were done before beta's came"
    assert max(jumped) <= HIGH_AHEAD_BOUND, jumped
    # Round robin lets about one of alpha's normal tasks (plus batch granularity) go ahead of
    # each of beta's; first come, first served would put all of alpha's queued ones ahead.
    alpha_normal_starts = [started[t] for t in alpha[FLOOD:]]
    ahead = [sum(1 for at in alpha_normal_starts if visible[t] < at < started[t]) for t in normal]
    print(f"alpha normal tasks dispatched ahead of beta's: max {max(ahead)} of {lane_backlog}")
    assert max(ahead) <= NORMAL_AHEAD_BOUND, ahead
