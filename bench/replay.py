"""`autoglm replay` after Redis lost everything: how long 100k tasks and their webhooks take.

The topics are filled the way the platform fills them: per task a `queued` event carrying the
task (a third with an `Idempotency-Key`) and a `succeeded` event in `task-events`; per task a
completion webhook in `webhook-deliveries` (scheduled, then delivered; one in ten still waiting
for a retry, one in a hundred given up). Then Redis is empty and the replay is timed: task events
(task state and idempotency keys, what replay rebuilt before webhooks were journaled) and webhook
records (the schedule, the history, dead webhooks) separately.

    python -m bench replay            # BENCH_REPLAY_N=100000 by default
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta
from typing import Any

import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from mcp.kafka import ensure_topics, producer_config
from mcp.names import Keys, Topics
from mcp.replay import replay, replay_webhooks
from mcp.settings import Settings
from mcp.store import SyncTaskStore
from mcp.webhooks.projection import journal_record
from schemas import (
    AsyncTask,
    Idempotency,
    TaskEvent,
    TaskStatus,
    WebhookAttempt,
    WebhookRecord,
    dumps,
    utcnow,
)

KAFKA = os.environ.get("AUTOGLM_TEST_KAFKA", "127.0.0.1:19092")
REDIS = os.environ.get("AUTOGLM_TEST_REDIS", "redis://127.0.0.1:16379/0")
COUNT = int(os.environ.get("BENCH_REPLAY_N", "100000"))
PER_TRANSACTION = 5000
BODY = '{"type":"task.succeeded","timestamp":"2026-01-01T00:00:00Z","data":{"result":"%s"}}'


def _settings() -> Settings:
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    return Settings.model_validate(
        {
            "dev_mode": True,
            "log_level": "WARNING",
            "instance_id": namespace.rstrip("."),
            "kafka": {"bootstrap_servers": KAFKA, "topic_prefix": namespace, "partitions": 4},
            "redis": {"url": REDIS, "key_prefix": namespace},
        }
    )


def _webhook(task: AsyncTask, n: int) -> list[WebhookRecord]:
    """The records a dispatcher writes for one completion webhook."""
    at = task.created_at + timedelta(seconds=1)
    first = WebhookRecord.scheduled(
        webhook_id=f"msg_{task.task_id}_succeeded",
        task_id=task.task_id,
        project=task.project,
        type="task.succeeded",
        url="https://receiver.example/hook",
        body=BODY % ("hello " * 40),
        at=at,
    )
    retry_at = at + timedelta(hours=1) if n % 10 == 0 else None
    give_up = n % 100 == 1
    code = 500 if retry_at or give_up else 200
    attempt = WebhookAttempt(
        attempt=1, at=at, duration_ms=12.5, status_code=code, next_attempt_at=retry_at
    )
    return [first, first.after(attempt, delivered=code == 200)]


def fill(settings: Settings, count: int) -> int:
    """Commit `count` tasks' events and webhook records; returns how many records."""
    topics = Topics.of(settings)
    producer = Producer(producer_config(settings, topics.transactional_id("bench", "replay")))
    producer.init_transactions(30)
    written = 0
    now = utcnow()
    for start in range(0, count, PER_TRANSACTION):
        producer.begin_transaction()
        for n in range(start, min(count, start + PER_TRANSACTION)):
            claim = None
            if n % 3 == 0:
                claim = Idempotency(
                    key=f"key-{n}", fingerprint=f"{n:064x}", expires_at=now + timedelta(days=1)
                )
            task = AsyncTask(model="echo", action="generate", payload={"n": n}, idempotency=claim)
            key = task.task_id.encode()
            queued = TaskEvent.of(task, TaskStatus.QUEUED, at=task.created_at, task=task)
            done = TaskEvent.of(task, TaskStatus.SUCCEEDED, attempt=1, result={"echo": {"n": n}})
            producer.produce(topics.events, dumps(queued), key)
            producer.produce(topics.events, dumps(done), key)
            for state in _webhook(task, n):
                record = journal_record(topics, state)
                producer.produce(
                    record.topic, record.value, record.key, headers=list(record.headers)
                )
            written += 4
            producer.poll(0)
        producer.commit_transaction(60)
    producer.flush(30)
    return written


def _clean(settings: Settings) -> None:
    admin = AdminClient(settings.kafka_client_config())
    prefix = settings.kafka.topic_prefix
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    for future in admin.delete_topics(mine, operation_timeout=30).values():
        future.result(timeout=30)
    client = redis.Redis.from_url(settings.redis.url)
    keys = list(client.scan_iter(match=f"{settings.redis.key_prefix}*", count=5000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start : start + 5000])
    client.close()


def run(out: dict[str, Any]) -> None:
    settings = _settings()
    ensure_topics(settings, [])
    try:
        started = time.monotonic()
        written = fill(settings, COUNT)
        fill_s = time.monotonic() - started
        print(f"committed {written} records for {COUNT} tasks in {fill_s:.1f} s")
        started = time.monotonic()
        events = replay(settings, SyncTaskStore(settings), timeout_s=600)
        events_s = time.monotonic() - started
        started = time.monotonic()
        records = replay_webhooks(settings, timeout_s=600)
        webhooks_s = time.monotonic() - started
        keys = Keys.of(settings)
        client = redis.Redis.from_url(settings.redis.url)
        restored = {
            "idempotency_keys": sum(1 for _ in client.scan_iter(keys.idempotency("*", "*"), 5000)),
            "dead_webhooks": client.zcard(keys.webhook_dead),
            "waiting_webhooks": client.zcard(keys.webhook_due("receiver.example:443")),
        }
        client.close()
        print(
            f"replay: {events} task events in {events_s:.1f} s, "
            f"{records} webhook records in {webhooks_s:.1f} s; restored {restored}"
        )
        out["replay"] = {
            "tasks": COUNT,
            "task_events": events,
            "webhook_records": records,
            "task_events_s": round(events_s, 2),
            "webhook_records_s": round(webhooks_s, 2),
            "total_s": round(events_s + webhooks_s, 2),
            "tasks_per_s": round(COUNT / (events_s + webhooks_s), 1),
            "restored": restored,
            "note": "Redis empty, then `autoglm replay`: task-events (state, idempotency keys), "
            "then webhook-deliveries (2 records per task, not yet compacted); the task-events "
            "part is what replay did before webhook state was journaled",
        }
    finally:
        _clean(settings)


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["replay"]))
