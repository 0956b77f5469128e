"""Task indexes follow the task state in the same Lua step, against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis.asyncio as aioredis

from mcp import projector
from mcp.errors import InvalidCursor
from mcp.lua import CANCEL
from mcp.names import Keys
from mcp.projector import Projector
from mcp.settings import Settings
from mcp.store import SyncTaskStore, TaskStore
from mcp.task_index import (
    NAMES_COMPLETE,
    Cursor,
    IndexTrimmer,
    TaskFilter,
    TaskIndex,
    metadata_pairs,
)
from schemas import AsyncTask, TaskEvent, TaskResult, TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def index(settings: Settings) -> AsyncIterator[TaskIndex]:
    client = aioredis.Redis.from_url(settings.redis.url)
    yield TaskIndex(client, Keys.of(settings))
    await client.aclose()


def task(n: int, project: str = "p", model: str = "echo", **fields: object) -> AsyncTask:
    return AsyncTask(
        task_id=f"task-{n:03d}",
        model=model,
        action=str(fields.pop("action", "generate")),
        project=project,
        created_at=T0 + timedelta(milliseconds=10 * n),
        **fields,  # type: ignore[arg-type]
    )


def queued(t: AsyncTask) -> TaskEvent:
    return TaskEvent.of(t, TaskStatus.QUEUED, at=t.created_at, task=t)


async def everything(index: TaskIndex, project: str, where: TaskFilter, limit: int) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        page = await index.page(project, where, limit, cursor)
        out += [row[0].decode() for row in page.rows]
        if page.next_cursor is None:
            return out
        cursor = Cursor.decode(page.next_cursor)


async def test_index_moves_with_the_status_and_never_backwards(
    store: SyncTaskStore, index: TaskIndex
) -> None:
    tasks = [task(n) for n in range(3)]
    store.apply_events([queued(t) for t in tasks])
    assert store.claim([tasks[0]], "w1")[0][0] == "run"
    done = TaskEvent.of(tasks[1], TaskStatus.SUCCEEDED, attempt=1, result={"ok": True})
    late = TaskEvent.of(tasks[1], TaskStatus.RUNNING, attempt=1, worker_id="w2")
    store.apply_events([done, late])

    async def ids(status: str) -> list[str]:
        return await everything(index, "p", TaskFilter(status=status), 50)

    assert await ids("queued") == ["task-002"]
    assert await ids("running") == ["task-000"]
    assert await ids("succeeded") == ["task-001"]
    assert await ids("failed") == []
    # The CANCEL script indexes too.
    assert store.redis.zcard(store.keys.index("p", "done:succeeded")) == 1

    store.redis.register_script(CANCEL)(
        keys=[store.keys.task("task-002"), store.keys.cancel("task-002")],
        args=[T0.isoformat(), "60"],
    )
    assert await ids("queued") == []
    assert await ids("cancelled") == ["task-002"]


async def test_pages_walk_newest_first_without_gap_or_repeat(
    store: SyncTaskStore, index: TaskIndex
) -> None:
    tasks = [task(n) for n in range(23)]
    # Several tasks created in the same millisecond share a score: the cursor still holds.
    same = [
        AsyncTask(task_id=f"same-{i}", model="echo", action="generate", project="p", created_at=T0)
        for i in range(5)
    ]
    store.apply_events([queued(t) for t in [*tasks, *same]])
    walked = await everything(index, "p", TaskFilter(), 4)
    # Newest first; tasks of the same millisecond in reverse id order.
    order = sorted([*tasks, *same], key=lambda t: (t.created_at, t.task_id), reverse=True)
    assert walked == [t.task_id for t in order]


async def test_filters_combine_and_projects_stay_apart(
    store: SyncTaskStore, index: TaskIndex
) -> None:
    events = [
        queued(task(1, model="echo", metadata={"customer": "acme", "n": 1})),
        queued(task(2, model="glm-tiny", metadata={"customer": "acme"})),
        queued(task(3, model="glm-tiny", action="embed", metadata={"customer": "zeta"})),
        queued(task(4, project="other", metadata={"customer": "acme"})),
    ]
    store.apply_events(events)

    async def ids(**where: object) -> list[str]:
        return await everything(index, "p", TaskFilter(**where), 10)  # type: ignore[arg-type]

    assert await ids() == ["task-003", "task-002", "task-001"]
    assert await ids(model="glm-tiny") == ["task-003", "task-002"]
    assert await ids(model="glm-tiny", action="generate") == ["task-002"]
    assert await ids(status="queued", model="echo") == ["task-001"]
    assert await ids(metadata="customer=acme") == ["task-002", "task-001"]
    assert await ids(metadata="n=1") == ["task-001"]
    since = T0 + timedelta(milliseconds=20)
    assert await ids(since=since) == ["task-003", "task-002"]
    assert await ids(until=since) == ["task-002", "task-001"]
    assert await everything(index, "other", TaskFilter(), 10) == ["task-004"]


async def test_expired_tasks_leave_the_listing_and_old_entries_are_trimmed(
    store: SyncTaskStore, index: TaskIndex
) -> None:
    store.apply_events([queued(task(n)) for n in range(3)])
    store.redis.delete(store.keys.task("task-001"))  # as if its retention had run out
    assert await everything(index, "p", TaskFilter(), 10) == ["task-002", "task-000"]
    assert await index.trim(retention_s=60) >= 2  # created in 2026-01-01: long past
    assert await everything(index, "p", TaskFilter(), 10) == []


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def names(store: SyncTaskStore, project: str) -> set[str]:
    return {_text(m) for m in store.redis.smembers(store.keys.index_names(project))}


def index_keys(store: SyncTaskStore, project: str) -> set[str]:
    return {_text(k) for k in store.redis.scan_iter(match=store.keys.index(project, "*"))}


async def test_the_trim_goes_through_the_names_each_project_keeps_a_slice_at_a_time(
    store: SyncTaskStore, index: TaskIndex
) -> None:
    keys = store.keys
    old = [task(n, model=f"m{n % 3}", action=f"a{n % 2}", metadata={"n": n}) for n in range(12)]
    recent = AsyncTask(task_id="recent", model="m0", action="a0", project="p")
    legacy = task(99, project="q")
    store.apply_events([queued(t) for t in [*old, recent, legacy]])
    assert store.claim([old[0]], "w1")[0][0] == "run"
    at = T0 + timedelta(seconds=1)
    store.apply_events([TaskEvent.of(old[1], TaskStatus.SUCCEEDED, attempt=1, result={}, at=at)])
    # The state scripts note every model:, action: and meta: index of a project they create.
    assert names(store, "p") == {
        NAMES_COMPLETE,
        *(f"model:m{n}" for n in range(3)),
        "action:a0",
        "action:a1",
        *(f"meta:n={n}" for n in range(12)),
    }
    # A project indexed before there were names sets: its index names are found by one scan.
    store.redis.delete(keys.index_names("q"))
    trimmer = IndexTrimmer(index.redis, keys, retention_s=60, slice_names=2)
    steps, removed, ended = 0, 0, False
    while not ended:
        gone, ended = await trimmer.step()
        steps, removed = steps + 1, removed + gone
    assert steps >= 2  # a step trims a slice of one project
    assert removed > 12 * 4
    # Only the recent task is left, in its indexes; names of emptied indexes left the sets.
    assert await everything(index, "p", TaskFilter(), 10) == ["recent"]
    assert await everything(index, "p", TaskFilter(status="running"), 10) == []
    assert names(store, "p") == {NAMES_COMPLETE, "model:m0", "action:a0"}
    assert index_keys(store, "p") == {
        keys.index("p", n)
        for n in ("all", "model:m0", "action:a0", "status:queued", "sm:queued:m0")
    }
    assert names(store, "q") == {NAMES_COMPLETE}
    assert index_keys(store, "q") == set()
    # The next pass finds nothing more to drop.
    assert await index.trim(retention_s=60) == 0


async def test_the_projector_trims_beside_its_consuming(
    store: SyncTaskStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.apply_events([queued(task(n, metadata={"n": n})) for n in range(3)])
    monkeypatch.setattr(projector, "TRIM_STEP_S", 0.01)
    tasks = TaskStore(settings)
    stop = asyncio.Event()
    trimming = asyncio.create_task(Projector(settings, tasks)._trim(stop))
    try:
        for _ in range(1000):  # created in 2026-01-01: past the retention
            if not index_keys(store, "p"):
                break
            await asyncio.sleep(0.01)
        assert index_keys(store, "p") == set()
        assert names(store, "p") == {NAMES_COMPLETE}
    finally:
        stop.set()
        await trimming
        await tasks.close()


async def test_timeline_keeps_each_event_once(store: SyncTaskStore, settings: Settings) -> None:
    t = task(1)
    running = TaskEvent.of(t, TaskStatus.RUNNING, attempt=1, worker_id="w1")
    done = TaskEvent.of(t, TaskStatus.SUCCEEDED, attempt=1, result={})
    store.apply_events([queued(t), running, done])
    store.apply_events([queued(t), running])  # redelivered by Kafka: nothing new
    raw = store.redis.hgetall(Keys.of(settings).timeline(t.task_id))
    entries = sorted((orjson.loads(v) for v in raw.values()), key=lambda e: e["at"])
    assert [(e["status"], e["attempt"]) for e in entries] == [
        ("queued", 0),
        ("running", 1),
        ("succeeded", 1),
    ]
    assert entries[1]["worker_id"] == "w1"


@pytest.mark.filterwarnings("ignore")
def test_bad_cursors_and_metadata_bounds() -> None:
    for bad in ["", "!!", "bm90LWpzb24", Cursor("x", "y").encode()]:
        with pytest.raises(InvalidCursor):
            Cursor.decode(bad)
    assert Cursor.decode(Cursor("17", "a").encode()) == Cursor("17", "a")
    pairs = metadata_pairs({"s": "v", "b": True, "x": None, "nested": {"a": 1}, "long": "v" * 200})
    assert pairs == ["s=v", "b=true", "x=null"]


async def test_indexes_off_leave_only_the_task_state(settings: Settings) -> None:
    off = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"task_indexes": False})}
    )
    store = SyncTaskStore(off)
    try:
        store.apply_events([queued(task(1))])
        assert store.redis.hget(store.keys.task("task-001"), "status") == b"queued"
        assert store.redis.exists(store.keys.index("p", "all")) == 0
        assert store.redis.exists(store.keys.timeline("task-001")) == 0
        assert store.redis.hget(store.keys.task("task-001"), "payload") is None
    finally:
        store.close()


async def test_a_result_ends_the_timeline_before_its_terminal_event(
    store: SyncTaskStore, settings: Settings
) -> None:
    # The result and the terminal event travel apart; whichever comes first, the timeline's
    # last entry is the status a poller sees, and the other adds nothing.
    t = task(2)
    running = TaskEvent.of(t, TaskStatus.RUNNING, attempt=1, worker_id="w1")
    finished = running.at + timedelta(seconds=1)
    result = TaskResult.of(
        t, TaskStatus.SUCCEEDED, 1, finished_at=finished, result={}, worker_id="w1"
    )
    done = TaskEvent.of(t, TaskStatus.SUCCEEDED, at=finished, attempt=1, worker_id="w1", result={})
    store.apply_events([queued(t), running])
    store.apply_results([result])
    timeline = Keys.of(settings).timeline(t.task_id)
    first = store.redis.hgetall(timeline)
    store.apply_events([done])
    assert store.redis.hgetall(timeline) == first
    entries = sorted((orjson.loads(v) for v in first.values()), key=lambda e: e["at"])
    assert [(e["status"], e["attempt"]) for e in entries][-1] == ("succeeded", 1)
