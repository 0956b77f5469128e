"""What Redis Cluster support rests on, checked on the test session's single Redis: keys that
run together share a hash slot, and the index step a cluster defers is monotonic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from redis.crc import key_slot

from mcp import lua
from mcp.failover import REPROJECT_S, Checkpoints
from mcp.names import Keys, webhook_task
from mcp.redis_client import script
from mcp.settings import Settings
from mcp.store import SyncTaskStore, event_item
from mcp.task_index import NAMES_COMPLETE, apply_jobs_sync
from mcp.webhooks.events import webhook_id
from schemas import AsyncTask, TaskEvent, TaskStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_tasks_webhooks_and_state_keys_share_their_slots() -> None:
    keys = Keys("p:", shards=16)
    for task_id in ("t1", "a_b", "x_output", "task_started_7"):
        ids = [webhook_id(task_id, kind) for kind in ("task.succeeded", "task.started")]
        ids += [webhook_id(task_id, "task.output", 3), webhook_id(task_id, "task.started", 2)]
        assert {webhook_task(w) for w in ids} == {task_id}
        shards = {keys.webhook_shard(w) for w in ids}
        assert len(shards) == 1
        shard = shards.pop()
        together = [keys.delivery(w) for w in ids] + [
            keys.webhook_schedule(shard),
            keys.webhook_due("host:443", shard),
            keys.webhook_inflight("0", shard),
            keys.webhook_turn(shard, task_id),
            keys.webhook_held(shard, task_id),
        ]
        assert len({key_slot(k.encode()) for k in together}) == 1
        state = [keys.task(task_id), keys.cancel(task_id), keys.timeline(task_id)]
        assert len({key_slot(k.encode()) for k in state}) == 1
    spread = {keys.webhook_shard(webhook_id(f"t{n}", "task.succeeded")) for n in range(200)}
    assert len(spread) == 16
    assert key_slot(keys.workers.encode()) == key_slot(keys.workers_failed.encode())
    assert key_slot(keys.index("p", "all").encode()) == key_slot(keys.index("p", "x").encode())
    assert key_slot(keys.index("p", "all").encode()) == key_slot(keys.index_names("p").encode())
    assert Keys("p:").webhook_shard("msg_t1_succeeded") == 0


def _task(n: int) -> AsyncTask:
    return AsyncTask(
        task_id=f"task-{n}",
        model="echo",
        action="generate",
        project="p",
        created_at=T0 + timedelta(milliseconds=n),
    )


def _apply(client: redis.Redis, keys: Keys, events: list[TaskEvent]) -> list[Any]:
    apply = script(client, lua.APPLY_EVENTS_DEFERRED)
    items = orjson.dumps([event_item(e, 3600) for e in events])
    _applied, jobs = apply(keys=[keys.task(e.task_id) for e in events], args=[items])
    return list(jobs)


@pytest.mark.integration
def test_the_deferred_index_step_moves_tasks_only_forward(
    redis_client: redis.Redis, settings: Settings
) -> None:
    keys = Keys.of(settings)
    one, two = _task(1), _task(2)
    queued = _apply(
        redis_client,
        keys,
        [TaskEvent.of(t, TaskStatus.QUEUED, at=t.created_at, task=t) for t in (one, two)],
    )
    running = _apply(redis_client, keys, [TaskEvent.of(one, TaskStatus.RUNNING, attempt=1)])
    assert [j[3] for j in queued] == [b"queued", b"queued"]
    assert [j[3] for j in running] == [b"running"]
    # Applied late and twice, the queued job does not take the task back.
    apply_jobs_sync(redis_client, keys, running)
    apply_jobs_sync(redis_client, keys, queued)
    apply_jobs_sync(redis_client, keys, queued)

    def members(name: str) -> list[bytes]:
        return list(redis_client.zrange(keys.index("p", name), 0, -1))

    assert members("status:running") == [b"task-1"]
    assert members("status:queued") == [b"task-2"]
    assert members("all") == [b"task-1", b"task-2"]
    assert redis_client.hget(keys.task("task-1"), "indexed") == b"running"
    assert redis_client.sismember(keys.index_projects, "p")
    # The project entered `idx:projects` with these jobs: its names set is complete.
    names = {_text(m) for m in redis_client.smembers(keys.index_names("p"))}
    assert names == {NAMES_COMPLETE, "model:echo", "action:generate"}
    # Once noted, the same write returns no job; a task still unnoted returns its job again.
    assert _apply(redis_client, keys, [TaskEvent.of(one, TaskStatus.RUNNING, attempt=1)]) == []
    redis_client.hdel(keys.task("task-2"), "indexed")
    again = _apply(redis_client, keys, [TaskEvent.of(two, TaskStatus.QUEUED, task=two)])
    assert [j[1] for j in again] == [b"task-2"]


def test_checkpoints_go_back_to_where_the_projection_was() -> None:
    marks = Checkpoints()
    marks.note({("events", 0): (10, 20)})
    marks.note({("events", 0): (20, 30), ("events", 1): (5, 9)})
    # Begun less than REPROJECT_S ago: everything it read, again.
    assert marks.back() == {("events", 0): 10, ("events", 1): 5}
    # Marks older than that: from the newest of them.
    marks._marks[0] = (marks._marks[0][0] - REPROJECT_S - 1, marks._marks[0][1])
    marks.note({("events", 0): (30, 31)})
    assert marks.back() == {("events", 0): 20, ("events", 1): 5}


@pytest.mark.integration
def test_a_claim_read_again_by_the_same_process_counts_no_attempt(settings: Settings) -> None:
    # A worker whose claim round trip failed half way (some slots answered) reads the same
    # records again and claims them again: the tasks that were claimed keep their attempt.
    first, second = SyncTaskStore(settings), SyncTaskStore(settings)
    try:
        tasks = [_task(1), _task(2)]
        first.apply_events([TaskEvent.of(t, TaskStatus.QUEUED, task=t) for t in tasks])
        records = ["tasks.echo:0@10", "tasks.echo:0@11"]
        assert first.claim(tasks, "w", records) == [("run", 1), ("run", 1)]
        assert first.claim(tasks, "w", records) == [("run", 1), ("run", 1)]
        # A retry within the run, and another process (a restarted worker), count attempts.
        assert first.claim(tasks[:1], "w") == [("run", 2)]
        assert second.claim(tasks, "w", records) == [("run", 3), ("run", 2)]
    finally:
        first.close()
        second.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
