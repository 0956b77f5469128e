"""The fast paths to Redis (the API's `queued` write before its 202, the worker's claim and its
result write after each commit) and the projector's later pass over the same events: whatever
the order, the projector changes nothing the fast paths wrote, and nothing moves a task back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcp.names import Keys
from mcp.store import SyncTaskStore, view_of
from schemas import AsyncTask, TaskEvent, TaskResult, TaskStatus

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _task(n: int) -> AsyncTask:
    return AsyncTask(
        task_id=f"task-{n:03d}", model="echo", action="generate", project="p", created_at=T0
    )


def _lifecycle(t: AsyncTask) -> tuple[list[TaskEvent], TaskResult]:
    """The task's events as the projector reads them, and its committed result."""
    started = T0 + timedelta(milliseconds=5)
    finished = started + timedelta(milliseconds=1)
    events = [
        TaskEvent.of(t, TaskStatus.QUEUED, at=t.created_at, task=t),
        TaskEvent.of(t, TaskStatus.RUNNING, at=started, attempt=1, worker_id="echo.0"),
        TaskEvent.of(
            t,
            TaskStatus.SUCCEEDED,
            at=finished,
            attempt=1,
            worker_id="echo.0",
            result={"echo": 1},
        ),
    ]
    result = TaskResult.of(
        t,
        TaskStatus.SUCCEEDED,
        1,
        started_at=started,
        finished_at=finished,
        result={"echo": 1},
        worker_id="echo.0",
    )
    return events, result


def _state(store: SyncTaskStore, task_id: str) -> dict[str, Any]:
    """What a poll and a listing see of a task: its hash and its place in the indexes."""
    keys = Keys.of(store.settings)
    indexes = {
        key.decode(): store.redis.zscore(key, task_id)
        for key in store.redis.scan_iter(match=keys.index("*", "*"), count=1000)
    }
    return {
        "task": store.redis.hgetall(keys.task(task_id)),
        "indexes": {name: score for name, score in indexes.items() if score is not None},
    }


def _timeline(store: SyncTaskStore, task_id: str) -> dict[Any, Any]:
    return dict(store.redis.hgetall(Keys.of(store.settings).timeline(task_id)))


def test_the_projector_after_the_fast_paths_changes_nothing(store: SyncTaskStore) -> None:
    t = _task(1)
    events, result = _lifecycle(t)
    store.apply_events(events[:1])  # the API, before its 202
    [(verdict, attempt)] = store.claim([t], "echo.0", ["lane:0@0"])  # the worker, before it runs
    assert (verdict, attempt) == ("run", 1)
    store.apply_results([result])  # the worker, after its commit
    fast, fast_timeline = _state(store, t.task_id), _timeline(store, t.task_id)
    assert fast["task"][b"status"] == b"succeeded"
    store.apply_events(events)  # the projector, later
    assert _state(store, t.task_id) == fast
    # The timeline gains the `running` entry the claim does not write; nothing else changes.
    timeline = _timeline(store, t.task_id)
    assert {k: v for k, v in timeline.items() if k in fast_timeline} == fast_timeline
    assert sorted(timeline) == [b"queued:0", b"running:1", b"succeeded:1"]
    store.apply_events(events[1:2])  # a late `running`, again
    store.apply_events(events[:1])  # a replayed `queued`
    assert _state(store, t.task_id) == fast
    assert _timeline(store, t.task_id) == timeline


def test_a_result_written_before_the_projector_saw_the_task_is_not_moved_back(
    store: SyncTaskStore,
) -> None:
    # The worker's write can reach Redis before the projector applies the `queued` event (when
    # the API's own write was lost): the queued and running events then only fill what the
    # result lacks (the task's description), and the status stays terminal.
    t = _task(2)
    events, result = _lifecycle(t)
    store.apply_results([result])
    for event in events:
        store.apply_events([event])
        stored = store.redis.hgetall(Keys.of(store.settings).task(t.task_id))
        assert stored[b"status"] == b"succeeded"
        assert stored[b"attempts"] == b"1"
    assert stored[b"created_at"] == t.created_at.isoformat().encode()
    after_all = _state(store, t.task_id), _timeline(store, t.task_id)
    store.apply_events(events)
    store.apply_results([result])
    assert (_state(store, t.task_id), _timeline(store, t.task_id)) == after_all


def test_a_later_event_where_redis_lost_the_task_reads_as_absent_until_the_replay(
    store: SyncTaskStore,
) -> None:
    # Redis lost everything (FLUSHDB) while the projector still had a `running` event to apply:
    # the hash holds a status but not the task's description. A poll reads it as absent (404),
    # not as a body it cannot build (a 500), until the replay brings the task's record back.
    t = _task(3)
    events, _ = _lifecycle(t)
    key = Keys.of(store.settings).task(t.task_id)
    store.apply_events([events[1]])
    stub = store.redis.hgetall(key)
    assert stub[b"status"] == b"running" and view_of(stub) is None
    store.apply_events(events)
    view = view_of(store.redis.hgetall(key))
    assert view is not None and view.status is TaskStatus.SUCCEEDED and view.task_id == t.task_id
