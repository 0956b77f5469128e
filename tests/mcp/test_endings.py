"""Wake-ups when tasks end (`mcp.endings`), against a real Redis: the state scripts publish a
task's end in the step that makes it terminal, and only then; a waiter is woken when its task
ends, when the subscription is lost and when it is back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from mcp.endings import Endings
from mcp.redis_client import connect
from mcp.settings import Settings
from mcp.store import SyncTaskStore, TaskStore
from schemas import AsyncTask, TaskEvent, TaskResult, TaskStatus
from tests.conftest import make_settings
from tests.harness import PrivateRedis

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WOKEN_S = 5.0  # how long a wake-up may take before the test fails (a lost one never comes)


def _task(name: str) -> AsyncTask:
    return AsyncTask(task_id=name, model="echo", action="generate", project="p", created_at=T0)


def _succeeded(task: AsyncTask) -> TaskResult:
    started = T0 + timedelta(milliseconds=5)
    return TaskResult.of(
        task,
        TaskStatus.SUCCEEDED,
        1,
        started_at=started,
        finished_at=started + timedelta(milliseconds=1),
        result={"echo": 1},
        worker_id="echo.0",
    )


async def _subscribed(endings: Endings) -> None:
    async def loop() -> None:
        while not endings.subscribed:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), WOKEN_S)


async def _quiet(event: asyncio.Event) -> bool:
    """True when nothing set the event within a short while."""
    await asyncio.sleep(0.2)
    return not event.is_set()


@pytest.fixture
async def endings(settings: Settings) -> AsyncIterator[Endings]:
    client = connect(settings)
    found = Endings(settings, client)
    found.start()
    await _subscribed(found)
    yield found
    await found.close()
    await client.aclose()


async def test_a_task_wakes_its_waiters_when_it_ends_and_only_then(
    settings: Settings, endings: Endings
) -> None:
    store = SyncTaskStore(settings)
    task, other = _task("ends"), _task("other")
    with endings.watch(task.task_id) as ended, endings.watch(other.task_id) as untouched:
        await asyncio.to_thread(
            store.apply_events,
            [
                TaskEvent.of(task, TaskStatus.QUEUED, at=T0, task=task),
                TaskEvent.of(task, TaskStatus.RUNNING, at=T0, attempt=1, worker_id="echo.0"),
            ],
        )
        assert await _quiet(ended)  # queued and running are no end
        await asyncio.to_thread(store.apply_results, [_succeeded(task)])
        await asyncio.wait_for(ended.wait(), WOKEN_S)
        ended.clear()
        await asyncio.to_thread(store.apply_results, [_succeeded(task)])  # again: not new
        assert await _quiet(ended)
        assert not untouched.is_set()
    assert endings.waiting == 0
    store.close()


async def test_the_tasks_one_call_ends_go_out_in_one_message_and_wake_each_waiter(
    settings: Settings, endings: Endings
) -> None:
    store = SyncTaskStore(settings)
    tasks = [_task(name) for name in ("first", "with space", 'quoted"/id', "über")]
    listener = connect(settings)
    async with listener.pubsub() as pubsub:
        await pubsub.subscribe(endings.channel)
        assert (await pubsub.get_message(timeout=WOKEN_S) or {}).get("type") == "subscribe"
        with contextlib.ExitStack() as stack:
            woken = [stack.enter_context(endings.watch(t.task_id)) for t in tasks]
            await asyncio.to_thread(store.apply_results, [_succeeded(t) for t in tasks])
            for event in woken:
                await asyncio.wait_for(event.wait(), WOKEN_S)
        messages = []
        while (message := await pubsub.get_message(timeout=0.5)) is not None:
            if message["type"] == "message":
                messages.append(orjson.loads(message["data"]))
    assert messages == [[t.task_id for t in tasks]]
    await listener.aclose()
    store.close()


async def test_cancelling_a_queued_task_wakes_its_waiters(
    settings: Settings, endings: Endings
) -> None:
    store = TaskStore(settings)
    task = _task("cancelled")
    await store.apply_events([TaskEvent.of(task, TaskStatus.QUEUED, at=T0, task=task)])
    with endings.watch(task.task_id) as ended:
        assert await store.cancel(task.task_id, 60) == "cancelled"
        await asyncio.wait_for(ended.wait(), WOKEN_S)
    await store.close()


async def test_waiters_are_woken_when_the_subscription_is_lost_and_again_when_it_is_back(
    kafka_bootstrap: str, namespace: str, private_redis: PrivateRedis
) -> None:
    settings = make_settings(kafka_bootstrap, private_redis.url, namespace)
    client = connect(settings)
    endings = Endings(settings, client)
    endings.start()
    await _subscribed(endings)
    task = _task("through-a-restart")
    with endings.watch(task.task_id) as ended:
        private_redis.kill()
        await asyncio.wait_for(ended.wait(), WOKEN_S)  # read again: an end may be missed now
        assert not endings.subscribed
        ended.clear()
        private_redis.start()
        await _subscribed(endings)
        await asyncio.wait_for(ended.wait(), WOKEN_S)  # read again: one may have been missed
        ended.clear()
        store = SyncTaskStore(settings)
        await asyncio.to_thread(store.apply_results, [_succeeded(task)])
        await asyncio.wait_for(ended.wait(), WOKEN_S)
        store.close()
    await endings.close()
    await client.aclose()
